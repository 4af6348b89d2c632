"""Step 3 of the feed: rows scattered into dense (bars x assets) arrays, and the bar guard.

`scatter` writes each row's values at its (bar, asset) cell of a chunk, batch by batch, and
marks the cell as filled; a cell filled twice is a duplicate key. `carry_forward` keeps the
value of a filled cell in the cells below it until the next filled one (signals as of a bar). `check_bars` is the loop's
own guard over the finished arrays. A `Panel` is what the loop, strategies and rules read;
its arrays are read-only once built (everyone downstream receives views of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml4t_pipeline.engine.feed.columns import float_values
from ml4t_pipeline.engine.feed.coords import RowCoords
from ml4t_pipeline.engine.feed.tables import Table
from ml4t_pipeline.engine.tolerances import OHLC_RTOL
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import (
    ASSET_ID,
    CLOSE,
    HIGH,
    KEY_COLUMNS,
    LOW,
    MAX_EXAMPLES,
    OHLC_RULES,
    OPEN,
    TIMESTAMP,
    count_keys,
    describe_row,
    duplicate_keys_message,
    errors_message,
    failure_message,
    to_datetime,
)


@dataclass(slots=True)
class Panel:
    """One chunk of consecutive bars: every array is indexed [local bar, asset]."""

    timestamps: np.ndarray  # int64 microseconds since epoch, UTC, shape (T,)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    has_bar: np.ndarray  # bool (T, N)
    signals: dict[str, np.ndarray]  # name -> float64 (T, N), NaN where unknown
    context: dict[str, np.ndarray]  # name -> float64 (T,), NaN where unknown

    @property
    def n_bars(self) -> int:
        return int(self.timestamps.shape[0])

    def freeze(self) -> None:
        """Make every array read-only (features attached later bring read-only views)."""
        arrays = [self.timestamps, self.open, self.high, self.low, self.close, self.volume]
        arrays += [self.has_bar, *self.signals.values(), *self.context.values()]
        for array in arrays:
            array.flags.writeable = False


@dataclass(frozen=True, slots=True)
class Calendar:
    """Sorted unique bar timestamps and sorted unique asset ids of a run."""

    timestamps: np.ndarray  # int64 us UTC
    assets: np.ndarray  # asset ids, sorted ascending (object for strings)
    prices: str = "prices"  # the input the bars and assets come from, for messages

    @property
    def id_kind(self) -> str:
        """Whether the asset ids are "text" or "integer" (`columns.id_kind`)."""
        return "integer" if self.assets.dtype.kind in "iu" else "text"

    @property
    def n_assets(self) -> int:
        return int(self.assets.shape[0])

    def key_cells(self, cells: Sequence[tuple[int, int]]) -> list[tuple[tuple[str, object], ...]]:
        """(timestamp, asset_id) of (calendar bar, asset) cells, as example-row cells."""
        return [
            ((TIMESTAMP, to_datetime(self.timestamps[t])), (ASSET_ID, _plain(self.assets[a])))
            for t, a in cells
        ]


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def asset_list(assets: np.ndarray) -> list[Any]:
    """Asset ids as plain Python values (str or int) for result tables."""
    return [_plain(a) for a in assets.tolist()]


def scatter(
    table: Table,
    coords: RowCoords,
    columns: Sequence[str],
    calendar: Calendar,
    lo: int,
    hi: int,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Dense (bars, assets) arrays of `columns` for bars [lo, hi), and the filled-cell mask."""
    n_assets = calendar.n_assets
    cells = (hi - lo) * n_assets
    rows_in_chunk = int(np.count_nonzero((coords.bar >= lo) & (coords.bar < hi)))
    # a complete panel writes every cell (duplicates are caught below): skip the NaN fill
    make = np.empty if rows_in_chunk == cells else (lambda n: np.full(n, np.nan))
    out = {c: make(cells) for c in columns}
    seen = np.zeros(cells, dtype=bool)
    rows = 0
    offset = 0
    for batch in table.batches(columns):
        n = batch.num_rows
        bar = coords.bar[offset : offset + n]
        asset = coords.asset[offset : offset + n]
        offset += n
        mask = (bar >= lo) & (bar < hi)
        everything = bool(mask.all())
        flat = (
            (bar - lo) * n_assets + asset
            if everything
            else (bar[mask] - lo) * n_assets + asset[mask]
        )
        rows += flat.shape[0]
        if flat.shape[0] == 0:
            continue
        contiguous = flat[-1] - flat[0] == flat.shape[0] - 1 and bool(np.all(np.diff(flat) == 1))
        target: slice | np.ndarray = slice(int(flat[0]), int(flat[-1]) + 1) if contiguous else flat
        seen[target] = True
        for i, column in enumerate(columns):
            values = float_values(batch.column(i), table.name, column)
            out[column][target] = values if everything else values[mask]
    if int(np.count_nonzero(seen)) != rows:
        raise duplicate_keys_error(coords, calendar, table.name)
    shape = (hi - lo, n_assets)
    return {c: v.reshape(shape) for c, v in out.items()}, seen.reshape(shape)


