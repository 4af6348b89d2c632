"""What user code sees of the market: read-only views of the dense arrays at the current bar.

A view never exposes a later bar: it reads the row its pointer (the engine's clock, or a fixed
row) is at, and `History` (module `history`) stops at that row. Nothing is copied per asset
per bar, and every array handed out is a read-only view.

- `ContextView`: market-wide values at one bar (`context["vix"]`).
- `AssetSignals`: one asset's signals at one bar (`event.signals["ml_score"]`).
- `CrossSection`: every asset's value of each signal at one bar (`batch.signals["ml_score"]`).
- `MarketEvent`: one asset at one bar, for `on_market_event`.
- `Batch`: every asset at one bar, for `on_timestamp_batch`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ml4t_pipeline.engine.feed import Panel
from ml4t_pipeline.engine.strategy.history import History, RowPointer, read_only
from ml4t_pipeline.keys import utc_datetimes

__all__ = [
    "AssetSignals",
    "AtRow",
    "Batch",
    "ContextView",
    "CrossSection",
    "History",
    "MarketEvent",
    "RowPointer",
]


class AtRow:
    """A fixed row (a view that does not move with the clock)."""

    __slots__ = ("row",)

    def __init__(self, row: int) -> None:
        self.row = row


class ContextView(Mapping[str, Any]):
    """name -> value of market-wide arrays (bars,) at the pointer's row."""

    __slots__ = ("_arrays", "_at")

    def __init__(self, arrays: dict[str, np.ndarray], at: RowPointer) -> None:
        self._arrays = arrays
        self._at = at

    def __getitem__(self, name: str) -> Any:
        return self._arrays[name].item(self._at.row)

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def to_dict(self) -> dict[str, float]:
        return {k: float(self[k]) for k in self._arrays}


class AssetSignals(Mapping[str, Any]):
    """name -> value of per-asset arrays (bars, assets) at the pointer's row and `asset`."""

    __slots__ = ("_arrays", "_at", "asset")

    def __init__(self, arrays: dict[str, np.ndarray], at: RowPointer, asset: int = 0) -> None:
        self._arrays = arrays
        self._at = at
        self.asset = asset  # array position of the asset

    def __getitem__(self, name: str) -> Any:
        return self._arrays[name].item(self._at.row, self.asset)

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


class CrossSection(Mapping[str, np.ndarray]):
    """name -> (N,) read-only array of every asset's value at the pointer's row."""

    __slots__ = ("_arrays", "_at")

    def __init__(self, arrays: dict[str, np.ndarray], at: RowPointer) -> None:
        self._arrays = arrays
        self._at = at

    def __getitem__(self, name: str) -> np.ndarray:
        return read_only(self._arrays[name][self._at.row])

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


class MarketEvent:
    """One asset at one bar: OHLCV plus `signals`, and `context` shared by every asset."""

    __slots__ = ("_ids", "_p", "asset_id", "context", "signals")

    def __init__(
        self, panel: Panel, context: ContextView, asset_ids: list[Any], at: RowPointer
    ) -> None:
        self._p = panel
        self._ids = asset_ids
        self.asset_id: Any = None
        self.signals = AssetSignals(panel.signals, at)
        self.context = context

    def point_at(self, asset: int) -> None:
        """The event is about `asset` (array position) now."""
        self.asset_id = self._ids[asset]
        self.signals.asset = asset

    def _value(self, values: np.ndarray) -> float:
        signals = self.signals
        return float(values.item(signals._at.row, signals.asset))

    @property
    def timestamp(self) -> dt.datetime:
        row = self.signals._at.row
        return utc_datetimes(self._p.timestamps[row : row + 1])[0]

    @property
    def open(self) -> float:
        return self._value(self._p.open)

    @property
    def high(self) -> float:
        return self._value(self._p.high)

    @property
    def low(self) -> float:
        return self._value(self._p.low)

    @property
    def close(self) -> float:
        return self._value(self._p.close)

    @property
    def volume(self) -> float:
        return self._value(self._p.volume)


class Batch:
    """Every asset at one bar, as read-only arrays indexed like `assets`."""

    __slots__ = ("_at", "_bar", "_p", "_stamps", "assets", "history", "signals")

    def __init__(
        self,
        panel: Panel,
        assets: np.ndarray,
        at: RowPointer,
        *,
        first_bar: int,
        timestamps: list[dt.datetime],
        history: History,
    ) -> None:
        self._p = panel
        self._at = at
        self._bar = first_bar  # global index of the chunk's first bar
        self._stamps = timestamps  # of the chunk's bars
        self.assets = assets
        self.signals = CrossSection(panel.signals, at)
        self.history = history  # the bars up to this one (see `strategy.history`)

    @property
    def bar_index(self) -> int:
        """The global index of this bar (counted across chained runs)."""
        return self._bar + self._at.row

    @property
    def timestamp(self) -> dt.datetime:
        return self._stamps[self._at.row]

    @property
    def open(self) -> np.ndarray:
        return read_only(self._p.open[self._at.row])

    @property
    def high(self) -> np.ndarray:
        return read_only(self._p.high[self._at.row])

    @property
    def low(self) -> np.ndarray:
        return read_only(self._p.low[self._at.row])

    @property
    def close(self) -> np.ndarray:
        return read_only(self._p.close[self._at.row])

    @property
    def volume(self) -> np.ndarray:
        return read_only(self._p.volume[self._at.row])

    @property
    def has_bar(self) -> np.ndarray:
        return read_only(self._p.has_bar[self._at.row])
