"""The reference a month chain is compared with: one engine run over the whole period.

A point-in-time universe changes its members monthly; the feature table gives a month's bars
to every asset the month holds (members and carried positions) and signals to its members
only. `one_engine_run` hands `run_backtest` exactly that, over every month at once, so a
chain of months (Dagster runs, a UI backfill) must equal it bit for bit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from ml4t_pipeline.engine import BacktestResult, run_backtest
from ml4t_pipeline.pipeline.assets.features import MonthAssets, month_assets
from ml4t_pipeline.pipeline.partitions import MonthKey, PartitionSpec
from ml4t_pipeline.pipeline.resources import BacktestConfigResource


def months_of(
    spec: PartitionSpec, universe: str, months: Sequence[dt.date], data_dir: Path
) -> dict[MonthKey, MonthAssets]:
    """What each month of `universe` holds (members, carried assets), as the pipeline forms it."""
    prices = pl.scan_parquet(data_dir / "prices.parquet")
    keys = [MonthKey(m, universe) for m in months]
    return month_assets(spec.universes[universe], prices, keys, spec.start_month)


def universe_assets(
    spec: PartitionSpec, universe: str, months: Sequence[dt.date], data_dir: Path
) -> list[str]:
    """Every asset the universe's months hold bars for (members and carried positions)."""
    held = months_of(spec, universe, months, data_dir).values()
    return sorted({a for m in held for a in m.assets})


def one_engine_run(
    spec: PartitionSpec,
    universe: str,
    months: Sequence[dt.date],
    data_dir: Path,
    *,
    end: dt.datetime,
) -> BacktestResult:
    """One `run_backtest` until `end`: each month's bars of the assets that month holds (as
    the feature table gives them: an asset's bars start with the first month that holds it,
    so the equal-weight benchmark buys what the first month holds), signals only for each
    month's members."""
    chosen = months_of(spec, universe, months, data_dir)
    assets = sorted({a for m in chosen.values() for a in m.assets})

    def load(name: str) -> pl.DataFrame:
        frame = pl.read_parquet(data_dir / f"{name}.parquet")
        return (
            frame.filter(pl.col("asset_id").is_in(assets)) if "asset_id" in frame.columns else frame
        )

    members = pl.DataFrame(
        [(key.month, asset) for key, month in chosen.items() for asset in month.members],
        schema={"month": pl.Date, "asset_id": pl.String},
        orient="row",
    )
    month_of = pl.col("timestamp").dt.truncate("1mo").dt.date()
    signals = load("signals").join(
        members, left_on=[month_of, "asset_id"], right_on=["month", "asset_id"], how="semi"
    )
    held = pl.DataFrame(
        [(key.month, asset) for key, month in chosen.items() for asset in month.assets],
        schema={"month": pl.Date, "asset_id": pl.String},
        orient="row",
    )
    prices = load("prices")
    in_months = month_of.is_in(held["month"].unique().implode())
    prices = pl.concat(
        [
            prices.filter(~in_months),  # (bars outside the months: as they are)
            prices.filter(in_months).join(
                held, left_on=[month_of, "asset_id"], right_on=["month", "asset_id"], how="semi"
            ),
        ]
    )
    return run_backtest(
        BacktestConfigResource().run_config(),
        prices=prices,
        signals=signals,
        context=load("context"),
        end=end,
    )
