"""Delistings: where each asset's price bars end for good.

An asset is delisted at its last bar in the prices input when that bar comes before the
input's last timestamp (over every asset): after it the asset never trades again. This is a
property of the whole file, not of a run's window, so a run over one month and a run over the
whole period agree on it (chained months == one run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ml4t_pipeline.engine.feed.coords import AssetColumn
from ml4t_pipeline.keys import codes

_NEVER = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class Delistings:
    """The assets (universe positions) delisted in a run's window, by bar index in its
    calendar, and those delisted before the window starts."""

    at_bar: dict[int, np.ndarray] = field(default_factory=dict)
    before: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def in_rows(self, lo: int, hi: int) -> dict[int, np.ndarray]:
        """The delistings of calendar bars [lo, hi), keyed by row (bar - lo)."""
        return {b - lo: a for b, a in self.at_bar.items() if lo <= b < hi}


def delistings(
    stamps: Sequence[np.ndarray],
    ids: Sequence[AssetColumn],
    universe: np.ndarray,
    calendar: np.ndarray,
) -> Delistings:
    """Where the assets of `universe` are delisted relative to `calendar`, the run's bars.

    `stamps` and `ids` are every batch of the prices input (int64 us UTC timestamps and asset
    ids, as `read_keys` returns them). A delisting after the window is not the run's concern.
    """
    last = np.full(universe.shape[0], _NEVER, dtype=np.int64)
    end = _NEVER
    for ts, (values, indices) in zip(stamps, ids, strict=True):
        if ts.shape[0] == 0:
            continue
        end = max(end, int(ts.max()))
        if indices is not None:  # text ids: the latest stamp per dictionary entry, then map
            per_value = np.full(values.shape[0], _NEVER, dtype=np.int64)
            np.maximum.at(per_value, indices, ts)  # (the entries are few, the rows many)
            ts, asset = per_value, codes(universe, values)
        else:
            asset = codes(universe, values)
        known = (asset >= 0) & (ts != _NEVER)
        np.maximum.at(last, asset[known], ts[known])
    delisted = np.flatnonzero((last != _NEVER) & (last < end))
    if delisted.shape[0] == 0 or calendar.shape[0] == 0:
        return Delistings()
    stamp = last[delisted]
    before = delisted[stamp < calendar[0]]
    bar = np.searchsorted(calendar, stamp)
    inside = (bar < calendar.shape[0]) & (calendar[np.minimum(bar, calendar.shape[0] - 1)] == stamp)
    by_bar: dict[int, list[int]] = {}
    for b, a in zip(bar[inside].tolist(), delisted[inside].tolist(), strict=True):
        by_bar.setdefault(b, []).append(a)
    at_bar = {b: np.array(assets, dtype=np.int64) for b, assets in sorted(by_bar.items())}
    return Delistings(at_bar=at_bar, before=before.astype(np.int64))
