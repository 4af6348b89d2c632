"""The order desk: where strategies and rules place orders, numbered as they arrive.

It owns this bar's new orders and the order-id counter; the broker takes the bar's orders
from it after the strategy and the rules have spoken (`take_new_orders`). Strategies order
through the desk only: it has no handle on matching, booking or the ledger's writes.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any

import numpy as np

from ml4t_pipeline.engine.clock import Clock
from ml4t_pipeline.engine.enums import OrderReason, OrderType
from ml4t_pipeline.engine.execution.ledger import Ledger
from ml4t_pipeline.engine.execution.orders import (
    ENGINE_ORDER,
    GTC,
    MARKET,
    MAX_QTY,
    SIGNAL,
    Order,
    new_order,
    orders_from_columns,
    parse_time_in_force,
)
from ml4t_pipeline.engine.execution.sizing import check_prices, qty_error, target_positions
from ml4t_pipeline.errors import ConfigError

_NAN = math.nan


class OrderDesk:
    """Order entry: ids, this bar's new orders in submission order."""

    def __init__(
        self, *, clock: Clock, ledger: Ledger, asset_ids: list[Any], next_order_id: int
    ) -> None:
        self.clock = clock
        self.ledger = ledger  # read: positions to size against
        self.asset_ids = asset_ids  # array position -> asset id, for error messages
        self.next_order_id = next_order_id
        self.new_orders: list[Order] = []  # this bar's orders, in submission order
        self.cancels: list[int] = []  # ids the strategy cancelled at this close
        self.placed_timed = False  # one of this bar's orders has a time in force
        self._read_working: Callable[[], Callable[[], list[Order]] | None] = lambda: list

    def read_working(self, working: Callable[[], list[Order]]) -> None:
        """Where the desk reads the working orders from: a method of the broker, which owns
        them. Held weakly: the broker holds the desk, and a cycle between them would keep a
        finished run's arrays alive until the garbage collector's next full pass."""
        self._read_working = weakref.WeakMethod(working)

    def _working(self) -> list[Order]:
        read = self._read_working()
        return read() if read is not None else []

    def open_orders(self, asset: int | None = None) -> list[Order]:
        """The strategy's own orders still open: working, or placed at this close (not those
        a rule made, nor those it cancelled), oldest first; of `asset` only if given."""
        cancelled = self.cancels
        return [
            o
            for o in (*self._working(), *self.new_orders)
            if o.reason == SIGNAL
            and (asset is None or o.asset == asset)
            and o.order_id not in cancelled
        ]

    def cancel_order(self, order_id: int) -> bool:
        """Cancel one of the strategy's open orders; False if it is no longer open (filled,
        rejected, expired or already cancelled). Cancelling an id never issued, or an order a
        risk rule made, is an error."""
        if not 0 <= order_id < self.next_order_id:
            msg = f"cancel_order({order_id!r}): no order has that id"
            raise ConfigError(msg)
        for o in (*self._working(), *self.new_orders):
            if o.order_id == order_id:
                if o.reason != SIGNAL:
                    msg = (
                        f"cancel_order({order_id}): the order was made by a risk rule "
                        f"({OrderReason(o.reason).label}); a strategy cannot cancel it"
                    )
                    raise ConfigError(msg)
                if order_id in self.cancels:
                    return False
                self.cancels.append(order_id)
                return True
        return False

    def take_cancels(self) -> list[int]:
        """This close's cancellations, handed over to the broker."""
        ids, self.cancels = self.cancels, []
        return ids

    def submit(
        self,
        asset: int,
        qty: int,
        *,
        order_type: OrderType = OrderType.MARKET,
        limit_price: float | None = None,
        stop_price: float | None = None,
        trail_pct: float | None = None,
        last_close: float = math.nan,
        time_in_force: str = "gtc",
    ) -> int | None:
        """A strategy order for `asset` (array position), signed `qty`; returns its id.

        `last_close` is the asset's last close, the starting reference of a trailing stop;
        `time_in_force` is "gtc", "day" or "bars=N" (`parse_time_in_force`).
        """
        tif, expires = parse_time_in_force(time_in_force, self.clock.bar)
        if order_type is OrderType.MARKET and tif == GTC:
            return self.submit_market(asset, qty)
        if qty == 0:
            return None
        if tif != GTC:
            self.placed_timed = True
        if not -MAX_QTY <= qty <= MAX_QTY:
            raise qty_error(self.asset_ids[asset], qty)
        check_prices(order_type, limit_price, stop_price, trail_pct)
        oid = self.take_ids(1)
        self.new_orders.append(
            new_order(
                order_id=oid,
                asset=asset,
                qty=qty,
                order_type=int(order_type),
                limit_price=_price(limit_price),
                stop_price=_price(stop_price),
                trail_pct=_price(trail_pct),
                trail_ref=last_close if order_type is OrderType.TRAILING_STOP else math.nan,
                created_bar=self.clock.bar,
                reason=SIGNAL,
                rule=-1,
                triggered=False,
                tif=tif,
                expires=expires,
            )
        )
        return oid

    def submit_market(self, asset: int, qty: int) -> int | None:
        """A strategy market order (the common case); None for a zero quantity."""
        if qty == 0:
            return None
        if not -MAX_QTY <= qty <= MAX_QTY:
            raise qty_error(self.asset_ids[asset], qty)
        oid = self.next_order_id
        self.next_order_id = oid + 1
        self.new_orders.append(
            new_order(
                order_id=oid,
                asset=asset,
                qty=qty,
                order_type=MARKET,
                limit_price=_NAN,
                stop_price=_NAN,
                trail_pct=_NAN,
                trail_ref=_NAN,
                created_bar=self.clock.bar,
                reason=SIGNAL,
                rule=-1,
                triggered=False,
                tif=GTC,
                expires=-1,
            )
        )
        return oid

    def submit_many(
        self,
        assets: np.ndarray,
        qty: np.ndarray,
        reason: OrderReason = OrderReason.SIGNAL,
        rules: np.ndarray | None = None,
    ) -> None:
        """Market orders for `assets` (signed `qty`), numbered in the order given."""
        self.new_orders += self.market_orders(
            assets.tolist(), qty.tolist(), reason, None if rules is None else rules.tolist()
        )

    def market_orders(
        self,
        assets: list[int],
        qty: list[int],
        reason: OrderReason,
        rules: list[int] | None = None,
    ) -> list[Order]:
        """Market orders for `assets` (signed `qty`), numbered in the order given, created at
        this bar; handed back, not placed (the broker executes an exit it makes at once)."""
        n = len(assets)
        return self.engine_orders(
            assets,
            qty,
            order_type=MARKET,
            stop_price=repeat(_NAN, n),
            reasons=repeat(int(reason), n),
            rules=rules if rules is not None else repeat(-1, n),
        )

    def engine_orders(
        self,
        assets: list[int],
        qty: list[int],
        *,
        order_type: int,
        stop_price: Iterable[float],
        reasons: Iterable[int],
        rules: Iterable[int],
    ) -> list[Order]:
        """Orders the engine itself makes (rule exits, protective exits at their level,
        delisting closes): numbered in the order given, created at this bar, handed back."""
        n = len(assets)
        first = self.take_ids(n)
        return orders_from_columns(
            {
                "order_id": range(first, first + n),
                "asset": assets,
                "qty": qty,
                "order_type": repeat(order_type, n),
                "limit_price": repeat(_NAN, n),
                "stop_price": stop_price,
                "trail_pct": repeat(_NAN, n),
                "trail_ref": repeat(_NAN, n),
                "created_bar": repeat(self.clock.bar, n),
                "reason": reasons,
                "rule": rules,
                **{name: repeat(value, n) for name, value in ENGINE_ORDER.items()},
            }
        )

    def order_target_weights(self, weights: np.ndarray, equity: float, close: np.ndarray) -> int:
        """Market orders taking every priced asset to floor(|w| x equity / close) shares
        (`sizing.target_positions`), counting the strategy's own open market orders as on
        their way: an order still waiting for its asset's bar is not placed twice."""
        held = self.ledger.qty
        coming = held
        pending = [o for o in self.open_orders() if o.order_type == MARKET]
        if pending:
            coming = held.copy()
            for o in pending:
                coming[o.asset] += o.qty
        delta = target_positions(weights, equity, close, coming, self.asset_ids) - coming
        assets = (delta != 0).nonzero()[0]
        self.submit_many(assets, delta[assets])
        return int(assets.shape[0])

    def take_ids(self, n: int) -> int:
        """Reserve `n` consecutive order ids; returns the first."""
        first = self.next_order_id
        self.next_order_id = first + n
        return first

    def take_new_orders(self) -> list[Order]:
        """This bar's orders, handed over (the desk starts the next bar empty)."""
        orders, self.new_orders = self.new_orders, []
        self.placed_timed = False
        return orders

    def withdraw(self, which: Callable[[Order], bool]) -> list[Order]:
        """Take back this bar's orders for which `which` holds; returns them."""
        kept: list[Order] = []
        gone: list[Order] = []
        for o in self.new_orders:
            (gone if which(o) else kept).append(o)
        self.new_orders = kept
        return gone


def _price(value: float | None) -> float:
    return math.nan if value is None else float(value)
