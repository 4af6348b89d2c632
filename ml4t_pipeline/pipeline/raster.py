"""Drawing into a numpy RGB image and writing it as a PNG: the few primitives a chart needs.

The text uses a 5 x 7 pixel font defined here; the PNG is 8-bit RGB, encoded with zlib.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from typing import Literal

import numpy as np
import numpy.typing as npt

MINUS = "\u2212"
INK = (0, 0, 0)

# The font: 5 px wide, 7 px above the baseline and 2 below (descenders). One glyph per word,
# for "!" .. "~" then the minus sign; a glyph is its rows from the top, each a base-32 digit
# whose bit 4 is the leftmost pixel; trailing empty rows are left out.
CAP_PX = 7
GLYPH_ROWS = 9
_FONT_CHARS = "".join(map(chr, range(33, 127))) + MINUS
_FONT_TABLE = (
    "4444404 aaa aavavaa 4fke5u4 op248j3 cik8lid 448 2488842 8422248 04lel4 044v44 00000oo8g "
    "000e 00000oo 11248gg ehjlphe 4c4444e eh1248v v2421he 26aiv22 vgu11he 68guhhe v124888 "
    "ehhehhe ehhf12c 00oo0oo 00oo0oo8g 248g842 00v0v 8421248 eh12404 eh1dlle ehhvhhh uhhuhhu "
    "ehggghe sihhhis vgguggv vgguggg ehgnhhf hhhvhhh e44444e 72222ic hikokih ggggggv hrllhhh "
    "hhpljhh ehhhhhe uhhuggg ehhhlid uhhukih fgge11u v444444 hhhhhhe hhhhha4 hhhllla hha4ahh "
    "hha4444 v1248gv e88888e gg84211 e22222e 4ah 0000000v 842 00e1fhf ggmphhu 00egghe 11djhhf "
    "00ehvge 698s888 00fhhhf1e ggmphhh 40c444e 2062222ic ggikoki c44444e 00qllll 00mphhh "
    "00ehhhe 00uhhhugg 00fhhhf11 00mpggg 00fge1u 88s8896 00hhhjd 00hhha4 00hhlla 00ha4ah "
    "00hhhhf1e 00v248v 2448442 444444444 8442448 008l2 000v"
)
_FONT = _FONT_TABLE.split()
_NARROW = ".,:;!'|"  # set as wide as their ink; the rest are 5 px
_SPACE_PX = 3

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
Anchor = Literal["start", "middle", "end"]
Cells = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], Floats]


@functools.cache
def _glyph(char: str) -> Mask:
    """The pixels of `char`, GLYPH_ROWS high; a character the font lacks is drawn as "?"."""
    if char == " ":
        return np.zeros((GLYPH_ROWS, _SPACE_PX), dtype=np.bool_)
    index = _FONT_CHARS.find(char)
    code = _FONT[index if index >= 0 else _FONT_CHARS.index("?")]
    rows = np.zeros(GLYPH_ROWS, dtype=np.int64)
    rows[: len(code)] = [int(digit, 32) for digit in code]
    pixels = (rows[:, None] >> np.arange(4, -1, -1)) & 1 == 1
    if char in _NARROW:
        inked = np.flatnonzero(pixels.any(axis=0))
        pixels = pixels[:, inked[0] : inked[-1] + 1]
    return pixels


def text_width(text: str, scale: int = 1) -> int:
    return max(sum(_glyph(char).shape[1] + 1 for char in text) - 1, 0) * scale


def text_mask(text: str, scale: int = 1) -> Mask:
    """`text` in one row of glyphs, one pixel apart; the baseline is under row CAP_PX - 1."""
    gap = np.zeros((GLYPH_ROWS, 1), dtype=np.bool_)
    parts = [part for char in text for part in (_glyph(char), gap)][:-1]
    mask = np.hstack(parts) if parts else np.zeros((GLYPH_ROWS, 0), dtype=np.bool_)
    return mask.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else mask


def px(value: float) -> int:
    """The pixel holding the coordinate `value` (pixel k spans [k, k + 1))."""
    return math.floor(value)


class Canvas:
    """A white RGB image, painted in one colour at a time, weighted by how much of each pixel
    the shape covers (0..1)."""

    def __init__(self, width: int, height: int) -> None:
        self.pixels = np.full((height, width, 3), 255, dtype=np.uint8)

    def paint(self, top: int, left: int, mask: Mask, colour: tuple[int, int, int]) -> None:
        """`colour` on the pixels of `mask`, whose pixel [0, 0] is the image's [top, left]."""
        rows, cols = mask.shape
        height, width = self.pixels.shape[:2]
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + rows, height), min(left + cols, width)
        if y1 > y0 and x1 > x0:
            self.pixels[y0:y1, x0:x1][mask[y0 - top : y1 - top, x0 - left : x1 - left]] = colour

    def blend(self, cells: Cells, colour: tuple[int, int, int], alpha: float = 1.0) -> None:
        """`colour` over the pixels (rows, columns), by `alpha` times their coverage."""
        rows, cols, coverage = cells
        under = self.pixels[rows, cols].astype(np.float32)
        weight = (alpha * coverage).astype(np.float32)[:, None]
        paint = np.array(colour, dtype=np.float32)
        self.pixels[rows, cols] = np.rint(under + (paint - under) * weight)

    def fill(self, top: int, left: int, bottom: int, right: int) -> None:
        """Pixels [top, bottom) x [left, right) in ink: the axis lines and tick marks."""
        self.pixels[max(top, 0) : bottom, max(left, 0) : right] = INK

    def text(self, x: float, top: int, text: str, *, anchor: Anchor, scale: int = 1) -> None:
        """`text` with its capitals' top at `top`; `x` is its left edge, centre or right edge."""
        mask = text_mask(text, scale)
        shift = {"start": 0.0, "middle": mask.shape[1] / 2, "end": float(mask.shape[1])}[anchor]
        self.paint(top, px(x - shift + 0.5), mask, INK)

    def upright_text(self, baseline_x: int, middle: float, text: str) -> None:
        """`text` turned a quarter anticlockwise, centred on `middle`, read bottom to top."""
        mask = np.rot90(text_mask(text))
        self.paint(px(middle - mask.shape[0] / 2 + 0.5), baseline_x - CAP_PX, mask, INK)

    def png(self) -> bytes:
        """The image as a PNG: 8-bit RGB, no filter, zlib level 6."""
        height, width = self.pixels.shape[:2]
        rows = np.zeros((height, 1 + 3 * width), dtype=np.uint8)  # a 0 (no filter) per row
        rows[:, 1:] = self.pixels.reshape(height, -1)
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        return b"".join(
            [
                b"\x89PNG\r\n\x1a\n",
                _chunk(b"IHDR", header),
                _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)),
                _chunk(b"IEND", b""),
            ]
        )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
