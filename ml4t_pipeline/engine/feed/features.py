"""Feature providers: extra per-asset and market-wide values shared by strategy and risk.

A provider adds arrays to each chunk (`Panel.signals` for per-asset features, `Panel.context`
for market-wide ones), so `event.signals[...]`, `batch.signals[...]`, `context[...]` and the
risk rules' `RiskContext.features` all read the same numbers.

- `PrecomputedFeatures`: a table (DataFrame or Parquet) of (timestamp, asset_id, features...).
  Point-in-time: a row stamped t is usable from the first bar at or after t, or after its
  `available_at` when the table has one; with `as_of=True` (default) it stays the current
  value until a newer row is known. At each bar a value comes from the latest timestamp known
  by then, in its latest known version (`keys.becoming_current`): a late-published older row
  never replaces a newer one, and a newer row whose value is null reads NaN (it is the latest
  knowledge), as signals and context do. Rows whose asset_id is null are market-wide features.
- `CallableFeatures`: functions of the history up to the current bar (no look-ahead), computed
  on the fly at each close before the strategy runs. The history spans the run (and chained
  runs) whatever the chunking; `history_bars` bounds what it keeps (see `strategy.history`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from ml4t_pipeline.engine.feed.columns import id_kind, same_id_kind
from ml4t_pipeline.engine.feed.panel import Calendar, Panel, carry_forward
from ml4t_pipeline.engine.strategy.history import History, HistoryStore, check_history_bars
from ml4t_pipeline.engine.strategy.views import AtRow
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import (
    ASSET_ID,
    AVAILABLE_AT,
    KEY_COLUMNS,
    TIMESTAMP,
    UTC,
    becoming_current,
)

FeatureFn = Callable[[History], "np.ndarray | float"]


class FeatureProvider(Protocol):
    def attach(self, panel: Panel, calendar: Calendar, first_bar: int) -> None:
        """Add this provider's arrays to a chunk covering calendar bars [first_bar, ...)."""
        ...


