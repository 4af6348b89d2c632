"""Order types: the pure matching function `orders.match`, and orders placed by a strategy.

`match(orders, open, high, low)` returns (filled, price, new trail refs, triggered) and never
touches cash or positions, so each rule of its docstring is checked on a one-row order book
against one hand-written bar, then end to end through `run_backtest`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml4t_pipeline.engine import OrderType
from ml4t_pipeline.engine.execution.orders import Orders, match
from ml4t_pipeline.errors import ConfigError
from tests.engine.conftest import Order, Scripted, config, flat, panel, rows, run

NAN = math.nan


def book(*specs: dict[str, Any]) -> Orders:
    """An order book, one row per spec; unspecified columns take the broker's defaults."""
    columns: dict[str, list[Any]] = {
        "order_id": [],
        "asset": [],
        "qty": [],
        "order_type": [],
        "limit_price": [],
        "stop_price": [],
        "trail_pct": [],
        "trail_ref": [],
        "created_bar": [],
        "reason": [],
        "rule": [],
        "triggered": [],
        "tif": [],
        "expires": [],
    }
    for k, spec in enumerate(specs):
        row = {
            "order_id": k,
            "asset": k,
            "order_type": OrderType.MARKET,
            "limit_price": NAN,
            "stop_price": NAN,
            "trail_pct": NAN,
            "trail_ref": NAN,
            "created_bar": 0,
            "reason": 0,
            "rule": -1,
            "triggered": False,
            "tif": 0,
            "expires": -1,
        } | spec
        for name, values in columns.items():
            values.append(int(row[name]) if name == "order_type" else row[name])
    return Orders.from_columns(columns)


def one(spec: dict[str, Any], bar: tuple[float, float, float]) -> tuple[bool, float, float, bool]:
    """Match a single order against one (open, high, low) bar."""
    o, h, lo = bar
    filled, price, ref, triggered = match(book(spec), np.array([o]), np.array([h]), np.array([lo]))
    return bool(filled[0]), float(price[0]), float(ref[0]), bool(triggered[0])


def fill_price(spec: dict[str, Any], bar: tuple[float, float, float]) -> float | None:
    filled, price, _, _ = one(spec, bar)
    return price if filled else None


# -- market ----------------------------------------------------------------------------------
def test_market_orders_fill_at_the_open() -> None:
    assert fill_price({"qty": 10}, (100.0, 105.0, 95.0)) == 100.0
    assert fill_price({"qty": -10}, (100.0, 105.0, 95.0)) == 100.0


def test_market_order_without_a_bar_does_not_fill() -> None:
    orders = book({"qty": 10}, {"qty": -5})
    filled, _, _, _ = match(
        orders, np.array([NAN, 50.0]), np.array([NAN, 51.0]), np.array([NAN, 49.0])
    )
    assert filled.tolist() == [False, True]


def test_mixed_book_without_a_bar_fills_nothing() -> None:
    orders = book(
        {"qty": 10},
        {"qty": 10, "order_type": OrderType.LIMIT, "limit_price": 200.0},
        {"qty": -10, "order_type": OrderType.STOP, "stop_price": 200.0},
        {"qty": -10, "order_type": OrderType.TRAILING_STOP, "trail_pct": 0.1, "trail_ref": 100.0},
        {
            "qty": -10,
            "order_type": OrderType.STOP_LIMIT,
            "stop_price": 200.0,
            "limit_price": 0.0,
        },
    )
    nan = np.full(5, NAN)
    filled, _, ref, triggered = match(orders, nan, nan, nan)
    assert not filled.any()
    assert ref[3] == 100.0  # a trailing reference does not move without a bar
    assert not triggered.any()


# -- limit -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bar", "expected"),
    [
        ((100.0, 101.0, 97.0), 98.0),  # trades through the limit: fills at the limit
        ((96.0, 99.0, 95.0), 96.0),  # opens below the limit: fills at the (better) open
        ((100.0, 101.0, 98.0), 98.0),  # low touches the limit exactly
        ((100.0, 101.0, 98.5), None),  # never reaches the limit
    ],
)
def test_buy_limit_fills_at_min_open_limit_iff_low_reaches_it(
    bar: tuple[float, float, float], expected: float | None
) -> None:
    spec = {"qty": 10, "order_type": OrderType.LIMIT, "limit_price": 98.0}
    assert fill_price(spec, bar) == expected


