"""The code location loads; partitions, universes and the run config come from configs/, read
when Dagster loads the definitions, never when a module is imported."""

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml4t_pipeline.errors import ConfigError, DataError
from ml4t_pipeline.pipeline.definitions import build_defs
from ml4t_pipeline.pipeline.partitions import (
    MonthKey,
    Universe,
    build_partitions,
    load_partition_spec,
    month_key,
)
from ml4t_pipeline.pipeline.resources.backtest_config import load_pipeline_config

REPO = Path(__file__).resolve().parents[2]


def test_definitions_load_with_every_asset_check_job_and_schedule() -> None:
    defs = build_defs()
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "raw_prices",
        "raw_signals",
        "raw_context",
        "raw_corporate_actions",
        "validated_prices",
        "validated_signals",
        "validated_context",
        "validated_corporate_actions",
        "feature_table",
        "backtest",
        "trade_attribution",
        "performance_summary",
        "parameter_sweep",  # configs/sweeps/ holds a sweep
    }
    assert {k.name for k in graph.asset_check_keys} == {
        "prices_contract",
        "signals_contract",
        "context_contract",
        "corporate_actions_contract",
        "no_look_ahead",
        "ledger_reconciles",
        "no_nan_equity",
        "fills_inside_bars",
    }
    for job in ("inputs_job", "backtest_job", "summary_job", "sweep_job"):
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


# In a fresh interpreter: watch file opens (audit hook) and environment reads made by our own
# modules, import every module of the Dagster layer, then call the code location's loader.
_IMPORT_PROBE = """
import gc, importlib, json, os, pkgutil, sys

OPENED, ENV_READS = [], []
SKIP = {"os", "_collections_abc"}


def audit(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(sys.argv[1]):
        OPENED.append(args[0])


class WatchedEnviron(type(os.environ)):
    def __getitem__(self, key):
        frame = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__") in SKIP:
            frame = frame.f_back
        caller = frame.f_globals.get("__name__", "") if frame is not None else ""
        if caller.startswith("ml4t_pipeline"):
            ENV_READS.append(f"{caller}: {key}")
        return super().__getitem__(key)


watched = object.__new__(WatchedEnviron)
watched.__dict__.update(os.environ.__dict__)
os.environ = watched
sys.addaudithook(audit)
import ml4t_pipeline.pipeline as package

for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(info.name)
at_import = {"opened": OPENED[:], "env": ENV_READS[:], "frozen": gc.get_freeze_count()}
from ml4t_pipeline.pipeline.definitions import defs

loaded = defs()
print(json.dumps({
    "at_import": at_import,
    "loader_opened": OPENED[len(at_import["opened"]):],
    "loader_froze": gc.get_freeze_count() > 0,
    "same_on_reload": defs() is loaded,
    "heavy": sorted({"matplotlib", "pandera", "hypothesis"} & set(sys.modules)),
}))
"""


def test_importing_the_dagster_layer_reads_nothing_and_the_loader_reads_the_config() -> None:
    """Importing any module of the layer opens no config file, reads no environment variable
    and leaves the garbage collector alone; Dagster's loader reads universes.yaml once per
    process and tunes the collector. Every run process loads the definitions: matplotlib (the
    old chart renderer), pandera and the hypothesis strategies it pulls in (input contracts)
    load only when used."""
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, str(REPO / "configs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["at_import"] == {"opened": [], "env": [], "frozen": 0}
    assert sorted(probe["loader_opened"]) == [
        str(REPO / "configs" / "pipeline.yaml"),  # backtest's code version: the config fingerprint
        str(REPO / "configs" / "sweeps" / "top_k_and_stop.yaml"),  # parameter_sweep's partitions
        str(REPO / "configs" / "universes.yaml"),
    ]
    assert probe["loader_froze"]
    assert probe["same_on_reload"]
    assert probe["heavy"] == []


def test_build_defs_takes_its_partitions_from_the_universes_file(tmp_path: Path) -> None:
    path = tmp_path / "universes.yaml"
    path.write_text(
        "start_month: '2024-02-01'\nuniverses:\n  solo: [A0001]\n  pair: [A0002, A0003]\n"
    )
    defs = build_defs(universes_path=str(path))
    backtest = defs.resolve_assets_def("backtest")
    assert backtest.partitions_def is not None
    keys = backtest.partitions_def.get_partition_keys()
    assert keys[:2] == ["2024-02-01|solo", "2024-02-01|pair"]
    summary = defs.resolve_assets_def("performance_summary").partitions_def
    assert summary is not None
    assert summary.get_partition_keys() == ["solo", "pair"]
    path.write_text("start_month: '2024-02-01'\nuniverses:\n  solo: {top_n: 3}\n")
    with pytest.raises(ConfigError, match=r"universes\.yaml: universes\.solo: unknown key"):
        build_defs(universes_path=str(path))
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: cannot read the universes config"):
        build_defs(universes_path=str(tmp_path / "nowhere.yaml"))


def test_partition_keys_put_the_month_first() -> None:
    spec = load_partition_spec()
    keys = build_partitions(spec).backtest.get_partition_keys()
    first = spec.start_month.isoformat()
    assert keys[: len(spec.universes)] == [f"{first}|{u}" for u in spec.universes]
    key = month_key("2024-02-01|core")
    assert key == MonthKey(dt.date(2024, 2, 1), "core")
    assert key.key == "2024-02-01|core"
    assert month_key(dg.MultiPartitionKey({"universe": "core", "month": "2024-02-01"})) == key
    for bad in ("2024-02-01", "2024-02-15|core", "core|2024-02-01", "2024-02-01|a|b"):
        with pytest.raises(ConfigError, match=re.escape("is not '<YYYY-MM-01>|<universe>'")):
            month_key(bad)
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
    with pytest.raises(
        ConfigError, match=r"universes\.yaml: no universe 'other' under 'universes'"
    ):
        spec.universe("other")
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
