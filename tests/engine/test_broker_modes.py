"""Broker modes and costs: when and at what price orders fill, and what is refused.

Hand-computed on tiny panels: `fill_at` (next_open, same_close), orders decided at the last
bar, assets without a bar (late listing, delisting), long-only and cash limits, flips with
shorting, and every commission and slippage model of `costs.py` configured through the YAML
`execution:` section.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ml4t_pipeline.engine import OrderType, load_run_config, run_backtest
from tests.engine.conftest import Bar, Order, Scripted, col, config, flat, panel, rows, run
from tests.invariants import assert_backtest_invariants

#: Bars whose open, close and range differ, so that a price names the moment it came from.
RAMP = [(100.0 + 10 * k, 104.0 + 10 * k, 96.0 + 10 * k, 102.0 + 10 * k) for k in range(5)]


# -- fill_at ---------------------------------------------------------------------------------
def test_next_open_is_the_default(tmp_path: Path) -> None:
    strategy = Scripted({0: [Order(asset="A", qty=10)], 2: [Order(asset="A", qty=-10)]})
    result = run(config(tmp_path), strategy, panel(A=RAMP), tmp_path / "out")
    assert rows(result.fills, "bar", "side", "price") == [(1, "buy", 110.0), (3, "sell", 130.0)]
    assert strategy.seen.position[(0, "A")] == 0  # nothing fills at the deciding close
    assert strategy.seen.position[(1, "A")] == 10


def test_same_close_fills_market_orders_at_that_close(tmp_path: Path) -> None:
    strategy = Scripted(
        {
            0: [Order(asset="A", qty=10)],
            2: [Order(asset="A", qty=-4)],
            4: [Order(asset="A", qty=-6)],  # the last bar: still fills at its close
        }
    )
    cfg = config(tmp_path, fill_at="same_close")
    result = run(cfg, strategy, panel(A=RAMP), tmp_path / "out")
    assert rows(result.fills, "bar", "side", "qty", "price") == [
        (0, "buy", 10, 102.0),
        (2, "sell", 4, 122.0),
        (4, "sell", 6, 142.0),
    ]
    assert col(result.orders, "status") == ["filled"] * 3
    assert rows(result.trades, "entry_bar", "exit_bar", "exit_reason") == [(0, 4, "signal")]
    # equity at close 0 already holds the position, marked at that close
    assert result.equity["positions_value"][0] == 1020.0


def test_same_close_queues_limit_orders_for_the_next_bar(tmp_path: Path) -> None:
    strategy = Scripted(
        {0: [Order(asset="A", qty=10, order_type=OrderType.LIMIT, limit_price=105.0)]}
    )
    cfg = config(tmp_path, fill_at="same_close")
    result = run(cfg, strategy, panel(A=RAMP), tmp_path / "out")
    # bar 0's own range (96-104) cannot fill it: the order was decided at that close.
    # Bar 1 (open 110, low 106) never trades at 105; the order stays working.
    assert result.fills.height == 0
    assert col(result.orders, "status") == ["open"]


def test_same_close_market_order_without_a_bar_waits_for_the_next_one(tmp_path: Path) -> None:
    prices = panel(A=[flat(10), flat(11), flat(12)], B=[flat(5), None, flat(6)])
    strategy = Scripted({1: [Order(asset="B", qty=3)]})
    result = run(config(tmp_path, fill_at="same_close"), strategy, prices, tmp_path / "out")
    assert rows(result.fills, "bar", "asset_id", "qty", "price") == [(2, "B", 3, 6.0)]
    assert result.rejections.height == 0


def test_same_close_market_order_without_a_bar_is_rejected_by_policy(tmp_path: Path) -> None:
    prices = panel(A=[flat(10), flat(11), flat(12)], B=[flat(5), None, flat(6)])
    strategy = Scripted({1: [Order(asset="B", qty=3)]})
    cfg = config(tmp_path, fill_at="same_close", on_no_bar="reject")
    result = run(cfg, strategy, prices, tmp_path / "out")
    assert result.fills.height == 0
    assert rows(result.rejections, "asset_id", "qty", "reason") == [("B", 3, "no_bar")]


def test_orders_decided_at_the_last_bar_never_fill(tmp_path: Path) -> None:
    strategy = Scripted({0: [Order(asset="A", qty=10)], 4: [Order(asset="A", qty=-10)]})
    result = run(config(tmp_path), strategy, panel(A=RAMP), tmp_path / "out")
    assert rows(result.fills, "bar", "side") == [(1, "buy")]
    assert rows(result.orders, "order_id", "side", "status") == [
        (0, "buy", "filled"),
        (1, "sell", "open"),
    ]
    assert result.rejections.height == 0
    assert rows(result.trades, "exit_reason") == [("open",)]
    assert result.final_equity == pytest.approx(100_000.0 - 10 * 110.0 + 10 * 142.0)


# -- assets without a bar ----------------------------------------------------------------------
_LISTINGS: dict[str, list[Bar]] = {
    "A": [flat(10), flat(11), flat(12), flat(13), flat(14), flat(15)],
    "B": [None, None, flat(20), flat(21), flat(22), None],  # lists at bar 2, delists after 4
    "C": [flat(5), flat(6), None, flat(7), flat(8), flat(9)],  # one missing bar
}
_LISTING_ORDERS = {
    0: [Order(asset="B", qty=1), Order(asset="C", qty=1)],  # B has no bar 1
    1: [Order(asset="B", qty=1), Order(asset="C", qty=1)],  # C has no bar 2
    2: [Order(asset="B", qty=1)],
    4: [Order(asset="B", qty=-1)],  # B's last bar: it has no bar 5
}


def test_orders_wait_for_a_bar_and_a_delisted_position_is_closed(tmp_path: Path) -> None:
    """The defaults: `on_no_bar: wait`, `on_delist: close`."""
    result = run(config(tmp_path), Scripted(_LISTING_ORDERS), panel(**_LISTINGS), tmp_path / "o")
    assert rows(result.fills, "bar", "order_id", "asset_id", "side", "price", "reason") == [
        (1, 1, "C", "buy", 6.0, "signal"),
        (2, 0, "B", "buy", 20.0, "signal"),  # waited for B's first bar
        (2, 2, "B", "buy", 20.0, "signal"),
        (3, 3, "C", "buy", 7.0, "signal"),  # waited over C's hole
        (3, 4, "B", "buy", 21.0, "signal"),
        (4, 6, "B", "sell", 22.0, "delisted"),  # B's last close
    ]
    # the sell decided at B's last close can never fill: cancelled with the delisting
    assert rows(result.rejections, "order_id", "asset_id", "reason") == [(5, "B", "delisted")]
    assert rows(result.orders, "order_id", "status") == [
        (0, "filled"),
        (1, "filled"),
        (2, "filled"),
        (3, "filled"),
        (4, "filled"),
        (5, "cancelled"),
        (6, "filled"),
    ]
    assert col(result.equity, "cash")[-1] == 1e5 - 6 - 20 - 20 - 7 - 21 + 3 * 22
    assert col(result.equity, "positions_value") == [0.0, 6.0, 46.0, 77.0, 16.0, 18.0]
    assert rows(result.trades, "asset_id", "qty", "exit_price", "exit_reason") == [
        ("B", 3, 22.0, "delisted"),
        ("C", 2, 9.0, "open"),
    ]


def test_late_listing_and_delisting_by_policy_reject_and_hold(tmp_path: Path) -> None:
    cfg = config(tmp_path, on_no_bar="reject", on_delist="hold")
    result = run(cfg, Scripted(_LISTING_ORDERS), panel(**_LISTINGS), tmp_path / "out")
    assert rows(result.fills, "bar", "asset_id", "side", "price") == [
        (1, "C", "buy", 6.0),
        (2, "B", "buy", 20.0),
        (3, "B", "buy", 21.0),
    ]
    # a market order meeting no bar is rejected at the bar it would have filled
    assert rows(result.rejections, "order_id", "asset_id", "reason") == [
        (0, "B", "no_bar"),
        (3, "C", "no_bar"),
        (5, "B", "no_bar"),
    ]
    assert result.rejections["timestamp"].dt.day().to_list() == [2, 3, 6]
    # C is marked at its last close (6) over its missing bar 2; B at 22 after it delists
    assert col(result.equity, "cash") == [1e5, 1e5 - 6, 1e5 - 26, 1e5 - 47, 1e5 - 47, 1e5 - 47]
    assert col(result.equity, "positions_value") == [0.0, 6.0, 26.0, 49.0, 52.0, 53.0]
    assert rows(result.trades, "asset_id", "exit_price", "exit_reason") == [
        ("B", 22.0, "open"),
        ("C", 9.0, "open"),
    ]


# -- long only, cash -------------------------------------------------------------------------
def test_long_only_sell_without_a_position_is_rejected(tmp_path: Path) -> None:
    strategy = Scripted({0: [Order(asset="A", qty=-5)]})
    result = run(config(tmp_path), strategy, panel(A=RAMP), tmp_path / "out")
    assert result.fills.height == 0
    assert rows(result.rejections, "side", "qty", "reason") == [("sell", 5, "short_not_allowed")]


def test_long_only_sell_beyond_the_position_is_clipped_to_it(tmp_path: Path) -> None:
    """The fill closes the position; the 5 shares that would open a short are a rejection row
    (`short_not_allowed`), and the order, asking 15, reads "partially_filled" with 10."""
    strategy = Scripted({0: [Order(asset="A", qty=10)], 1: [Order(asset="A", qty=-15)]})
    cfg = config(tmp_path, commission_rate=0.001)
    result = run(cfg, strategy, panel(A=RAMP), tmp_path / "out")
    assert rows(result.fills, "bar", "side", "qty", "price") == [
        (1, "buy", 10, 110.0),
        (2, "sell", 10, 120.0),
    ]
    assert col(result.fills, "commission") == pytest.approx([1.1, 1.2])
    assert rows(result.orders, "qty", "filled_qty", "status") == [
        (10, 10, "filled"),
        (15, 10, "partially_filled"),
    ]
    assert rows(result.rejections, "order_id", "side", "qty", "reason") == [
        (1, "sell", 5, "short_not_allowed")
    ]
    assert rows(result.trades, "direction", "qty", "exit_reason") == [("long", 10, "signal")]


def test_clipped_sell_pays_the_full_per_order_commission(tmp_path: Path) -> None:
    strategy = Scripted({0: [Order(asset="A", qty=10)], 1: [Order(asset="A", qty=-15)]})
    cfg = config(tmp_path, commission={"model": "per_order", "per_order": 1.0})
    result = run(cfg, strategy, panel(A=RAMP), tmp_path / "out")
    assert col(result.fills, "commission") == pytest.approx([1.0, 1.0])


def test_buy_the_cash_cannot_pay_is_cut_to_what_it_pays(tmp_path: Path) -> None:
    # at bar 1's open (110): 10 x 110 + 0.1 % = 1,101.10 > 1,100; 9 x 110 + 0.99 fits, which
    # leaves 109.01: the second order (9) gets nothing
    strategy = Scripted({0: [Order(asset="A", qty=10), Order(asset="A", qty=9)]})
    cfg = config(tmp_path, initial_cash=1_100.0, allow_negative_cash=False, commission_rate=0.001)
    result = run(cfg, strategy, panel(A=RAMP), tmp_path / "out")
    assert rows(result.fills, "bar", "qty", "price", "order_id") == [(1, 9, 110.0, 0)]
    assert rows(result.rejections, "order_id", "qty", "reason") == [
        (0, 1, "insufficient_cash"),  # the rest of the resized order
        (1, 9, "insufficient_cash"),
    ]
    assert rows(result.orders, "qty", "filled_qty", "status") == [
        (10, 9, "partially_filled"),
        (9, 0, "rejected"),
    ]
    assert result.equity["cash"][-1] == pytest.approx(1_100.0 - 990.0 - 0.99)


def test_buy_the_cash_cannot_pay_is_rejected_by_policy(tmp_path: Path) -> None:
    # at bar 1's open (110): 10 x 110 + 0.1 % = 1,101.10 > 1,100; then 9 x 110 + 0.99 fits
    strategy = Scripted({0: [Order(asset="A", qty=10), Order(asset="A", qty=9)]})
    cfg = config(
        tmp_path,
        initial_cash=1_100.0,
        allow_negative_cash=False,
        commission_rate=0.001,
        on_insufficient_cash="reject",
    )
    result = run(cfg, strategy, panel(A=RAMP), tmp_path / "out")
    assert rows(result.rejections, "order_id", "qty", "reason") == [(0, 10, "insufficient_cash")]
    assert rows(result.fills, "bar", "qty", "price", "order_id") == [(1, 9, 110.0, 1)]
    assert result.equity["cash"][-1] == pytest.approx(1_100.0 - 990.0 - 0.99)


def test_sells_fill_before_buys_so_their_proceeds_pay_for_the_buys(tmp_path: Path) -> None:
    prices = panel(A=[flat(100)] * 4, B=[flat(50)] * 4)
    strategy = Scripted(
        {
            0: [Order(asset="A", qty=10)],  # all the cash
            # submitted buy first: the broker still books the sell first
            1: [Order(asset="B", qty=20), Order(asset="A", qty=-10)],
        }
    )
    cfg = config(tmp_path, initial_cash=1_000.0, allow_negative_cash=False)
    result = run(cfg, strategy, prices, tmp_path / "out")
    assert rows(result.fills, "bar", "asset_id", "side", "order_id") == [
        (1, "A", "buy", 0),
        (2, "A", "sell", 2),
        (2, "B", "buy", 1),
    ]
    assert result.rejections.height == 0
    assert col(result.equity, "cash") == [1_000.0, 0.0, 0.0, 0.0]


def test_negative_cash_allowed_lets_buys_through(tmp_path: Path) -> None:
    strategy = Scripted({0: [Order(asset="A", qty=20)]})
    cfg = config(tmp_path, initial_cash=1_000.0, allow_negative_cash=True)
    result = run(cfg, strategy, panel(A=RAMP), tmp_path / "out")
    assert col(result.fills, "qty") == [20]
    assert result.equity["cash"][-1] == 1_000.0 - 20 * 110.0


def test_two_sells_of_one_position_in_one_batch_never_open_a_short(tmp_path: Path) -> None:
    """Each fill sees the position the fills before it left: the second sell finds it flat."""
    strategy = Scripted(
        {0: [Order(asset="A", qty=10)], 1: [Order(asset="A", qty=-10), Order(asset="A", qty=-10)]}
    )
    result = run(config(tmp_path), strategy, panel(A=RAMP), tmp_path / "out")
    assert rows(result.fills, "bar", "side", "qty", "order_id") == [
        (1, "buy", 10, 0),
        (2, "sell", 10, 1),
    ]
    assert rows(result.rejections, "order_id", "qty", "reason") == [(2, 10, "short_not_allowed")]
    assert result.equity["positions_value"][-1] == 0.0


def test_a_buy_after_a_sell_of_the_same_asset_in_one_batch_sees_the_short(
    tmp_path: Path,
) -> None:
    strategy = Scripted({0: [Order(asset="A", qty=-10), Order(asset="A", qty=25)]})
    cfg = config(tmp_path, allow_short=True, allow_negative_cash=True)
    result = run(cfg, strategy, panel(A=RAMP), tmp_path / "out")
    # the sell opens a short of 10; the buy covers it and opens a long of 15 (two fills)
    assert rows(result.fills, "side", "qty", "order_id") == [
        ("sell", 10, 0),
        ("buy", 10, 1),
        ("buy", 15, 1),
    ]
    assert rows(result.trades, "direction", "qty", "exit_reason") == [
        ("short", 10, "signal"),
        ("long", 15, "open"),
    ]


def test_trades_are_ordered_by_exit_bar_then_asset_closed_before_open(tmp_path: Path) -> None:
    """At the last bar A's short is covered and a long opened (still open: its exit bar is the
    last bar too), and B's long closes. Same exit bar: by asset, and A's closed trade first."""
    strategy = Scripted(
        {
            0: [Order(asset="B", qty=5), Order(asset="A", qty=-10)],
            3: [Order(asset="B", qty=-5), Order(asset="A", qty=25)],
        }
    )
    cfg = config(tmp_path, allow_short=True, allow_negative_cash=True)
    result = run(cfg, strategy, panel(A=RAMP, B=RAMP), tmp_path / "out")
    assert rows(result.trades, "asset_id", "direction", "exit_bar", "exit_reason") == [
        ("A", "short", 4, "signal"),
        ("A", "long", 4, "open"),
        ("B", "long", 4, "signal"),
    ]


# -- shorting --------------------------------------------------------------------------------
def test_flip_is_split_into_a_closing_and_an_opening_fill(tmp_path: Path) -> None:
    prices = panel(A=[flat(100), flat(100), flat(110), flat(105), flat(100), flat(100)])
    strategy = Scripted(
        {
            0: [Order(asset="A", qty=10)],
            2: [Order(asset="A", qty=-25)],
            4: [Order(asset="A", qty=15)],
        }
    )
    cfg = config(tmp_path, allow_short=True, commission_rate=0.001)
    result = run(cfg, strategy, prices, tmp_path / "out")
    assert rows(result.fills, "bar", "side", "qty", "price", "order_id") == [
        (1, "buy", 10, 100.0, 0),
        (3, "sell", 10, 105.0, 1),  # closes the long ...
        (3, "sell", 15, 105.0, 1),  # ... and opens the short, same order
        (5, "buy", 15, 100.0, 2),
    ]
    # the order's commission (25 x 105 x 0.1 % = 2.625) is shared by quantity
    assert col(result.fills, "commission") == pytest.approx([1.0, 1.05, 1.575, 1.5])
    assert rows(result.trades, "direction", "entry_bar", "exit_bar", "qty") == [
        ("long", 1, 3, 10),
        ("short", 3, 5, 15),
    ]
    assert col(result.trades, "pnl") == pytest.approx([50.0 - 2.05, 75.0 - 3.075])


def test_without_shorting_a_flip_only_closes(tmp_path: Path) -> None:
    prices = panel(A=[flat(100), flat(100), flat(110), flat(105)])
    strategy = Scripted({0: [Order(asset="A", qty=10)], 2: [Order(asset="A", qty=-25)]})
    result = run(config(tmp_path), strategy, prices, tmp_path / "out")
    assert rows(result.fills, "bar", "side", "qty") == [(1, "buy", 10), (3, "sell", 10)]
    assert rows(result.trades, "direction") == [("long",)]


# -- costs -----------------------------------------------------------------------------------
def costs_run(tmp_path: Path, qty: int = 10, **execution: Any) -> tuple[list[float], list[float]]:
    """Buy `qty` at bar 1's open (110) and sell them at bar 3's open (130): prices, commissions."""
    strategy = Scripted({0: [Order(asset="A", qty=qty)], 2: [Order(asset="A", qty=-qty)]})
    result = run(config(tmp_path, **execution), strategy, panel(A=RAMP), tmp_path / "out")
    assert rows(result.fills, "bar", "side", "qty") == [(1, "buy", qty), (3, "sell", qty)]
    return col(result.fills, "price"), col(result.fills, "commission")


@pytest.mark.parametrize(
    "execution",
    [{"commission_rate": 0.002}, {"commission": {"model": "percent", "rate": 0.002}}],
    ids=["commission_rate", "percent"],
)
def test_percent_commission(tmp_path: Path, execution: dict[str, Any]) -> None:
    prices, commission = costs_run(tmp_path, **execution)
    assert prices == [110.0, 130.0]
    assert commission == pytest.approx([2.2, 2.6])


@pytest.mark.parametrize(("qty", "expected"), [(10, [1.0, 1.0]), (500, [5.0, 5.0])])
def test_per_share_commission_with_minimum(tmp_path: Path, qty: int, expected: list[float]) -> None:
    _, commission = costs_run(
        tmp_path, qty, commission={"model": "per_share", "per_share": 0.01, "minimum": 1.0}
    )
    assert commission == pytest.approx(expected)


def test_per_order_commission(tmp_path: Path) -> None:
    _, commission = costs_run(tmp_path, commission={"model": "per_order", "per_order": 2.5})
    assert commission == [2.5, 2.5]


@pytest.mark.parametrize(
    ("qty", "expected"),
    [
        (10, [1_100 * 0.002, 1_300 * 0.002]),  # both under 5,000
        (40, [4_400 * 0.002, 5_200 * 0.001]),  # the sell crosses into the second tier
        (50, [5_500 * 0.001, 6_500 * 0.001]),
    ],
)
def test_tiered_commission_uses_the_highest_tier_reached(
    tmp_path: Path, qty: int, expected: list[float]
) -> None:
    tiers = {"model": "tiered", "tiers": [[0, 0.002], [5_000, 0.001]]}
    _, commission = costs_run(tmp_path, qty, commission=tiers)
    assert commission == pytest.approx(expected)


def test_tier_threshold_is_inclusive(tmp_path: Path) -> None:
    # 50 x 100 = 5,000 exactly: the second tier's rate
    strategy = Scripted({0: [Order(asset="A", qty=50)]})
    cfg = config(tmp_path, commission={"model": "tiered", "tiers": [[0, 0.002], [5_000, 0.001]]})
    result = run(cfg, strategy, panel(A=[flat(100)] * 3), tmp_path / "out")
    assert col(result.fills, "commission") == pytest.approx([5.0])


@pytest.mark.parametrize(
    ("slippage", "buy", "sell"),
    [
        ({"model": "fixed_bps", "bps": 10}, 110 * 1.001, 130 * 0.999),
        ({"model": "spread", "spread": 0.01}, 110 * 1.005, 130 * 0.995),
    ],
)
def test_price_slippage_moves_fills_against_the_trader(
    tmp_path: Path, slippage: dict[str, Any], buy: float, sell: float
) -> None:
    strategy = Scripted({0: [Order(asset="A", qty=10)], 2: [Order(asset="A", qty=-10)]})
    cfg = config(tmp_path, slippage=slippage, commission_rate=0.001)
    result = run(cfg, strategy, panel(A=RAMP), tmp_path / "out")
    assert col(result.fills, "price") == pytest.approx([buy, sell])
    # slippage is the cash cost; the commission is charged on the slipped price
    assert col(result.fills, "slippage") == pytest.approx([10 * (buy - 110), 10 * (130 - sell)])
    assert col(result.fills, "commission") == pytest.approx([10 * buy * 0.001, 10 * sell * 0.001])
    assert col(result.trades, "slippage") == pytest.approx([10 * (buy - 110 + 130 - sell)])


@pytest.mark.parametrize(
    ("qty", "impact_share"),
    [(100, 0.1), (500, 0.5), (2_000, 1.0)],  # the share of the bar's volume is capped at 1
)
def test_volume_share_slippage(tmp_path: Path, qty: int, impact_share: float) -> None:
    prices = panel(A=[flat(100)] * 4).with_columns(volume=1_000.0)
    strategy = Scripted({0: [Order(asset="A", qty=qty)]})
    cfg = config(tmp_path, slippage={"model": "volume_share", "impact": 0.1})
    result = run(cfg, strategy, prices, tmp_path / "out")
    expected = 100 * (1 + 0.1 * impact_share)
    assert col(result.fills, "price") == pytest.approx([expected])
    assert col(result.fills, "slippage") == pytest.approx([qty * (expected - 100)])


def test_costs_from_a_yaml_file_over_parquet_inputs(tmp_path: Path) -> None:
    panel(A=RAMP).write_parquet(tmp_path / "prices.parquet")
    (tmp_path / "run.yaml").write_text(
        textwrap.dedent(
            """
            data:
              prices: prices.parquet
            execution:
              initial_cash: 50000
              commission: {model: per_share, per_share: 0.005, minimum: 1.0}
              slippage: {model: fixed_bps, bps: 20}
            strategy:
              name: signal_threshold
            """
        )
    )
    cfg = load_run_config(tmp_path / "run.yaml")
    strategy = Scripted({0: [Order(asset="A", qty=300)], 2: [Order(asset="A", qty=-300)]})
    result = run_backtest(cfg, strategy=strategy)
    result.write(tmp_path / "out")
    assert_backtest_invariants(tmp_path / "out", prices=tmp_path / "prices.parquet")
    buy, sell = 110 * 1.002, 130 * 0.998
    assert col(result.fills, "price") == pytest.approx([buy, sell])
    assert col(result.fills, "commission") == pytest.approx([1.5, 1.5])  # 300 x 0.005
    assert result.final_cash == pytest.approx(50_000 - 300 * buy + 300 * sell - 3.0)


# -- determinism -----------------------------------------------------------------------------
REJECTIONS_SCRIPT = textwrap.dedent(
    """
    from pathlib import Path
    from tests.engine.conftest import Order, Scripted, config, flat, panel
    from tests.invariants import assert_result_invariants
    from ml4t_pipeline.engine import run_backtest

    prices = panel(A=[flat(100)] * 3, B=[flat(50)] * 3)
    cfg = config(Path("."), initial_cash=1000.0, allow_negative_cash=False)
    # one bar, two reasons: the sell has no position, the buy has no cash
    strategy = Scripted({0: [Order(asset="A", qty=-10), Order(asset="B", qty=30)]})
    result = run_backtest(cfg, strategy=strategy, prices=prices, signals=None, context=None)
    assert_result_invariants(result, prices=prices)
    print(result.rejections.select("order_id", "reason").rows())
    """
)


def test_rejection_rows_do_not_depend_on_the_hash_seed() -> None:
    root = Path(__file__).resolve().parents[2]
    outputs = set()
    for seed in ("0", "1", "2", "3", "4", "5", "6", "7"):
        done = subprocess.run(
            [sys.executable, "-c", REJECTIONS_SCRIPT],
            cwd=root,
            env=os.environ | {"PYTHONHASHSEED": seed, "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1, outputs
