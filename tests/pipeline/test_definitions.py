"""The code location loads; partitions, universes and the run config come from configs/."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml4t_pipeline.errors import ConfigError, DataError
from ml4t_pipeline.pipeline.definitions import defs
from ml4t_pipeline.pipeline.partitions import (
    BACKTEST_PARTITIONS,
    SPEC,
    MonthKey,
    Universe,
    load_partition_spec,
    month_key,
)
from ml4t_pipeline.pipeline.resources.backtest_config import load_pipeline_config

REPO = Path(__file__).resolve().parents[2]


def test_definitions_load_with_every_asset_check_job_and_schedule() -> None:
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "raw_prices",
        "raw_signals",
        "raw_context",
        "validated_prices",
        "validated_signals",
        "validated_context",
        "feature_table",
        "backtest",
        "trade_attribution",
        "performance_summary",
    }
    assert {k.name for k in graph.asset_check_keys} == {
        "prices_contract",
        "signals_contract",
        "context_contract",
        "no_look_ahead",
        "ledger_reconciles",
        "no_nan_equity",
        "fills_inside_bars",
    }
    for job in ("inputs_job", "backtest_job", "summary_job"):
        assert defs.resolve_job_def(job).executor_def is dg.in_process_executor
    assert defs.resolve_schedule_def("monthly_backtest_schedule").job_name == "backtest_job"


def test_the_dagster_cli_validates_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]


def test_loading_the_definitions_leaves_the_heavy_optional_imports_out() -> None:
    """Every run process loads the definitions: matplotlib (the old chart renderer), pandera and
    the hypothesis strategies it pulls in (input contracts) load only when used."""
    code = (
        "import sys, ml4t_pipeline.pipeline.definitions; "
        "print(sorted({'matplotlib', 'pandera', 'hypothesis'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_partition_keys_put_the_month_first() -> None:
    keys = BACKTEST_PARTITIONS.get_partition_keys()
    first = SPEC.start_month.isoformat()
    assert keys[: len(SPEC.universes)] == [f"{first}|{u}" for u in SPEC.universes]
    key = month_key("2024-02-01|core")
    assert key == MonthKey(dt.date(2024, 2, 1), "core")
    assert key.key == "2024-02-01|core"
    assert key.previous() == MonthKey(dt.date(2024, 1, 1), "core")
    assert MonthKey(dt.date(2024, 12, 1), "core").end == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def test_universes_yaml_accepts_ids_or_a_rule_and_rejects_mistakes(tmp_path: Path) -> None:
    path = tmp_path / "universes.yaml"
    path.write_text(
        "start_month: '2024-03-01'\nuniverses:\n  mine: [B, A]\n"
        "  big: {top_n_dollar_volume: 1, formation_bars: 2}\n"
    )
    spec = load_partition_spec(path)
    assert spec.start_month == dt.date(2024, 3, 1)
    prices = pl.LazyFrame(
        {
            "timestamp": [dt.datetime(2024, 1, d, tzinfo=dt.UTC) for d in (1, 1, 2, 2, 3, 3)],
            "asset_id": ["A", "B"] * 3,
            "close": [10.0, 1.0, 10.0, 1.0, 1.0, 1000.0],
            "volume": [1.0] * 6,
        }
    )
    assert spec.universes["mine"].select(prices) == ["A", "B"]
    assert spec.universes["big"].select(prices) == ["A"]  # bar 3 is after the formation bars
    with pytest.raises(DataError, match="no prices"):
        Universe(name="x", asset_ids=("Z",)).select(prices)
    with pytest.raises(ConfigError, match="either a list"):
        Universe(name="x", asset_ids=("A",), top_n_dollar_volume=3)
    with pytest.raises(ConfigError, match="letters, digits"):
        Universe(name="a|b", asset_ids=("A",))
    path.write_text("start_month: '2024-03-15'\nuniverses: {u: [A]}\n")
    with pytest.raises(ConfigError, match="first day of a month"):
        load_partition_spec(path)


def test_the_pipeline_run_config_is_the_engine_format_without_data(tmp_path: Path) -> None:
    config = load_pipeline_config(REPO / "configs" / "pipeline.yaml")
    assert config.execution.initial_cash == 1_000_000.0
    bad = tmp_path / "pipeline.yaml"
    bad.write_text("data: {prices: x.parquet}\nstrategy: {name: top_k_rotation}\n")
    with pytest.raises(ConfigError, match="leave out 'data'"):
        load_pipeline_config(bad)
    bad.write_text("strategy: {name: top_k_rotation}\nexecution: {initial_cash: -1}\n")
    with pytest.raises(ConfigError, match="initial_cash"):
        load_pipeline_config(bad)
