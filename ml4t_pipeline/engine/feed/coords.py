"""Step 2 of the feed: every input row's coordinates (bar index, asset index) in the run's grid.

The calendar is the sorted distinct price timestamps inside the run window, the universe the
sorted distinct asset ids; a row's bar is its timestamp's position in the calendar and its
asset its id's position in the universe (`ml4t_pipeline.keys.codes`), -1 when the row falls
outside the run. Sorted input (the common layout) is looked up once per run of equal
timestamps; text ids are looked up once per distinct string of a batch (Parquet dictionary),
never once per row.

Signals with `available_at` go through `known_rows`: a row becomes known at the first bar at
or after max(timestamp, available_at), and at each bar the current row of an asset is the one
with the latest timestamp among those known by then, in its latest known version
(`keys.becoming_current`), so a strategy at bar t never reads a value published after t and a
late-published older row never replaces a newer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from ml4t_pipeline.engine.feed.columns import as_arrow, asset_values, int64_values, timestamps_us
from ml4t_pipeline.engine.feed.tables import Table
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import (
    ASSET_ID,
    AVAILABLE_AT,
    KEY_COLUMNS,
    MAX_EXAMPLES,
    TIMESTAMP,
    becoming_current,
    codes,
    duplicate_keys_message,
    key_columns,
    repeated_versions,
    to_datetime,
)

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


@dataclass(slots=True, eq=False)
class KnownRows:
    """The rows of a signals table with `available_at` that are ever current in the run.

    `coords` places each such row at (the bar it becomes current at, its asset), every other
    row at -1; when several rows become current at one bar, only the last (newest) is kept.
    `asset`, `bar` and `row` list the kept rows sorted by (asset, bar).
    """

    coords: RowCoords
    asset: np.ndarray  # int64
    bar: np.ndarray  # int64
    row: np.ndarray  # int64, the row in file order
    n_bars: int
    n_assets: int

    def from_bar(self, lo: int) -> RowCoords:
        """`coords` for a chunk starting at bar `lo`, plus, for each asset whose current row
        does not change at `lo`, the row current just before `lo`, placed at `lo`: the value
        the chunk carries in (filled forward from there by `panel.carry_forward`)."""
        if lo == 0 or self.row.shape[0] == 0:
            return self.coords
        stride = self.n_bars + 1
        cell = self.asset * stride + self.bar
        asked = np.arange(self.n_assets, dtype=np.int64) * stride + lo
        at = np.searchsorted(cell, asked, side="left")
        before = np.maximum(at - 1, 0)
        carried = (at > 0) & (self.asset[before] == np.arange(self.n_assets))
        changes = (at < cell.shape[0]) & (cell[np.minimum(at, cell.shape[0] - 1)] == asked)
        bar = self.coords.bar.copy()
        bar[self.row[before[carried & ~changes]]] = lo
        return RowCoords(bar=bar, asset=self.coords.asset)


def known_rows(table: Table, calendar: np.ndarray, assets: np.ndarray) -> KnownRows:
    """Resolve a signals table with `available_at` to the rows current at each bar.

    A row becomes known at the first bar at or after max(timestamp, available_at) (before
    the first bar: at the first bar); rows are ranked by (timestamp, available_at), so a
    revision outranks the version it revises (`keys.becoming_current`). Rows of assets outside
    the universe and rows known only after the last bar are never current. A repeated
    (timestamp, asset_id, available_at) anywhere in the table, whether or not the run reads
    that row, is a DUPLICATE_KEY `DataError`, as in `ml4t-pipeline validate`.
    """
    event, available, asset, ids = _timed_keys(table, assets)
    _refuse_repeated_versions(event, available, ids, table)
    bar = _first_bar_at_or_after(calendar, np.maximum(event, available))
    kept = becoming_current(event, available, asset, bar, int(calendar.shape[0]))
    n_rows = event.shape[0]
    coords = RowCoords(bar=np.full(n_rows, -1, np.int32), asset=np.full(n_rows, -1, np.int32))
    coords.bar[kept] = bar[kept]
    coords.asset[kept] = asset[kept]
    return KnownRows(
        coords=coords,
        asset=asset[kept].astype(np.int64),
        bar=bar[kept].astype(np.int64),
        row=kept,
        n_bars=int(calendar.shape[0]),
        n_assets=int(assets.shape[0]),
    )


@dataclass(slots=True, eq=False)
class _FileIds:
    """Every row's asset id as a code into the sorted distinct ids of the whole file."""

    distinct: np.ndarray
    code: np.ndarray  # int64


def _timed_keys(
    table: Table, assets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, _FileIds]:
    """Every row's timestamp and available_at (int64 us), asset index in the run (-1 when
    outside it) and asset code in the file.

    `available_at` is read in its own batches, lined up with the key batches by row offset."""
    stamps, ids = read_keys(table)
    event = np.concatenate(stamps) if stamps else np.empty(0, np.int64)
    available = np.empty_like(event)
    offset = 0
    for batch in table.batches([AVAILABLE_AT]):
        n = batch.num_rows
        available[offset : offset + n] = timestamps_us(batch.column(0), table.name, AVAILABLE_AT)
        offset += n
    parts = [_asset_codes(assets, values, indices) for values, indices in ids]
    asset = np.concatenate(parts) if parts else np.empty(0, np.int64)
    distinct = universe([values for values, _ in ids])
    in_file = [_asset_codes(distinct, values, indices) for values, indices in ids]
    code = np.concatenate(in_file) if in_file else np.empty(0, np.int64)
    return event, available, asset, _FileIds(distinct=distinct, code=code)


def _first_bar_at_or_after(calendar: np.ndarray, instants: np.ndarray) -> np.ndarray:
    """Index of the first bar at or after each instant (the number of bars when none is)."""
    starts = run_starts(instants)
    if starts is None:
        return np.searchsorted(calendar, instants, side="left")
    lengths = np.diff(np.r_[starts, instants.shape[0]])  # sorted: each run looked up once
    return np.repeat(np.searchsorted(calendar, instants[starts], side="left"), lengths)


def _refuse_repeated_versions(
    event: np.ndarray, available: np.ndarray, ids: _FileIds, table: Table
) -> None:
    """DUPLICATE_KEY: the same (timestamp, asset_id, available_at) twice, over every row of
    the table (`keys.repeated_versions`). Each example shows a row's own timestamp."""
    first, counts = repeated_versions(event, available, ids.code)
    if not first.shape[0]:
        return
    shown_rows = first[:MAX_EXAMPLES]
    shown_ids = ids.distinct[ids.code[shown_rows]].tolist()  # plain Python values
    shown = [
        (
            (TIMESTAMP, to_datetime(event[r])),
            (ASSET_ID, asset_id),
            (AVAILABLE_AT, to_datetime(available[r])),
        )
        for r, asset_id in zip(shown_rows.tolist(), shown_ids, strict=True)
    ]
    key = key_columns(table.columns)
    raise DataError(duplicate_keys_message(file=table.name, key=key, shown=shown, rows=counts))
