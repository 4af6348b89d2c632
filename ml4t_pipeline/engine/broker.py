"""The broker: takes orders, matches them against bars, and books fills through the ledger.

It keeps the order book and the run's records (fills, orders, rejections) as columnar chunks.
Cash and positions are written only by `Ledger.apply`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml4t_pipeline.engine.costs import CommissionModel, SlippageModel
from ml4t_pipeline.engine.data import Panel
from ml4t_pipeline.engine.enums import ExitReason, OrderType, RejectReason
from ml4t_pipeline.engine.ledger import Ledger
from ml4t_pipeline.engine.orders import MARKET, OrderBuffer, Orders, match
from ml4t_pipeline.engine.risk import REJECT_BY_CODE, RiskContext, RiskManager
from ml4t_pipeline.errors import ConfigError

_REJECT_CODE = {r: i for i, r in enumerate(REJECT_BY_CODE)}


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerSettings:
    commission: CommissionModel
    slippage: SlippageModel
    same_close: bool
    allow_short: bool
    allow_negative_cash: bool


class Broker:
    def __init__(
        self,
        *,
        settings: BrokerSettings,
        ledger: Ledger,
        risk: RiskManager,
        assets: np.ndarray,
        pending: Orders,
        next_order_id: int,
        last_close: np.ndarray,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.risk = risk
        self.assets = assets
        self.n_assets = int(assets.shape[0])
        self._index = {a: i for i, a in enumerate(assets.tolist())}
        self.pending = pending
        self.next_order_id = next_order_id
        self.last_close = last_close
        # signal arrays (bars, assets) and the row of the last close: what decisions saw
        self.decision_row: tuple[dict[str, np.ndarray], int] | None = None
        self.panel: Panel | None = None
        self.i = 0  # bar within the panel
        self.bar = 0  # global bar index
        self._new = OrderBuffer()
        self.fill_rows: list[tuple[int, int, int, float, float, float, int, int, int]] = []
        self.order_chunks: list[Orders] = []
        self.rejection_chunks: list[dict[str, np.ndarray]] = []

    # -- lookups -----------------------------------------------------------------------------
    def index(self, asset: Any) -> int:
        try:
            return self._index[asset]
        except KeyError:
            msg = f"unknown asset_id {asset!r}: not in this run's price data"
            raise ConfigError(msg) from None

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
        reason: ExitReason = ExitReason.SIGNAL,
        rule: int = -1,
    ) -> int | None:
        if qty == 0:
            return None
        if order_type is not OrderType.MARKET:
            _check_order(order_type, limit_price, stop_price, trail_pct)
        oid = self.next_order_id
        self.next_order_id += 1
        ref = float(self.last_close[asset]) if order_type is OrderType.TRAILING_STOP else math.nan
        self._new.append(
            (
                oid,
                asset,
                qty,
                int(order_type),
                math.nan if limit_price is None else float(limit_price),
                math.nan if stop_price is None else float(stop_price),
                math.nan if trail_pct is None else float(trail_pct),
                ref,
                self.bar,
                int(reason),
                rule,
                False,
            )
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
        assets = np.flatnonzero(delta)
        self.submit_many(assets, delta[assets])
        return int(assets.shape[0])

    def submit_many(
        self,
        assets: np.ndarray,
        qty: np.ndarray,
        reason: ExitReason = ExitReason.SIGNAL,
        rule: np.ndarray | None = None,
    ) -> None:
        n = int(assets.shape[0])
        if n == 0:
            return
        self._flush_new()
        ids = np.arange(self.next_order_id, self.next_order_id + n, dtype=np.int64)
        self.next_order_id += n
        self._staged.append(
            Orders.build(
                order_id=ids,
                asset=assets.astype(np.int64),
                qty=qty.astype(np.int64),
                order_type=np.zeros(n, np.int8),
                limit_price=np.full(n, np.nan),
                stop_price=np.full(n, np.nan),
                trail_pct=np.full(n, np.nan),
                trail_ref=np.full(n, np.nan),
                created_bar=np.full(n, self.bar, np.int64),
                reason=np.full(n, int(reason), np.int8),
                rule=(np.full(n, -1, np.int16) if rule is None else rule.astype(np.int16)),
                triggered=np.zeros(n, bool),
            )
        )

    _staged: list[Orders]

    def begin_bar(self) -> None:
        self._staged = []

    def _flush_new(self) -> None:
        if self._new.size:
            self._staged.append(self._new.drain())

    def drop_new_orders(self, assets: np.ndarray) -> None:
        """Forget this bar's orders that reduce the position of `assets`: a risk exit replaces them.

        Orders adding to the position stay and meet the risk rules like any other entry.
        """
        self._flush_new()
        qty = self.ledger.qty
        kept = []
        for chunk in self._staged:
            replaced = np.isin(chunk.asset, assets) & (
                np.sign(chunk.qty) == -np.sign(qty[chunk.asset])
            )
            if replaced.any():
                gone = chunk.take(np.flatnonzero(replaced))
                self.order_chunks.append(gone)
                self.reject(gone, RejectReason.REPLACED_BY_EXIT)
            kept.append(chunk.take(np.flatnonzero(~replaced)))
        self._staged = kept
        self._staged = [chunk for chunk in self._staged if len(chunk)]

    def take_new_orders(self) -> Orders | None:
        if not self._staged and not self._new.size:
            return None
        self._flush_new()
        out = self._staged[0] if len(self._staged) == 1 else Orders.concat_all(self._staged)
        self._staged = []
        return out

    # -- matching and booking (engine side) ---------------------------------------------------
    def fill_pending(self, ctx_factory: Any) -> None:
        """Match every working order against this bar; fill sells before buys."""
        if len(self.pending) == 0:
            return
        p = self.panel
        assert p is not None
        orders = self.pending
        if len(orders) == 1 and orders.order_type[0] == MARKET:  # the event-driven common case
            price = p.open[self.i, orders.asset]
            if price[0] == price[0]:  # not NaN: the asset has a bar
                self.pending = Orders.empty()
                self.execute(orders, price, ctx_factory)
                return
        a = orders.asset
        o = p.open[self.i, a]
        filled, price, trail_ref, triggered = match(orders, o, p.high[self.i, a], p.low[self.i, a])
        no_bar = (orders.order_type == MARKET) & np.isnan(o)
        if filled.all():
            self.pending = Orders.empty()
            self.execute(orders, price, ctx_factory)
            return
        orders.trail_ref = trail_ref
        orders.triggered = triggered
        keep = ~filled & ~no_bar
        self.reject(orders.take(np.flatnonzero(no_bar)), RejectReason.NO_BAR)
        self.pending = orders.take(np.flatnonzero(keep))
        done = np.flatnonzero(filled)
        if done.shape[0]:
            self.execute(orders.take(done), price[done], ctx_factory)

    def execute(self, orders: Orders, price: np.ndarray, ctx_factory: Any) -> None:
        """Book orders at their match price: sells first, then buys, each in order-id order.

        Slippage and commission are computed for the whole batch, then each fill is one
        Python step (fills are events, not bars): a fill that would flip a position is split
        into a closing and an opening part; without shorting, the part that would open a short
        is rejected; without negative cash, a buy the cash cannot pay is rejected.
        """
        p = self.panel
        assert p is not None
        s = self.settings
        n = len(orders)
        if n > 1:
            order = np.lexsort((orders.order_id, orders.qty > 0))
            orders, price = orders.take(order), price[order]
        # split each order into the part that reduces the position and the part that opens
        # one (assets are unique within a batch, so positions are known up front)
        ledger = self.ledger
        if n == 1:  # the common event-driven case, in plain Python
            dq, pos1 = int(orders.qty[0]), int(ledger.qty[int(orders.asset[0])])
            cut = _reducing_part(pos1, dq)
            opens = dq - cut if s.allow_short or dq - cut > 0 else 0
            reduce, executed = np.array([cut]), np.array([cut + opens])
        else:
            qty, pos = orders.qty, ledger.qty[orders.asset]
            against = (pos != 0) & (np.sign(qty) != np.sign(pos))
            reduce = np.where(against, np.sign(qty) * np.minimum(np.abs(qty), np.abs(pos)), 0)
            opening = qty - reduce
            if not s.allow_short:
                opening = np.where(opening < 0, 0, opening)  # long only: never open a short
            executed = reduce + opening
        side = np.sign(executed).astype(np.float64)
        fill_price = s.slippage.fill_price(side, price, executed, p.volume[self.i, orders.asset])
        commission = s.commission.commission(executed, fill_price)  # on what is executed
        slippage = np.abs(executed) * np.abs(fill_price - price)
        opened: list[tuple[int, float]] = []
        closed: list[int] = []
        rejected: list[tuple[int, RejectReason]] = []
        row = self.decision_row
        signal_arrays = row[0] if row is not None else {}
        signal_i = row[1] if row is not None else 0
        for k, (a, dq, cut, px, fee, slip) in enumerate(
            zip(
                orders.asset.tolist(),
                executed.tolist(),
                reduce.tolist(),
                fill_price.tolist(),
                commission.tolist(),
                slippage.tolist(),
                strict=True,
            )
        ):
            if dq == 0:
                rejected.append((k, RejectReason.SHORT_NOT_ALLOWED))
                continue
            if dq > 0 and not s.allow_negative_cash and dq * px + fee > ledger.cash:
                rejected.append((k, RejectReason.INSUFFICIENT_CASH))
                continue
            oid = int(orders.order_id[k])
            reason = int(orders.reason[k])
            rule = int(orders.rule[k])
            for part in (cut, dq - cut):
                if part == 0:
                    continue
                share = part / dq
                event = ledger.book(
                    a,
                    part,
                    px,
                    fee * share,
                    slip * share,
                    self.bar,
                    reason,
                    rule,
                    signal_arrays,
                    signal_i,
                )
                self.fill_rows.append(
                    (self.bar, a, part, px, fee * share, slip * share, oid, reason, rule)
                )
                if event > 0:
                    opened.append((a, px))
                elif event < 0:
                    closed.append(a)
        if rejected:
            rows = np.array([k for k, _ in rejected], dtype=np.int64)
            for reason_code in dict.fromkeys(r for _, r in rejected):  # first-seen order
                pick = rows[[r is reason_code for _, r in rejected]]
                self.reject(orders.take(pick), reason_code)
        if self.risk.active and (opened or closed):
            self.risk.on_fills(
                ctx_factory,
                np.array([a for a, _ in opened], dtype=np.int64),
                np.array([px for _, px in opened], dtype=np.float64),
                np.array(closed, dtype=np.int64),
            )

    def protective_exits(self, ctx_factory: Any) -> None:
        p = self.panel
        assert p is not None
        hit = self.risk.exits(
            self.bar, self.ledger.qty, p.open[self.i], p.high[self.i], p.low[self.i]
        )
        if hit is None:
            return
        qty = -self.ledger.qty[hit.asset]
        n = int(hit.asset.shape[0])
        ids = np.arange(self.next_order_id, self.next_order_id + n, dtype=np.int64)
        self.next_order_id += n
        exits = Orders.build(
            order_id=ids,
            asset=hit.asset,
            qty=qty,
            order_type=np.full(n, int(OrderType.STOP), np.int8),
            limit_price=np.full(n, np.nan),
            stop_price=hit.price,
            trail_pct=np.full(n, np.nan),
            trail_ref=np.full(n, np.nan),
            created_bar=np.full(n, self.bar, np.int64),
            reason=hit.reason,
            rule=hit.rule,
            triggered=np.zeros(n, bool),
        )
        self.order_chunks.append(exits)
        self.execute(exits, hit.price, ctx_factory)
        self._cancel_stopped(hit.asset)

    def _cancel_stopped(self, assets: np.ndarray) -> None:
        """Working exit orders of positions a protective stop just closed are cancelled."""
        if len(self.pending) == 0:
            return
        flat = self.ledger.qty[self.pending.asset] == 0
        stale = (
            np.isin(self.pending.asset, assets) & flat & (self.pending.reason != ExitReason.SIGNAL)
        )
        stale |= np.isin(self.pending.asset, assets) & flat & (self.pending.qty < 0)
        if np.any(stale):
            self.reject(self.pending.take(np.flatnonzero(stale)), RejectReason.STOPPED_OUT)
            self.pending = self.pending.take(np.flatnonzero(~stale))

    def reject(self, orders: Orders, reason: RejectReason, detail: str = "") -> None:
        n = len(orders)
        if n == 0:
            return
        self.reject_rows(
            orders, np.full(n, _REJECT_CODE[reason], np.int64), np.full(n, -1, np.int64)
        )

    def reject_rows(self, orders: Orders, reasons: np.ndarray, rules: np.ndarray) -> None:
        n = len(orders)
        if n == 0:
            return
        self.rejection_chunks.append(
            {
                "bar": np.full(n, self.bar, np.int64),
                "asset": orders.asset,
                "order_id": orders.order_id,
                "qty": orders.qty,
                "reason": reasons,
                "rule": rules,
            }
        )

    def accept(self, orders: Orders, ctx_factory: Any) -> None:
        """New orders after risk validation: fill now (same-close market) or queue."""
        if self.risk.validates:
            orders = self._validated(orders, ctx_factory())
        self.order_chunks.append(orders)
        if self.settings.same_close:
            p = self.panel
            assert p is not None
            market = orders.order_type == MARKET
            if np.any(market):
                now = orders.take(np.flatnonzero(market))
                close = p.close[self.i, now.asset]
                has = ~np.isnan(close)
                self.reject(now.take(np.flatnonzero(~has)), RejectReason.NO_BAR)
                self.execute(now.take(np.flatnonzero(has)), close[has], ctx_factory)
                orders = orders.take(np.flatnonzero(~market))
        self.pending = self.pending.concat(orders)

    def _validated(self, orders: Orders, ctx: RiskContext) -> Orders:
        accepted, rows, reasons, rules = self.risk.validate(ctx, orders)
        if rows.shape[0]:
            rejected = orders.take(rows)
            self.order_chunks.append(rejected)
            self.reject_rows(rejected, reasons, rules)
        return accepted


def _reducing_part(position: int, qty: int) -> int:
    """The part of a signed order that reduces an opposite position (0 if none)."""
    if position == 0 or (qty > 0) == (position > 0):
        return 0
    return min(qty, -position) if qty > 0 else max(qty, -position)


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
