"""`feature_table`: one month of one universe, prices joined point-in-time with signals and context.

Columns: the price columns; `signals` (a struct of every signal column, null where no signal
is usable at that bar), `available_at` and `signal_event_time`; `context` (a struct of the
context columns), `context_available_at` and `context_event_time`. A signal or context row is
placed at the first bar at which it was known (`align_point_in_time`), so at bar t the table
holds only values known by t; the blocking check `no_look_ahead` proves it row by row.
"""

import datetime as dt
from collections.abc import Sequence
from typing import Any

import dagster as dg
import polars as pl

from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import KEY_COLUMNS, PRICE_FILE_COLUMNS
from ml4t_pipeline.pipeline.checks import require_passed_input_checks
from ml4t_pipeline.pipeline.partitions import month_key
from ml4t_pipeline.pipeline.resources import BacktestConfigResource
from ml4t_pipeline.validation import align_point_in_time

FEATURE_TABLE = "feature_table"
BACKTEST_GROUP = "backtest"
SIGNALS = "signals"
CONTEXT = "context"
_TIMING = ("timestamp", "asset_id", "available_at", "event_time")


def _known_after(frame: pl.LazyFrame, instant: dt.datetime | None) -> pl.LazyFrame:
    """Rows known strictly after `instant` (all rows when None): the only ones that can land
    on a bar later than `instant` once aligned."""
    if instant is None:
        return frame
    known = pl.col("timestamp")
    if "available_at" in frame.collect_schema().names():
        known = pl.max_horizontal("timestamp", "available_at")
    return frame.filter(known > instant)


def _aligned(
    frame: pl.LazyFrame,
    calendar: pl.Series,
    *,
    start: dt.datetime,
    end: dt.datetime,
    previous_bar: dt.datetime | None,
) -> pl.DataFrame:
    rows = _known_after(frame.filter(pl.col("timestamp") < end), previous_bar).collect()
    return align_point_in_time(rows, calendar).filter(pl.col("timestamp") >= start)


def build_feature_table(
    prices: pl.LazyFrame,
    signals: pl.LazyFrame,
    context: pl.LazyFrame,
    *,
    assets: Sequence[Any],
    start: dt.datetime,
    end: dt.datetime,
) -> pl.DataFrame:
    """The bars of `assets` in [start, end) with the signals and context usable at each bar."""
    in_universe = pl.col("asset_id").is_in(list(assets))
    calendar = (
        prices.filter(in_universe & (pl.col("timestamp") < end))
        .select(pl.col("timestamp").unique().sort())
        .collect()
        .to_series()
    )
    before = calendar.filter(calendar < start)
    previous_bar = before[-1] if before.len() else None
    month = (
        prices.filter(in_universe & pl.col("timestamp").is_between(start, end, closed="left"))
        .select(PRICE_FILE_COLUMNS)
        .sort(KEY_COLUMNS)
        .collect()
    )
    if month.is_empty():
        msg = f"no price bars for these {len(assets)} assets in [{start:%Y-%m-%d}, {end:%Y-%m-%d})"
        raise DataError(msg)
    sig = _aligned(
        signals.filter(in_universe), calendar, start=start, end=end, previous_bar=previous_bar
    )
    sig_columns = [c for c in sig.columns if c not in _TIMING]
    ctx = _aligned(context, calendar, start=start, end=end, previous_bar=previous_bar)
    ctx_columns = [c for c in ctx.columns if c not in _TIMING]
    return month.join(
        sig.select(
            *KEY_COLUMNS,
            pl.struct(sig_columns).alias(SIGNALS),
            "available_at",
            pl.col("event_time").alias("signal_event_time"),
        ),
        on=list(KEY_COLUMNS),
        how="left",
    ).join(
        ctx.select(
            "timestamp",
            pl.struct(ctx_columns).alias(CONTEXT),
            pl.col("available_at").alias("context_available_at"),
            pl.col("event_time").alias("context_event_time"),
        ),
        on="timestamp",
        how="left",
    )


def materialize_feature_table(
    context: dg.AssetExecutionContext,
    backtest_config: BacktestConfigResource,
    prices: pl.LazyFrame,
    signals: pl.LazyFrame,
    context_frame: pl.LazyFrame,
) -> dg.Output[pl.DataFrame]:
    require_passed_input_checks(context.instance)
    key = month_key(context.partition_key)
    assets = backtest_config.universe(key.universe).select(prices)
    table = build_feature_table(
        prices, signals, context_frame, assets=assets, start=key.start, end=key.end
    )
    return dg.Output(
        table,
        metadata={
            "month": key.month.isoformat(),
            "universe": key.universe,
            "assets": len(assets),
            "bars": table["timestamp"].n_unique(),
            "rows": table.height,
            "rows_with_signals": int(table["available_at"].is_not_null().sum()),
        },
    )


def feature_table_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`feature_table` over the (month, universe) partitions."""
    return dg.asset(
        name=FEATURE_TABLE,
        partitions_def=partitions,
        group_name=BACKTEST_GROUP,
        kinds={"polars"},
        ins={
            "prices": dg.AssetIn("validated_prices"),
            "signals": dg.AssetIn("validated_signals"),
            "context_frame": dg.AssetIn("validated_context"),
        },
        description=__doc__,
    )(materialize_feature_table)
