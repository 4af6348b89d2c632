"""A universe's inputs over many months at once, as its month chain sees them month by month.

A point-in-time universe changes its members monthly; a month's feature table gives that
month's bars to every asset the month holds (members and carried positions) and signals to
its members only. `universe_inputs` cuts the validated prices and signals the same way over
every month at once, so one `run_backtest` on them is the chain of months, bit for bit (the UI
backfill tests compare the two), and a parameter sweep of a universe runs on what its chain
runs on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ml4t_pipeline.keys import ASSET_ID, TIMESTAMP
from ml4t_pipeline.pipeline.assets.features import MonthAssets, month_assets
from ml4t_pipeline.pipeline.partitions import MonthKey, PartitionSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class UniverseInputs:
    """The frames one run over the months reads, and what each month holds."""

    prices: pl.DataFrame
    signals: pl.DataFrame
    context: pl.DataFrame
    months: dict[MonthKey, MonthAssets]

    @property
    def assets(self) -> list[str]:
        """Every asset a month holds bars for (members and carried positions)."""
        return sorted({a for m in self.months.values() for a in m.assets})


def universe_months(
    spec: PartitionSpec, universe: str, months: Sequence[dt.date], prices: pl.LazyFrame
) -> dict[MonthKey, MonthAssets]:
    """What each month of `universe` holds (members, carried assets), as the pipeline forms it."""
    keys = [MonthKey(m, universe) for m in months]
    return month_assets(spec.universes[universe], prices, keys, spec.start_month)


def universe_inputs(
    spec: PartitionSpec,
    universe: str,
    months: Sequence[dt.date],
    *,
    prices: pl.LazyFrame,
    signals: pl.LazyFrame,
    context: pl.LazyFrame,
) -> UniverseInputs:
    """Each month's bars of the assets that month holds (an asset's bars start with the first
    month that holds it, so the equal-weight benchmark buys what the first month holds), the
    bars outside the months as they are, and signals only for each month's members."""
    chosen = universe_months(spec, universe, months, prices)
    assets = sorted({a for m in chosen.values() for a in m.assets})
    month_of = pl.col(TIMESTAMP).dt.truncate("1mo").dt.date()

    def pairs(members: bool) -> pl.DataFrame:
        return pl.DataFrame(
            [
                (key.month, asset)
                for key, month in chosen.items()
                for asset in (month.members if members else month.assets)
            ],
            schema={"month": pl.Date, ASSET_ID: pl.String},
            orient="row",
        )

    def held_assets(frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame.filter(pl.col(ASSET_ID).is_in(assets))

    members, held = pairs(members=True), pairs(members=False)
    kept_signals = held_assets(signals).join(
        members.lazy(), left_on=[month_of, ASSET_ID], right_on=["month", ASSET_ID], how="semi"
    )
    in_months = month_of.is_in(held["month"].unique().implode())
    universe_prices = held_assets(prices)
    kept_prices = pl.concat(
        [
            universe_prices.filter(~in_months),  # (bars outside the months: as they are)
            universe_prices.filter(in_months).join(
                held.lazy(), left_on=[month_of, ASSET_ID], right_on=["month", ASSET_ID], how="semi"
            ),
        ]
    )
    return UniverseInputs(
        prices=kept_prices.collect(),
        signals=kept_signals.collect(),
        context=context.collect(),
        months=chosen,
    )
