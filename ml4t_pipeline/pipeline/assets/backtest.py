"""`backtest`: one month of one universe, continuing from the previous month's engine state.

DESIGN (issue 16, the month chain in the asset graph)

- One asset, no op graph and no in-memory IO: re-execution from failure reloads every input
  from storage. `backtest` depends on ITSELF, the previous month of the same universe
  (`AssetDep("backtest", MultiPartitionMapping(month: TimeWindowPartitionMapping(-1, -1),
  universe: identity))`); the first configured month has no parent and starts from
  `execution.initial_cash`. The dependency is not loaded through the IO manager: the body
  reads the state of the month before its range from storage (one resolved version of that
  month: tables, state and digest together) after verifying the chain's lineage.
- `BackfillPolicy.single_run()`: a backfill of months x universes becomes one run per range
  Dagster groups (for a multi-partition subset it holds one dimension fixed: typically one run
  per universe over all its months, or one run per month when there are fewer months than
  universes). The body groups the run's partition keys by universe and chains each universe's
  months in month order in memory, writing one TableSet per month (the IO manager writes
  and reads several partitions as {partition key: value}). Universes run in parallel as
  separate runs (several concurrent runs allowed; `dagster/concurrency_key` tag per universe
  is set by the jobs, see dagster.yaml).
- Deterministic errors (data, state, config, storage; a gap: the month before the range not
  stored) are `dg.Failure(allow_retries=False)` naming the month to run; run retries are
  instance-level with `retry_on_asset_or_op_failure: false`, so only runs that die for other
  reasons (worker crash, detected by run monitoring) are retried.
- Lineage (`pipeline/chain.py`): a fingerprint of the run config (execution, strategy, risk,
  benchmark, metrics; the universe's definition, the start month, whether corporate actions
  are present) is stored in each month's partition.json and summary; the config part is the
  asset's `code_version`, so Dagster shows every month stale after a config change. Continuing
  from month m-1 verifies the whole chain before it: every stored month's state matches its
  recorded sha256, was built under the same fingerprint, started from the state its
  predecessor has now, and has no failed blocking check on its latest materialization; the
  first broken month is named as the one to re-run. Within a run, each month passes the
  bookkeeping checks (the same functions the blocking checks call) before the next month
  starts from it.
- Point-in-time universes: `top_n_dollar_volume` members of month m are ranked on the
  `formation_bars` bars before m; the month's feature table holds the members plus the
  members of earlier months (their positions and orders need bars), with signals only for
  the members; both lists are in the month's metadata.

With a corporate-actions file in the data directory, every month hands the engine all of its
rows (`validated_corporate_actions`); the engine applies each action once, in the month whose
bars reach its ex-date, and the state it saves carries the effects (shares, average prices,
levels, orders) into the next month. The month's tables then include `actions`. Without the
file the engine gets no actions input, as before it existed.
"""

import datetime as dt
import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from ml4t_pipeline.engine import BacktestResult, EngineState, RunConfig, run_backtest
from ml4t_pipeline.errors import ConfigError, Ml4tError, StateError
from ml4t_pipeline.keys import KEY_COLUMNS, PRICE_FILE_COLUMNS
from ml4t_pipeline.pipeline import checks
from ml4t_pipeline.pipeline.assets.features import (
    BACKTEST_GROUP,
    CONTEXT,
    SIGNALS,
    SIGNALS_AS_OF,
    TRANSIENT_RETRY,
    chain_beta_apis,
    deterministic,
    new_month_condition,
    partition_keys,
)
from ml4t_pipeline.pipeline.io_manager import TableSet
from ml4t_pipeline.pipeline.layout import PARTITION_FILE, STATE_FILE, SUMMARY_FILE
from ml4t_pipeline.pipeline.partitions import MONTH, UNIVERSE, MonthKey
from ml4t_pipeline.pipeline.resources import BacktestConfigResource, ResultStore
from ml4t_pipeline.pipeline.resources.storage import BACKTEST

