"""Read-only views over the dense arrays, truncated at the current bar.

A view never exposes a later bar: `History` slices stop at the current index, and the
per-bar views only hold the current row. Nothing is copied per asset per bar.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ml4t_pipeline.engine.feed import Panel


class RowView(Mapping[str, Any]):
    """name -> value of one row of market-wide arrays (bars,): the context at a bar."""

    __slots__ = ("_arrays", "_i")

    def __init__(self, arrays: dict[str, np.ndarray], i: int = 0) -> None:
        self._arrays = arrays
        self._i = i

    def __getitem__(self, name: str) -> Any:
        return self._arrays[name].item(self._i)

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def to_dict(self) -> dict[str, float]:
        return {k: float(self[k]) for k in self._arrays}


class AssetRowView(RowView):
    """name -> value of per-asset arrays (bars, assets) at one (bar, asset): an event's signals."""

    __slots__ = ("_asset",)

    def __init__(self, arrays: dict[str, np.ndarray], i: int = 0, asset: int = 0) -> None:
        super().__init__(arrays, i)
        self._asset = asset

    def __getitem__(self, name: str) -> Any:
        return self._arrays[name].item(self._i, self._asset)


class MarketEvent:
    """One asset at one bar: OHLCV plus `signals`, and `context` shared by every asset.

    Where it points (bar, asset) is held once, by its `signals` view.
    """

    __slots__ = ("_ids", "_p", "asset_id", "context", "signals")

    def __init__(self, panel: Panel, context: RowView, asset_ids: list[Any]) -> None:
        self._p = panel
        self._ids = asset_ids
        self.asset_id: Any = None
        self.signals = AssetRowView(panel.signals)
        self.context = context

    def _point(self, i: int, a: int) -> None:
        self.asset_id = self._ids[a]
        signals = self.signals
        signals._i = i
        signals._asset = a

    def _value(self, values: np.ndarray) -> float:
        signals = self.signals
        return float(values.item(signals._i, signals._asset))

    @property
    def timestamp(self) -> dt.datetime:
        i = self.signals._i
        return utc_datetimes(self._p.timestamps[i : i + 1])[0]

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


class SignalsRow(Mapping[str, np.ndarray]):
    """name -> (N,) array of every asset's value at the current bar."""

    __slots__ = ("_arrays", "_i")

    def __init__(self, arrays: dict[str, np.ndarray], i: int = 0) -> None:
        self._arrays = arrays
        self._i = i

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name][self._i]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


class History:
    """Arrays up to and including the current bar of the current chunk (no look-ahead)."""

    __slots__ = ("_i", "_p")

    def __init__(self, panel: Panel) -> None:
        self._p = panel
        self._i = 0

    def prices(self, field: str) -> np.ndarray:
        return np.asarray(getattr(self._p, field)[: self._i + 1])

    def signal(self, name: str) -> np.ndarray:
        return self._p.signals[name][: self._i + 1]

    def context(self, name: str) -> np.ndarray:
        return self._p.context[name][: self._i + 1]


class Batch:
    """Every asset at one bar, as arrays indexed like `assets`."""

    __slots__ = ("_i", "_p", "assets", "bar_index", "history", "signals", "timestamp")

    def __init__(self, panel: Panel, assets: np.ndarray) -> None:
        self._p = panel
        self._i = 0
        self.assets = assets
        self.bar_index = 0
        self.timestamp: dt.datetime | None = None
        self.signals = SignalsRow(panel.signals)
        self.history = History(panel)

    def _point(self, i: int, bar_index: int, timestamp: dt.datetime) -> None:
        self._i = i
        self.bar_index = bar_index
        self.timestamp = timestamp
        self.signals._i = i
        self.history._i = i

    @property
    def open(self) -> np.ndarray:
        return self._p.open[self._i]

    @property
    def high(self) -> np.ndarray:
        return self._p.high[self._i]

    @property
    def low(self) -> np.ndarray:
        return self._p.low[self._i]

    @property
    def close(self) -> np.ndarray:
        return self._p.close[self._i]

    @property
    def volume(self) -> np.ndarray:
        return self._p.volume[self._i]

    @property
    def has_bar(self) -> np.ndarray:
        return self._p.has_bar[self._i]


def utc_datetimes(timestamps: np.ndarray) -> list[dt.datetime]:
    """int64 microseconds since the epoch -> timezone-aware UTC datetimes."""
    naive = timestamps.astype("datetime64[us]").astype(object).tolist()
    return [t.replace(tzinfo=dt.UTC) for t in naive]
