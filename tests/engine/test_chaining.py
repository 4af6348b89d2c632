"""Running month by month from saved state equals one run over the whole period, bit for bit."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ml4t_pipeline.engine import EngineState, run_backtest, run_config_from_dict
from ml4t_pipeline.errors import DataError, StateError
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data
from tests.invariants import assert_result_invariants

RISK = [
    {"rule": "volatility_stop", "atr_multiplier": 2.0, "feature": "atr"},
    {"rule": "trailing_stop", "pct": 0.04},
    {"rule": "time_exit", "max_bars": 4},
]


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("chain")
    spec = SampleSpec(assets=25, days=110, scenario="mixed", seed=11, start=dt.date(2024, 1, 1))
    return write_sample_data(spec, out)


def _config(
    market: dict[str, Path], risk: list[dict[str, Any]], benchmark: dict[str, Any] | None = None
) -> Any:
    raw: dict[str, Any] = {
        "data": {k: str(market[k]) for k in ("prices", "signals", "context")},
        "execution": {"commission_rate": 0.001, "allow_negative_cash": True},
        "strategy": {
            "name": "top_k_rotation",
            "params": {
                "top_k": 5,
                "weight": 0.15,
                "rebalance_every": 3,
                "warmup_bars": 4,
                "max_vix": 40,
            },
        },
        "risk": risk,
    }
    if benchmark is not None:
        raw["benchmark"] = benchmark
    return run_config_from_dict(raw)


MONTHS = ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01", "2024-05-01", "2024-06-01"]


@pytest.mark.parametrize("risk", [[], RISK], ids=["no_risk", "three_rules"])
def test_monthly_chain_equals_full_run(market: dict[str, Path], risk: list[dict[str, Any]]) -> None:
    config = _config(market, risk)
    full = run_backtest(config)
    assert_result_invariants(full, prices=market["prices"])
    state: EngineState | None = None
    equity, fills, trades = [], [], []
    for start, end in itertools.pairwise(MONTHS):
        month = run_backtest(config, start=start, end=end, initial_state=state)
        state = EngineState.from_json(month.final_state.to_json())  # through JSON, as stored
        equity.append(month.equity)
        fills.append(month.fills)
        trades.append(month.trades.filter(pl.col("exit_reason") != "open"))
    assert month.final_equity == full.final_equity
    assert "benchmark" in full.equity.columns  # (the default: equal weight, carried in state)
    assert pl.concat(equity).equals(full.equity)
    assert pl.concat(fills).equals(full.fills)
    closed = full.trades.filter(pl.col("exit_reason") != "open")
    chained = pl.concat(trades)
    # with their entry time, also for trades that entered in an earlier month
    assert chained.sort(["exit_bar", "asset_id"]).equals(closed)
    assert chained["entry_time"].null_count() == 0
    # a position still open at a month's end shows the time it entered
    first_bar = month.final_state.bars_done - month.equity.height
    carried = month.trades.filter(pl.col("entry_bar") < first_bar)
    assert carried.height > 0
    assert carried["entry_time"].null_count() == 0
    assert full.fills.height > 50
    if risk:
        assert set(closed["exit_reason"]) >= {"signal", "trailing_stop", "time_exit"}


@pytest.mark.parametrize(
    "benchmark",
    [{"asset": "A0007"}, {"context": "vix"}, {"kind": "none"}],
    ids=["asset", "context", "none"],
)
def test_monthly_chain_gives_the_full_runs_benchmark(
    market: dict[str, Path], benchmark: dict[str, Any]
) -> None:
    config = _config(market, [], benchmark)
    full = run_backtest(config)
    state: EngineState | None = None
    equity = []
    for start, end in itertools.pairwise(MONTHS):
        month = run_backtest(config, start=start, end=end, initial_state=state)
        state = EngineState.from_json(month.final_state.to_json())
        equity.append(month.equity)
    assert pl.concat(equity).equals(full.equity)
    assert ("benchmark" in full.equity.columns) == (benchmark != {"kind": "none"})
    # the last month's benchmark figures are over its own bars, from the value it started at
    section = month.summary()["benchmark"]
    if "total_return" in section:
        bench = full.equity["benchmark"]
        start_value = bench[full.equity.height - month.equity.height - 1]
        assert section["total_return"] == bench[-1] / start_value - 1.0


def test_state_naming_an_asset_absent_from_the_data_is_an_error(market: dict[str, Path]) -> None:
    config = _config(market, [])
    first = run_backtest(config, start=MONTHS[0], end=MONTHS[1])
    assert first.final_state.assets, "the first month should end holding positions"
    prices = pl.read_parquet(market["prices"])
    held = first.final_state.assets[0]
    with pytest.raises(StateError, match="absent"):
        first.final_state.restore(
            pl.Series(prices.filter(pl.col("asset_id") != held)["asset_id"].unique()).to_numpy(),
            [],
        )


def test_a_window_without_bars_is_a_clear_error(market: dict[str, Path]) -> None:
    with pytest.raises(DataError, match="no price bars"):
        run_backtest(_config(market, []), start="2030-01-01", end="2030-02-01")


def test_state_json_from_another_version_is_rejected() -> None:
    with pytest.raises(StateError, match="incompatible"):
        EngineState.from_json('{"format": 99}')
