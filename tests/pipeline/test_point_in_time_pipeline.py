"""The pipeline reads knowledge time as the CLI does: signals and context with `available_at`
(late rows, revisions, late-published older rows, a row carried across the month boundary)
give the same fills and equity month by month in Dagster as one `run_backtest` on the files."""

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from ml4t_pipeline.engine import run_backtest
from ml4t_pipeline.pipeline.definitions import build_defs
from ml4t_pipeline.pipeline.partitions import MonthKey
from ml4t_pipeline.pipeline.resources import BacktestConfigResource
from tests.pipeline.conftest import FEB, JAN, Pipeline, temp_instance

ASSETS = ("A", "B", "C")
UTC = dt.UTC
RUN = {
    "execution": {"initial_cash": 100_000, "fill_at": "next_open", "commission_rate": 0.001},
    "strategy": {
        "name": "top_k_rotation",
        "params": {
            "score": "ml_score",
            "top_k": 1,
            "weight": 0.9,
            "rebalance_every": 1,
            "warmup_bars": 0,
            "max_vix": 30,
        },
    },
}


def _days() -> list[dt.datetime]:
    """Business days of January and February 2024 (midnight UTC)."""
    day, days = dt.datetime(2024, 1, 1, tzinfo=UTC), []
    while day < dt.datetime(2024, 3, 1, tzinfo=UTC):
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def _write_inputs(data_dir: Path) -> list[dt.datetime]:
    days = _days()
    rng = np.random.default_rng(7)
    rows = []
    for asset in ASSETS:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, len(days))))
        for day, c in zip(days, close.tolist(), strict=True):
            rows.append((day, asset, c, c * 1.01, c * 0.99, c, 1e6))
    pl.DataFrame(
        rows,
        schema={
            "timestamp": pl.Datetime("us", "UTC"),
            "asset_id": pl.String,
            "open": pl.Float64,
            "high": pl.Float64,
            "low": pl.Float64,
            "close": pl.Float64,
            "volume": pl.Float64,
        },
        orient="row",
    ).write_parquet(data_dir / "prices.parquet")

    hour = dt.timedelta(hours=1)
    signals: list[tuple[dt.datetime, str, float | None, dt.datetime]] = []
    for i, day in enumerate(days):
        for k, asset in enumerate(ASSETS):
            if (i + k) % 3:  # a new score every third bar: the others carry the last one
                continue
            score = float(np.sin(i * 0.7 + k * 2.1))
            signals.append((day, asset, score, day + hour))  # known at the next bar
            if i % 4 == 0:  # a revision, known two bars later: replaces that score
                signals.append((day, asset, -score, day + dt.timedelta(days=2, hours=1)))
            if i % 5 == 1 and i >= 3:  # an older row published late: never replaces a newer one
                signals.append((days[i - 3], asset, 5.0, day + hour))
    last_jan = max(d for d in days if d.month == 1)
    signals.append((last_jan, "B", 9.0, last_jan + hour))  # known at February's first bar
    signals.append((days[10], "C", None, days[10] + 3 * hour))  # a revision with no score
    pl.DataFrame(
        signals,
        schema={
            "timestamp": pl.Datetime("us", "UTC"),
            "asset_id": pl.String,
            "ml_score": pl.Float64,
            "available_at": pl.Datetime("us", "UTC"),
        },
        orient="row",
    ).write_parquet(data_dir / "signals.parquet")

    context = []
    for i, day in enumerate(days):
        if i % 2:
            continue
        vix = 35.0 if i % 10 == 4 else 20.0
        context.append((day, vix, day + hour))
        if i % 6 == 0:  # a late-published older value that would halt trading if it were read
            context.append((day - dt.timedelta(days=1, hours=1), 40.0, day + hour))
    pl.DataFrame(
        context,
        schema={
            "timestamp": pl.Datetime("us", "UTC"),
            "vix": pl.Float64,
            "available_at": pl.Datetime("us", "UTC"),
        },
        orient="row",
    ).write_parquet(data_dir / "context.parquet")
    return days


def test_pipeline_months_equal_one_cli_run_with_knowledge_time(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write_inputs(data_dir)
    run_path, universes_path = tmp_path / "pipeline.yaml", tmp_path / "universes.yaml"
    run_path.write_text(yaml.safe_dump(RUN))
    universes_path.write_text(
        yaml.safe_dump({"start_month": "2024-01-01", "universes": {"abc": list(ASSETS)}})
    )
    full = run_backtest(
        BacktestConfigResource(run_config_path=str(run_path)).run_config(),
        prices=data_dir / "prices.parquet",
        signals=data_dir / "signals.parquet",
        context=data_dir / "context.parquet",
        start=dt.datetime(2024, 1, 1, tzinfo=UTC),
        end=dt.datetime(2024, 3, 1, tzinfo=UTC),
    )
    assert full.fills.height > 10  # the scores move the rotation

    with temp_instance(tmp_path / "home") as instance:
        storage = tmp_path / "storage"
        defs = build_defs(
            data_dir=str(data_dir),
            storage_dir=str(storage),
            run_config_path=str(run_path),
            universes_path=str(universes_path),
        )
        pipeline = Pipeline(defs=defs, instance=instance, storage=storage, data_dir=data_dir)
        assert pipeline.run("inputs_job").success
        months = [MonthKey(month, "abc") for month in (JAN, FEB)]
        for key in months:
            assert pipeline.run("backtest_job", key.key).success
        tables = [pipeline.backtest(key).tables for key in months]

    equity = pl.concat([t["equity"] for t in tables])
    fills = pl.concat([t["fills"] for t in tables])
    assert equity.equals(full.equity)
    assert fills.equals(full.fills)
