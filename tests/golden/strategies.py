"""Strategies of the golden cases, written with the public `Strategy` API only.

The YAML cases name them by import path (`class: tests.golden.strategies:LongShortRotation`),
exactly as a user names their own strategy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np

from ml4t_pipeline.engine import Batch, OrderType, Strategy

#: Entry order types, cycled per asset and round trip.
ENTRY_TYPES = (OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT)
#: Exit order types, cycled the same way (a market exit waits `hold_bars`).
EXIT_TYPES = (
    OrderType.TRAILING_STOP,
    OrderType.LIMIT,
    OrderType.STOP,
    OrderType.STOP_LIMIT,
    OrderType.MARKET,
)


class LongShortRotation(Strategy):
    """Every `rebalance_every` bars: long the `k` highest scores, short the `k` lowest.

    Each side gets `weight` of equity per asset (negative weights for the shorts), so an asset
    moving from one end of the ranking to the other flips its position in one order.
    """

    uses_volume = False

    def __init__(
        self, *, k: int = 5, weight: float = 0.05, rebalance_every: int = 5, score: str = "ml_score"
    ) -> None:
        super().__init__(k=k, weight=weight, rebalance_every=rebalance_every, score=score)
        self.k = k
        self.weight = weight
        self.rebalance_every = rebalance_every
        self.score = score

    def required_signals(self) -> tuple[str, ...]:
        return (self.score,)

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: Mapping[str, Any]
    ) -> None:
        if batch.bar_index % self.rebalance_every != 0:
            return
        has_bar = np.asarray(batch.has_bar, dtype=bool)
        scores = np.where(has_bar, batch.signals[self.score], np.nan)
        ranked = np.flatnonzero(~np.isnan(scores))
        ranked = ranked[np.argsort(-scores[ranked], kind="stable")]
        weights = np.zeros(scores.shape[0])
        weights[ranked[: self.k]] = self.weight
        weights[ranked[::-1][: self.k]] = -self.weight
        self.rebalance_to_weights(weights)


class OrderTypeCycle(Strategy):
    """Round trips of `qty` shares per asset, each entry and exit of a different order type.

    Per asset: when flat with no entry working, it submits the next entry type of
    `ENTRY_TYPES` (limit `offset` below the close, stop `offset` above, stop-limit with its
    limit another `offset` above the stop); once long it submits the next exit type of
    `EXIT_TYPES` (trailing stop by `trail_pct`, limit `offset` above the close, stop `offset`
    below, stop-limit with its limit another `offset` below the stop, or a market exit after
    `hold_bars`). Working orders stay in the book until they fill.
    """

    uses_volume = False

    def __init__(
        self,
        *,
        qty: int = 100,
        offset: float = 0.01,
        trail_pct: float = 0.03,
        hold_bars: int = 4,
    ) -> None:
        super().__init__(qty=qty, offset=offset, trail_pct=trail_pct, hold_bars=hold_bars)
        self.qty = qty
        self.offset = offset
        self.trail_pct = trail_pct
        self.hold_bars = hold_bars
        self.round_trips: dict[str, int] = {}
        self.working: dict[str, str] = {}  # asset -> "entry" | "exit"
        self.long_since: dict[str, int] = {}

    def required_signals(self) -> tuple[str, ...]:
        return ()

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: Mapping[str, Any]
    ) -> None:
        closes = np.asarray(batch.close, dtype=np.float64)
        has_bar = np.asarray(batch.has_bar, dtype=bool)
        for j, asset_id in enumerate(batch.assets.tolist()):
            if not has_bar[j]:
                continue
            asset = str(asset_id)
            position = self.get_position(asset)
            state = self.working.get(asset)
            if position == 0 and state == "exit":  # the exit filled
                self.round_trips[asset] = self.round_trips.get(asset, 0) + 1
                state = None
            if position > 0 and state == "entry":  # the entry filled
                self.long_since[asset] = batch.bar_index
                state = None
            if position == 0 and state is None:
                self._enter(asset, float(closes[j]))
                state = "entry"
            elif position > 0 and state is None:
                state = self._exit(asset, position, float(closes[j]), batch.bar_index)
            if state is None:
                self.working.pop(asset, None)
            else:
                self.working[asset] = state

    def _enter(self, asset: str, close: float) -> None:
        kind = ENTRY_TYPES[self.round_trips.get(asset, 0) % len(ENTRY_TYPES)]
        up = close * (1.0 + self.offset)
        if kind is OrderType.MARKET:
            self.buy(asset, self.qty)
        elif kind is OrderType.LIMIT:
            self.submit_order(
                asset, self.qty, order_type=kind, limit_price=close * (1.0 - self.offset)
            )
        elif kind is OrderType.STOP:
            self.submit_order(asset, self.qty, order_type=kind, stop_price=up)
        else:
            self.submit_order(
                asset, self.qty, order_type=kind, stop_price=up, limit_price=up * (1 + self.offset)
            )

    def _exit(self, asset: str, position: int, close: float, bar: int) -> str | None:
        kind = EXIT_TYPES[self.round_trips.get(asset, 0) % len(EXIT_TYPES)]
        down = close * (1.0 - self.offset)
        if kind is OrderType.MARKET:
            if bar - self.long_since.get(asset, bar) < self.hold_bars:
                return None  # not yet: decide again at the next close
            self.close_position(asset)
        elif kind is OrderType.TRAILING_STOP:
            self.submit_order(asset, -position, order_type=kind, trail_pct=self.trail_pct)
        elif kind is OrderType.LIMIT:
            self.submit_order(
                asset, -position, order_type=kind, limit_price=close * (1.0 + self.offset)
            )
        elif kind is OrderType.STOP:
            self.submit_order(asset, -position, order_type=kind, stop_price=down)
        else:
            self.submit_order(
                asset,
                -position,
                order_type=kind,
                stop_price=down,
                limit_price=down * (1.0 - self.offset),
            )
        return "exit"
