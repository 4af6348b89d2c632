"""`feature_table`: one month of one universe, prices joined point-in-time with signals and context.

Columns: the price columns; `signals` (a struct of every signal column, null where no signal
is current at that bar), `available_at` and `signal_event_time` of that signal row,
`signals_as_of`; `context` (a struct of the context columns), `context_available_at` and
`context_event_time`. At each bar the table holds the row the engine reads there
(`align_point_in_time` implements the engine's rule, `keys.becoming_current`), so at bar t
only values known by t; the blocking check `no_look_ahead` proves it row by row.

- Signals with `available_at` (`signals_as_of` true): the row current at the bar (the latest
  timestamp among the rows known by then, in its latest known version), carried to later
  bars until a newer row is known; rows known before the month count from its first bar.
- Signals without it: a row counts at its own bar only (null elsewhere).
- Context: always as of the bar (the engine's `context_as_of`), carried across months.
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
SIGNALS_AS_OF = "signals_as_of"
CONTEXT = "context"
_TIMING = ("timestamp", "asset_id", "available_at", "event_time")


def _current(frame: pl.LazyFrame, calendar: pl.Series, *, end: dt.datetime) -> pl.DataFrame:
    """The rows of `frame` stamped before `end`, each at the bar it becomes current at
    (`align_point_in_time`, the engine's rule); as they are when `frame` has no available_at."""
    return align_point_in_time(frame.filter(pl.col("timestamp") < end).collect(), calendar)


def build_feature_table(
    prices: pl.LazyFrame,
    signals: pl.LazyFrame,
    context: pl.LazyFrame,
    *,
    assets: Sequence[Any],
    start: dt.datetime,
    end: dt.datetime,
) -> pl.DataFrame:
    """The bars of `assets` in [start, end) with the signals and context current at each bar."""
    in_universe = pl.col("asset_id").is_in(list(assets))
    calendar = (
        prices.filter(in_universe & (pl.col("timestamp") < end))
        .select(pl.col("timestamp").unique().sort())
        .collect()
        .to_series()
    )
    month = (
        prices.filter(in_universe & pl.col("timestamp").is_between(start, end, closed="left"))
        .select(PRICE_FILE_COLUMNS)
        .sort(KEY_COLUMNS)
        .collect()
    )
    if month.is_empty():
        msg = f"no price bars for these {len(assets)} assets in [{start:%Y-%m-%d}, {end:%Y-%m-%d})"
        raise DataError(msg)
    as_of = "available_at" in signals.collect_schema().names()
    sig = _current(signals.filter(in_universe), calendar, end=end)
    sig_columns = [c for c in sig.columns if c not in _TIMING]
    sig = sig.select(
        *KEY_COLUMNS,
        pl.struct(sig_columns).alias(SIGNALS),
        "available_at",
        pl.col("event_time").alias("signal_event_time"),
    )
    if as_of:  # the row current at each bar: the last one that became current at or before it
        table = month.join_asof(sig, on="timestamp", by="asset_id", strategy="backward")
    else:  # a row counts at its own bar only
        table = month.join(sig, on=list(KEY_COLUMNS), how="left")
    ctx = _current(context, calendar, end=end).sort("timestamp")
    ctx_columns = [c for c in ctx.columns if c not in _TIMING]
    ctx = ctx.select(
        "timestamp",
        pl.struct(ctx_columns).alias(CONTEXT),
        pl.col("available_at").alias("context_available_at"),
        pl.col("event_time").alias("context_event_time"),
    )
    return table.with_columns(pl.lit(as_of).alias(SIGNALS_AS_OF)).join_asof(
        ctx, on="timestamp", strategy="backward"
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
