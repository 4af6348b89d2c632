"""The optional corporate-actions input: a file the engine would refuse fails its blocking
contract (with the engine's message), nothing downstream runs, and later backtest runs are
refused; without the file the check passes and the backtest gets no actions."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl

from ml4t_pipeline.pipeline.demo import failure_lines
from ml4t_pipeline.pipeline.partitions import MonthKey
from tests.pipeline.conftest import JAN, Pipeline, make_pipeline, materialized, temp_instance


def _with_actions(sample_dir: Path, out: Path, actions: pl.DataFrame) -> Path:
    out.mkdir()
    for role in ("prices", "signals", "context"):
        shutil.copy(sample_dir / f"{role}.parquet", out / f"{role}.parquet")
    actions.write_parquet(out / "corporate_actions.parquet")
    return out


def test_a_bad_actions_file_fails_its_contract_and_blocks_the_backtest(
    sample_dir: Path, tmp_path: Path
) -> None:
    bad = pl.DataFrame(
        {
            "timestamp": [dt.datetime(2024, 1, 10, tzinfo=dt.UTC)],
            "asset_id": ["A0001"],
            "split_ration": [2.0],  # misspelt: would leave the split unapplied
        }
    )
    data = _with_actions(sample_dir, tmp_path / "data", bad)
    with temp_instance(tmp_path / "home") as instance:
        pipeline = make_pipeline(data, tmp_path, instance)
        inputs = pipeline.run("inputs_job", raise_on_error=False)
        assert not inputs.success
        checks = {c.check_name: c for c in inputs.get_asset_check_evaluations()}
        contract = checks["corporate_actions_contract"]
        assert not contract.passed
        assert "unknown column(s) ['split_ration']" in str(contract.description)
        assert str(data / "corporate_actions.parquet") in str(contract.description)
        # the prices contract judges splits against the actions: it waits for valid ones
        assert "prices_contract" not in checks
        later = pipeline.run("backtest_job", MonthKey(JAN, "core").key, raise_on_error=False)
        assert not later.success
        assert "corporate_actions_contract did not pass" in "\n".join(failure_lines(later))
        assert materialized(later) == set()


def test_without_an_actions_file_the_contract_passes_and_no_actions_are_stored(
    pipeline: Pipeline,
) -> None:
    inputs = pipeline.run("inputs_job")
    checks = {c.check_name: c for c in inputs.get_asset_check_evaluations()}
    assert checks["corporate_actions_contract"].passed
    raw = inputs.asset_materializations_for_node("raw_corporate_actions")[0]
    assert raw.metadata["present"].value is False
    assert inputs.output_for_node("validated_corporate_actions").is_empty()
    pipeline.run("backtest_job", MonthKey(JAN, "core").key)
    assert "actions" not in pipeline.backtest(MonthKey(JAN, "core")).tables
