"""Step 2 of the feed: every input row's coordinates (bar index, asset index) in the run's grid.

The calendar is the sorted distinct price timestamps inside the run window, the universe the
sorted distinct asset ids; a row's bar is its timestamp's position in the calendar and its
asset its id's position in the universe (`ml4t_pipeline.keys.codes`), -1 when the row falls
outside the run. Sorted input (the common layout) is looked up once per run of equal
timestamps; text ids are looked up once per distinct string of a batch (Parquet dictionary),
never once per row. A signal with `available_at` is placed at the first bar at or after the
moment it became known, so a strategy at bar t never reads a value published after t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from ml4t_pipeline.engine.feed.columns import as_arrow, asset_values, int64_values, timestamps_us
from ml4t_pipeline.engine.feed.tables import Table
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import ASSET_ID, AVAILABLE_AT, KEY_COLUMNS, codes

AssetColumn = tuple[np.ndarray, np.ndarray | None]
"""One batch of asset ids: (values, None), or (a dictionary, each row's index into it)."""


@dataclass(slots=True)
class RowCoords:
    """Per-row (bar index, asset index) of one input, in file order; -1 = outside the run."""

    bar: np.ndarray  # int32
    asset: np.ndarray  # int32


def read_keys(table: Table) -> tuple[list[np.ndarray], list[AssetColumn]]:
    """The timestamps (int64 us UTC) and asset ids of every batch of `table`."""
    stamps: list[np.ndarray] = []
    assets: list[AssetColumn] = []
    for batch in table.batches(KEY_COLUMNS):
        stamps.append(timestamps_us(batch.column(0), table.name))
        asset_col = batch.column(1)
        if asset_col.null_count:
            msg = f"{table.name}: column '{ASSET_ID}' has {asset_col.null_count} null value(s)"
            raise DataError(msg)
        assets.append(asset_values(asset_col, table.name))
    return stamps, assets


def run_starts(stamps: np.ndarray) -> np.ndarray | None:
    """Where each run of equal values starts in a sorted batch (the common layout); None when
    the batch is not sorted."""
    if stamps.shape[0] == 0 or not np.all(stamps[1:] >= stamps[:-1]):
        return None
    return np.flatnonzero(np.r_[True, stamps[1:] != stamps[:-1]])


def _distinct(stamps: np.ndarray) -> np.ndarray:
    """The distinct values of one batch of timestamps; sorted when the batch is sorted."""
    starts = run_starts(stamps)
    if starts is not None:
        return stamps[starts]
    return int64_values(pc.unique(as_arrow(stamps)))


def bar_calendar(stamps: Sequence[np.ndarray], lo: int | None, hi: int | None) -> np.ndarray:
    """Sorted distinct price timestamps in [lo, hi) (None = unbounded): the run's bars."""
    uniques = []
    for ts in stamps:
        distinct = _distinct(ts)
        if lo is not None:
            distinct = distinct[distinct >= lo]
        if hi is not None:
            distinct = distinct[distinct < hi]
        uniques.append(distinct)
    if len(uniques) == 1 and bool(np.all(uniques[0][1:] > uniques[0][:-1])):
        calendar = uniques[0]  # one batch of sorted rows: already the calendar
    else:
        calendar = np.unique(np.concatenate(uniques)) if uniques else np.empty(0, np.int64)
    return calendar.astype(np.int64)


def universe(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Sorted distinct asset ids of several batches (an object array for text ids)."""
    if not parts:
        return np.empty(0, dtype=object)
    if any(part.dtype.kind in "OUS" for part in parts):
        distinct: set[object] = set()
        for part in parts:
            distinct.update(part.tolist())
        return np.array(sorted(distinct), dtype=object)  # type: ignore[type-var]
    return np.unique(np.concatenate(parts))


def _stamp_codes(calendar: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """Bar index of each timestamp, -1 when not a bar of the run."""
    if stamps.shape == calendar.shape and np.array_equal(stamps, calendar):
        return np.arange(stamps.shape[0], dtype=np.int64)  # one row per bar, e.g. one asset
    starts = run_starts(stamps) if calendar.shape[0] else None
    if starts is not None:  # sorted batch: look up each run of equal stamps once
        lengths = np.diff(np.r_[starts, stamps.shape[0]])
        return np.repeat(codes(calendar, stamps[starts]), lengths)
    found = pc.index_in(as_arrow(stamps), value_set=as_arrow(calendar))
    return int64_values(found, null=-1)


def _asset_codes(assets: np.ndarray, values: np.ndarray, indices: np.ndarray | None) -> np.ndarray:
    """Asset index of each row (through the dictionary for text ids), -1 when unknown."""
    found = codes(assets, values)
    return found if indices is None else found[indices]


def coordinates(
    calendar: np.ndarray,
    assets: np.ndarray,
    stamps: Sequence[np.ndarray],
    ids: Sequence[AssetColumn],
    n_rows: int,
) -> RowCoords:
    """Every row's (bar, asset); a row outside the calendar or the universe gets (-1, -1)."""
    bar = np.empty(n_rows, dtype=np.int32)
    asset = np.empty(n_rows, dtype=np.int32)
    offset = 0
    for ts, (values, indices) in zip(stamps, ids, strict=True):
        n = ts.shape[0]
        bar[offset : offset + n] = _stamp_codes(calendar, ts)
        asset[offset : offset + n] = _asset_codes(assets, values, indices)
        offset += n
    asset[bar < 0] = -1
    bar[asset < 0] = -1
    return RowCoords(bar=bar, asset=asset)


def knowledge_stamps(
    table: Table, event_stamps: list[np.ndarray], calendar: np.ndarray
) -> list[np.ndarray]:
    """With `available_at`, each row's stamp becomes the first bar at or after the moment it
    was known (max of timestamp and available_at); -1 when that is after the last bar.

    `available_at` is read in its own batches, lined up with the key batches by row offset.
    """
    event = np.concatenate(event_stamps) if event_stamps else np.empty(0, np.int64)
    known = np.empty_like(event)
    offset = 0
    for batch in table.batches([AVAILABLE_AT]):
        n = batch.num_rows
        stamps = timestamps_us(batch.column(0), table.name, AVAILABLE_AT)
        known[offset : offset + n] = np.maximum(stamps, event[offset : offset + n])
        offset += n
    pos = np.searchsorted(calendar, known)
    usable = np.where(pos < calendar.shape[0], calendar[np.minimum(pos, calendar.shape[0] - 1)], -1)
    bounds = np.cumsum([s.shape[0] for s in event_stamps])[:-1]
    return np.split(usable.astype(np.int64), bounds)