RESULT_TABLES = ("equity", "fills", "orders", "trades", "rejections")
ACTIONS_TABLE = "actions"  # stored only for runs with a corporate-actions input
TOP_TRADES = 10
_WALL_CLOCK = ("wall_s", "bars_per_s")


def previous_month_mapping() -> dg.MultiPartitionMapping:
    """backtest (month m, universe u) depends on backtest (m - 1, u); the first month on
    nothing."""
    with chain_beta_apis():
        return dg.MultiPartitionMapping(
            {
                MONTH: dg.DimensionPartitionMapping(
                    MONTH, dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
                ),
                UNIVERSE: dg.DimensionPartitionMapping(UNIVERSE, dg.IdentityPartitionMapping()),
            }
        )


@dataclass(frozen=True, slots=True)
class ChainStart:
    """Where a month starts: the previous month's state, or None for the first month."""

    key: MonthKey
    state: EngineState | None
    state_digest: str | None = None  # sha256 of the previous month's saved state


@dataclass(frozen=True, slots=True)
class EngineFrames:
    prices: pl.DataFrame
    signals: pl.DataFrame
    context: pl.DataFrame


def engine_frames(features: pl.DataFrame) -> EngineFrames:
    """The feature table split back into the engine's prices / signals / context inputs.

    Signals with knowledge time (`signals_as_of`) go back as the distinct rows current at some
    bar, with their own timestamp and available_at, so the engine applies its own rule to
    them (as `ml4t-pipeline backtest` does on the file); without it, as the rows of their bars.
    The context goes back as its value at each bar."""
    signal_rows = features.filter(pl.col(SIGNALS).is_not_null())
    if features.get_column(SIGNALS_AS_OF).any():
        signal_rows = signal_rows.unique(
            ["signal_event_time", "asset_id", "available_at"], maintain_order=True
        ).select(
            pl.col("signal_event_time").alias("timestamp"),
            "asset_id",
            "available_at",
            pl.col(SIGNALS).struct.unnest(),
        )
    else:
        signal_rows = signal_rows.select(*KEY_COLUMNS, pl.col(SIGNALS).struct.unnest())
    context_rows = features.filter(pl.col(CONTEXT).is_not_null()).unique(
        "timestamp", maintain_order=True
    )
    return EngineFrames(
        prices=features.select(PRICE_FILE_COLUMNS),
        signals=signal_rows,
        context=context_rows.select("timestamp", pl.col(CONTEXT).struct.unnest()),
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _column_type(dtype: pl.DataType) -> str:
    if dtype.is_float():
        return "float"
    return "int" if dtype.is_integer() else "string"


def _top_trades(trades: pl.DataFrame) -> dg.MetadataValue:
    """The closed trades with the largest absolute P&L, as a metadata table."""
    columns = ["asset_id", "entry_time", "exit_time", "qty", "entry_price", "exit_price"]
    columns += ["pnl", "exit_reason"]
    top = (
        trades.filter(pl.col("exit_reason") != "open")
        .sort(pl.col("pnl").abs(), descending=True)
        .head(TOP_TRADES)
        .select(columns)
    )
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, _column_type(dtype)) for name, dtype in top.schema.items()]
    )
    records = [
        dg.TableRecord(
            {
                name: value
                if isinstance(value, int | float)
                else ""
                if value is None
                else str(value)
                for name, value in row.items()
            }
        )
        for row in top.iter_rows(named=True)
    ]
    return dg.MetadataValue.table(records, schema=schema)


def _pct(value: float | None) -> float | None:
    return round(100.0 * value, 2) if value is not None and math.isfinite(value) else None


def _ratio(value: float | None) -> float | None:
    return round(value, 3) if value is not None and math.isfinite(value) else None


def _cents(value: float) -> float:
    return round(value, 2)


