"""Order management by strategies: time in force, cancel_order, open_orders.

Hand-built daily bars (`tests.engine.conftest`), the answer worked out by hand:
- `bars=N` may fill at the next N bars; `day` on the first trading day it meets (the UTC date
  of the next bar); what has not filled by then ends `expired` (a rejection row, reason
  `expired`), before the next bar is matched;
- `cancel_order` ends an open order `cancelled`, working or placed at the same close; a stale
  take-profit can be cancelled instead of selling the next position;
- month by month from saved state equals one run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl
import pytest

from ml4t_pipeline.engine import EngineState, OrderType, run_backtest
from ml4t_pipeline.engine.execution.orders import OpenOrder
from ml4t_pipeline.errors import ConfigError
from tests.engine.conftest import T0, Order, Scripted, config, flat, panel, rows, run


def _at_bar(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its timestamp as a bar index (the bars are daily from T0)."""
    return frame.with_columns(bar=(pl.col("timestamp") - T0).dt.total_days())


def _ramp(n: int) -> pl.DataFrame:
    """One asset whose bars rise by 1 a day from 100: a buy limit at 95 never fills."""
    return panel(A=[flat(100.0 + k) for k in range(n)])


def _limit(qty: int, price: float, tif: str = "gtc") -> Order:
    return Order(
        asset="A", qty=qty, order_type=OrderType.LIMIT, limit_price=price, time_in_force=tif
    )


@pytest.mark.parametrize(("tif", "expired_at"), [("bars=1", 2), ("bars=3", 4), ("day", 2)])
def test_an_order_that_did_not_fill_in_time_expires(
    tmp_path: Path, tif: str, expired_at: int
) -> None:
    result = run(config(tmp_path), Scripted({0: [_limit(10, 95.0, tif)]}), _ramp(6), tmp_path / "o")
    assert result.fills.height == 0
    assert rows(_at_bar(result.rejections), "bar", "order_id", "reason") == [
        (expired_at, 0, "expired")
    ]
    assert rows(result.orders, "order_id", "status") == [(0, "expired")]


def test_an_order_fills_within_its_time_in_force_only(tmp_path: Path) -> None:
    # placed at bar 1, the sell limit at 103 is reached at bar 3 (open 103): inside bars=2
    # (bars 2 and 3), outside bars=1 (bar 2 only, high 102)
    prices = _ramp(6)
    script = {0: [Order(asset="A", qty=10)], 1: [_limit(-10, 103.0, "bars=1")]}
    late = run(config(tmp_path), Scripted(script), prices, tmp_path / "late")
    assert rows(late.fills, "bar", "side") == [(1, "buy")]
    assert rows(_at_bar(late.rejections), "bar", "reason") == [(3, "expired")]
    script = {0: [Order(asset="A", qty=10)], 1: [_limit(-10, 103.0, "bars=2")]}
    in_time = run(config(tmp_path), Scripted(script), prices, tmp_path / "in_time")
    assert rows(in_time.fills, "bar", "side", "price") == [(1, "buy", 101.0), (3, "sell", 103.0)]
    assert in_time.rejections.height == 0


