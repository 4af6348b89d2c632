"""A frame's (timestamp, asset_id) keys as integer cells of a calendar x assets grid.

Rows are turned into integer coordinates once: a bar index in the calendar (the sorted distinct
timestamps) and an asset code, so a key becomes one integer cell (asset * n_bars + bar). Rows
per cell are counted with `ml4t_pipeline.keys.count_keys` (the count the engine's feed uses for
its duplicate-key check): a bincount over the dense assets x bars grid when that grid is small
(at most `max_grid_cells` cells, by default 4 x rows and at least 2**20), else a sort. Every
coverage rule then works on arrays, never on a dict per asset or a string join.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from ml4t_pipeline.keys import ASSET_ID, TIMESTAMP, codes, count_keys
from ml4t_pipeline.validation.policy import common_asset_id_dtype

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class KeyCalendar:
    """Sorted distinct bar timestamps, and timestamp -> bar index.

    Timestamps are integers on a grid of step gcd(t - first); when that grid is small,
    `slot_to_bar` turns a timestamp into its bar with arithmetic and one table lookup.
    """

    bars: pl.Series
    first: int
    step: int
    slot_to_bar: Ints | None

    def index(self, timestamps: pl.Series) -> Ints:
        """Bar index of each (non-null) timestamp, -1 where it is not a bar."""
        ticks = timestamps.cast(self.bars.dtype).to_physical().to_numpy()
        if self.slot_to_bar is None:
            return codes(self.bars.to_physical().to_numpy(), ticks)
        offsets = ticks - self.first
        slots = offsets // self.step
        on_grid = (offsets >= 0) & (offsets % self.step == 0) & (slots < self.slot_to_bar.size)
        found = np.full(offsets.size, -1, dtype=np.int64)
        found[on_grid] = self.slot_to_bar[slots[on_grid]]
        return found


def key_calendar(timestamps: pl.Series, *, max_slots: int) -> tuple[KeyCalendar, Ints]:
    """The calendar of non-null `timestamps`, and the bar index of each of them."""
    ticks = timestamps.to_physical().to_numpy()
    first = int(ticks.min())
    offsets = ticks - first
    step = int(np.gcd.reduce(offsets)) or 1
    n_slots = int(offsets.max()) // step + 1
    if n_slots > max_slots:
        bars = timestamps.unique().sort().rename(TIMESTAMP)
        calendar = KeyCalendar(bars=bars, first=first, step=step, slot_to_bar=None)
        return calendar, calendar.index(timestamps)
    slots = offsets
    slots //= step
    occupied = np.bincount(slots, minlength=n_slots) > 0
    slot_to_bar = np.where(occupied, np.cumsum(occupied) - 1, -1).astype(np.int64)
    bars = pl.Series(TIMESTAMP, first + np.flatnonzero(occupied) * step).cast(timestamps.dtype)
    calendar = KeyCalendar(bars=bars, first=first, step=step, slot_to_bar=slot_to_bar)
    return calendar, slot_to_bar[slots]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class KeyAssets:
    """Distinct asset ids; an asset's code is its position in `ids`."""

    ids: pl.Series

    def index(self, asset_ids: pl.Series) -> Ints:
        """Code of each (non-null) id, -1 for ids not in `ids` (dtypes must be comparable)."""
        common = common_asset_id_dtype(asset_ids.dtype, self.ids.dtype) or pl.String()
        positions = pl.int_range(self.ids.len(), dtype=pl.Int64, eager=True)
        return (
            asset_ids.cast(common)
            .replace_strict(self.ids.cast(common), positions, default=-1)
            .to_numpy()
        )


