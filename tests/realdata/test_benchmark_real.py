"""The benchmark on real stocks: splits applied to its shares give the split-adjusted run's
benchmark; dividends add the cash the shares earned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ml4t_pipeline.engine import BacktestResult, run_backtest, run_config_from_dict
from ml4t_pipeline.sample_data.real_stocks import SIGNAL


def _run(
    prices: Path, actions: Path | None, signals: Path, benchmark: dict[str, Any]
) -> BacktestResult:
    data = {"prices": str(prices), "signals": str(signals)}
    if actions is not None:
        data["corporate_actions"] = str(actions)
    raw = {
        "data": data,
        "strategy": {"name": "signal_threshold", "params": {"score": SIGNAL, "qty": 10}},
        "benchmark": benchmark,
    }
    return run_backtest(run_config_from_dict(raw))


@pytest.mark.parametrize("benchmark", [{"kind": "equal_weight"}, {"asset": "AAPL"}])
def test_raw_prices_with_splits_give_the_split_adjusted_benchmark(
    split_2005_dir: dict[str, Path], benchmark: dict[str, Any]
) -> None:
    d = split_2005_dir
    raw = _run(d["prices"], d["corporate_actions"], d["signals"], benchmark)
    adjusted = _run(d["prices_split_adjusted"], None, d["signals"], benchmark)
    assert pl.read_parquet(d["corporate_actions"])["split_ratio"].to_list() == [2.0]  # AAPL
    # (2:1: shares x 2 and the close / 2, exact in float64)
    assert raw.equity["benchmark"].equals(adjusted.equity["benchmark"])
    # half the AAPL shares bought before the split, doubled by it
    assert raw.final_state.benchmark["units"] == adjusted.final_state.benchmark["units"]


def test_dividends_are_the_benchmarks_cash(real_dir: dict[str, Path], tmp_path: Path) -> None:
    d = real_dir
    actions = pl.read_parquet(d["corporate_actions"])
    with_dividends = _run(d["prices"], d["corporate_actions"], d["signals"], {"asset": "MSFT"})
    splits_only = tmp_path / "splits_only.parquet"
    actions.with_columns(pl.lit(0.0).alias("dividend")).write_parquet(splits_only)
    without = _run(d["prices"], splits_only, d["signals"], {"asset": "MSFT"})
    msft = actions.filter((pl.col("asset_id") == "MSFT") & (pl.col("dividend") > 0))
    assert msft.height > 10
    held = with_dividends.final_state.benchmark
    assert held["cash"] > 0
    assert without.final_state.benchmark["cash"] == 0.0
    assert held["units"] == without.final_state.benchmark["units"]
    gap = (with_dividends.equity["benchmark"] - without.equity["benchmark"]).to_numpy()
    assert gap[-1] == pytest.approx(held["cash"], rel=1e-9)
    assert float(gap.min()) >= 0.0
