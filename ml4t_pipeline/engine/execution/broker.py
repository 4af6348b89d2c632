"""The broker: takes orders, matches them against bars, and books fills through the ledger.

It keeps the order book and the run's records of orders and rejections as rows that the
result tables turn into columns once. Fills are booked by `Ledger.book`, the only writer of
cash and positions, which keeps the fill book.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml4t_pipeline.engine.enums import ExitReason, OrderType, RejectReason
from ml4t_pipeline.engine.execution.costs import CommissionModel, NoSlippage, SlippageModel
from ml4t_pipeline.engine.execution.ledger import Ledger
from ml4t_pipeline.engine.execution.orders import MARKET, SIGNAL, STOP, Order, Orders, match
from ml4t_pipeline.engine.feed import Panel
from ml4t_pipeline.engine.risk.context import REJECT_BY_CODE, RiskContext
from ml4t_pipeline.engine.risk.manager import RiskManager
from ml4t_pipeline.errors import ConfigError

_REJECT_CODE = {r: i for i, r in enumerate(REJECT_BY_CODE)}
_NONE = np.empty(0, np.int64)
_NO_PRICES = np.empty(0, np.float64)
_NO_DECISION: tuple[dict[str, np.ndarray], int] = ({}, 0)  # fills before any decision
_NAN = math.nan
_order = functools.partial(tuple.__new__, Order)  # Order from a tuple of its fields


class _AssetIndex(dict[Any, int]):
    """asset id -> array position; an unknown id is a clear error."""

    def __missing__(self, asset: Any) -> int:
        msg = f"unknown asset_id {asset!r}: not in this run's price data"
        raise ConfigError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerSettings:
    commission: CommissionModel
    slippage: SlippageModel
    same_close: bool
    allow_short: bool
    allow_negative_cash: bool


class Broker:
    """Order book and execution. Orders are `Order` rows: a bar rarely has more than a few
    dozen, and plain Python beats numpy on arrays that small; `Orders` columns are built only
    where a vector helps (matching resting orders, risk validation, the result tables).
    """

    def __init__(
        self,
        *,
        settings: BrokerSettings,
        ledger: Ledger,
        risk: RiskManager,
        assets: np.ndarray,
        pending: list[Order],
        next_order_id: int,
        last_close: np.ndarray,
    ) -> None:
        self.settings = settings
        self.same_close = settings.same_close
        # the cost models' methods and the execution flags, read once per fill batch; without
        # slippage a fill is at its match price (no call per fill)
        self._fill_price = (
            None if isinstance(settings.slippage, NoSlippage) else settings.slippage.fill_price
        )
        self._commission = settings.commission.commission
        self._allow_short = settings.allow_short
        self._allow_negative_cash = settings.allow_negative_cash
        self.ledger = ledger
        self.risk = risk
        self.assets = assets
        self.n_assets = int(assets.shape[0])
        # asset id -> array position; a C-level lookup (strategies call it per event)
        self.index: Callable[[Any], int] = _AssetIndex(
            {a: i for i, a in enumerate(assets.tolist())}
        ).__getitem__
        self.pending = pending  # working orders, oldest first
        self.next_order_id = next_order_id
        self.last_close = last_close
        # signal arrays (bars, assets) and the row of the last close: what decisions saw
        self.decision_row: tuple[dict[str, np.ndarray], int] | None = None
        self.panel: Panel | None = None
        self.i = 0  # bar within the panel
        self.bar = 0  # global bar index
        self.new_orders: list[Order] = []  # this bar's orders, in submission order
        self.order_log: list[Order] = []  # every order that reached the book or was rejected
        self.rejection_rows: list[tuple[int, int, int, int, int, int]] = []

    # -- lookups -----------------------------------------------------------------------------
    def equity(self) -> float:
        return self.ledger.cash + self.ledger.positions_value(self.last_close)

    # -- order entry (strategy side) ----------------------------------------------------------
    def submit(
        self,
        asset: int,
        qty: int,
        *,
        order_type: OrderType = OrderType.MARKET,
        limit_price: float | None = None,
        stop_price: float | None = None,
        trail_pct: float | None = None,
    ) -> int | None:
        """A strategy order for `asset` (array position), signed `qty`; returns its id."""
        if order_type is OrderType.MARKET:
            return self.submit_market(asset, qty)
        if qty == 0:
            return None
        _check_order(order_type, limit_price, stop_price, trail_pct)
        oid = self.next_order_id
        self.next_order_id = oid + 1
        ref = self.last_close.item(asset) if order_type is OrderType.TRAILING_STOP else math.nan
        self.new_orders.append(
            Order(
                oid,
                asset,
                qty,
                int(order_type),
                math.nan if limit_price is None else float(limit_price),
                math.nan if stop_price is None else float(stop_price),
                math.nan if trail_pct is None else float(trail_pct),
                ref,
                self.bar,
                SIGNAL,
                -1,
                False,
            )
        )
        return oid

    def submit_market(self, asset: int, qty: int) -> int | None:
        """A strategy market order (the common case, kept short); None for a zero quantity."""
        if qty == 0:
            return None
        oid = self.next_order_id
        self.next_order_id = oid + 1
        self.new_orders.append(
            _order((oid, asset, qty, MARKET, _NAN, _NAN, _NAN, _NAN, self.bar, SIGNAL, -1, False))
        )
        return oid

    def order_target_weights(self, weights: np.ndarray) -> int:
        """Market orders taking every priced asset to floor(|w| * equity / close) shares."""
        close = self.last_close
        equity = self.equity()
        priced = close > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            target = np.sign(weights) * np.floor(np.abs(weights) * equity / close)
        target = np.where(priced, target, self.ledger.qty).astype(np.int64)
        delta = target - self.ledger.qty
        assets = (delta != 0).nonzero()[0]
        self.submit_many(assets, delta[assets])
        return int(assets.shape[0])

    def submit_many(
        self,
        assets: np.ndarray,
        qty: np.ndarray,
        reason: ExitReason = ExitReason.SIGNAL,
        rule: np.ndarray | None = None,
    ) -> None:
        """Market orders for `assets` (signed `qty`), numbered in the order given."""
        n = int(assets.shape[0])
        first = self.next_order_id
        self.next_order_id += n
        rules = rule.tolist() if rule is not None else [-1] * n
        bar, why = self.bar, int(reason)
        self.new_orders += [
            _order((oid, a, q, MARKET, _NAN, _NAN, _NAN, _NAN, bar, why, r, False))
            for oid, a, q, r in zip(
                range(first, first + n), assets.tolist(), qty.tolist(), rules, strict=True
            )
        ]

    def drop_new_orders(self, assets: np.ndarray) -> None:
        """Forget this bar's orders that reduce the position of `assets`: a risk exit replaces them.

        Orders adding to the position stay and meet the risk rules like any other entry.
        """
        exiting = set(assets.tolist())
        qty = self.ledger.qty
        kept: list[Order] = []
        gone: list[Order] = []
        for o in self.new_orders:
            held = qty.item(o.asset) if o.asset in exiting else 0
            (gone if held != 0 and (o.qty > 0) != (held > 0) else kept).append(o)
        if gone:
            self.order_log += gone
            self.reject(gone, RejectReason.REPLACED_BY_EXIT)
        self.new_orders = kept

    # -- matching and booking (engine side) ---------------------------------------------------
    def fill_pending(self, ctx_factory: Any) -> None:
        """Match every working order against this bar; fill sells before buys."""
        orders = self.pending
        p = self.panel
        assert p is not None
        i = self.i
        priced = self._priced(orders, p.open, i)
        if priced is not None:  # market orders only: they fill at the open
            self.pending = []
            self.execute(priced, ctx_factory)
            return
        book = Orders.from_rows(orders)
        a = book.asset
        o = p.open[i, a]
        filled, price, trail_ref, triggered = match(book, o, p.high[i, a], p.low[i, a])
        no_bar = (book.order_type == MARKET) & np.isnan(o)
        book.trail_ref = trail_ref
        book.triggered = triggered
        self.reject(book.take(np.flatnonzero(no_bar)).rows(), RejectReason.NO_BAR)
        self.pending = book.take(np.flatnonzero(~filled & ~no_bar)).rows()
        done = np.flatnonzero(filled)
        if done.shape[0]:
            filled_orders = book.take(done).rows()
            self.execute(list(zip(filled_orders, price[done].tolist(), strict=True)), ctx_factory)

    def _priced(
        self, orders: list[Order], prices: np.ndarray, i: int
    ) -> list[tuple[Order, float]] | None:
        """Market orders with their asset's price at bar `i` of `prices` (bars x assets); those
        without a bar are rejected. None (and nothing rejected) when any order is not a market
        order: those are matched together by `match`."""
        priced = []
        missing = []
        for o in orders:
            if o.order_type:
                return None
            px = prices.item(i, o.asset)
            if px == px:
                priced.append((o, px))
            else:  # NaN: no bar
                missing.append(o)
        if missing:
            self.reject(missing, RejectReason.NO_BAR)
        return priced

    def execute(self, fills: list[tuple[Order, float]], ctx_factory: Any) -> None:
        """Book orders at their match price: sells first, then buys, each in order-id order.

        Each fill is one Python step (fills are events, not bars) and sees the position the
        fills before it left: a fill that would flip a position is split into a closing and an
        opening part; without shorting, the part that would open a short is rejected; without
        negative cash, a buy the cash cannot pay is rejected. Slippage moves the price against
        the order; commission is charged on what is executed.
        """
        if len(fills) > 1:
            fills = sorted(fills, key=_sells_first)
        p = self.panel
        assert p is not None
        ledger = self.ledger
        book, position, volume = ledger.book, ledger.qty, p.volume
        fill_price, commission = self._fill_price, self._commission
        i, bar = self.i, self.bar
        signals, signal_i = self.decision_row or _NO_DECISION
        track = self.risk.active  # the risk manager keeps state per opened / closed position
        opened: list[tuple[int, float]] = []
        closed: list[int] = []
        rejected: list[tuple[Order, RejectReason]] = []
        for o, px in fills:
            a, executed = o.asset, o.qty
            held = position.item(a)
            if held == 0 or (executed > 0) == (held > 0):
                cut = 0  # the part that reduces the position held
            else:
                cut = min(executed, -held) if executed > 0 else max(executed, -held)
            if executed - cut < 0 and not self._allow_short:
                executed = cut  # long only: never open a short
                if executed == 0:
                    rejected.append((o, RejectReason.SHORT_NOT_ALLOWED))
                    continue
            if fill_price is None:
                fill = px
            else:
                side = 1 if executed > 0 else -1
                fill = fill_price(side, px, executed, volume.item(i, a))
            fee = commission(executed, fill)
            slip = abs(executed) * abs(fill - px)
            if (
                executed > 0
                and not self._allow_negative_cash
                and executed * fill + fee > ledger.cash
            ):
                rejected.append((o, RejectReason.INSUFFICIENT_CASH))
                continue
            oid, reason, rule = o.order_id, o.reason, o.rule
            if cut == 0 or cut == executed:
                event = book(
                    a, executed, fill, fee, slip, bar, oid, reason, rule, signals, signal_i
                )
            else:  # a flip: a closing and an opening fill sharing the order's costs
                for part in (cut, executed - cut):
                    share = part / executed
                    event = book(
                        a,
                        part,
                        fill,
                        fee * share,
                        slip * share,
                        bar,
                        oid,
                        reason,
                        rule,
                        signals,
                        signal_i,
                    )
                if track:
                    closed.append(a)  # by the first part; `event` is the second part's opening
            if track:
                if event > 0:
                    opened.append((a, fill))
                elif event < 0:
                    closed.append(a)
        if rejected:
            for reason_ in dict.fromkeys(r for _, r in rejected):  # first-seen order
                self.reject([o for o, r in rejected if r is reason_], reason_)
        if opened or closed:
            self.risk.on_fills(
                ctx_factory,
                np.array([a for a, _ in opened], dtype=np.int64) if opened else _NONE,
                np.array([px for _, px in opened], dtype=np.float64) if opened else _NO_PRICES,
                np.array(closed, dtype=np.int64) if closed else _NONE,
            )

    def protective_exits(self, ctx_factory: Any) -> None:
        p = self.panel
        assert p is not None
        hit = self.risk.exits(
            self.bar, self.ledger.qty, p.open[self.i], p.high[self.i], p.low[self.i]
        )
        if hit is None:
            return
        first = self.next_order_id
        n = len(hit.asset)
        self.next_order_id += n
        qty, bar = self.ledger.qty, self.bar
        exits = [
            _order((oid, a, -qty.item(a), STOP, _NAN, px, _NAN, _NAN, bar, why, rule, False))
            for oid, a, px, why, rule in zip(
                range(first, first + n), hit.asset, hit.price, hit.reason, hit.rule, strict=True
            )
        ]
        self.order_log += exits
        self.execute(list(zip(exits, hit.price, strict=True)), ctx_factory)
        if self.pending:
            self._cancel_stopped(set(hit.asset))

    def _cancel_stopped(self, assets: set[int]) -> None:
        """Working exit orders of positions a protective stop just closed are cancelled."""
        qty = self.ledger.qty
        stale = [
            o
            for o in self.pending
            if o.asset in assets
            and qty.item(o.asset) == 0
            and (o.reason != ExitReason.SIGNAL or o.qty < 0)
        ]
        if stale:
            self.reject(stale, RejectReason.STOPPED_OUT)
            gone = {o.order_id for o in stale}
            self.pending = [o for o in self.pending if o.order_id not in gone]

    def reject(self, orders: list[Order], reason: RejectReason) -> None:
        n = len(orders)
        self._record_rejections(orders, [_REJECT_CODE[reason]] * n, [-1] * n)

    def _record_rejections(self, orders: list[Order], codes: list[int], rules: list[int]) -> None:
        """One rejection row per order: its reason code and the rule that refused it (-1: none)."""
        bar = self.bar
        self.rejection_rows += [
            (bar, o.asset, o.order_id, o.qty, code, rule)
            for o, code, rule in zip(orders, codes, rules, strict=True)
        ]

    def accept_new_orders(self, ctx_factory: Any) -> None:
        """This bar's orders, after risk validation: fill now (same-close market) or queue."""
        orders, self.new_orders = self.new_orders, []
        if self.risk.validates:
            orders = self._validated(orders, ctx_factory())
        self.order_log += orders
        if self.same_close and any(o.order_type == MARKET for o in orders):
            p = self.panel
            assert p is not None
            market = [o for o in orders if o.order_type == MARKET]
            priced = self._priced(market, p.close, self.i)
            assert priced is not None
            self.execute(priced, ctx_factory)
            orders = [o for o in orders if o.order_type != MARKET]
        self.pending += orders

    def _validated(self, orders: list[Order], ctx: RiskContext) -> list[Order]:
        book = Orders.from_rows(orders)
        keep, qty, rows, reasons, rules = self.risk.validate(ctx, book)
        if rows.shape[0]:
            rejected = [orders[k] for k in rows.tolist()]
            self.order_log += rejected
            self._record_rejections(rejected, reasons.tolist(), rules.tolist())
        accepted = []
        for k, q in zip(keep.tolist(), qty[keep].tolist(), strict=True):
            o = orders[k]
            accepted.append(o if q == o.qty else o._replace(qty=q))
        return accepted


def _sells_first(item: tuple[Order, float]) -> tuple[bool, int]:
    return item[0].qty > 0, item[0].order_id


def _check_order(
    order_type: OrderType, limit: float | None, stop: float | None, trail: float | None
) -> None:
    needs = {
        OrderType.MARKET: (),
        OrderType.LIMIT: ("limit_price",),
        OrderType.STOP: ("stop_price",),
        OrderType.STOP_LIMIT: ("limit_price", "stop_price"),
        OrderType.TRAILING_STOP: ("trail_pct",),
    }[order_type]
    given = {"limit_price": limit, "stop_price": stop, "trail_pct": trail}
    missing = [k for k in needs if given[k] is None]
    if missing:
        msg = f"{order_type.label} order needs {', '.join(missing)}"
        raise ConfigError(msg)
