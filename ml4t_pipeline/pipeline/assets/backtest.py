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
  the universe's definition, the start month, whether corporate actions are present) is
  stored in each month's partition.json and summary; the config part is the asset's
  `code_version`, so Dagster shows every month stale after a config change. Continuing from
  month m-1 verifies the whole chain before it: every stored month's state matches its
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

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from ml4t_pipeline.engine import BacktestResult, EngineState, run_backtest
from ml4t_pipeline.keys import KEY_COLUMNS, PRICE_FILE_COLUMNS
from ml4t_pipeline.pipeline.assets.features import (
    BACKTEST_GROUP,
    CONTEXT,
    SIGNALS,
    SIGNALS_AS_OF,
)
from ml4t_pipeline.pipeline.io_manager import TableSet
from ml4t_pipeline.pipeline.layout import PARTITION_FILE, STATE_FILE, SUMMARY_FILE
from ml4t_pipeline.pipeline.partitions import MonthKey, month_key
from ml4t_pipeline.pipeline.plots import equity_drawdown_png, png_markdown
from ml4t_pipeline.pipeline.resources import BacktestConfigResource, ResultStore
from ml4t_pipeline.pipeline.resources.storage import BACKTEST

RESULT_TABLES = ("equity", "fills", "orders", "trades", "rejections")
ACTIONS_TABLE = "actions"  # stored only for runs with a corporate-actions input
TOP_TRADES = 10
_WALL_CLOCK = ("wall_s", "bars_per_s")


@dataclass(frozen=True, slots=True)
class ChainStart:
    """Where a month starts: the previous month's state, or None for the first month."""

    key: MonthKey
    state: EngineState | None
    state_digest: str | None = None  # sha256 of the previous month's saved state


@dg.op(out=dg.Out(ChainStart, io_manager_key="mem_io_manager"))
def chain_start(
    context: dg.OpExecutionContext, store: ResultStore, backtest_config: BacktestConfigResource
) -> ChainStart:
    """No state in the first configured month; otherwise the state saved by the month before
    (a missing month is a `StateError` naming it, never a silent fresh start)."""
    key = month_key(context.partition_key)
    if key.month == backtest_config.partition_spec().start_month:
        return ChainStart(key, None)
    state = store.read_state(key.previous())
    return ChainStart(key, state, store.state_digest(key.previous()))


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


def backtest_metadata(result: BacktestResult, start: ChainStart) -> dict[str, Any]:
    key = start.key
    equity = result.equity
    peak_before = start.state.peak_equity if start.state is not None else None
    chart = equity_drawdown_png(
        equity,
        start_equity=result.start_equity,
        title=f"{key.universe} {key.month:%Y-%m}",
        peak_before=peak_before,
    )
    return {
        "final_equity": result.final_equity,
        "return": _finite(result.final_equity / result.start_equity - 1.0),
        "sharpe": result.metrics.get("sharpe"),
        "max_drawdown": result.metrics.get("max_drawdown"),
        "trades_closed": int(result.metrics.get("n_trades", 0.0)),
        "fills": result.fills.height,
        "rejections": result.rejections.height,
        "bars": result.bars,
        "bars_per_s": _finite(result.bars_per_s),
        "continued_from": str(key.previous()) if start.state is not None else "fresh start",
        "equity_curve": dg.MetadataValue.md(png_markdown(chart, f"equity {key}")),
        "top_trades": _top_trades(result.trades),
    }


@dg.op
def run_engine(
    feature_table: pl.DataFrame,
    corporate_actions: pl.DataFrame,
    start: ChainStart,
    backtest_config: BacktestConfigResource,
    store: ResultStore,
) -> dg.Output[TableSet]:
    """The engine step: one `run_backtest` call over the month's bars."""
    key = start.key
    config = backtest_config.run_config()
    frames = engine_frames(feature_table)
    actions = corporate_actions if corporate_actions.height else None
    result = run_backtest(
        config,
        prices=frames.prices,
        signals=frames.signals,
        context=frames.context,
        corporate_actions=actions,
        start=key.start,
        end=key.end,
        initial_state=start.state,
    )
    start_cash = start.state.cash if start.state is not None else config.execution.initial_cash
    partition = {
        "month": key.month.isoformat(),
        "universe": key.universe,
        "start_cash": start_cash,
        "start_equity": result.start_equity,
        "continued_from": str(key.previous()) if start.state is not None else None,
        "previous_state_sha256": start.state_digest,
    }
    summary = {k: v for k, v in result.summary().items() if k not in _WALL_CLOCK}
    state_json = result.final_state.to_json()
    stale = store.stale_after(key, hashlib.sha256(state_json.encode()).hexdigest())
    tables = {name: getattr(result, name) for name in RESULT_TABLES}
    if actions is not None:
        tables[ACTIONS_TABLE] = result.actions
    value = TableSet(
        tables=tables,
        texts={
            STATE_FILE: state_json,
            SUMMARY_FILE: json.dumps(summary, indent=2, sort_keys=True),
            PARTITION_FILE: json.dumps(partition, indent=2, sort_keys=True),
        },
    )
    metadata = backtest_metadata(result, start)
    # later months continued from the old state of this month: they must be re-run, in order
    metadata["stale_later_months"] = dg.MetadataValue.text(", ".join(stale) or "none")
    if stale:
        context_note = f"{len(stale)} later month(s) are now stale: {', '.join(stale)}"
        metadata["stale_note"] = dg.MetadataValue.md(
            f"**{context_note}** (re-materialize in order)"
        )
    return dg.Output(value, metadata=metadata)


def _backtest_graph(feature_table: Any, corporate_actions: Any) -> Any:
    return run_engine(feature_table, corporate_actions, chain_start())


def backtest_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`backtest` over the (month, universe) partitions: chain_start -> run_engine."""
    return dg.graph_asset(
        key=BACKTEST,
        partitions_def=partitions,
        group_name=BACKTEST_GROUP,
        kinds={"polars"},
        ins={
            "feature_table": dg.AssetIn("feature_table"),
            "corporate_actions": dg.AssetIn("validated_corporate_actions"),
        },
        description=__doc__,
    )(_backtest_graph)