@pytest.mark.parametrize(
    ("bar", "expected"),
    [
        ((100.0, 103.0, 99.0), 102.0),
        ((104.0, 105.0, 103.0), 104.0),  # gap above the limit: the open
        ((100.0, 102.0, 99.0), 102.0),
        ((100.0, 101.5, 99.0), None),
    ],
)
def test_sell_limit_fills_at_max_open_limit_iff_high_reaches_it(
    bar: tuple[float, float, float], expected: float | None
) -> None:
    spec = {"qty": -10, "order_type": OrderType.LIMIT, "limit_price": 102.0}
    assert fill_price(spec, bar) == expected


# -- stop ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bar", "expected"),
    [
        ((100.0, 101.0, 94.0), 95.0),  # trades through the stop: the stop
        ((93.0, 94.0, 90.0), 93.0),  # gaps below the stop: the (worse) open
        ((100.0, 101.0, 95.0), 95.0),
        ((100.0, 101.0, 95.5), None),
    ],
)
def test_sell_stop_fills_at_min_open_stop_iff_low_reaches_it(
    bar: tuple[float, float, float], expected: float | None
) -> None:
    spec = {"qty": -10, "order_type": OrderType.STOP, "stop_price": 95.0}
    assert fill_price(spec, bar) == expected


@pytest.mark.parametrize(
    ("bar", "expected"),
    [
        ((100.0, 106.0, 99.0), 105.0),
        ((107.0, 108.0, 106.0), 107.0),  # gap above the stop: the open
        ((100.0, 104.9, 99.0), None),
    ],
)
def test_buy_stop_fills_at_max_open_stop_iff_high_reaches_it(
    bar: tuple[float, float, float], expected: float | None
) -> None:
    spec = {"qty": 10, "order_type": OrderType.STOP, "stop_price": 105.0}
    assert fill_price(spec, bar) == expected


# -- stop-limit ------------------------------------------------------------------------------
SELL_STOP_LIMIT = {
    "qty": -10,
    "order_type": OrderType.STOP_LIMIT,
    "stop_price": 95.0,
    "limit_price": 94.0,
}


def test_stop_limit_untouched_stays_untriggered() -> None:
    filled, _, _, triggered = one(SELL_STOP_LIMIT, (100.0, 101.0, 96.0))
    assert (filled, triggered) == (False, False)


def test_stop_limit_fills_at_the_trigger_price_when_it_honours_the_limit() -> None:
    filled, price, _, triggered = one(SELL_STOP_LIMIT, (100.0, 101.0, 90.0))
    assert (filled, price, triggered) == (True, 95.0, True)
    # a gap below the stop but above the limit: triggered at the open, which honours the limit
    assert fill_price(SELL_STOP_LIMIT, (94.5, 96.0, 90.0)) == 94.5


def test_stop_limit_gapping_through_the_limit_keeps_working_as_a_limit() -> None:
    # opens at 93: the stop fires, but 93 < limit 94, so no fill on this bar ...
    filled, _, _, triggered = one(SELL_STOP_LIMIT, (93.0, 96.0, 92.0))
    assert (filled, triggered) == (False, True)
    # ... and on later bars it is a plain sell limit at 94
    later = SELL_STOP_LIMIT | {"triggered": True}
    assert fill_price(later, (92.0, 93.5, 91.0)) is None
    assert fill_price(later, (92.0, 95.0, 91.0)) == 94.0
    assert fill_price(later, (96.0, 97.0, 95.5)) == 96.0  # above the stop: still a limit


def test_buy_stop_limit_mirrors_the_sell_side() -> None:
    spec = {"qty": 5, "order_type": OrderType.STOP_LIMIT, "stop_price": 105.0, "limit_price": 106.0}
    assert fill_price(spec, (100.0, 105.5, 99.0)) == 105.0
    assert fill_price(spec, (105.5, 107.0, 105.0)) == 105.5
    filled, _, _, triggered = one(spec, (107.0, 108.0, 106.5))  # gap above the limit
    assert (filled, triggered) == (False, True)


# -- trailing stop ---------------------------------------------------------------------------
TRAIL_SELL = {
    "qty": -10,
    "order_type": OrderType.TRAILING_STOP,
    "trail_pct": 0.10,
    "trail_ref": 100.0,
}


def test_trailing_sell_stop_sits_pct_below_the_reference() -> None:
    assert fill_price(TRAIL_SELL, (95.0, 96.0, 89.0)) == 90.0
    assert fill_price(TRAIL_SELL, (85.0, 86.0, 80.0)) == 85.0  # gap below: the open
    assert fill_price(TRAIL_SELL, (95.0, 96.0, 90.5)) is None


