"""The strategy API: subclass `Strategy`, override one of the two callbacks.

- `on_market_event(event, context)`: called for each asset with a bar, at its close.
- `on_timestamp_batch(timestamp, batch, context)`: called once per bar with every asset as
  arrays; use it for cross-sectional logic (ranking a universe).

Helpers (`buy_percent`, `rebalance_to_weights`, ...) submit orders decided at the current close;
they fill at the next open (or at this close with `fill_at: same_close`). `self.account` is a
read-only view of cash, equity and positions; a strategy changes them only by ordering.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ml4t_pipeline.engine.enums import OrderType
from ml4t_pipeline.engine.execution.orders import OpenOrder, open_order
from ml4t_pipeline.engine.strategy.views import Batch, ContextView, MarketEvent

if TYPE_CHECKING:
    from ml4t_pipeline.engine.execution.account import AccountView
    from ml4t_pipeline.engine.execution.order_desk import OrderDesk


class _NotRunning:
    """Stands in for the account and the order book outside a run: every helper says why it
    cannot work."""

    def __getattr__(self, name: str) -> Any:
        self._refuse()

    def __call__(self, *args: Any) -> Any:
        self._refuse()

    @staticmethod
    def _refuse() -> None:
        msg = "strategy helpers are only available while the engine runs the strategy"
        raise RuntimeError(msg)


_NOT_RUNNING: Any = _NotRunning()


class Strategy:
    """Base class of every strategy, built-in or user-written.

    `uses_volume` and `required_signals` let the engine skip loading columns a strategy never
    reads (the defaults load everything). `history_bars` is how many bars `batch.history`
    shows, the current one included: the engine keeps that many across chunks and chained
    runs. None (the default) shows every bar of the run and keeps the whole run in memory,
    but a chained run carries none of it; 0 means the strategy reads no History.
    """

    uses_volume: bool = True
    history_bars: int | None = None

    def required_signals(self) -> Sequence[str] | None:
        """Signal columns this strategy reads; None means every numeric column."""
        return None

    def required_context(self) -> Sequence[str]:
        """Market-wide context columns this strategy reads (checked before the run)."""
        return ()

    def __init__(self, **params: Any) -> None:
        self.params = params
        self._account: AccountView = _NOT_RUNNING
        self._orders: OrderDesk = _NOT_RUNNING
        # what the per-event helpers read on every call, looked up once
        self._index: Callable[[Any], int] = _NOT_RUNNING
        self._positions: np.ndarray = _NOT_RUNNING

    def bind(self, account: AccountView, orders: OrderDesk) -> None:
        """Called by the engine before the first bar: what the helpers read and order through."""
        self._account = account
        self._orders = orders
        self._index = account.index
        self._positions = account.positions  # read-only, follows the ledger

    # -- callbacks (override one) -------------------------------------------------------------
    def on_start(self) -> None:
        """Called once before the first bar of a run."""

    def on_market_event(self, event: MarketEvent, context: ContextView) -> None:
        """Per-asset callback at the close of each bar."""

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        """Per-bar callback with the whole cross-section."""

    @classmethod
    def uses_events(cls) -> bool:
        return cls.on_market_event is not Strategy.on_market_event

    @classmethod
    def uses_batches(cls) -> bool:
        return cls.on_timestamp_batch is not Strategy.on_timestamp_batch

    # -- state for chained runs (override when the strategy keeps its own state) ---------------
    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what `get_state` returned at the end of the previous run."""

    # -- reading the account -------------------------------------------------------------------
    @property
    def account(self) -> AccountView:
        """Cash, equity, positions and last closes, read-only."""
        return self._account

    def get_position(self, asset: Any) -> int:
        return self._positions.item(self._index(asset))

    def get_cash(self) -> float:
        return self._account.cash

    def get_portfolio_value(self) -> float:
        return self._account.equity

    def get_unrealized_pnl_pct(self, asset: Any) -> float | None:
        return self._account.unrealized_pnl_pct(asset)

    # -- ordering (decided at this close) ---------------------------------------------------------
    def submit_order(
        self,
        asset: Any,
        qty: int,
        *,
        order_type: OrderType = OrderType.MARKET,
        limit_price: float | None = None,
        stop_price: float | None = None,
        trail_pct: float | None = None,
        time_in_force: str = "gtc",
    ) -> int | None:
        """Signed `qty` (+ buy). Returns the order id, or None for a zero quantity.

        `time_in_force`: "gtc" (until filled or cancelled), "day" (the first trading day it
        meets, the UTC date of the next bar) or "bars=N" (the next N bars); what has not
        filled by then ends `expired`.
        """
        a = self._account.index(asset)
        return self._orders.submit(
            a,
            int(qty),
            order_type=order_type,
            limit_price=limit_price,
            stop_price=stop_price,
            trail_pct=trail_pct,
            last_close=self._account.last_close.item(a),
            time_in_force=time_in_force,
        )

    def cancel_order(self, order_id: int) -> bool:
        """Cancel an open order of this strategy (working, or placed at this close); it ends
        `cancelled`. False if it is no longer open; an unknown id, or an order a risk rule
        made, is an error."""
        return self._orders.cancel_order(int(order_id))

    def open_orders(self, asset: Any = None) -> list[OpenOrder]:
        """This strategy's open orders (of `asset` if given), oldest first."""
        ids = self._orders.asset_ids
        a = None if asset is None else self._account.index(asset)
        return [open_order(o, ids[o.asset]) for o in self._orders.open_orders(a)]

    def buy(self, asset: Any, qty: int) -> int | None:
        return self._orders.submit_market(self._index(asset), abs(int(qty)))

    def sell(self, asset: Any, qty: int) -> int | None:
        return self._orders.submit_market(self._index(asset), -abs(int(qty)))

    def close_position(self, asset: Any) -> int | None:
        a = self._index(asset)
        return self._orders.submit_market(a, -self._positions.item(a))

    def buy_percent(self, asset: Any, percent: float) -> int | None:
        """Buy shares worth `percent` (a fraction) of portfolio value at the current close."""
        price = self._last_close(asset)
        if not price > 0:
            return None
        return self.submit_order(asset, math.floor(percent * self.get_portfolio_value() / price))

    def sell_percent(self, asset: Any, percent: float) -> int | None:
        """Sell `percent` (a fraction) of the current position, in whole shares."""
        return self.submit_order(asset, -math.floor(percent * self.get_position(asset)))

    def set_position_percent(self, asset: Any, percent: float) -> int | None:
        """Order the difference to a position worth `percent` of portfolio value (signed)."""
        price = self._last_close(asset)
        if not price > 0:
            return None
        target = int(
            math.copysign(math.floor(abs(percent) * self.get_portfolio_value() / price), percent)
        )
        return self.submit_order(asset, target - self.get_position(asset))

    def size_by_confidence(
        self, asset: Any, confidence: float, max_percent: float = 0.1
    ) -> int | None:
        """Target a position of confidence (clipped to [0, 1]) x `max_percent` of portfolio value."""
        return self.set_position_percent(asset, min(max(confidence, 0.0), 1.0) * max_percent)

    def rebalance_to_weights(self, weights: Mapping[Any, float] | np.ndarray) -> int:
        """Target weight per asset (others to 0); floor(|w| x equity / close) shares each.

        `weights` is a mapping asset -> weight or an array aligned with `batch.assets`.
        Returns the number of orders submitted.
        """
        account = self._account
        if isinstance(weights, np.ndarray):
            w = np.asarray(weights, dtype=np.float64)
        else:
            w = np.zeros(account.positions.shape[0])
            for asset, weight in weights.items():
                w[account.index(asset)] = weight
        return self._orders.order_target_weights(w, account.equity, account.last_close)

    def _last_close(self, asset: Any) -> float:
        return float(self._account.last_close[self._account.index(asset)])
