"""Orders as rows (`Order`) and as columns (`Orders`), and the pure matching function.

`match` is a pure function of (orders, bar) -> (filled mask, fill price, new trailing
reference): it never touches cash or positions, which makes it trivial to property-test.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ml4t_pipeline.engine.enums import OrderReason, OrderType
from ml4t_pipeline.errors import ConfigError


class Order(NamedTuple):
    """One order as plain Python values: what the broker keeps while orders are few.

    Built by field name (`Order(order_id=..., asset=..., ...)`); `ORDER_DTYPE`, the record
    layout of `Orders`, is derived from these fields, so the two cannot disagree.
    """

    order_id: int
    asset: int  # array position of the asset in the run
    qty: int  # signed: + buy, - sell
    order_type: int  # OrderType
    limit_price: float  # NaN unless a limit / stop-limit order
    stop_price: float  # NaN unless a stop / stop-limit order (or a protective exit's level)
    trail_pct: float  # NaN unless a trailing stop
    trail_ref: float  # extreme price since submission (trailing stops)
    created_bar: int
    reason: int  # OrderReason: who created it and why
    rule: int  # index of the risk rule that created it, -1 = the strategy
    triggered: bool  # a stop-limit whose stop has fired (now a limit order)
    tif: int  # time in force: GTC, DAY or BARS (`parse_time_in_force`)
    expires: int  # BARS: the last bar it may fill at; DAY: the UTC day it may fill on (-1 = not
    #              yet working: set at the first bar it meets); GTC: -1


_FIELD_DTYPES: dict[str, Any] = {
    "order_id": np.int64,
    "asset": np.int64,
    "qty": np.int64,
    "order_type": np.int8,
    "limit_price": np.float64,
    "stop_price": np.float64,
    "trail_pct": np.float64,
    "trail_ref": np.float64,
    "created_bar": np.int64,
    "reason": np.int8,
    "rule": np.int16,
    "triggered": np.bool_,
    "tif": np.int8,
    "expires": np.int64,
}
ORDER_DTYPE = np.dtype([(name, _FIELD_DTYPES[name]) for name in Order._fields])
#: The most shares an order may ask for: int64 arithmetic never wraps below it, and float64
#: holds every such count exactly. Sizing beyond it is an error, never a wrapped quantity.
MAX_QTY = 2**53
_ROWWISE = 200  # up to this many orders, `Orders.from_rows` converts row by row
# plain ints for array comparisons (comparing an array with an IntEnum member is slow)
MARKET, LIMIT, STOP, STOP_LIMIT, TRAILING_STOP = (int(t) for t in OrderType)
SIGNAL = int(OrderReason.SIGNAL)  # the `reason` of a strategy's own order
GTC, DAY, BARS = 0, 1, 2  # `Order.tif`: good till cancelled, one trading day, N bars
#: The fields every order the engine itself makes shares: a plain, never-triggered GTC order.
ENGINE_ORDER = {"triggered": False, "tif": GTC, "expires": -1}


class OpenOrder(NamedTuple):
    """What a strategy is shown of one of its open orders (`Strategy.open_orders`)."""

    order_id: int
    asset_id: Any
    qty: int  # signed: + buy, - sell; what is left to fill
    order_type: OrderType
    limit_price: float | None
    stop_price: float | None
    trail_pct: float | None
    created_bar: int
    time_in_force: str  # "gtc", "day" or "bars=N"


def open_order(order: Order, asset_id: Any) -> OpenOrder:
    def given(value: float) -> float | None:
        return None if value != value else value  # NaN = not an order of that type

    if order.tif == BARS:
        tif = f"bars={order.expires - order.created_bar}"
    else:
        tif = "day" if order.tif == DAY else "gtc"
    return OpenOrder(
        order_id=order.order_id,
        asset_id=asset_id,
        qty=order.qty,
        order_type=OrderType(order.order_type),
        limit_price=given(order.limit_price),
        stop_price=given(order.stop_price),
        trail_pct=given(order.trail_pct),
        created_bar=order.created_bar,
        time_in_force=tif,
    )


def split_expired(orders: list[Order], bar: int, today: int) -> tuple[list[Order], list[Order]]:
    """(still working, expired) of `orders` at the start of `bar`, whose UTC day is `today`:
    a `bars=N` order expires after its N-th bar, a `day` order once a bar of a later UTC date
    comes (a day order meeting its first bar takes that bar's date as its day)."""
    kept, expired = [], []
    for o in orders:
        if o.tif == DAY:
            if o.expires < 0:
                o = o._replace(expires=today)
            elif today > o.expires:
                expired.append(o)
                continue
        elif o.tif == BARS and bar > o.expires:
            expired.append(o)
            continue
        kept.append(o)
    return kept, expired


def parse_time_in_force(value: str, bar: int) -> tuple[int, int]:
    """`time_in_force` of an order placed at the close of `bar` -> (`tif`, `expires`).

    "gtc": until it fills or is cancelled; "day": on the first trading day (UTC date) it
    meets, the date of the next bar; "bars=N" (N >= 1): at the next N bars at most.
    """
    if value == "gtc":
        return GTC, -1
    if value == "day":
        return DAY, -1
    count = value.removeprefix("bars=") if isinstance(value, str) else ""
    if count != value and count.isdigit() and int(count) >= 1:
        return BARS, bar + int(count)
    msg = f"time_in_force must be 'gtc', 'day' or 'bars=N' with N >= 1, got {value!r}"
    raise ConfigError(msg)


#: `Order(order_id=..., ...)` by field name without the dict a keyword call of a tuple class
#: builds (the broker makes an order per decision): the record's own generated `__new__`.
new_order = functools.partial(Order.__new__, Order)


_from_values = functools.partial(tuple.__new__, Order)  # values in `Order._fields` order


def orders_from_columns(columns: Mapping[str, Iterable[Any]]) -> list[Order]:
    """Orders from one iterable per field, given by field name (every field, equal lengths).

    The values are lined up in `Order._fields` order here, from the names, so no caller
    writes a position; for a batch this is a C-level step per order, not a Python call.
    """
    lined_up = zip(*(columns[name] for name in Order._fields), strict=True)
    return list(map(_from_values, lined_up))


class _Field:
    """One column of the order record array, read and written as a plain ndarray."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Orders, objtype: type | None = None) -> np.ndarray:
        return obj.rec[self.name]

    def __set__(self, obj: Orders, value: np.ndarray) -> None:
        obj.rec[self.name] = value


class Orders:
    """A set of orders: one numpy record array, one row per order (vectorbt-style records)."""

    __slots__ = ("rec",)

    order_id = _Field()
    asset = _Field()
    qty = _Field()  # signed: + buy, - sell
    order_type = _Field()
    limit_price = _Field()
    stop_price = _Field()
    trail_pct = _Field()
    trail_ref = _Field()
    created_bar = _Field()
    reason = _Field()
    rule = _Field()
    triggered = _Field()
    tif = _Field()
    expires = _Field()

    def __init__(self, rec: np.ndarray) -> None:
        self.rec = rec

    @classmethod
    def from_columns(cls, columns: dict[str, Any]) -> Orders:
        rec = np.empty(len(columns["order_id"]), dtype=ORDER_DTYPE)
        for name in Order._fields:
            rec[name] = columns[name]
        return cls(rec)

    def __len__(self) -> int:
        return int(self.rec.shape[0])

    def take(self, index: np.ndarray) -> Orders:
        return Orders(self.rec[index])

    @classmethod
    def from_rows(cls, rows: Sequence[Order]) -> Orders:
        n = len(rows)
        if n <= _ROWWISE:  # a bar's orders: one conversion is cheapest
            return cls(np.array(rows, dtype=ORDER_DTYPE) if rows else np.empty(0, ORDER_DTYPE))
        rec = np.empty(n, ORDER_DTYPE)  # a run's order log: column by column is faster
        for name, values in zip(Order._fields, zip(*rows, strict=True), strict=True):
            rec[name] = np.fromiter(values, dtype=ORDER_DTYPE[name], count=n)
        return cls(rec)

    def rows(self) -> list[Order]:
        return orders_from_columns({name: self.rec[name].tolist() for name in Order._fields})

    def to_columns(self) -> dict[str, list[Any]]:
        return {name: self.rec[name].tolist() for name in Order._fields}


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
    if not (kind != MARKET).any():  # all market orders: fill at the open where there is a bar
        return has_bar, open_, orders.trail_ref, orders.triggered
    n = len(orders)
    price = np.full(n, np.nan)
    buy = orders.qty > 0
    trail_ref = orders.trail_ref.copy()

    market = kind == MARKET
    price[market] = open_[market]

    lim = (kind == LIMIT) | ((kind == STOP_LIMIT) & orders.triggered)
    lp = orders.limit_price
    buy_lim = lim & buy & (low <= lp)
    sell_lim = lim & ~buy & (high >= lp)
    price[buy_lim] = np.minimum(open_[buy_lim], lp[buy_lim])
    price[sell_lim] = np.maximum(open_[sell_lim], lp[sell_lim])

    trailing = kind == TRAILING_STOP
    stop_level = orders.stop_price.copy()
    stop_level[trailing & ~buy] = trail_ref[trailing & ~buy] * (
        1.0 - orders.trail_pct[trailing & ~buy]
    )
    stop_level[trailing & buy] = trail_ref[trailing & buy] * (
        1.0 + orders.trail_pct[trailing & buy]
    )
    stops = (kind == STOP) | trailing
    sell_stop = stops & ~buy & (low <= stop_level)
    buy_stop = stops & buy & (high >= stop_level)
    price[sell_stop] = np.minimum(open_[sell_stop], stop_level[sell_stop])
    price[buy_stop] = np.maximum(open_[buy_stop], stop_level[buy_stop])

    stop_limit = (kind == STOP_LIMIT) & ~orders.triggered
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
