"""A `Date`-typed timestamp column reads as its midnight UTC through the whole pipeline: the
validated frames hold the same instants, the contracts pass, and the backtest of a month is
the one the same data with Datetime timestamps gives, table for table."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from ml4t_pipeline.pipeline.partitions import MonthKey
from tests.invariants import check_backtest_tables
from tests.pipeline.conftest import JAN, make_pipeline, temp_instance, universe_prices

ROLES = ("prices", "signals", "context")


def _as_dates(sample_dir: Path, out: Path) -> None:
    out.mkdir()
    for role in ROLES:
        frame = pl.read_parquet(sample_dir / f"{role}.parquet")
        assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
        assert (frame["timestamp"].dt.time() == dt.time(0)).all()  # daily bars at midnight
        frame.with_columns(pl.col("timestamp").dt.date()).write_parquet(out / f"{role}.parquet")


def test_date_timestamps_run_through_the_pipeline_as_midnight_utc(
    sample_dir: Path, tmp_path: Path
) -> None:
    date_dir = tmp_path / "dates"
    _as_dates(sample_dir, date_dir)
    key = MonthKey(JAN, "core")
    results = {}
    for name, data_dir in (("datetime", sample_dir), ("date", date_dir)):
        home = tmp_path / name
        with temp_instance(home / "home") as instance:
            pipeline = make_pipeline(data_dir, home, instance)
            inputs = pipeline.run("inputs_job")
            assert inputs.success
            assert all(c.passed for c in inputs.get_asset_check_evaluations())
            for role in ROLES:
                frame = inputs.output_for_node(f"validated_{role}")
                assert frame.schema["timestamp"] == pl.Datetime("us", "UTC"), (name, role)
            assert pipeline.run("backtest_job", key.key).success
            results[name] = (inputs, pipeline.backtest(key))
    (dt_inputs, dt_tables), (date_inputs, date_tables) = results["datetime"], results["date"]
    for role in ROLES:
        node = f"validated_{role}"
        assert date_inputs.output_for_node(node).equals(dt_inputs.output_for_node(node))
    assert date_tables.tables.keys() == dt_tables.tables.keys()
    for name, table in dt_tables.tables.items():
        assert date_tables.tables[name].equals(table), name
    assert date_tables.texts["summary.json"] == dt_tables.texts["summary.json"]
    assert date_tables.tables["fills"].height > 0
    check_backtest_tables(
        fills=date_tables.tables["fills"],
        equity=date_tables.tables["equity"],
        prices=universe_prices(sample_dir, [f"A{i:04d}" for i in range(20)]),
        initial_cash=float(json.loads(date_tables.texts["partition.json"])["start_cash"]),
        summary=json.loads(date_tables.texts["summary.json"]),
    )