def headline(result: BacktestResult) -> dict[str, Any]:
    """The numbers a quant reads first: percentages (2 dp), ratios (3 dp), money (cents)."""
    ret = _finite(result.final_equity / result.start_equity - 1.0)
    drawdown = result.metrics.get("max_drawdown")
    return {
        "final_equity": _cents(result.final_equity),
        "return_pct": _pct(ret),
        "max_drawdown_pct": _pct(drawdown),
        "sharpe": _ratio(result.metrics.get("sharpe")),
        "trades_closed": int(result.metrics.get("n_trades", 0.0)),
        "fills": result.fills.height,
        "rejections": result.rejections.height,
    }


def _headline_markdown(numbers: Mapping[str, Any], start_equity: float) -> str:
    def shown(value: Any, unit: str = "") -> str:
        return "n/a" if value is None else f"{value:,}{unit}" if unit else f"{value:,}"

    rows = [
        ("start equity", f"{start_equity:,.2f}"),
        ("final equity", f"{numbers['final_equity']:,.2f}"),
        ("return", shown(numbers["return_pct"], " %")),
        ("max drawdown", shown(numbers["max_drawdown_pct"], " %")),
        ("sharpe", shown(numbers["sharpe"])),
        (
            "closed trades / fills / rejections",
            f"{numbers['trades_closed']} / {numbers['fills']} / {numbers['rejections']}",
        ),
    ]
    return "| | |\n|---|---:|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def backtest_metadata(
    result: BacktestResult, start: ChainStart, fingerprint: str
) -> dict[str, Any]:
    key = start.key
    numbers = headline(result)
    return {
        **numbers,
        "headline": dg.MetadataValue.md(_headline_markdown(numbers, result.start_equity)),
        "bars": result.bars,
        "bars_per_s": round(result.bars_per_s) if math.isfinite(result.bars_per_s) else None,
        "continued_from": str(key.previous()) if start.state is not None else "fresh start",
        "config_fingerprint": dg.MetadataValue.text(fingerprint[:16]),
        "top_trades": _top_trades(result.trades),
    }


def run_month(
    config: RunConfig, features: pl.DataFrame, actions: pl.DataFrame | None, start: ChainStart
) -> BacktestResult:
    """The one engine call of a month: its bars, continuing from `start`."""
    frames = engine_frames(features)
    return run_backtest(
        config,
        prices=frames.prices,
        signals=frames.signals,
        context=frames.context,
        corporate_actions=actions,
        start=start.key.start,
        end=start.key.end,
        initial_state=start.state,
    )


def month_tables(
    result: BacktestResult,
    start: ChainStart,
    config: RunConfig,
    fingerprint: str,
    *,
    with_actions: bool,
) -> TableSet:
    """The month's TableSet: result tables, state, summary, and its lineage (partition.json)."""
    key = start.key
    state_json = result.final_state.to_json()
    start_cash = start.state.cash if start.state is not None else config.execution.initial_cash
    partition = {
        "month": key.month.isoformat(),
        "universe": key.universe,
        "start_cash": start_cash,
        "start_equity": result.start_equity,
        "continued_from": str(key.previous()) if start.state is not None else None,
        "previous_state_sha256": start.state_digest,
        "state_sha256": hashlib.sha256(state_json.encode()).hexdigest(),
        "config_fingerprint": fingerprint,
    }
    summary = {k: v for k, v in result.summary().items() if k not in _WALL_CLOCK}
    summary["config_fingerprint"] = fingerprint
    tables = {name: getattr(result, name) for name in RESULT_TABLES}
    if with_actions:
        tables[ACTIONS_TABLE] = result.actions
    return TableSet(
        tables=tables,
        texts={
            STATE_FILE: state_json,
            SUMMARY_FILE: json.dumps(summary, indent=2, sort_keys=True),
            PARTITION_FILE: json.dumps(partition, indent=2, sort_keys=True),
        },
    )


def require_sound_bookkeeping(key: MonthKey, tables: TableSet, features: pl.DataFrame) -> None:
    """Within one run, the next month starts from this one only if its bookkeeping holds
    (the rules of the blocking checks: `checks.bookkeeping_breaches`)."""
    breaches = checks.bookkeeping_breaches(tables, features)
    if breaches:
        found = "; ".join(f"{b.rule}: {b.n_rows} row(s), {b.detail}" for b in breaches)
        msg = (
            f"backtest partition {key} failed its bookkeeping ({found}); the chain does not "
            f"continue from it. Fix the cause and re-run from {key}"
        )
        raise StateError(msg)


