"""Delistings, orders that wait for a bar, and the cash notices, on hand-built markets and on
sample data chained month by month.

- An asset whose bars end before the input's do is delisted at its last bar: the position is
  closed at that close (reason `delisted`) and its orders are cancelled (`delisted`); later
  orders for it are refused. `on_delist: hold` keeps the position at its last close.
- The delisting is a property of the whole input, not of a run's window: month by month from
  saved state equals one run.
- A fill that takes cash below zero though negative cash is not allowed (a sell's commission,
  a cover) is counted in the summary (`negative_cash_fills`).
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ml4t_pipeline.engine import EngineState, OrderType, run_backtest, run_config_from_dict
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data
from tests.engine.conftest import Order, Scripted, col, config, flat, panel, rows, run
from tests.invariants import assert_result_invariants


def test_a_delisted_short_is_covered_at_its_last_close(tmp_path: Path) -> None:
    prices = panel(
        A=[flat(10), flat(10), flat(10), flat(10)],
        B=[flat(50), flat(50), flat(40), None],  # B's last bar is bar 2
    )
    strategy = Scripted(
        {
            0: [Order(asset="B", qty=-4)],
            1: [Order(asset="B", qty=4, order_type=OrderType.LIMIT, limit_price=30.0)],
            3: [Order(asset="B", qty=1)],  # after the delisting: refused
        }
    )
    cfg = config(tmp_path, allow_short=True, commission_rate=0.001)
    result = run(cfg, strategy, prices, tmp_path / "o")
    assert rows(result.fills, "bar", "asset_id", "side", "qty", "price", "reason") == [
        (1, "B", "sell", 4, 50.0, "signal"),
        (2, "B", "buy", 4, 40.0, "delisted"),
    ]
    assert rows(result.rejections, "order_id", "reason") == [(1, "delisted"), (3, "delisted")]
    fees = 4 * 50.0 * 0.001 + 4 * 40.0 * 0.001
    assert col(result.equity, "cash")[-1] == pytest.approx(100_000.0 + 4 * 10.0 - fees)
    assert rows(result.trades, "direction", "exit_reason") == [("short", "delisted")]


def test_hold_keeps_a_delisted_position_at_its_last_close(tmp_path: Path) -> None:
    prices = panel(A=[flat(10)] * 4, B=[flat(50), flat(50), flat(40), None])
    strategy = Scripted({0: [Order(asset="B", qty=4)], 3: [Order(asset="B", qty=-4)]})
    result = run(config(tmp_path, on_delist="hold"), strategy, prices, tmp_path / "o")
    assert rows(result.fills, "bar", "side", "reason") == [(1, "buy", "signal")]
    assert col(result.equity, "positions_value") == [0.0, 200.0, 160.0, 160.0]
    assert rows(result.orders, "order_id", "status") == [(0, "filled"), (1, "open")]


def test_a_sells_commission_below_zero_cash_is_counted(tmp_path: Path) -> None:
    # all the cash buys A; the per-order fee of 5 on selling 1 share at 2 leaves -3
    prices = panel(A=[flat(2)] * 4)
    strategy = Scripted({0: [Order(asset="A", qty=5)], 1: [Order(asset="A", qty=-5)]})
    cfg = config(
        tmp_path,
        initial_cash=15.0,
        allow_negative_cash=False,
        commission={"model": "per_order", "per_order": 5.0},
    )
    result = run(cfg, strategy, prices, tmp_path / "o")
    assert rows(result.fills, "bar", "side", "qty") == [(1, "buy", 5), (2, "sell", 5)]
    assert col(result.equity, "cash") == [15.0, 0.0, 5.0, 5.0]
    assert result.summary()["negative_cash_fills"] == 0
    poorer = Scripted({0: [Order(asset="A", qty=5)], 1: [Order(asset="A", qty=-1)]})
    result = run(cfg, poorer, prices, tmp_path / "p")
    assert col(result.equity, "cash") == [15.0, 0.0, -3.0, -3.0]  # the sale still fills
    assert result.summary()["negative_cash_fills"] == 1


# -- month by month == one run, with delistings and holes ---------------------------------------
@pytest.fixture(scope="module")
def delisting_market(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("delist")
    spec = SampleSpec(assets=12, days=100, scenario="mixed", seed=4, start=dt.date(2024, 1, 1))
    paths = write_sample_data(spec, out)
    prices = pl.read_parquet(paths["prices"])
    ids = sorted(prices["asset_id"].unique().to_list())
    stamps = sorted(prices["timestamp"].unique().to_list())
    jan_last = max(t for t in stamps if t.month == 1)
    ends = {ids[0]: stamps[30], ids[1]: jan_last, ids[2]: stamps[70]}  # one on a month's end
    keep = pl.lit(True)
    for asset, end in ends.items():
        keep = keep & ~((pl.col("asset_id") == asset) & (pl.col("timestamp") > end))
    hole = (pl.col("asset_id") == ids[3]) & pl.col("timestamp").is_between(stamps[40], stamps[44])
    prices.filter(keep & ~hole).write_parquet(paths["prices"])
    return paths


MONTHS = ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01", "2024-05-01", "2024-06-01"]


@pytest.mark.parametrize("on_no_bar", ["wait", "reject"])
def test_month_by_month_with_delistings_equals_one_run(
    delisting_market: dict[str, Path], on_no_bar: str
) -> None:
    raw: dict[str, Any] = {
        "data": {k: str(delisting_market[k]) for k in ("prices", "signals", "context")},
        "execution": {"commission_rate": 0.001, "on_no_bar": on_no_bar},
        "strategy": {
            "name": "top_k_rotation",
            "params": {"top_k": 5, "weight": 0.15, "rebalance_every": 3, "warmup_bars": 4},
        },
        "risk": [{"rule": "stop_loss", "pct": 0.04}],
    }
    cfg = run_config_from_dict(raw)
    full = run_backtest(cfg)
    assert_result_invariants(full, prices=delisting_market["prices"])
    assert (full.fills["reason"] == "delisted").sum() >= 2
    state: EngineState | None = None
    equity, fills = [], []
    for start, end in itertools.pairwise(MONTHS):
        month = run_backtest(cfg, start=start, end=end, initial_state=state)
        state = EngineState.from_json(month.final_state.to_json())
        equity.append(month.equity)
        fills.append(month.fills)
    assert pl.concat(fills).equals(full.fills)
    assert pl.concat(equity).equals(full.equity)
    assert month.final_equity == full.final_equity


def test_a_rebalance_counts_the_orders_still_waiting_for_a_bar(tmp_path: Path) -> None:
    """B has no bar at 2 and 3: the order of the rebalance at close 1 waits; the rebalances at
    closes 2 and 3 (B priced at its last close) see it coming and do not order B again."""
    prices = panel(
        A=[flat(10)] * 6,
        B=[flat(50), flat(50), None, None, flat(50), flat(50)],
    )

    def rebalance(strategy: Scripted) -> list[Order]:
        strategy.rebalance_to_weights({"B": 0.5})
        return []

    script = {1: rebalance, 2: rebalance, 3: rebalance}
    result = run(config(tmp_path), Scripted(script), prices, tmp_path / "o")
    assert rows(result.fills, "bar", "asset_id", "qty") == [(4, "B", 1_000)]  # 0.5 x 1e5 / 50
    assert rows(result.orders, "order_id", "status") == [(0, "filled")]
    assert result.final_state.per_asset["ledger.qty"] == [0, 1_000]
