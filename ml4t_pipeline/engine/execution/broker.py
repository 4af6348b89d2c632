"""The broker: the order book. It takes each bar's new orders from the order desk, matches
them against the clock's bar, and has the ledger book what `fill_order` returns.

It owns the working orders and the run's order and rejection logs. New orders and their ids
belong to the order desk (`order_desk.py`), cash and positions to the ledger; the fill itself
is the pure `fill_order`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from ml4t_pipeline.engine.clock import Clock
from ml4t_pipeline.engine.enums import OrderReason, RejectReason
from ml4t_pipeline.engine.execution.fills import (
    FillRules,
    Partial,
    Rejection,
    fill_order,
    rejection,
)
from ml4t_pipeline.engine.execution.ledger import Ledger, whole_shares
from ml4t_pipeline.engine.execution.order_desk import OrderDesk
from ml4t_pipeline.engine.execution.orders import (
    GTC,
    MARKET,
    SIGNAL,
    STOP,
    Order,
    Orders,
    match,
    split_expired,
)
from ml4t_pipeline.engine.execution.volume import VolumeBook
from ml4t_pipeline.engine.risk.context import RiskContext
from ml4t_pipeline.engine.risk.manager import RiskManager, Triggered

ContextFactory = Callable[[], RiskContext]
_NAN = math.nan
_isnan = math.isnan
_NO_ASSETS = np.empty(0, np.int64)
_NO_PRICES = np.empty(0, np.float64)
_US_PER_DAY = 86_400_000_000  # timestamps are int64 microseconds UTC: day = ts // this


class Broker:
    """Order book and execution. Orders are `Order` rows: a bar rarely has more than a few
    dozen, and plain Python beats numpy on arrays that small; `Orders` columns are built only
    where a vector helps (matching resting orders, risk validation, the result tables).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        rules: FillRules,
        same_close: bool,
        ledger: Ledger,
        risk: RiskManager,
        working: list[Order],
        desk: OrderDesk,
        no_bar_waits: bool,
        rest_waits: bool = True,
        delisted: Iterable[int] = (),
    ) -> None:
        self.clock = clock
        self.no_bar_waits = no_bar_waits  # an order without a bar waits for the asset's next one
        self.rest_waits = rest_waits  # what the bar's volume left of an order keeps working
        self.volume = VolumeBook(rules.max_participation)  # what the bars' volume allows
        self.delisted = set(delisted)  # assets whose bars have ended: orders for them are refused
        self.desk = desk  # where this bar's new orders come from
        self.rules = rules
        self.volume_bound = rules.volume_bound  # (read once: it is a property)
        self.same_close = same_close  # market orders fill at the close they were decided at
        self.ledger = ledger
        self.risk = risk
        self.working = working  # orders waiting for a later bar, oldest first
        self.timed = any(o.tif != GTC for o in working)  # some of them have a time in force
        self.intrabar: list[tuple[Order, float]] = []  # matched inside this bar, not yet booked
        self.order_log: list[Order] = []  # every order that reached the book or was rejected
        self.rejections: list[Rejection] = []
        # orders whose fill left cash below zero though negative cash is not allowed (a
        # cover, an exit or a sell's commission: they reduce risk, so they are not refused)
        self.negative_cash_fills: list[int] = []

    # -- the bar (engine side, in the loop's order) -------------------------------------------
    def fill_at_open(self, context: ContextFactory) -> None:
        """1. Match every working order against the bar; book what fills at the open (market
        orders, and orders a gap filled there), sells before buys, and keep what fills inside
        the bar for `fill_inside_bar`, after the protective stops. An exit that closed a
        position at the open cancels the orders that would reduce it later in the bar."""
        p, i = self.clock.panel, self.clock.row
        if self.timed:  # orders with a time in force: those whose time ran out go first
            self._expire(int(p.timestamps[i]) // _US_PER_DAY)
        for o in self.working:
            if o.order_type != MARKET:
                break
        else:  # market orders only: they fill at the open
            orders, self.working = self.working, []
            closed_by_exits = self._execute(self._priced(orders, p.open, i), context)
            if closed_by_exits:  # what still waits (no bar, volume) may now be stale
                self._stopped_out(closed_by_exits)
            return
        book = Orders.from_rows(self.working)
        a = book.asset
        open_ = p.open[i, a]
        filled, price, trail_ref, triggered = match(book, open_, p.high[i, a], p.low[i, a])
        if self.no_bar_waits:  # orders without a bar keep working, as unmatched ones do
            no_bar = np.zeros(len(book), dtype=np.bool_)
        else:
            no_bar = (book.order_type == MARKET) & np.isnan(open_)
        book.trail_ref = trail_ref
        book.triggered = triggered
        self._reject(book.take(np.flatnonzero(no_bar)).rows(), RejectReason.NO_BAR)
        self.working = book.take(np.flatnonzero(~filled & ~no_bar)).rows()
        done = np.flatnonzero(filled)
        if done.shape[0]:
            orders = book.take(done).rows()
            at_open = (price[done] == open_[done]).tolist()
            matched = list(zip(orders, price[done].tolist(), strict=True))
            opening = [m for m, first in zip(matched, at_open, strict=True) if first]
            self.intrabar = [m for m, first in zip(matched, at_open, strict=True) if not first]
            closed_by_exits = self._execute(opening, context)
            if closed_by_exits:
                self._stopped_out(closed_by_exits)

    def fill_inside_bar(self, context: ContextFactory) -> None:
        """3. Book the orders matched inside this bar (after the protective stops: when a
        limit and a stop both trigger in one bar, the stop is taken first)."""
        matched, self.intrabar = self.intrabar, []
        self._execute(matched, context)

    def fill_protective_exits(self, hits: Triggered, context: ContextFactory) -> None:
        """2. Close the positions whose stop or take-profit level the bar crossed, at the
        level (gap-aware price), then cancel what the position's own orders would now do."""
        assets = hits.asset
        exits = self.desk.engine_orders(
            assets,
            [-self.ledger.qty.item(a) for a in assets],
            order_type=STOP,
            stop_price=hits.price,  # the level the bar crossed
            reasons=hits.reason,
            rules=hits.rule,
        )
        self.order_log += exits
        closed = self._execute(list(zip(exits, hits.price, strict=True)), context)
        if closed:
            self._stopped_out(closed)

    def replace_with_exits(
        self, assets: np.ndarray, reasons: np.ndarray, rules: np.ndarray
    ) -> None:
        """5. Risk exits decided at this close: each replaces the strategy's own orders
        reducing that position at this bar, and closes the whole position."""
        self._drop_reducing_orders(assets)
        for reason in np.unique(reasons).tolist():
            pick = reasons == reason
            chosen = assets[pick]
            self.desk.submit_many(
                chosen, -self.ledger.qty[chosen], OrderReason(reason), rules[pick]
            )

    def accept_new_orders(self, context: ContextFactory) -> None:
        """6 + 7. This bar's orders, after risk validation: fill now (market orders with
        `fill_at: same_close`) or queue for the next bar."""
        timed = self.desk.placed_timed  # an order with a time in force among them
        orders = self.desk.take_new_orders()
        if self.delisted:
            orders = self._refuse_delisted(orders)
        if self.risk.validates:
            orders = self._validated(orders, context())
        self.order_log += orders
        if timed:
            self.timed = True
        if self.same_close and any(o.order_type == MARKET for o in orders):
            p, i = self.clock.panel, self.clock.row
            market = [o for o in orders if o.order_type == MARKET]
            self._execute(self._priced(market, p.close, i), context)
            orders = [o for o in orders if o.order_type != MARKET]
        self.working += orders

    def cancel(self, order_ids: list[int]) -> None:
        """4b. The strategy's cancellations (`OrderDesk.cancel_order`): each open order
        among `order_ids`, working or placed at this close, ends `cancelled`."""
        gone = set(order_ids)
        placed = self.desk.withdraw(lambda o: o.order_id in gone)
        if placed:
            self.order_log += placed
        working = [o for o in self.working if o.order_id in gone]
        if working:
            self.working = [o for o in self.working if o.order_id not in gone]
        self._reject(sorted(placed + working, key=_order_id), RejectReason.CANCELLED)

    def working_orders(self) -> list[Order]:
        """The working orders, oldest first (read by the order desk for strategies)."""
        return self.working

    def delist(self, assets: np.ndarray, context: ContextFactory) -> None:
        """7b. `assets` have no bar after this one: their working orders are cancelled
        (`delisted`) and their positions closed at this close by an exit of reason
        `delisted` (with `on_delist: close`; the engine does not call this with `hold`)."""
        gone = set(assets.tolist())
        self.delisted |= gone
        stale = [o for o in self.working if o.asset in gone]
        if stale:
            self._reject(stale, RejectReason.DELISTED)
            self.working = [o for o in self.working if o.asset not in gone]
        qty = self.ledger.qty
        held = [a for a in assets.tolist() if qty.item(a) != 0]
        if not held:
            return
        exits = self.desk.market_orders(held, [-qty.item(a) for a in held], OrderReason.DELISTED)
        self.order_log += exits
        close = self.clock.panel.close[self.clock.row]  # a cash-out: not bound by volume
        self._execute([(o, close.item(o.asset)) for o in exits], context, volume_bound=False)

    def split(self, a: int, ratio: float) -> None:
        """0. A split of `a` before the open: its working orders are amended in place (same
        id, same place in the book, so the same priority as on split-adjusted prices): qty x
        ratio in whole shares (`whole_shares`, sign kept), limit, stop and trailing reference
        / ratio; the order log shows the amended order. One left without a whole share ends
        (`split`)."""
        if not any(o.asset == a for o in self.working):
            return
        amended: dict[int, Order] = {}
        ended: list[Order] = []
        working = []
        for o in self.working:
            if o.asset == a:
                shares = whole_shares(abs(o.qty) * ratio)
                if shares == 0:
                    ended.append(o)
                    continue
                o = _in_new_shares(o, shares, ratio)
                amended[o.order_id] = o
            working.append(o)
        self.working = working
        self._reject(ended, RejectReason.SPLIT)
        # the logged order (of this run) in the new shares too: qty x ratio of what it asked
        self.order_log = [
            _in_new_shares(o, whole_shares(abs(o.qty) * ratio), ratio)
            if o.order_id in amended
            else o
            for o in self.order_log
        ]

    # -- the parts ------------------------------------------------------------------------------
    def _priced(self, orders: list[Order], prices: np.ndarray, i: int) -> list[tuple[Order, float]]:
        """Market orders with their asset's price at row `i` of `prices` (bars x assets);
        those without a bar (NaN) wait for the asset's next bar (`on_no_bar: wait`: back to
        the working orders) or are rejected (`no_bar`)."""
        priced = []
        missing = []
        for o in orders:
            price = prices.item(i, o.asset)
            if _isnan(price):
                missing.append(o)
            else:
                priced.append((o, price))
        if missing:
            if self.no_bar_waits:
                self.working += missing
            else:
                self._reject(missing, RejectReason.NO_BAR)
        return priced

    def _expire(self, today: int) -> None:
        """Working orders whose time in force ran out before this bar end `expired`
        (`orders.split_expired`)."""
        self.working, expired = split_expired(self.working, self.clock.bar, today)
        self.timed = any(o.tif != GTC for o in self.working)
        if expired:
            self._reject(expired, RejectReason.EXPIRED)

    def _refuse_delisted(self, orders: list[Order]) -> list[Order]:
        """Orders for an asset whose bars have ended are refused (`delisted`)."""
        dead = [o for o in orders if o.asset in self.delisted]
        if not dead:
            return orders
        self.order_log += dead
        self._reject(dead, RejectReason.DELISTED)
        return [o for o in orders if o.asset not in self.delisted]

    def _execute(
        self,
        matched: list[tuple[Order, float]],
        context: ContextFactory,
        *,
        volume_bound: bool = True,
    ) -> dict[int, bool]:
        """Book matched orders at their match price: sells first, then buys, each in order-id
        order; each meets the position and cash the fills before it left (`fill_order`).
        An exit (an order a rule made) closes what is held when it fills, never more: it
        never flips a position. Where the bar's volume bounds fills (`volume_bound` and the
        fill rules say so), an order takes at most what is left of its asset's share of the
        bar (`VolumeBook.room`); the rest waits for the next bar or is rejected by policy. The
        risk manager hears of the positions opened and closed.
        Returns the positions exits closed (asset -> the exit bought)."""
        if len(matched) > 1:
            matched = sorted(matched, key=_sells_first)
        ledger, rules = self.ledger, self.rules
        slips = rules.slips
        clock = self.clock
        volume, i, bar, decision = clock.panel.volume, clock.row, clock.bar, clock.decision
        tracking = self.risk.active  # the manager keeps state per opened / closed position
        opened: list[tuple[int, float]] = []
        closed: list[int] = []
        refused: list[tuple[Order, RejectReason]] = []
        closed_by_exits: dict[int, bool] = {}
        bounded = volume_bound and self.volume_bound
        watch_cash = not rules.allow_negative_cash
        for order, price in matched:
            a = order.asset
            held, cash = ledger.qty.item(a), ledger.cash
            exit_buys = None
            if order.reason != SIGNAL:  # an exit: what is held now, or nothing
                if held == 0:
                    refused.append((order, RejectReason.NOTHING_TO_CLOSE))
                    continue
                if order.qty != -held:
                    order = order._replace(qty=-held)
                exit_buys = held < 0
            if bounded:  # the volume bounds what the account rules allow of the order
                bound = self._bound_by_volume(order, held, volume.item(i, a), refused)
                if bound is None:
                    continue
                order = bound
            volume_now = volume.item(i, a) if slips else _NAN
            result = fill_order(order, price, held, cash, volume_now, bar, rules, slips)
            if not isinstance(result, tuple):  # (one check for the common case: fills)
                if isinstance(result, Partial):  # the rest is recorded with why it did not fill
                    refused.append((order._replace(qty=result.rest), result.reason))
                    result = result.fills
                else:
                    refused.append((order, result))
                    continue
            if exit_buys is not None:
                closed_by_exits[a] = exit_buys
            for fill in result:
                change = ledger.book(fill, decision)
                if tracking and change:
                    if change > 0:
                        opened.append((a, fill.price))
                    else:
                        closed.append(a)
                if bounded:
                    self.volume.took(a, abs(fill.qty))
            if watch_cash and ledger.cash < 0:  # a cover, an exit or a sell's fee
                self.negative_cash_fills.append(order.order_id)
        if refused:
            for reason in dict.fromkeys(r for _, r in refused):  # first-seen order
                self._reject([o for o, r in refused if r is reason], reason)
        if opened or closed:
            self.risk.on_fills(
                context,
                np.array([a for a, _ in opened], dtype=np.int64) if opened else _NO_ASSETS,
                np.array([p for _, p in opened], dtype=np.float64) if opened else _NO_PRICES,
                np.array(closed, dtype=np.int64) if closed else _NO_ASSETS,
            )
        return closed_by_exits

    def _bound_by_volume(
        self,
        order: Order,
        held: int,
        volume: float,
        refused: list[tuple[Order, RejectReason]],
    ) -> Order | None:
        """`order` cut to what its asset's volume still allows in this bar, or None when
        nothing of it trades now. Long only, the part that would open a short is refused
        first (it never trades); what the volume leaves goes to `_left_over`."""
        if order.qty < 0 and not self.rules.allow_short and order.qty < -max(held, 0):
            allowed = -max(held, 0)
            refused.append(
                (order._replace(qty=order.qty - allowed), RejectReason.SHORT_NOT_ALLOWED)
            )
            if allowed == 0:
                return None
            order = order._replace(qty=allowed)
        room = self.volume.room(self.clock.bar, order.asset, volume)
        if abs(order.qty) <= room:
            return order
        rest = order.qty - (room if order.qty > 0 else -room)
        self._left_over(order, rest, refused)
        return order._replace(qty=order.qty - rest) if room else None

    def _left_over(
        self, order: Order, rest: int, refused: list[tuple[Order, RejectReason]]
    ) -> None:
        """What the bar's volume left unfilled of `order` (signed `rest`): an exit's rest
        always waits, as a market order for the next bar; a strategy order's rest keeps
        working as it was (`on_volume_limit: wait`) or is rejected (`volume_limit`)."""
        if order.reason != SIGNAL:
            self.working.append(order._replace(qty=rest, order_type=MARKET))
        elif self.rest_waits:
            self.working.append(order._replace(qty=rest))
        else:
            refused.append((order._replace(qty=rest), RejectReason.VOLUME_LIMIT))

    def _stopped_out(self, exit_buys: dict[int, bool]) -> None:
        """Exits just closed the positions of `exit_buys`: the orders matched inside this bar
        and the working ones that would still reduce them are cancelled (`stopped_out`)."""
        if self.intrabar:
            kept, stale = [], []
            for order, price in self.intrabar:
                if self._reduces_closed(order, exit_buys):
                    stale.append(order)
                else:
                    kept.append((order, price))
            if stale:
                self._reject(stale, RejectReason.STOPPED_OUT)
                self.intrabar = kept
        if self.working:
            self._cancel_stopped(exit_buys)

    def _reduces_closed(self, order: Order, exit_buys: dict[int, bool]) -> bool:
        """`order` would reduce a position an exit closed (now flat): a long's sell, a
        short's buy (`exit_buys[asset]`: the exit bought)."""
        a = order.asset
        return a in exit_buys and self.ledger.qty.item(a) == 0 and (order.qty > 0) == exit_buys[a]

    def _cancel_stopped(self, exit_buys: dict[int, bool]) -> None:
        """The working orders that would reduce a position a protective exit just closed are
        cancelled (`stopped_out`): a long's sells, a short's buys (`exit_buys[asset]`: the exit
        bought), and any order a rule made for it. Orders opening the other side stay."""
        stale = [
            o
            for o in self.working
            if self._reduces_closed(o, exit_buys)
            or (o.reason != SIGNAL and o.asset in exit_buys and self.ledger.qty.item(o.asset) == 0)
        ]
        if stale:
            self._reject(stale, RejectReason.STOPPED_OUT)
            gone = {o.order_id for o in stale}
            self.working = [o for o in self.working if o.order_id not in gone]

    def _drop_reducing_orders(self, assets: np.ndarray) -> None:
        """Forget this bar's orders that reduce the position of `assets`; orders adding to a
        position stay and meet the risk rules like any other entry."""
        exiting = set(assets.tolist())
        qty = self.ledger.qty

        def reduces(o: Order) -> bool:
            held = qty.item(o.asset) if o.asset in exiting else 0
            return held != 0 and (o.qty > 0) != (held > 0)

        gone = self.desk.withdraw(reduces)
        if gone:
            self.order_log += gone
            self._reject(gone, RejectReason.REPLACED_BY_EXIT)

    def _reject(self, orders: Iterable[Order], reason: RejectReason, rule: int = -1) -> None:
        bar = self.clock.bar
        self.rejections += [rejection(o, bar, reason, rule) for o in orders]

    def _validated(self, orders: list[Order], ctx: RiskContext) -> list[Order]:
        book = Orders.from_rows(orders)
        verdict = self.risk.validate(ctx, book)
        keep, qty, rows, reasons, rules = verdict
        if rows.shape[0]:
            refused = [orders[k] for k in rows.tolist()]
            self.order_log += refused
            bar = self.clock.bar
            self.rejections += [
                Rejection(
                    bar=bar, asset=o.asset, order_id=o.order_id, qty=o.qty, reason=code, rule=rule
                )
                for o, code, rule in zip(refused, reasons.tolist(), rules.tolist(), strict=True)
            ]
        accepted = []
        for k, q in zip(keep.tolist(), qty[keep].tolist(), strict=True):
            o = orders[k]
            accepted.append(o if q == o.qty else o._replace(qty=q))
        return accepted


def _in_new_shares(order: Order, shares: int, ratio: float) -> Order:
    """`order` after a split of `ratio`: `shares` whole shares (its side kept), its prices in
    the new shares."""
    return order._replace(
        qty=shares if order.qty > 0 else -shares,
        limit_price=order.limit_price / ratio,
        stop_price=order.stop_price / ratio,
        trail_ref=order.trail_ref / ratio,
    )


def _order_id(order: Order) -> int:
    return order.order_id


def _sells_first(item: tuple[Order, float]) -> tuple[bool, int]:
    return item[0].qty > 0, item[0].order_id
