"""The equity + drawdown chart: a valid 640 x 360 PNG with its title, axis labels and both curves,
for a month, for many months, intraday and over years, and for the awkward cases (gaps, one bar,
no bars, a flat line). The tests decode the PNG themselves and look for the labels' pixels."""

import base64
import datetime as dt
import struct
import zlib

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest

from ml4t_pipeline.pipeline.plots import (
    DRAWDOWN_ALPHA,
    DRAWDOWN_COLOUR,
    START_COLOUR,
    equity_drawdown_png,
    png_markdown,
)
from ml4t_pipeline.pipeline.raster import text_mask

START = 1_000_000.0
SIGNATURE = b"\x89PNG\r\n\x1a\n"
Pixels = npt.NDArray[np.uint8]
# An area pixel: the drawdown colour laid over white at DRAWDOWN_ALPHA.
AREA = tuple(round(255 + (c - 255) * DRAWDOWN_ALPHA) for c in DRAWDOWN_COLOUR)


def _equity(
    bars: int,
    *,
    seed: int = 0,
    start: dt.datetime = dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    every: dt.timedelta = dt.timedelta(days=1),
) -> pl.DataFrame:
    stamps = pl.datetime_range(
        start, start + every * max(bars - 1, 0), every, time_zone="UTC", eager=True
    )[:bars]
    walk = np.cumsum(np.random.default_rng(seed).standard_normal(bars)) * 5_000.0
    return pl.DataFrame({"timestamp": stamps, "equity": START + walk})


def _with_gap(equity: pl.DataFrame, value: float | None) -> pl.DataFrame:
    gap = pl.when(pl.int_range(pl.len()) == 5).then(value).otherwise("equity")
    return equity.with_columns(gap.alias("equity"))


def _decode(png: bytes) -> Pixels:
    """The RGB pixels of a PNG as the chart writes it (8-bit RGB, no interlace, filter 0),
    checking the signature, every chunk's CRC and the chunk order on the way."""
    assert png[:8] == SIGNATURE
    chunks: list[tuple[bytes, bytes]] = []
    at = 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        chunks.append((kind, data))
        at += 12 + length
    assert at == len(png)
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    assert set(kinds[1:-1]) == {b"IDAT"}
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(data for kind, data in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert not rows[:, 0].any()  # filter type 0 on every row
    return rows[:, 1:].reshape(height, width, 3)


def _shows(pixels: Pixels, text: str, *, upright: bool = False, scale: int = 1) -> bool:
    """Whether `text` is printed in black somewhere in `pixels`, with nothing else black
    within 2 px of it (so "−40" is not found inside "−400")."""
    mask = text_mask(text, scale)
    mask = np.rot90(mask) if upright else mask
    mask = np.pad(mask, 2)
    ink = (pixels == 0).all(axis=2)
    first_row, first_col = (int(i[0]) for i in np.nonzero(mask))
    for row, col in zip(*np.nonzero(ink), strict=True):
        top, left = int(row) - first_row, int(col) - first_col
        window = ink[max(top, 0) : top + mask.shape[0], max(left, 0) : left + mask.shape[1]]
        if top >= 0 and left >= 0 and window.shape == mask.shape and (window == mask).all():
            return True
    return False


def _line_columns(pixels: Pixels) -> npt.NDArray[np.intp]:
    """The image columns holding some of the (blue) equity line."""
    red, blue = pixels[..., 0].astype(int), pixels[..., 2].astype(int)
    return np.flatnonzero((blue - red > 60).any(axis=0))


def _count(pixels: Pixels, colour: tuple[int, ...]) -> int:
    return int((pixels == np.array(colour, dtype=np.uint8)).all(axis=2).sum())


def test_a_month_has_title_axes_ticks_and_both_curves() -> None:
    png = equity_drawdown_png(_equity(31), start_equity=START, title="core 2024-01")
    pixels = _decode(png)
    assert pixels.shape == (360, 640, 3)
    assert _shows(pixels[:25], "core 2024-01", scale=2)  # above the axes, large
    assert _shows(pixels, "equity", upright=True)
    assert _shows(pixels, "drawdown %", upright=True)
    assert all(_shows(pixels, text) for text in ("Jan", "08", "15", "2024-Jan"))
    assert _shows(pixels, "1,000,000")  # the start equity line sits on a round tick here
    columns = _line_columns(pixels)
    assert len(columns) > 450  # the line runs across the axes, 31 bars on ~540 px
    assert (np.diff(columns) == 1).all()  # without a break
    assert _count(pixels, AREA) > 1_000  # the drawdown area
    assert _count(pixels, START_COLOUR) > 200  # the dashed start equity line


def test_a_title_too_long_for_large_print_is_printed_small() -> None:
    title = "a title too long to print at twice the size on a chart 640 px wide, so small"
    pixels = _decode(equity_drawdown_png(_equity(31), start_equity=START, title=title))
    assert _shows(pixels[:25], title)


def test_many_months_are_labelled_by_month() -> None:
    pixels = _decode(equity_drawdown_png(_equity(300), start_equity=START, title="all months"))
    assert all(_shows(pixels, text) for text in ("2024", "Mar", "May"))


@pytest.mark.parametrize(
    ("equity", "labels"),
    [
        (
            _equity(
                390,
                start=dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC),
                every=dt.timedelta(minutes=1),
            ),
            ("15:00", "21:00", "2024-Jan-02"),
        ),
        (_equity(3_000, seed=3), ("2024", "2032")),
    ],
    ids=["one session of minute bars", "eight years of days"],
)
def test_intraday_and_multi_year_spans(equity: pl.DataFrame, labels: tuple[str, ...]) -> None:
    pixels = _decode(equity_drawdown_png(equity, start_equity=START, title="span"))
    assert all(_shows(pixels, text) for text in labels)
    assert len(_line_columns(pixels)) > 450


