"""Fills as a pure function, and the typed records the broker and the ledger exchange.

`fill_order(order, match_price, held=..., cash=..., ...)` returns fills or a rejection reason
and writes nothing: each rule of its docstring is checked on hand-made inputs, and Hypothesis
checks the properties that make it safe to book what it returns (never a flip, never a short
without `allow_short`, never a buy the cash cannot pay without `allow_negative_cash`, costs
shared exactly between the parts of a flip).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml4t_pipeline.engine import RejectReason
from ml4t_pipeline.engine.execution.costs import (
    CommissionModel,
    FixedBpsSlippage,
    NoSlippage,
    PercentCommission,
    PerOrderCommission,
    PerShareCommission,
    SlippageModel,
)
from ml4t_pipeline.engine.execution.fills import (
    FILL_DTYPE,
    Fill,
    FillRules,
    Partial,
    columns,
    fill_order,
    new_fill,
)
from ml4t_pipeline.engine.execution.orders import ORDER_DTYPE, Order, new_order

NAN = math.nan


def _order(qty: int, *, order_id: int = 7, reason: int = 0, rule: int = -1) -> Order:
    return new_order(
        order_id=order_id,
        asset=3,
        qty=qty,
        order_type=0,
        limit_price=NAN,
        stop_price=NAN,
        trail_pct=NAN,
        trail_ref=NAN,
        created_bar=4,
        reason=reason,
        rule=rule,
        triggered=False,
        tif=0,
        expires=-1,
    )


def _rules(
    *,
    short: bool = False,
    negative_cash: bool = True,
    slippage: SlippageModel | None = None,
    resize: bool = True,
) -> FillRules:
    return FillRules(
        commission=PercentCommission(rate=0.001),
        slippage=slippage if slippage is not None else NoSlippage(),
        allow_short=short,
        allow_negative_cash=negative_cash,
        resize_buys=resize,
    )


def _fill(
    qty: int, held: int, *, cash: float = 1e6, rules: FillRules | None = None
) -> tuple[Fill, ...] | Partial | RejectReason:
    rules = rules if rules is not None else _rules()
    return fill_order(
        _order(qty), 100.0, held=held, cash=cash, volume=1e6, bar=5, rules=rules, slips=rules.slips
    )


def test_records_are_built_by_field_name() -> None:
    """`new_order` / `new_fill` put every value in the field its name says (a reordered
    record would fail here), and the record dtypes follow the record fields."""
    order = _order(-5, order_id=11, reason=2, rule=1)
    assert order._asdict() == {
        "order_id": 11,
        "asset": 3,
        "qty": -5,
        "order_type": 0,
        "limit_price": order.limit_price,
        "stop_price": order.stop_price,
        "trail_pct": order.trail_pct,
        "trail_ref": order.trail_ref,
        "created_bar": 4,
        "reason": 2,
        "rule": 1,
        "triggered": False,
        "tif": 0,
        "expires": -1,
    }
    fields = dict(zip(Fill._fields, range(100, 109), strict=True))
    assert new_fill(**fields)._asdict() == fields
    assert ORDER_DTYPE.names == Order._fields
    assert FILL_DTYPE.names == Fill._fields
    converted = columns([new_fill(**fields)], FILL_DTYPE)
    assert {n: v.tolist() for n, v in converted.items()} == {n: [v] for n, v in fields.items()}


def test_a_plain_fill_carries_the_order() -> None:
    result = _fill(10, 0)
    assert isinstance(result, tuple)
    (fill,) = result
    assert fill == new_fill(
        bar=5,
        asset=3,
        qty=10,
        price=100.0,
        commission=10 * 100.0 * 0.001,
        slippage=0.0,
        order_id=7,
        reason=0,
        rule=-1,
    )


def test_a_flip_is_a_closing_and_an_opening_fill_sharing_the_costs() -> None:
    result = _fill(-15, 10, rules=_rules(short=True, slippage=FixedBpsSlippage(bps=10)))
    assert isinstance(result, tuple)
    closing, opening = result
    assert (closing.qty, opening.qty) == (-10, -5)
    assert closing.price == opening.price == 100.0 * (1 - 10 * 1e-4)
    fee = 15 * closing.price * 0.001
    assert closing.commission == fee * (10 / 15)
    assert opening.commission == fee * (5 / 15)


def test_long_only_cuts_the_short_part_and_rejects_a_pure_short() -> None:
    result = _fill(-15, 10)  # sells the 10 held, not the 5 that would open a short
    assert isinstance(result, Partial)
    assert [f.qty for f in result.fills] == [-10]
    assert (result.rest, result.reason) == (-5, RejectReason.SHORT_NOT_ALLOWED)
    assert _fill(-5, 0) is RejectReason.SHORT_NOT_ALLOWED


def test_without_negative_cash_a_buy_the_cash_cannot_pay_is_cut_to_what_it_pays() -> None:
    rules = _rules(negative_cash=False)
    # 10 x 100 + 1 commission > 1,000; 9 x 100 + 0.9 fits
    result = _fill(10, 0, cash=1_000.0, rules=rules)
    assert isinstance(result, Partial)
    assert [f.qty for f in result.fills] == [9]
    assert (result.rest, result.reason) == (1, RejectReason.INSUFFICIENT_CASH)
    assert isinstance(_fill(10, 0, cash=1_001.0, rules=rules), tuple)  # 1,000 + 1 commission
    assert _fill(10, 0, cash=100.0, rules=rules) is RejectReason.INSUFFICIENT_CASH  # not one
    assert isinstance(_fill(-10, 10, cash=0.0, rules=rules), tuple)  # a sale needs no cash


def test_the_reject_policy_refuses_the_whole_buy() -> None:
    rules = _rules(negative_cash=False, resize=False)
    assert _fill(10, 0, cash=1_000.0, rules=rules) is RejectReason.INSUFFICIENT_CASH
    assert isinstance(_fill(10, 0, cash=1_001.0, rules=rules), tuple)


@pytest.mark.parametrize(
    "commission",
    [
        PercentCommission(rate=0.001),
        PerShareCommission(per_share=0.5, minimum=3.0),
        PerOrderCommission(per_order=7.0),
    ],
)
@pytest.mark.parametrize("bps", [0.0, 25.0])
def test_a_resized_buy_is_the_most_shares_the_cash_pays(
    commission: CommissionModel, bps: float
) -> None:
    slippage = FixedBpsSlippage(bps=bps) if bps else NoSlippage()
    rules = FillRules(
        commission=commission, slippage=slippage, allow_short=False, allow_negative_cash=False
    )
    cash = 12_345.67

    def cost(q: int) -> float:
        price = 100.0 * (1 + bps * 1e-4)
        return q * price + commission.commission(q, price)

    best = max(q for q in range(1, 500) if cost(q) <= cash)  # by brute force
    result = fill_order(_order(500), 100.0, 0, cash, 1e6, 5, rules, rules.slips)
    assert isinstance(result, Partial)
    (fill,) = result.fills
    assert fill.qty == best
    assert fill.qty * fill.price + fill.commission <= cash
    assert result.rest == 500 - best


def test_a_buy_that_covers_a_short_is_never_refused_for_cash() -> None:
    """Reducing risk needs no cash: the cover fills and the account may go negative."""
    rules = _rules(short=True, negative_cash=False)
    result = _fill(10, -10, cash=0.0, rules=rules)
    assert isinstance(result, tuple)
    assert [f.qty for f in result] == [10]
    # a flip: the cover fills, the opening part the cash cannot pay is cut
    flip = _fill(15, -10, cash=0.0, rules=rules)
    assert isinstance(flip, Partial)
    assert [f.qty for f in flip.fills] == [10]
    assert (flip.rest, flip.reason) == (5, RejectReason.INSUFFICIENT_CASH)
    assert _fill(
        15, -10, cash=0.0, rules=_rules(short=True, negative_cash=False, resize=False)
    ) is (RejectReason.INSUFFICIENT_CASH)


def test_slippage_never_pushes_a_limit_fill_past_its_limit() -> None:
    rules = _rules(short=True, slippage=FixedBpsSlippage(bps=50))
    for order_type in (1, 3):  # limit, stop-limit
        buy = _order(10)._replace(order_type=order_type, limit_price=100.2)
        result = fill_order(buy, 100.0, 0, 1e6, 1e6, 5, rules, rules.slips)
        assert isinstance(result, tuple)
        assert result[0].price == 100.2  # 100.5 after slippage, capped at the limit
        assert result[0].slippage == 10 * (100.2 - 100.0)
        sell = _order(-10)._replace(order_type=order_type, limit_price=99.9)
        result = fill_order(sell, 100.0, 10, 1e6, 1e6, 5, rules, rules.slips)
        assert isinstance(result, tuple)
        assert result[0].price == 99.9
    market = fill_order(_order(10), 100.0, 0, 1e6, 1e6, 5, rules, rules.slips)
    assert isinstance(market, tuple)
    assert market[0].price == 100.0 * (1 + 50 * 1e-4)  # market orders take the full slippage


@settings(max_examples=300, deadline=None)
@given(
    qty=st.integers(-1_000, 1_000).filter(bool),
    held=st.integers(-1_000, 1_000),
    cash=st.floats(-1e6, 1e6),
    short=st.booleans(),
    negative_cash=st.booleans(),
    bps=st.sampled_from([0.0, 5.0]),
)
def test_fills_never_flip_and_respect_the_account_rules(
    qty: int, held: int, cash: float, short: bool, negative_cash: bool, bps: float
) -> None:
    slippage = FixedBpsSlippage(bps=bps) if bps else None
    rules = _rules(short=short, negative_cash=negative_cash, slippage=slippage)
    outcome = _fill(qty, held, cash=cash, rules=rules)
    if isinstance(outcome, RejectReason):
        assert outcome in {RejectReason.SHORT_NOT_ALLOWED, RejectReason.INSUFFICIENT_CASH}
        return
    result = outcome.fills if isinstance(outcome, Partial) else outcome
    if isinstance(outcome, Partial):
        assert outcome.rest + sum(f.qty for f in result) == qty  # the rest is what was cut
    position = held
    for fill in result:
        after = position + fill.qty
        assert position == 0 or after == 0 or (after > 0) == (position > 0)  # no flip in a fill
        assert (fill.qty > 0) == (qty > 0)
        assert fill.commission >= 0
        assert fill.slippage >= 0
        position = after
    assert short or position >= 0 or position >= held  # long only: never opens a short
    executed = sum(f.qty for f in result)
    assert abs(executed) <= abs(qty)
    covers_only = held < 0 and held + executed <= 0  # a buy that only reduces a short
    if not negative_cash and executed > 0 and not covers_only:  # paid, with the fee charged
        price = result[0].price
        assert executed * price + abs(executed) * price * 0.001 <= cash
    total_fee = sum(f.commission for f in result)
    assert total_fee == pytest.approx(abs(executed) * result[0].price * 0.001, rel=1e-12)
