"""Array helpers shared by the model parts: the float array type, row blocks, recursions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

BARS_PER_YEAR: Final = 252

_BLOCK_ELEMENTS: Final = 1 << 18  # elements per block of rows (2 MB of float64)


def row_blocks(bars: int, width: int, *, first: int = 0) -> Iterator[slice]:
    """Slices of about `_BLOCK_ELEMENTS` elements over rows ``first..bars``."""
    step = max(1, _BLOCK_ELEMENTS // max(width, 1))
    for start in range(first, bars, step):
        yield slice(start, min(start + step, bars))


def ema(values: FloatArray, weight: float) -> FloatArray:
    """Exponential moving average: ``out[t] = out[t-1] + weight * (values[t] - out[t-1])``."""
    out = values.copy()
    for t in range(1, out.size):
        out[t] = out[t - 1] + weight * (values[t] - out[t - 1])
    return out


def ar1(innovation: FloatArray, persistence: float) -> FloatArray:
    """AR(1) path: ``out[t] = innovation[t] + persistence * out[t-1]``."""
    out = innovation.copy()
    for t in range(1, out.size):
        out[t] += persistence * out[t - 1]
    return out
