"""The columnar order book and the pure matching function.

`match` is a pure function of (orders, bar) -> (filled mask, fill price, new trailing
reference): it never touches cash or positions, which makes it trivial to property-test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ml4t_pipeline.engine.enums import OrderType

_DTYPES: dict[str, Any] = {
    "order_id": np.int64,
    "asset": np.int64,
    "qty": np.int64,  # signed: + buy, - sell
    "order_type": np.int8,
    "limit_price": np.float64,
    "stop_price": np.float64,
    "trail_pct": np.float64,
    "trail_ref": np.float64,  # extreme price since submission (trailing stops)
    "created_bar": np.int64,
    "reason": np.int8,  # ExitReason of whoever created it
    "rule": np.int16,  # risk rule index, -1 = strategy
    "triggered": np.bool_,  # stop-limit whose stop has fired (now a limit order)
}


@dataclass(slots=True)
class Orders:
    """A set of orders as parallel arrays (one row per order)."""

    order_id: np.ndarray
    asset: np.ndarray
    qty: np.ndarray
    order_type: np.ndarray
    limit_price: np.ndarray
    stop_price: np.ndarray
    trail_pct: np.ndarray
    trail_ref: np.ndarray
    created_bar: np.ndarray
    reason: np.ndarray
    rule: np.ndarray
    triggered: np.ndarray

    @classmethod
    def empty(cls) -> Orders:
        return cls(**{k: np.empty(0, dtype=v) for k, v in _DTYPES.items()})

    @classmethod
    def from_columns(cls, columns: dict[str, Any]) -> Orders:
        return cls(**{k: np.asarray(columns[k], dtype=v) for k, v in _DTYPES.items()})

    def __len__(self) -> int:
        return int(self.order_id.shape[0])

    def take(self, index: np.ndarray) -> Orders:
        return Orders(
            self.order_id[index],
            self.asset[index],
            self.qty[index],
            self.order_type[index],
            self.limit_price[index],
            self.stop_price[index],
            self.trail_pct[index],
            self.trail_ref[index],
            self.created_bar[index],
            self.reason[index],
            self.rule[index],
            self.triggered[index],
        )

    def concat(self, other: Orders) -> Orders:
        if len(other) == 0:
            return self
        if len(self) == 0:
            return other
        return Orders(
            *(np.concatenate([getattr(self, name), getattr(other, name)]) for name in _DTYPES)
        )

    @classmethod
    def concat_all(cls, chunks: list[Orders]) -> Orders:
        if not chunks:
            return cls.empty()
        return cls(*(np.concatenate([getattr(c, name) for c in chunks]) for name in _DTYPES))

    def to_columns(self) -> dict[str, list[Any]]:
        return {name: getattr(self, name).tolist() for name in _DTYPES}


class OrderBuffer:
    """Orders submitted one at a time during a bar, written into preallocated arrays."""

    def __init__(self, capacity: int = 64) -> None:
        self._columns = {k: np.empty(capacity, dtype=v) for k, v in _DTYPES.items()}
        self._capacity = capacity
        self.size = 0

    def append(self, row: tuple[Any, ...]) -> None:
        if self.size == self._capacity:
            self._capacity *= 2
            for key, column in self._columns.items():
                grown = np.empty(self._capacity, dtype=column.dtype)
                grown[: self.size] = column[: self.size]
                self._columns[key] = grown
        k = self.size
        for column, value in zip(self._columns.values(), row, strict=True):
            column[k] = value
        self.size = k + 1

    def drain(self) -> Orders:
        n = self.size
        self.size = 0
        return Orders(*(column[:n].copy() for column in self._columns.values()))


def match(
    orders: Orders,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which orders fill on this bar, at what price (gap-aware), new trail refs and triggers.

    `open_`, `high`, `low` are already gathered per order (NaN = no bar). Rules:
    market fills at the open; a buy limit fills at min(open, limit) if low <= limit; a sell
    limit at max(open, limit) if high >= limit; a sell stop triggers when low <= stop and fills
    at min(open, stop), a buy stop when high >= stop at max(open, stop); a stop-limit becomes a
    limit once its stop triggers and fills in the same bar only if the trigger price honours the
    limit; a trailing sell stop's level is ref * (1 - trail_pct), ref the highest high since it
    was placed (the lowest low and (1 + pct) for buys), refreshed after the bar.
    """
    has_bar = ~np.isnan(open_)
    kind = orders.order_type
    if not kind.any():  # all market orders: fill at the open where there is a bar
        return has_bar, open_, orders.trail_ref, orders.triggered
    n = len(orders)
    price = np.full(n, np.nan)
    buy = orders.qty > 0
    trail_ref = orders.trail_ref.copy()

    market = kind == OrderType.MARKET
    price[market] = open_[market]

    lim = (kind == OrderType.LIMIT) | ((kind == OrderType.STOP_LIMIT) & orders.triggered)
    lp = orders.limit_price
    buy_lim = lim & buy & (low <= lp)
    sell_lim = lim & ~buy & (high >= lp)
    price[buy_lim] = np.minimum(open_[buy_lim], lp[buy_lim])
    price[sell_lim] = np.maximum(open_[sell_lim], lp[sell_lim])

    trailing = kind == OrderType.TRAILING_STOP
    stop_level = orders.stop_price.copy()
    stop_level[trailing & ~buy] = trail_ref[trailing & ~buy] * (
        1.0 - orders.trail_pct[trailing & ~buy]
    )
    stop_level[trailing & buy] = trail_ref[trailing & buy] * (
        1.0 + orders.trail_pct[trailing & buy]
    )
    stops = (kind == OrderType.STOP) | trailing
    sell_stop = stops & ~buy & (low <= stop_level)
    buy_stop = stops & buy & (high >= stop_level)
    price[sell_stop] = np.minimum(open_[sell_stop], stop_level[sell_stop])
    price[buy_stop] = np.maximum(open_[buy_stop], stop_level[buy_stop])

    stop_limit = (kind == OrderType.STOP_LIMIT) & ~orders.triggered
    sl_sell = stop_limit & ~buy & (low <= orders.stop_price)
    sl_buy = stop_limit & buy & (high >= orders.stop_price)
    trig_sell = np.minimum(open_, orders.stop_price)
    trig_buy = np.maximum(open_, orders.stop_price)
    ok_sell = sl_sell & (trig_sell >= lp)
    ok_buy = sl_buy & (trig_buy <= lp)
    price[ok_sell] = trig_sell[ok_sell]
    price[ok_buy] = trig_buy[ok_buy]
    triggered = orders.triggered | sl_sell | sl_buy

    filled = has_bar & ~np.isnan(price)
    live_trail = trailing & has_bar & ~filled
    trail_ref[live_trail & ~buy] = np.fmax(trail_ref[live_trail & ~buy], high[live_trail & ~buy])
    trail_ref[live_trail & buy] = np.fmin(trail_ref[live_trail & buy], low[live_trail & buy])
    return filled, price, trail_ref, triggered
