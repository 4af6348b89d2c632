"""`parameter_sweep` in a real instance: one partition per (sweep file, universe), every variant
run on the universe's whole history as its month chain cuts it, the sweep's folder published
whole, the variants, PBO and deflated Sharpe in the materialization; a bad sweep file stops
the code location from loading, naming the file."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.pipeline.assets.sweep import PARAMETER_SWEEP
from ml4t_pipeline.pipeline.definitions import build_defs
from ml4t_pipeline.pipeline.partitions import load_partition_spec
from tests.invariants import assert_backtest_invariants
from tests.pipeline.conftest import Pipeline
from tests.pipeline.one_run import one_engine_run

REPO = Path(__file__).resolve().parents[2]
SWEEP = "top_k_and_stop"  # configs/sweeps/top_k_and_stop.yaml
MONTHS = [dt.date(2024, m, 1) for m in range(1, 6)]  # the sample data: Jan .. early May 2024


def test_the_sweep_partitions_are_sweep_files_by_universe(pipeline: Pipeline) -> None:
    asset = pipeline.defs.resolve_assets_def(PARAMETER_SWEEP)
    partitions = asset.partitions_def
    assert isinstance(partitions, dg.MultiPartitionsDefinition)
    assert sorted(partitions.get_partition_keys()) == [f"{SWEEP}|core", f"{SWEEP}|liquid"]
    assert asset.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
    assert pipeline.defs.resolve_job_def("sweep_job") is not None


@pytest.mark.parametrize("universe", ["core", "liquid"])
def test_a_sweep_partition_runs_every_variant_on_the_universe(
    pipeline: Pipeline, sample_dir: Path, universe: str
) -> None:
    pipeline.run("inputs_job")
    result = pipeline.run("sweep_job", f"{SWEEP}|{universe}")
    (event,) = result.asset_materializations_for_node(PARAMETER_SWEEP)
    metadata = event.metadata
    assert metadata["n_trials"].value == 9
    pbo, dsr = metadata["pbo"].value, metadata["deflated_sharpe"].value
    assert isinstance(pbo, float)
    assert isinstance(dsr, float)
    assert 0.0 <= pbo <= 1.0
    assert 0.0 <= dsr <= 1.0
    table = metadata["variants"]
    assert isinstance(table, dg.TableMetadataValue)
    assert len(table.records) == 9
    folder = pipeline.storage / PARAMETER_SWEEP / f"sweep={SWEEP}" / f"universe={universe}"
    assert metadata["sweep_page"].value == str(folder / "sweep.html")
    variants = pl.read_parquet(folder / "variants.parquet")
    # the pipeline's own run config is one of the variants: it is the universe's chain
    own = variants.filter(
        (pl.col("strategy.params.top_k") == 5) & (pl.col("risk.0.pct") == 0.05)
    ).row(0, named=True)
    spec = load_partition_spec()
    chain = one_engine_run(
        spec, universe, MONTHS, sample_dir, end=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    )
    assert own["final_equity"] == chain.final_equity
    assert own["fills"] == chain.fills.height
    assert variants["final_equity"].n_unique() == 9
    best = json.loads((folder / "overfitting.json").read_text())["best"]["variant"]
    assert metadata["best_variant"].value == best
    assert (folder / "best" / "report.html").is_file()
    assert_backtest_invariants(folder / "best", prices=sample_dir / "prices.parquet")
    assert not list(pipeline.storage.glob(".sweep-inputs-*"))  # the scratch inputs are gone


def test_a_bad_sweep_file_stops_the_code_location(sample_dir: Path, tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    (configs / "sweeps" / "broken.yaml").write_text("data.prices: [a.parquet]\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: data\.prices cannot be swept"):
        build_defs(data_dir=str(sample_dir), config_dir=str(configs))