def carry_forward(arrays: dict[str, np.ndarray], filled: np.ndarray) -> dict[str, np.ndarray]:
    """Each (bars, assets) array with every cell that was not `filled` taking the value of the
    last filled cell above it in its column (NaN above the first): a filled cell's value, NaN
    included, stays current until the next filled cell."""
    if filled.all():
        return arrays
    n_bars, n_assets = filled.shape
    last = np.where(filled, np.arange(n_bars, dtype=np.int32)[:, None], np.int32(-1))
    np.maximum.accumulate(last, axis=0, out=last)
    never = last < 0
    rows, cols = np.maximum(last, 0), np.arange(n_assets)
    out = {}
    for name, values in arrays.items():
        carried = values[rows, cols]
        carried[never] = np.nan
        out[name] = carried
    return out


def duplicate_keys_error(coords: RowCoords, calendar: Calendar, name: str) -> DataError:
    """DUPLICATE_KEY: (timestamp, asset_id) cells of the run holding more than one row."""
    n_assets = calendar.n_assets
    valid = coords.bar >= 0
    flat = coords.bar[valid].astype(np.int64) * n_assets + coords.asset[valid]
    n_cells = calendar.timestamps.shape[0] * n_assets
    repeated, rows = count_keys(flat, n_cells=n_cells, max_grid_cells=n_cells).repeated()
    shown = [divmod(int(c), n_assets) for c in repeated[:MAX_EXAMPLES]]
    cells = calendar.key_cells(shown)
    return DataError(duplicate_keys_message(file=name, key=KEY_COLUMNS, shown=cells, rows=rows))


def check_bars(
    dense: dict[str, np.ndarray], has_bar: np.ndarray, calendar: Calendar, lo: int, name: str
) -> int:
    """The loop's own guard: every bar finite, positive, low <= open/close <= high.

    One fused pass over the arrays; only when it fails are the rules told apart, by the same
    `OHLC_RULES` the data contract runs (`ml4t_pipeline.validation` checks every rule of every
    input, this guard only what the loop cannot run without). The price relations accept a
    difference within `OHLC_RTOL` of the price (split-adjusted data): such a bar is widened in
    place, high := max(high, open, close) and low := min(low, open, close), so a fill at the
    open or the close stays inside the bar. Returns how many bars were widened.
    """
    o, h, low, c = dense[OPEN], dense[HIGH], dense[LOW], dense[CLOSE]
    with np.errstate(invalid="ignore"):
        ok = (low > 0) & (low <= o) & (low <= c) & (h >= o) & (h >= c) & (h < np.inf)
    bad = has_bar & ~ok
    if not bad.any():
        return 0
    messages = []
    for rule in OHLC_RULES:
        with np.errstate(invalid="ignore"):
            cells = np.argwhere(has_bar & rule.broken(dense.__getitem__, OHLC_RTOL))
        if cells.shape[0] == 0:
            continue
        shown = [(lo + t, a) for t, a in cells[:MAX_EXAMPLES].tolist()]
        examples = [
            describe_row((*key, *((col, dense[col][t - lo, a].item()) for col in rule.reads)))
            for key, (t, a) in zip(calendar.key_cells(shown), shown, strict=True)
        ]
        messages.append(
            failure_message(
                file=name,
                column=rule.column,
                rule=rule.rule,
                n_rows=int(cells.shape[0]),
                detail=rule.detail,
                examples=examples,
            )
        )
    if messages:
        raise DataError(errors_message(messages))
    # every bar left is finite and positive, its relations off by round-off only: widen it
    h[bad] = np.maximum(np.maximum(h[bad], o[bad]), c[bad])
    low[bad] = np.minimum(np.minimum(low[bad], o[bad]), c[bad])
    return int(np.count_nonzero(bad))