def chain_start(
    key: MonthKey,
    *,
    start_month: dt.date,
    fingerprint: str,
    store: ResultStore,
    instance: dg.DagsterInstance,
) -> ChainStart:
    """The first month of a run's range: fresh in the first configured month, else the state
    of the month before it, read as one version after verifying the chain up to it."""
    if key.month == start_month:
        return ChainStart(key, None)
    previous = store.continue_from(
        key.previous(),
        start_month=start_month,
        fingerprint=fingerprint,
        instance=instance,
        checks=tuple(checks.BACKTEST_CHECKS),
    )
    return ChainStart(key, EngineState.from_json(previous.state_json), previous.state_digest)


def _consecutive(months: Sequence[MonthKey]) -> None:
    for before, after in itertools.pairwise(months):
        if after != before.next():
            msg = f"a backtest run must cover consecutive months; {before} is followed by {after}"
            raise ConfigError(msg)


def _by_partition(keys: Sequence[MonthKey], value: Any) -> dict[str, Any]:
    """A loaded input as {partition key: value} (one partition arrives as the bare value)."""
    if isinstance(value, Mapping):
        return dict(value)
    return {keys[0].key: value}


def materialize_backtest(
    context: dg.AssetExecutionContext,
    feature_table: Any,
    corporate_actions: pl.DataFrame,
    backtest_config: BacktestConfigResource,
    store: ResultStore,
) -> Mapping[str, TableSet]:
    """Each universe of the run: its months in order, each from the one before."""
    try:
        keys = partition_keys(context)
        features = _by_partition(keys, feature_table)
        config = backtest_config.run_config()
        start_month = backtest_config.partition_spec().start_month
        actions = corporate_actions if corporate_actions.height else None
        gate_each_month = len(keys) > 1  # one month: its blocking checks run after the step
        out: dict[str, TableSet] = {}
        for universe in sorted({k.universe for k in keys}):
            months = [k for k in keys if k.universe == universe]
            _consecutive(months)
            fingerprint = backtest_config.fingerprint(
                universe, corporate_actions=actions is not None
            )
            start = chain_start(
                months[0],
                start_month=start_month,
                fingerprint=fingerprint,
                store=store,
                instance=context.instance,
            )
            for key in months:
                result = run_month(config, features[key.key], actions, start)
                tables = month_tables(
                    result, start, config, fingerprint, with_actions=actions is not None
                )
                if gate_each_month:
                    require_sound_bookkeeping(key, tables, features[key.key])
                out[key.key] = tables
                context.add_asset_metadata(
                    backtest_metadata(result, start, fingerprint), partition_key=key.key
                )
                digest = json.loads(tables.texts[PARTITION_FILE])["state_sha256"]
                start = ChainStart(key.next(), result.final_state, digest)
    except Ml4tError as exc:
        raise deterministic(exc) from exc
    return out


def backtest_asset(
    partitions: dg.PartitionsDefinition, *, code_version: str | None = None
) -> dg.AssetsDefinition:
    """`backtest` over the (month, universe) partitions, depending on its own previous month."""
    with chain_beta_apis():
        return dg.asset(
            key=BACKTEST,
            partitions_def=partitions,
            group_name=BACKTEST_GROUP,
            kinds={"polars"},
            code_version=code_version,
            backfill_policy=dg.BackfillPolicy.single_run(),
            retry_policy=TRANSIENT_RETRY,
            automation_condition=new_month_condition(),
            deps=[dg.AssetDep(BACKTEST, partition_mapping=previous_month_mapping())],
            ins={
                "feature_table": dg.AssetIn("feature_table"),
                "corporate_actions": dg.AssetIn("validated_corporate_actions"),
            },
            description=__doc__,
        )(materialize_backtest)
