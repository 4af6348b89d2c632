"""The Dagster pipeline on real stocks with a corporate-actions file: AAPL, IBM and MSFT from
bokeh-sampledata, January to April 2005 month by month (AAPL splits 2:1 on 2005-02-28, IBM and
MSFT pay dividends), against one `ml4t-pipeline backtest` over the same four months."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml

from ml4t_pipeline.cli import main as cli_main
from ml4t_pipeline.engine.tolerances import MONEY_ATOL
from ml4t_pipeline.pipeline.definitions import build_defs
from ml4t_pipeline.pipeline.partitions import MonthKey
from ml4t_pipeline.sample_data.real_stocks import SIGNAL, write_real_inputs
from tests.invariants import assert_backtest_invariants, check_backtest_tables
from tests.pipeline.conftest import Pipeline, temp_instance

MONTHS = tuple(dt.date(2005, m, 1) for m in (1, 2, 3, 4))
TICKERS = ["AAPL", "IBM", "MSFT"]
AAPL_SPLIT = dt.datetime(2005, 2, 28, tzinfo=dt.UTC)
RUN = {
    "execution": {
        "initial_cash": 1_000_000,
        "commission_rate": 0.001,
        "allow_negative_cash": False,
    },
    "strategy": {
        "name": "top_k_rotation",
        "params": {"score": SIGNAL, "top_k": 3, "weight": 0.3, "rebalance_every": 5},
    },
    "risk": [{"rule": "trailing_stop", "pct": 0.15}],
}


@dataclass
class RealChain:
    pipeline: Pipeline
    inputs: dg.ExecuteInProcessResult
    paths: dict[str, Path]
    cli_out: Path


@pytest.fixture(scope="module")
def real_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealChain]:
    root = tmp_path_factory.mktemp("real-pipeline")
    paths = write_real_inputs(
        root / "data",
        tickers=TICKERS,
        start=MONTHS[0],
        end=dt.date(2005, 5, 1),
        dividends=True,
    )
    run_config = root / "pipeline.yaml"
    run_config.write_text(yaml.safe_dump(RUN))
    universes = root / "universes.yaml"
    universes.write_text(
        yaml.safe_dump({"start_month": MONTHS[0].isoformat(), "universes": {"big3": TICKERS}})
    )
    cli_config = root / "run.yaml"
    data = {k: str(paths[k]) for k in ("prices", "signals", "context", "corporate_actions")}
    cli_config.write_text(yaml.safe_dump({**RUN, "data": data}))
    cli_out = root / "cli"
    assert cli_main(["backtest", "--config", str(cli_config), "--out", str(cli_out)]) == 0
    with temp_instance(root / "home") as instance:
        storage = root / "storage"
        defs = build_defs(
            data_dir=str(paths["prices"].parent),
            storage_dir=str(storage),
            run_config_path=str(run_config),
            universes_path=str(universes),
        )
        pipeline = Pipeline(defs, instance, storage, paths["prices"].parent)
        inputs = pipeline.run("inputs_job")
        for month in MONTHS:
            pipeline.run("backtest_job", MonthKey(month, "big3").key)
        yield RealChain(pipeline, inputs, paths, cli_out)


def _chained(chain: RealChain, table: str) -> pl.DataFrame:
    return pl.concat(
        [chain.pipeline.backtest(MonthKey(m, "big3")).tables[table] for m in MONTHS],
        how="vertical",
    )


def test_the_actions_file_is_registered_and_passes_its_contract(real_chain: RealChain) -> None:
    checks = {c.check_name: c for c in real_chain.inputs.get_asset_check_evaluations()}
    assert all(c.passed for c in checks.values()), checks
    meta = checks["corporate_actions_contract"].metadata
    assert meta["splits"].value == 1
    dividends = meta["dividends"].value
    assert isinstance(dividends, int)
    assert dividends > 0
    raw = real_chain.inputs.asset_materializations_for_node("raw_corporate_actions")[0]
    assert raw.metadata["present"].value is True


def test_chained_months_equal_one_cli_backtest_to_the_cent(real_chain: RealChain) -> None:
    cli = real_chain.cli_out
    equity = _chained(real_chain, "equity")
    expected = pl.read_parquet(cli / "equity.parquet")
    assert equity["timestamp"].equals(expected["timestamp"])
    for column in ("equity", "cash", "positions_value"):
        gap = np.abs(equity[column].to_numpy() - expected[column].to_numpy())
        assert gap.max() <= MONEY_ATOL, column
    assert _chained(real_chain, "fills").equals(pl.read_parquet(cli / "fills.parquet"))
    actions = _chained(real_chain, "actions")
    assert actions.equals(pl.read_parquet(cli / "actions.parquet"))
    # the split reaches the account, in the month of its ex-date, from the state January left
    split = actions.filter(pl.col("action") == "split")
    assert split.select("timestamp", "asset_id").rows() == [(AAPL_SPLIT, "AAPL")]
    assert split["qty_after"][0] == 2 * split["qty_before"][0] > 0
    assert actions.filter(pl.col("action") == "dividend")["cash"].sum() > 0.0
    summary = json.loads((cli / "summary.json").read_text())
    last = json.loads(
        real_chain.pipeline.backtest(MonthKey(MONTHS[-1], "big3")).texts["summary.json"]
    )
    assert last["final_equity"] == summary["final_equity"]
    assert_backtest_invariants(cli, prices=real_chain.paths["prices"])
    check_backtest_tables(
        fills=_chained(real_chain, "fills"),
        equity=equity,
        prices=pl.read_parquet(real_chain.paths["prices"]),
        initial_cash=1_000_000.0,
        actions=actions,
    )


def test_every_month_passes_its_bookkeeping_checks(real_chain: RealChain) -> None:
    """ledger_reconciles counts the actions' cash (dividends) of each month."""
    for month in MONTHS:
        tables = real_chain.pipeline.backtest(MonthKey(month, "big3"))
        assert "actions" in tables.tables
    run = real_chain.pipeline.run("backtest_job", MonthKey(MONTHS[1], "big3").key)
    assert all(c.passed for c in run.get_asset_check_evaluations())
