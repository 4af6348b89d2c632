"""The reference a month chain is compared with: one engine run over the whole period.

`one_engine_run` hands `run_backtest` a universe's inputs over every month at once
(`pipeline.universe_inputs`: each month's bars of the assets it holds, signals for its
members only), so a chain of months (Dagster runs, a UI backfill) must equal it bit for bit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from ml4t_pipeline.engine import BacktestResult, run_backtest
from ml4t_pipeline.pipeline.partitions import PartitionSpec
from ml4t_pipeline.pipeline.resources import BacktestConfigResource
from ml4t_pipeline.pipeline.universe_inputs import (
    UniverseInputs,
    universe_inputs,
    universe_months,
)


def _inputs(
    spec: PartitionSpec, universe: str, months: Sequence[dt.date], data_dir: Path
) -> UniverseInputs:
    return universe_inputs(
        spec,
        universe,
        months,
        prices=pl.scan_parquet(data_dir / "prices.parquet"),
        signals=pl.scan_parquet(data_dir / "signals.parquet"),
        context=pl.scan_parquet(data_dir / "context.parquet"),
    )


def universe_assets(
    spec: PartitionSpec, universe: str, months: Sequence[dt.date], data_dir: Path
) -> list[str]:
    """Every asset the universe's months hold bars for (members and carried positions)."""
    held = universe_months(spec, universe, months, pl.scan_parquet(data_dir / "prices.parquet"))
    return sorted({a for month in held.values() for a in month.assets})


def one_engine_run(
    spec: PartitionSpec,
    universe: str,
    months: Sequence[dt.date],
    data_dir: Path,
    *,
    end: dt.datetime,
) -> BacktestResult:
    """One `run_backtest` until `end` on the universe's inputs over `months`."""
    inputs = _inputs(spec, universe, months, data_dir)
    return run_backtest(
        BacktestConfigResource().run_config(),
        prices=inputs.prices,
        signals=inputs.signals,
        context=inputs.context,
        end=end,
    )
