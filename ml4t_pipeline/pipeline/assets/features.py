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

Assets: the universe's members for the month (a `top_n_dollar_volume` rule ranks on the
`formation_bars` bars BEFORE the month: point in time) plus the members of earlier months,
whose positions and orders the chained state carries and which need bars to be marked,
sold or cancelled; only members get signals, so a strategy never picks a former member.
Both lists and the formation window are in the month's metadata.

One run may materialize a range of months (a single-run backfill): the body builds each
month and returns {partition key: table}.
"""

import contextlib
import datetime as dt
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from ml4t_pipeline.errors import DataError, Ml4tError
from ml4t_pipeline.keys import KEY_COLUMNS, PRICE_FILE_COLUMNS
from ml4t_pipeline.pipeline.checks import require_passed_input_checks
from ml4t_pipeline.pipeline.partitions import Formation, MonthKey, Universe, month_key
from ml4t_pipeline.pipeline.resources import BacktestConfigResource
from ml4t_pipeline.validation import align_point_in_time

FEATURE_TABLE = "feature_table"
BACKTEST_GROUP = "backtest"
SIGNALS = "signals"
SIGNALS_AS_OF = "signals_as_of"
CONTEXT = "context"
_TIMING = ("timestamp", "asset_id", "available_at", "event_time")
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=1, delay=5)
"""A step that fails on something transient (an OSError from shared storage) runs once more;
data, state and config errors are `dg.Failure(allow_retries=False)` and fail at once."""


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
    signal_assets: Sequence[Any] | None = None,
) -> pl.DataFrame:
    """The bars of `assets` in [start, end) with the signals and context current at each bar
    (signals of `signal_assets` only, when given: null for the other assets)."""
    in_universe = pl.col("asset_id").is_in(list(assets))
    with_signals = pl.col("asset_id").is_in(
        list(assets if signal_assets is None else signal_assets)
    )
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
    sig = _current(signals.filter(with_signals), calendar, end=end)
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


@dataclass(frozen=True, slots=True, kw_only=True)
class MonthAssets:
    """A month's members (traded, with signals) and the earlier members it keeps bars for."""

    formation: Formation
    carried: tuple[Any, ...]

    @property
    def members(self) -> tuple[Any, ...]:
        return self.formation.members

    @property
    def assets(self) -> list[Any]:
        return sorted({*self.members, *self.carried})

    def metadata(self) -> dict[str, Any]:
        window = self.formation.window
        return {
            "assets": len(self.assets),
            "universe_assets": dg.MetadataValue.text(", ".join(map(str, self.members))),
            "carried_assets": dg.MetadataValue.text(", ".join(map(str, self.carried)) or "none"),
            "formation_window": dg.MetadataValue.text(
                "explicit ids"
                if window is None
                else f"{window[0]:%Y-%m-%d} .. {window[1]:%Y-%m-%d}"
                + (
                    " (reaches into the month: no earlier bars)"
                    if self.formation.reaches_into_month
                    else ""
                )
            ),
        }


def month_assets(
    universe: Universe, prices: pl.LazyFrame, keys: Sequence[MonthKey], start_month: dt.date
) -> dict[MonthKey, MonthAssets]:
    """`MonthAssets` of each month in `keys` (one universe), forming every month from
    `start_month` once."""
    if not keys:
        return {}
    formations: dict[dt.date, Formation] = {}
    key = MonthKey(start_month, keys[0].universe)
    while key.month <= max(k.month for k in keys):
        formations[key.month] = universe.formation(prices, before=key.start)
        key = key.next()
    result = {}
    for key in keys:
        members = set(formations[key.month].members)
        earlier = {a for m, f in formations.items() if m < key.month for a in f.members}
        result[key] = MonthAssets(
            formation=formations[key.month], carried=tuple(sorted(earlier - members))
        )
    return result


def partition_keys(context: dg.AssetExecutionContext) -> list[MonthKey]:
    """The run's (month, universe) partitions, universe by universe, months in order."""
    return sorted(
        (month_key(k) for k in context.partition_keys), key=lambda k: (k.universe, k.month)
    )


@contextlib.contextmanager
def chain_beta_apis() -> Iterator[None]:
    """`MultiPartitionMapping` and `backfill_policy` are beta in Dagster 1.13; those two
    notices are silenced where the chain uses them, nothing else."""
    with warnings.catch_warnings():
        for pattern in (".*MultiPartitionMapping.*", ".*backfill_policy.*"):
            warnings.filterwarnings("ignore", message=pattern, category=dg.BetaWarning)
        yield


def new_month_condition() -> dg.AutomationCondition[Any]:
    """Materialize the latest month once it is missing with every dependency stored (its
    inputs; for `backtest` also its previous month), when nothing it needs is running. Fires
    once per time it becomes ready: a failed run is not relaunched tick after tick."""
    ready = (
        dg.AutomationCondition.missing() & ~dg.AutomationCondition.any_deps_missing()
    ).with_label("missing, dependencies stored")
    return (
        dg.AutomationCondition.in_latest_time_window()
        & ready.newly_true().since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("new month ready")


def deterministic(exc: Ml4tError) -> dg.Failure:
    """A data, state, config or storage error as a failure no retry can fix."""
    return dg.Failure(description=str(exc), allow_retries=False)


def materialize_feature_table(
    context: dg.AssetExecutionContext,
    backtest_config: BacktestConfigResource,
    prices: pl.LazyFrame,
    signals: pl.LazyFrame,
    context_frame: pl.LazyFrame,
) -> Mapping[str, pl.DataFrame]:
    try:
        require_passed_input_checks(context.instance)
        keys = partition_keys(context)
        start_month = backtest_config.partition_spec().start_month
        tables = {}
        for universe in sorted({k.universe for k in keys}):
            months = [k for k in keys if k.universe == universe]
            rule = backtest_config.universe(universe)
            for key, chosen in month_assets(rule, prices, months, start_month).items():
                table = build_feature_table(
                    prices,
                    signals,
                    context_frame,
                    assets=chosen.assets,
                    signal_assets=chosen.members,
                    start=key.start,
                    end=key.end,
                )
                tables[key.key] = table
                context.add_asset_metadata(
                    {
                        "month": key.month.isoformat(),
                        "universe": key.universe,
                        **chosen.metadata(),
                        "bars": table["timestamp"].n_unique(),
                        "rows": table.height,
                        "rows_with_signals": int(table["available_at"].is_not_null().sum()),
                    },
                    partition_key=key.key,
                )
    except Ml4tError as exc:
        raise deterministic(exc) from exc
    return tables


def feature_table_asset(
    partitions: dg.PartitionsDefinition, *, code_version: str | None = None
) -> dg.AssetsDefinition:
    """`feature_table` over the (month, universe) partitions (one run may build a range)."""
    with chain_beta_apis():
        return dg.asset(
            name=FEATURE_TABLE,
            partitions_def=partitions,
            group_name=BACKTEST_GROUP,
            kinds={"polars"},
            backfill_policy=dg.BackfillPolicy.single_run(),
            retry_policy=TRANSIENT_RETRY,
            code_version=code_version,
            automation_condition=new_month_condition(),
            ins={
                "prices": dg.AssetIn("validated_prices"),
                "signals": dg.AssetIn("validated_signals"),
                "context_frame": dg.AssetIn("validated_context"),
            },
            description=__doc__,
        )(materialize_feature_table)