def key_assets(asset_ids: pl.Series) -> tuple[KeyAssets, Ints]:
    """The distinct non-null `asset_ids` and each row's code (its id's position in them)."""
    if isinstance(asset_ids.dtype, pl.String):
        physical = asset_ids.cast(pl.Categorical).to_physical()
    elif isinstance(asset_ids.dtype, pl.Categorical | pl.Enum):
        physical = asset_ids.to_physical()
    else:
        distinct = asset_ids.unique()
        dense = pl.int_range(distinct.len(), dtype=pl.Int64, eager=True)
        return KeyAssets(ids=distinct), asset_ids.replace_strict(distinct, dense).to_numpy()
    firsts = physical.arg_unique()
    seen = physical.gather(firsts).to_numpy().astype(np.int64)
    dense_of = np.full(int(seen.max()) + 1, -1, dtype=np.int64)
    dense_of[seen] = np.arange(seen.size)
    return KeyAssets(ids=asset_ids.gather(firsts)), dense_of[physical.to_numpy()]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class KeyCells:
    """Occupied (asset code, bar) cells in ascending order, with the rows each one holds.

    `grid` is the dense assets x bars array of row counts when it was small enough to build;
    otherwise `keys` (cell = asset * n_bars + bar, ascending) answers membership.
    """

    n_bars: int
    asset: Ints
    bar: Ints
    rows: Ints
    grid: Ints | None
    keys: Ints | None

    def contains(self, asset: Ints, bar: Ints) -> Bools:
        """Whether each (asset, bar) holds a row (codes must be valid)."""
        if self.grid is not None:
            return self.grid[asset, bar] > 0
        return in_sorted(self.keys, asset * self.n_bars + bar)


def in_sorted(keys: Ints | None, wanted: Ints) -> Bools:
    """Whether each wanted value is in the ascending array `keys`."""
    if keys is None or not keys.size:
        return np.zeros(wanted.size, dtype=np.bool_)
    at = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
    return keys[at] == wanted


def count_cells(cells: Ints, *, n_assets: int, n_bars: int, max_grid_cells: int) -> KeyCells:
    """Rows per cell, given each row's cell (`count_keys`: a bincount over the dense grid when
    it is small, else a sort)."""
    counted = count_keys(cells, n_cells=n_assets * n_bars, max_grid_cells=max_grid_cells)
    asset, bar = np.divmod(counted.cells, n_bars)
    if counted.grid is not None:
        grid = counted.grid.reshape(n_assets, n_bars)
        return KeyCells(
            n_bars=n_bars, asset=asset, bar=bar, rows=counted.rows, grid=grid, keys=None
        )
    return KeyCells(
        n_bars=n_bars, asset=asset, bar=bar, rows=counted.rows, grid=None, keys=counted.cells
    )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class KeyPanel:
    """A frame's keys as cells of the calendar x assets grid.

    `row_bar` and `row_asset` are the bar index and asset code of each row with a non-null
    key, in frame order; `kept` marks those rows in the frame (None: every row)."""

    calendar: KeyCalendar
    assets: KeyAssets
    cells: KeyCells
    row_bar: Ints
    row_asset: Ints
    kept: Bools | None


def key_panel(frame: pl.DataFrame, *, max_grid_cells: int | None) -> KeyPanel | None:
    """Integer coordinates of the non-null (timestamp, asset_id) keys, or None if none."""
    keys = frame.select(TIMESTAMP, ASSET_ID)
    kept = None
    if keys.null_count().row(0) != (0, 0):
        kept = keys.select(pl.all_horizontal(pl.all().is_not_null())).to_series().to_numpy()
        keys = keys.filter(kept)
    if keys.is_empty():
        return None
    limit = max(4 * keys.height, 1 << 20) if max_grid_cells is None else max_grid_cells
    calendar, bars = key_calendar(keys.get_column(TIMESTAMP), max_slots=limit)
    assets, asset_codes = key_assets(keys.get_column(ASSET_ID))
    n_bars = calendar.bars.len()
    cells = count_cells(
        asset_codes * n_bars + bars, n_assets=assets.ids.len(), n_bars=n_bars, max_grid_cells=limit
    )
    return KeyPanel(
        calendar=calendar,
        assets=assets,
        cells=cells,
        row_bar=bars,
        row_asset=asset_codes,
        kept=kept,
    )
