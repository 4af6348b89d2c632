"""Protective exits of shorts: hand-built markets with the answer worked out by hand.

- A stop that closes a short cancels the short's working cover order (`stopped_out`), as it
  cancels a long's working sell: otherwise the cover fills later and opens a long.
- A protective exit reduces risk, so it is never refused for cash: a short that gaps up is
  covered even when negative cash is not allowed, and the account goes negative.
- Fills within a bar are booked in time order: a risk exit at the open comes before an older
  working limit that fills inside the bar, closes what is held, and never flips.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ml4t_pipeline.engine import BacktestResult, OrderType
from tests.engine.conftest import Order, Scripted, col, config, flat, panel, rows, run

STOP = [{"rule": "stop_loss", "pct": 0.05}]


def test_a_stop_on_a_short_cancels_its_working_cover_order(tmp_path: Path) -> None:
    prices = panel(
        A=[
            flat(100.0),
            flat(100.0),  # the short fills at this open
            (101.0, 110.0, 100.0, 108.0),  # the stop at 105 is crossed: covered at 105
            (95.0, 96.0, 85.0, 90.0),  # the cover limit at 90 would fill here, opening a long
        ]
    )
    strategy = Scripted(
        {
            0: [Order(asset="A", qty=-10)],
            1: [Order(asset="A", qty=10, order_type=OrderType.LIMIT, limit_price=90.0)],
        }
    )
    result = run(config(tmp_path, risk=STOP, allow_short=True), strategy, prices, tmp_path / "o")
    assert rows(result.fills, "bar", "side", "qty", "price", "reason") == [
        (1, "sell", 10, 100.0, "signal"),
        (2, "buy", 10, 105.0, "stop_loss"),
    ]
    assert rows(result.rejections, "order_id", "reason") == [(1, "stopped_out")]
    assert result.final_state.per_asset["ledger.qty"] == [0]


def test_a_short_that_gaps_up_is_covered_without_cash(tmp_path: Path) -> None:
    prices = panel(A=[flat(100.0), flat(100.0), (250.0, 260.0, 240.0, 250.0), flat(250.0)])
    strategy = Scripted({0: [Order(asset="A", qty=-900)]})
    cfg = config(tmp_path, risk=STOP, allow_short=True, allow_negative_cash=False)
    result = run(cfg, strategy, prices, tmp_path / "o")
    assert rows(result.fills, "bar", "side", "qty", "price", "reason") == [
        (1, "sell", 900, 100.0, "signal"),
        (2, "buy", 900, 250.0, "stop_loss"),  # at the open: the gap went through the stop
    ]
    assert result.rejections.height == 0
    cash = col(result.equity, "cash")
    assert cash[-1] == 100_000.0 + 900 * 100.0 - 900 * 250.0  # no commission in this config
    assert cash[-1] < 0


def _exit_after_a_working_limit(tmp_path: Path, *, allow_short: bool) -> BacktestResult:
    """Long 10 from bar 1; a sell limit at 110 works from bar 2; the time exit decided at the
    close of bar 2 fills at the open of bar 3 (100), before the bar rises through 110."""
    prices = panel(
        A=[
            flat(100.0),
            flat(100.0),
            (100.0, 105.0, 95.0, 100.0),
            (100.0, 115.0, 99.0, 112.0),
            flat(112.0),
        ]
    )
    strategy = Scripted(
        {
            0: [Order(asset="A", qty=10)],
            1: [Order(asset="A", qty=-10, order_type=OrderType.LIMIT, limit_price=110.0)],
        }
    )
    cfg = config(tmp_path, risk=[{"rule": "time_exit", "max_bars": 1}], allow_short=allow_short)
    return run(cfg, strategy, prices, tmp_path / f"short-{allow_short}")


@pytest.mark.parametrize("allow_short", [False, True])
def test_an_exit_at_the_open_is_booked_before_an_older_intrabar_limit(
    tmp_path: Path, allow_short: bool
) -> None:
    result = _exit_after_a_working_limit(tmp_path, allow_short=allow_short)
    assert rows(result.fills, "bar", "side", "qty", "price", "reason") == [
        (1, "buy", 10, 100.0, "signal"),
        (3, "sell", 10, 100.0, "time_exit"),  # at the open, not the limit's 110
    ]
    assert rows(result.rejections, "order_id", "reason") == [(1, "stopped_out")]
    assert result.final_state.per_asset["ledger.qty"][0] == 0  # never a short


@pytest.mark.parametrize("side", [1, -1])
def test_a_stop_and_a_limit_in_one_bar_take_the_stop_first(tmp_path: Path, side: int) -> None:
    """Long (short) 10 at 100 with a working take-profit limit at 110 (90); one bar crosses
    both the limit and the 5 % stop at 95 (105). Which came first inside the bar is unknown:
    the conservative reading takes the stop, and the take-profit is cancelled."""
    prices = panel(
        A=[
            flat(100.0),
            flat(100.0),  # the entry fills at this open
            (100.0, 112.0, 88.0, 100.0),  # both the limit and the stop are inside this bar
            flat(100.0),
        ]
    )
    take_profit = 100.0 + side * 10.0
    strategy = Scripted(
        {
            0: [Order(asset="A", qty=side * 10)],
            1: [
                Order(
                    asset="A",
                    qty=-side * 10,
                    order_type=OrderType.LIMIT,
                    limit_price=take_profit,
                )
            ],
        }
    )
    cfg = config(tmp_path, risk=STOP, allow_short=side < 0)
    result = run(cfg, strategy, prices, tmp_path / "o")
    entry, exit_ = ("buy", "sell") if side > 0 else ("sell", "buy")
    assert rows(result.fills, "bar", "side", "qty", "price", "reason") == [
        (1, entry, 10, 100.0, "signal"),
        (2, exit_, 10, 100.0 - side * 5.0, "stop_loss"),  # the stop, not the limit
    ]
    assert rows(result.rejections, "order_id", "reason") == [(1, "stopped_out")]
    assert result.final_state.per_asset["ledger.qty"] == [0]