def test_trailing_reference_follows_the_highest_high_and_only_tightens() -> None:
    path = [(101.0, 110.0, 100.0), (108.0, 109.0, 100.0), (104.0, 120.0, 103.0)]
    refs = []
    order = book(TRAIL_SELL)
    for o, h, lo in path:
        filled, _, ref, _ = match(order, np.array([o]), np.array([h]), np.array([lo]))
        assert not filled[0]
        order.trail_ref = ref
        refs.append(float(ref[0]))
    assert refs == [110.0, 110.0, 120.0]
    # level is now 108: a bar down to 107 fills at 108
    assert fill_price(TRAIL_SELL | {"trail_ref": refs[-1]}, (115.0, 116.0, 107.0)) == 108.0


def test_trailing_buy_stop_follows_the_lowest_low() -> None:
    spec = {"qty": 10, "order_type": OrderType.TRAILING_STOP, "trail_pct": 0.05, "trail_ref": 100.0}
    filled, _, ref, _ = one(spec, (98.0, 99.0, 90.0))
    assert (filled, ref) == (False, 90.0)
    # level 94.5 after the new low
    assert fill_price(spec | {"trail_ref": 90.0}, (93.0, 95.0, 92.0)) == 94.5
    assert fill_price(spec | {"trail_ref": 90.0}, (96.0, 97.0, 95.0)) == 96.0  # gap above


def test_match_is_pure() -> None:
    orders = book(
        TRAIL_SELL,
        SELL_STOP_LIMIT,
        {"qty": 3, "order_type": OrderType.LIMIT, "limit_price": 99.0},
    )
    before = {k: np.copy(v) for k, v in orders.to_columns().items()}
    bar = np.array([93.0, 93.0, 93.0]), np.array([130.0, 96.0, 96.0]), np.array([92.0, 92.0, 92.0])
    first = match(orders, *bar)
    second = match(orders, *bar)
    for key, values in orders.to_columns().items():
        np.testing.assert_array_equal(np.asarray(values), before[key])
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


# -- properties ------------------------------------------------------------------------------
prices = st.floats(50.0, 150.0, allow_nan=False).map(lambda x: round(x, 2))


@st.composite
def bars_and_orders(draw: st.DrawFn) -> tuple[tuple[float, float, float], dict[str, Any]]:
    a, b, c = sorted(draw(st.lists(prices, min_size=3, max_size=3)))
    o = draw(st.sampled_from([a, b, c]))
    kind = draw(st.sampled_from(list(OrderType)))
    qty = draw(st.sampled_from([-7, 7]))
    spec: dict[str, Any] = {"qty": qty, "order_type": kind}
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        spec["limit_price"] = draw(prices)
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
        spec["stop_price"] = draw(prices)
    if kind is OrderType.STOP_LIMIT:
        spec["triggered"] = draw(st.booleans())
    if kind is OrderType.TRAILING_STOP:
        spec["trail_pct"] = draw(st.sampled_from([0.01, 0.05, 0.2]))
        spec["trail_ref"] = draw(prices)
    return (o, c, a), spec


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(case=bars_and_orders())
def test_every_fill_is_inside_the_bar_and_honours_its_limit(
    case: tuple[tuple[float, float, float], dict[str, Any]],
) -> None:
    (o, h, lo), spec = case
    filled, price, ref, _ = one(spec, (o, h, lo))
    kind, buy = spec["order_type"], spec["qty"] > 0
    if filled:
        assert lo <= price <= h
        if kind is OrderType.LIMIT or kind is OrderType.STOP_LIMIT:
            limit = spec["limit_price"]
            assert price <= limit if buy else price >= limit
        if kind is OrderType.STOP:
            stop = spec["stop_price"]
            assert price == (max(o, stop) if buy else min(o, stop))
    else:
        assert kind is not OrderType.MARKET
    if kind is OrderType.TRAILING_STOP and not filled:
        old = spec["trail_ref"]
        assert ref == (min(old, lo) if buy else max(old, h))


# -- through the engine ------------------------------------------------------------------------
PATH = [
    flat(100.0),
    (100.0, 101.0, 99.0, 100.0),
    (99.0, 100.0, 97.0, 98.0),
    (98.0, 99.0, 96.0, 97.0),
    (97.0, 103.0, 96.0, 102.0),
    (102.0, 110.0, 101.0, 109.0),
    (108.0, 109.0, 100.0, 101.0),
    flat(100.0),
]