def test_a_stale_take_profit_is_cancelled_instead_of_selling_the_next_position(
    tmp_path: Path,
) -> None:
    """Long 10; a take-profit at 110 works; the strategy exits at the market at bar 2 and
    cancels the take-profit, re-enters at bar 4: the old take-profit never sells the new
    position (bar 6 reaches 110)."""
    seen: dict[int, list[OpenOrder]] = {}

    def exit_and_cancel(strategy: Scripted) -> list[Order]:
        seen[2] = strategy.open_orders("A")
        for o in seen[2]:
            assert strategy.cancel_order(o.order_id)
        assert not strategy.cancel_order(seen[2][0].order_id)  # already cancelled
        return [Order(asset="A", qty=-10)]

    def look(strategy: Scripted) -> list[Order]:
        seen[3] = strategy.open_orders()
        return [Order(asset="A", qty=10)]

    script: dict[int, Sequence[Order] | Callable[[Scripted], Sequence[Order]]] = {
        0: [Order(asset="A", qty=10)],
        1: [_limit(-10, 110.0)],
        2: exit_and_cancel,
        3: look,
    }
    prices = panel(A=[flat(p) for p in (100, 101, 102, 103, 104, 105, 110, 111)])
    result = run(config(tmp_path), Scripted(script), prices, tmp_path / "o")
    assert [(o.order_id, o.qty, o.order_type, o.limit_price, o.time_in_force) for o in seen[2]] == [
        (1, -10, OrderType.LIMIT, 110.0, "gtc")
    ]
    assert seen[3] == []
    assert rows(result.fills, "bar", "side", "price") == [
        (1, "buy", 101.0),
        (3, "sell", 103.0),
        (4, "buy", 104.0),
    ]
    assert rows(_at_bar(result.rejections), "bar", "order_id", "reason") == [(2, 1, "cancelled")]
    assert rows(result.orders, "order_id", "status") == [
        (0, "filled"),
        (1, "cancelled"),
        (2, "filled"),
        (3, "filled"),
    ]
    assert result.final_state.per_asset["ledger.qty"] == [10]


def test_an_order_cancelled_at_its_own_close_never_reaches_the_book(tmp_path: Path) -> None:
    def place_and_cancel(strategy: Scripted) -> list[Order]:
        oid = strategy.submit_order("A", 5)
        assert oid is not None
        assert [o.order_id for o in strategy.open_orders()] == [oid]
        assert strategy.cancel_order(oid)
        assert strategy.open_orders() == []
        return []

    result = run(config(tmp_path), Scripted({0: place_and_cancel}), _ramp(3), tmp_path / "o")
    assert result.fills.height == 0
    assert rows(result.orders, "order_id", "status") == [(0, "cancelled")]
    assert rows(_at_bar(result.rejections), "bar", "reason") == [(0, "cancelled")]


def test_order_management_errors_name_what_is_wrong(tmp_path: Path) -> None:
    def bad_cancel(strategy: Scripted) -> list[Order]:
        strategy.cancel_order(99)
        return []

    with pytest.raises(ConfigError, match=r"cancel_order\(99\): no order has that id"):
        run_backtest(config(tmp_path), strategy=Scripted({0: bad_cancel}), prices=_ramp(3))
    bad_tif = Scripted({0: [_limit(1, 95.0, "week")]})
    with pytest.raises(ConfigError, match=r"time_in_force must be .* got 'week'"):
        run_backtest(config(tmp_path), strategy=bad_tif, prices=_ramp(3))
    zero = Scripted({0: [_limit(1, 95.0, "bars=0")]})
    with pytest.raises(ConfigError, match=r"got 'bars=0'"):
        run_backtest(config(tmp_path), strategy=zero, prices=_ramp(3))


@pytest.mark.parametrize("tif", ["bars=4", "day"])
def test_time_in_force_across_chained_months_equals_one_run(tmp_path: Path, tif: str) -> None:
    """Orders placed at January's last bars expire at the same bar in February."""
    prices = _ramp(45)  # 2024-01-01 .. 2024-02-14
    script = {29: [_limit(10, 95.0, tif)], 30: [_limit(10, 96.0, tif)]}
    cfg = config(tmp_path)
    whole = run_backtest(cfg, strategy=Scripted(script), prices=prices)
    state: EngineState | None = None
    rejections = []
    for start, end in itertools.pairwise(["2024-01-01", "2024-02-01", "2024-03-01"]):
        month = run_backtest(
            cfg, strategy=Scripted(script), prices=prices, start=start, end=end, initial_state=state
        )
        state = EngineState.from_json(month.final_state.to_json())
        rejections.append(month.rejections)
    assert pl.concat(rejections).equals(whole.rejections)
    expected = [(31, 0), (32, 1)] if tif == "day" else [(34, 0), (35, 1)]
    assert rows(_at_bar(whole.rejections), "bar", "order_id") == expected