class PrecomputedFeatures:
    """Features read from a table; see the module docstring for the timing rule."""

    def __init__(
        self,
        source: pl.DataFrame | str | Path,
        *,
        columns: Sequence[str] | None = None,
        as_of: bool = True,
    ) -> None:
        self._name = "features" if isinstance(source, pl.DataFrame) else str(source)
        if isinstance(source, str | Path):
            if not Path(source).is_file():
                msg = f"features file not found: {source}"
                raise DataError(msg)
            source = pl.read_parquet(source)
        missing = [c for c in KEY_COLUMNS if c not in source.columns]
        if missing:
            msg = f"features: missing column(s) {missing}"
            raise DataError(msg)
        numeric = [c for c, t in source.schema.items() if t.is_numeric() and c != ASSET_ID]
        self.columns = list(columns) if columns is not None else numeric
        stamp_us = _epoch_us(source[TIMESTAMP])
        available_us = stamp_us
        if AVAILABLE_AT in source.columns:
            if source[AVAILABLE_AT].null_count():
                msg = f"features: column '{AVAILABLE_AT}' has null values (when was it known?)"
                raise DataError(msg)
            available_us = _epoch_us(source[AVAILABLE_AT])
        known_us = np.maximum(stamp_us.to_numpy(), available_us.to_numpy())
        self._frame = source.with_columns(
            stamp_us.alias("_us"),
            available_us.alias("_available_us"),
            pl.Series("_known_us", known_us, dtype=pl.Int64),
        )
        self.as_of = as_of
        self._built: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None

    def _build(self, calendar: Calendar) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per-asset (bars, assets) and market-wide (bars,) read-only arrays over the calendar."""
        bars = calendar.timestamps
        frame = self._frame
        per_asset = frame.filter(pl.col(ASSET_ID).is_not_null())
        market = frame.filter(pl.col(ASSET_ID).is_null())
        if per_asset.height:
            ids = id_kind(per_asset[ASSET_ID].to_arrow().type, self._name)
            same_id_kind(ids, self._name, calendar.id_kind, calendar.prices)
        index = {a: k for k, a in enumerate(calendar.assets.tolist())}
        by_asset: dict[str, np.ndarray] = {}
        if per_asset.height:
            asset = np.array(
                [index.get(a, -1) for a in per_asset[ASSET_ID].to_list()], dtype=np.int64
            )
            bar, kept = _current_rows(per_asset, asset, bars)
            shape = (bars.shape[0], calendar.n_assets)
            filled = np.zeros(shape, dtype=bool)
            filled[bar[kept], asset[kept]] = True
            for name in self.columns:
                grid = np.full(shape, np.nan)
                grid[bar[kept], asset[kept]] = per_asset[name].cast(pl.Float64).to_numpy()[kept]
                by_asset[name] = grid
            if self.as_of:
                by_asset = carry_forward(by_asset, filled)
        market_wide: dict[str, np.ndarray] = {}
        if market.height:
            bar, kept = _current_rows(market, np.zeros(market.height, np.int64), bars)
            filled = np.zeros((bars.shape[0], 1), dtype=bool)
            filled[bar[kept], 0] = True
            for name in self.columns:
                line = np.full((bars.shape[0], 1), np.nan)
                line[bar[kept], 0] = market[name].cast(pl.Float64).to_numpy()[kept]
                market_wide[name] = line
            if self.as_of:
                market_wide = carry_forward(market_wide, filled)
            market_wide = {name: line[:, 0] for name, line in market_wide.items()}
        by_asset = {name: _read_only(grid) for name, grid in by_asset.items()}
        market_wide = {name: _read_only(line) for name, line in market_wide.items()}
        return by_asset, market_wide

    def attach(self, panel: Panel, calendar: Calendar, first_bar: int) -> None:
        if self._built is None:
            self._built = self._build(calendar)
        by_asset, market_wide = self._built
        window = slice(first_bar, first_bar + panel.n_bars)
        for name, grid in by_asset.items():
            panel.signals[name] = grid[window]
        for name, line in market_wide.items():
            panel.context[name] = line[window]


def _epoch_us(stamps: pl.Series) -> pl.Series:
    """A datetime / date column as int64 microseconds UTC (naive values are UTC)."""
    if stamps.dtype == pl.Date:
        stamps = stamps.cast(pl.Datetime("us"))
    kind = stamps.dtype
    if not isinstance(kind, pl.Datetime):
        msg = f"features: column '{stamps.name}' must be a datetime, found {kind}"
        raise DataError(msg)
    if kind.time_unit == "ns" and (stamps.dt.epoch("ns") % 1000 != 0).any():
        msg = f"features: column '{stamps.name}' has values finer than a microsecond"
        raise DataError(msg)
    if kind.time_zone is None:
        stamps = stamps.dt.replace_time_zone(UTC)
    return stamps.dt.convert_time_zone(UTC).dt.cast_time_unit("us").dt.epoch("us")


def _current_rows(
    frame: pl.DataFrame, group: np.ndarray, bars: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's bar (the first at or after its knowledge time), and the rows that become
    current (`keys.becoming_current`, ranked by (timestamp, available_at, file order))."""
    known = frame["_known_us"].to_numpy()
    bar = np.searchsorted(bars, known, side="left")
    event = frame["_us"].to_numpy()
    available = frame["_available_us"].to_numpy()
    return bar, becoming_current(event, available, group, bar, int(bars.shape[0]))


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class CallableFeatures:
    """Features computed at each close from the history up to that close.

    Each function receives a `History` (the bars of the run up to the current one) and returns
    an (n_assets,) array for a per-asset feature, or a float for a market-wide one (give those
    names in `market`). `history_bars` (bars the functions read, the current one included)
    bounds what the engine keeps across chunks and carries to a chained run; None shows every
    bar of the run (whole run in memory, nothing carried to a chained run).
    """

    def __init__(
        self,
        functions: Mapping[str, FeatureFn],
        *,
        market: Sequence[str] = (),
        history_bars: int | None = None,
    ) -> None:
        self.functions = dict(functions)
        self.market = set(market)
        self.history_bars = check_history_bars(
            history_bars, "CallableFeatures.history_bars", least=1
        )
        self._values: dict[str, np.ndarray] = {}  # the arrays `update` fills (writable)
        self._history: History | None = None
        self._row = AtRow(0)  # the bar the functions see

    def bind(self, store: HistoryStore | None) -> None:
        """Read the history of the engine's run (called by the engine before its first bar)."""
        self._history = History(
            store, self._row, history_bars=self.history_bars, owner="CallableFeatures.history_bars"
        )

    def attach(self, panel: Panel, calendar: Calendar, first_bar: int) -> None:
        """Add a NaN array per function; the chunk gets read-only views, filled by `update`."""
        self._values = {}
        for name in self.functions:
            market = name in self.market
            shape = (panel.n_bars,) if market else (panel.n_bars, calendar.n_assets)
            values = self._values[name] = np.full(shape, np.nan)
            view = values.view()
            view.flags.writeable = False
            (panel.context if market else panel.signals)[name] = view

    def update(self, i: int) -> None:
        """Compute every function at bar i of the attached chunk."""
        if self._history is None:
            msg = "CallableFeatures.update called before the engine bound it to a run"
            raise RuntimeError(msg)
        self._row.row = i
        for name, fn in self.functions.items():
            value = fn(self._history)
            if name in self.market:
                self._values[name][i] = float(np.asarray(value))
            else:
                self._values[name][i] = value