def test_strategy_limit_stop_limit_and_trailing_orders(tmp_path: Path) -> None:
    strategy = Scripted(
        {
            # a GTC buy limit: works over bars 1-2 (lows 99, 97), fills on bar 3 (low 96)
            0: [Order(asset="A", qty=10, order_type=OrderType.LIMIT, limit_price=96.5)],
            # a sell stop-limit whose stop is already above the market: triggers on bar 4 at
            # the open 97 < limit 105, so it waits as a limit and fills on bar 5 at 105
            3: [
                Order(
                    asset="A",
                    qty=-6,
                    order_type=OrderType.STOP_LIMIT,
                    stop_price=106.0,
                    limit_price=105.0,
                ),
                # trails from the close of bar 3 (97), then highs 103 and 110: level 104.5
                Order(asset="A", qty=-4, order_type=OrderType.TRAILING_STOP, trail_pct=0.05),
            ],
        }
    )
    result = run(config(tmp_path), strategy, panel(A=PATH), tmp_path / "out")
    assert rows(result.fills, "bar", "side", "qty", "price", "order_id") == [
        (3, "buy", 10, 96.5, 0),
        (5, "sell", 6, 105.0, 1),
        (6, "sell", 4, 104.5, 2),
    ]
    assert rows(result.orders, "order_id", "order_type", "status") == [
        (0, "limit", "filled"),
        (1, "stop_limit", "filled"),
        (2, "trailing_stop", "filled"),
    ]
    assert strategy.seen.position[(2, "A")] == 0
    assert strategy.seen.position[(3, "A")] == 10


def test_strategy_stop_orders_fill_gap_aware(tmp_path: Path) -> None:
    strategy = Scripted(
        {
            0: [Order(asset="A", qty=10)],
            # a protective sell stop at 98.5: bar 2 trades through it (open 99, low 97)
            1: [Order(asset="A", qty=-10, order_type=OrderType.STOP, stop_price=98.5)],
            # a buy stop at 103: bar 5 gaps up to 102 then trades to 110 -> 103
            4: [Order(asset="A", qty=3, order_type=OrderType.STOP, stop_price=103.0)],
        }
    )
    result = run(config(tmp_path), strategy, panel(A=PATH), tmp_path / "out")
    assert rows(result.fills, "bar", "side", "qty", "price") == [
        (1, "buy", 10, 100.0),
        (2, "sell", 10, 98.5),
        (5, "buy", 3, 103.0),
    ]


def test_unfilled_working_order_stays_open_to_the_end(tmp_path: Path) -> None:
    strategy = Scripted(
        {0: [Order(asset="A", qty=10, order_type=OrderType.LIMIT, limit_price=90.0)]}
    )
    result = run(config(tmp_path), strategy, panel(A=PATH), tmp_path / "out")
    assert result.fills.height == 0
    assert result.rejections.height == 0
    assert rows(result.orders, "order_id", "order_type", "status") == [(0, "limit", "open")]
    assert result.final_state.pending["order_id"] == [0]


def test_limit_order_waits_over_a_missing_bar(tmp_path: Path) -> None:
    # B keeps bar 1 on the calendar; A has no bar there
    prices = panel(A=[flat(100.0), None, (99.0, 99.0, 95.0, 96.0), flat(96.0)], B=[flat(5.0)] * 4)
    strategy = Scripted(
        {0: [Order(asset="A", qty=10, order_type=OrderType.LIMIT, limit_price=97.0)]}
    )
    result = run(config(tmp_path), strategy, prices, tmp_path / "out")
    assert rows(result.fills, "bar", "qty", "price") == [(2, 10, 97.0)]
    assert result.rejections.height == 0


@pytest.mark.parametrize(
    ("order_type", "missing"),
    [
        (OrderType.LIMIT, "limit_price"),
        (OrderType.STOP, "stop_price"),
        (OrderType.STOP_LIMIT, "limit_price, stop_price"),
        (OrderType.TRAILING_STOP, "trail_pct"),
    ],
)
def test_order_without_its_price_is_a_config_error(
    tmp_path: Path, order_type: OrderType, missing: str
) -> None:
    strategy = Scripted({0: [Order(asset="A", qty=1, order_type=order_type)]})
    with pytest.raises(ConfigError, match=f"{order_type.label} order needs {missing}"):
        run(config(tmp_path), strategy, panel(A=PATH), tmp_path / "out")