def test_a_drawdown_is_measured_from_the_peak_before_the_month() -> None:
    flat = _equity(10).with_columns(pl.lit(START).alias("equity"))
    png = equity_drawdown_png(flat, start_equity=START, title="t", peak_before=2 * START)
    assert _shows(_decode(png), "\u221240")  # the axis reaches 50% below the earlier peak
    assert _count(_decode(png), AREA) > 10_000  # the whole month under water
    alone = _decode(equity_drawdown_png(flat, start_equity=START, title="t"))
    assert not _shows(alone, "\u221240")  # never below its own start
    assert _count(alone, AREA) == 0


@pytest.mark.parametrize("missing", [None, np.nan], ids=["null", "nan"])
def test_a_missing_bar_breaks_the_line(missing: float | None) -> None:
    pixels = _decode(
        equity_drawdown_png(_with_gap(_equity(31), missing), start_equity=START, title="gap")
    )
    gaps = np.diff(_line_columns(pixels))
    assert gaps.max() > 20  # two days without a line, ~35 px
    assert (gaps > 1).sum() == 1


def test_a_lone_bar_between_gaps_is_a_dot() -> None:
    equity = _equity(31).with_columns(
        pl.when(pl.int_range(pl.len()).is_in([5, 7])).then(None).otherwise("equity").alias("equity")
    )
    pixels = _decode(equity_drawdown_png(equity, start_equity=START, title="dot"))
    runs = np.split(_line_columns(pixels), np.flatnonzero(np.diff(_line_columns(pixels)) > 1) + 1)
    assert len(runs) == 3
    assert 3 <= len(runs[1]) <= 7  # a dot of radius 2 px


@pytest.mark.parametrize(
    "equity",
    [
        _with_gap(_equity(31), None),
        _with_gap(_equity(31), np.nan),
        _equity(1),
        _equity(0),
        _equity(31).with_columns(pl.lit(START).alias("equity")),
        _equity(31).with_columns(pl.lit(None, dtype=pl.Float64).alias("equity")),
        _equity(31).reverse(),
    ],
    ids=["null", "nan", "one bar", "no bars", "flat", "all null", "unsorted"],
)
def test_awkward_curves_still_draw(equity: pl.DataFrame) -> None:
    pixels = _decode(equity_drawdown_png(equity, start_equity=START, title="awkward"))
    assert pixels.shape == (360, 640, 3)
    assert _shows(pixels, "equity", upright=True)
    assert _shows(pixels, "drawdown %", upright=True)
    assert _count(pixels, START_COLOUR) > 0  # the start line (a flat curve hides most of it)
    drawn = equity["equity"].is_not_null().sum() > 0
    assert (len(_line_columns(pixels)) > 0) == drawn


def test_a_flat_line_is_level() -> None:
    flat = _equity(31).with_columns(pl.lit(START).alias("equity"))
    pixels = _decode(equity_drawdown_png(flat, start_equity=START, title="flat"))
    red, blue = pixels[..., 0].astype(int), pixels[..., 2].astype(int)
    rows = np.flatnonzero((blue - red > 60).any(axis=1))
    assert 1 <= len(rows) <= 3  # 1.6 px wide, level


def test_the_markdown_embeds_the_png() -> None:
    png = equity_drawdown_png(_equity(5), start_equity=START, title="<a & b>")
    markdown = png_markdown(png, "equity 2024-01-01|core")
    prefix = "![equity 2024-01-01|core](data:image/png;base64,"
    assert markdown.startswith(prefix)
    assert markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix) : -1]) == png
    assert len(png) < 60_000
