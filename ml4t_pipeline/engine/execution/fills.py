"""Fills as pure functions: (position and cash held, order, match price) -> fills or a rejection.

`fill_order` never writes anything. The broker calls it once per matched order, in booking
order, with the position and cash the fills before it left; the ledger then books what it
returns. A fill that would flip a position comes back as two fills, a closing and an opening
part, so the ledger never sees a flip.

The records are typed: `Fill` is built by field name, and `FILL_DTYPE`, the layout of the fill
columns, is derived from its fields, so the two cannot disagree. `Rejection` is the same for
an order that did not fill.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ml4t_pipeline.engine.enums import RejectReason
from ml4t_pipeline.engine.execution.costs import CommissionModel, NoSlippage, SlippageModel
from ml4t_pipeline.engine.execution.orders import LIMIT, STOP_LIMIT, Order


class Fill(NamedTuple):
    """One booked fill (never a flip: see the module docstring)."""

    bar: int  # global bar index of the fill
    asset: int
    qty: int  # signed: + bought, - sold
    price: float  # after slippage
    commission: float
    slippage: float  # cost of slippage: |qty| x |price - match price|
    order_id: int
    reason: int  # OrderReason of the order
    rule: int  # risk rule that created the order, -1 = the strategy


class Rejection(NamedTuple):
    """An order that was refused, with the quantity it asked for."""

    bar: int
    asset: int
    order_id: int
    qty: int
    reason: int  # position in REJECT_REASONS
    rule: int  # risk rule that refused it, -1 = none


#: `Fill(bar=..., ...)` by field name without the dict a keyword call of a tuple class builds
#: (the broker makes a fill per executed order): the record's own generated `__new__`.
new_fill = functools.partial(Fill.__new__, Fill)


def _dtype(fields: tuple[str, ...], floats: tuple[str, ...]) -> np.dtype[Any]:
    return np.dtype([(name, np.float64 if name in floats else np.int64) for name in fields])


FILL_DTYPE = _dtype(Fill._fields, ("price", "commission", "slippage"))
#: A `Fill` as one packed FILL_DTYPE record: `pack_fill(*fill)` (the struct follows the dtype).
pack_fill = struct.Struct(
    "<" + "".join("d" if FILL_DTYPE[n] == np.float64 else "q" for n in Fill._fields)
).pack
REJECTION_DTYPE = _dtype(Rejection._fields, ())
REJECT_REASONS = tuple(RejectReason)  # reason codes of `Rejection` and the result tables
REJECT_CODE = {reason: code for code, reason in enumerate(REJECT_REASONS)}


class FillBook:
    """Every booked fill, in booking order, as packed `FILL_DTYPE` records.

    The record layout is derived from `Fill`'s fields (`FILL_DTYPE`, and the struct format
    from it), and a fill is packed from the `Fill` itself, so a field can never land in
    another's column. Packed bytes rather than a list of `Fill` objects: a run books tens of
    thousands of fills, and a `Fill` kept per fill would stay on the garbage collector's books
    for the whole run (tuple subclasses are never untracked), and columns of Python values
    cost an append per field (both measured: 20-40 % of W4's engine time).
    """

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records = bytearray()

    def __len__(self) -> int:
        return len(self.records) // FILL_DTYPE.itemsize

    def columns(self) -> dict[str, np.ndarray]:
        """One contiguous FILL_DTYPE array per field."""
        packed = np.frombuffer(bytes(self.records), dtype=FILL_DTYPE)
        return {name: np.ascontiguousarray(packed[name]) for name in Fill._fields}


@dataclass(frozen=True, slots=True, kw_only=True)
class FillRules:
    """How an account executes: costs and what it may not do."""

    commission: CommissionModel
    slippage: SlippageModel
    allow_short: bool
    allow_negative_cash: bool
    resize_buys: bool = True  # a buy the cash cannot pay is cut to what it pays (else rejected)
    max_participation: float | None = None  # of a bar's volume an asset's fills may take

    @property
    def volume_bound(self) -> bool:
        """Fills are bounded by the bar's volume: a participation cap, or a slippage model
        priced by the share of volume taken (which cannot price a fill on no volume)."""
        return self.max_participation is not None or getattr(self.slippage, "needs_volume", False)

    @property
    def slips(self) -> bool:
        """False when fills are at their match price (no slippage model call per fill)."""
        return not isinstance(self.slippage, NoSlippage)


@dataclass(frozen=True, slots=True)
class Partial:
    """Part of an order filled: its fills, and the signed quantity that will not fill, why.
    (Not a tuple, so it is never mistaken for the plain tuple of fills.)"""

    fills: tuple[Fill, ...]
    rest: int
    reason: RejectReason


def fill_order(
    order: Order,
    match_price: float,
    held: int,
    cash: float,
    volume: float,
    bar: int,
    rules: FillRules,
    slips: bool,
) -> tuple[Fill, ...] | Partial | RejectReason:
    """The fill(s) of one matched order, or why it cannot fill.

    `held` and `cash` are what the order meets. Without shorting, the part that would open a
    short is cut (the order is rejected when nothing is left). Without negative cash, a buy
    that opens or adds to a position meets the cash: one it cannot pay, commission included,
    is cut to the whole shares the cash pays (`rules.resize_buys`) or rejected; the part that
    only covers a short always fills (it reduces risk; cash may go negative). A cut order
    returns a `Partial` naming the rest and why. Slippage moves the price against the order
    (`slips`: `rules.slips`, read once per batch), but never past a limit order's limit;
    commission is charged on what is executed. A flip is split into a closing and an opening
    fill that share the order's costs pro rata.
    """
    executed = order.qty
    if held == 0 or (executed > 0) == (held > 0):
        closing = 0  # the part that reduces the position held
    else:
        closing = min(executed, -held) if executed > 0 else max(executed, -held)
    cut = None  # why less than the order's quantity is executed
    if executed - closing < 0 and not rules.allow_short:
        executed = closing  # long only: never open a short
        if executed == 0:
            return RejectReason.SHORT_NOT_ALLOWED
        cut = RejectReason.SHORT_NOT_ALLOWED
    price = _price(order, match_price, executed, volume, rules) if slips else match_price
    fee = rules.commission.commission(executed, price)
    # only what opens or adds needs the cash: a buy that only covers a short reduces risk
    opens = executed > 0 and closing != executed
    if opens and not rules.allow_negative_cash and executed * price + fee > cash:
        if not rules.resize_buys:
            return RejectReason.INSUFFICIENT_CASH
        executed = _affordable(order, match_price, closing, executed, cash, volume, rules, slips)
        if executed == 0:
            return RejectReason.INSUFFICIENT_CASH
        cut = RejectReason.INSUFFICIENT_CASH
        price = _price(order, match_price, executed, volume, rules) if slips else match_price
        fee = rules.commission.commission(executed, price)
    slip = abs(executed) * abs(price - match_price)
    if closing == 0 or closing == executed:  # no flip: built here, one call fewer per fill
        fills: tuple[Fill, ...] = (
            new_fill(
                bar=bar,
                asset=order.asset,
                qty=executed,
                price=price,
                commission=fee,
                slippage=slip,
                order_id=order.order_id,
                reason=order.reason,
                rule=order.rule,
            ),
        )
    else:
        parts = (closing, executed - closing)
        fills = tuple(
            _fill(order, bar, part, price, fee * (part / executed), slip * (part / executed))
            for part in parts
        )
    if cut is None:
        return fills
    return Partial(fills=fills, rest=order.qty - executed, reason=cut)


def _price(order: Order, match_price: float, qty: int, volume: float, rules: FillRules) -> float:
    """The fill price of `qty` shares after slippage, never past a limit order's limit."""
    price = rules.slippage.fill_price(1 if qty > 0 else -1, match_price, qty, volume)
    if order.order_type == LIMIT or order.order_type == STOP_LIMIT:
        limit = order.limit_price
        price = min(price, limit) if qty > 0 else max(price, limit)
    return price


def _affordable(
    order: Order,
    match_price: float,
    closing: int,
    wanted: int,
    cash: float,
    volume: float,
    rules: FillRules,
    slips: bool,
) -> int:
    """The most shares of a buy of `wanted` (which the cash cannot pay) that it can, with
    slippage and commission: the largest q in [closing, wanted) with q x price + commission
    <= cash, by bisection (the cost of q shares grows with q; `closing`, the part covering a
    short, fills whatever it costs)."""

    def pays(q: int) -> bool:
        price = _price(order, match_price, q, volume, rules) if slips else match_price
        return q * price + rules.commission.commission(q, price) <= cash

    lo, hi = closing, wanted  # pays(lo) or lo is the cover; not pays(hi)
    if lo == 0 and not pays(1):
        return 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pays(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _fill(order: Order, bar: int, qty: int, price: float, fee: float, slip: float) -> Fill:
    return new_fill(
        bar=bar,
        asset=order.asset,
        qty=qty,
        price=price,
        commission=fee,
        slippage=slip,
        order_id=order.order_id,
        reason=order.reason,
        rule=order.rule,
    )


def rejection(order: Order, bar: int, reason: RejectReason, rule: int = -1) -> Rejection:
    return Rejection(
        bar=bar,
        asset=order.asset,
        order_id=order.order_id,
        qty=order.qty,
        reason=REJECT_CODE[reason],
        rule=rule,
    )


def columns(records: list[Any], dtype: np.dtype[Any]) -> dict[str, np.ndarray]:
    """Typed records (NamedTuples whose fields are `dtype`'s names) -> one array per field."""
    n = len(records)
    if n == 0:
        return {name: np.empty(0, dtype[name]) for name in dtype.names or ()}
    return {
        name: np.fromiter(values, dtype=dtype[name], count=n)
        for name, values in zip(dtype.names or (), zip(*records, strict=True), strict=True)
    }
