"""`performance_summary`: every stored month of one universe, chained into one track record.

One row per month (start and end equity, return, fills, closed trades, realised P&L); the
metadata give the headline of the whole record (final equity, return and max drawdown in per
cent, Sharpe, trades), its equity + drawdown chart and a link to the record's research report
(`ml4t_pipeline.report`), written next to the asset's Parquet file in storage
(``performance_summary/<universe>.report.html``). It depends on every month of its universe's
`backtest`, so a month materialized again marks it stale. The per-month `backtest` asset
draws no chart: matplotlib's import alone is a good part of a one-month run.
"""

import datetime as dt
import json
import warnings
from collections.abc import Mapping
from typing import Any

import dagster as dg
import polars as pl

from ml4t_pipeline.engine import attribution, compute_metrics, relative_metrics
from ml4t_pipeline.errors import StateError
from ml4t_pipeline.pipeline.display import (
    money,
    money_text,
    percent,
    percent_text,
    performance_metadata,
    png_markdown,
    ratio,
)
from ml4t_pipeline.pipeline.io_manager import TableSet, write_text_atomic
from ml4t_pipeline.pipeline.layout import PARTITION_FILE, SUMMARY_FILE
from ml4t_pipeline.pipeline.partitions import UNIVERSE, MonthKey
from ml4t_pipeline.pipeline.resources import BacktestConfigResource, ResultStore
from ml4t_pipeline.pipeline.resources.storage import BACKTEST
from ml4t_pipeline.report import ReportInputs, equity_png, render_report

PERFORMANCE_SUMMARY = "performance_summary"
REPORTS_GROUP = "reports"


def contiguous_months(months: list[dt.date], universe: str, start_month: dt.date) -> list[dt.date]:
    """`months` if they run without a gap from `start_month`, else `StateError`."""
    if not months:
        msg = f"universe {universe!r} has no stored backtest months; run backtest_job first"
        raise StateError(msg)
    expected = MonthKey(start_month, universe)
    for month in months:
        if month != expected.month:
            msg = (
                f"universe {universe!r}: stored months must run from {start_month} without "
                f"a gap, but {expected.month} is missing (stored: {[str(m) for m in months]})"
            )
            raise StateError(msg)
        expected = expected.next()
    return months


def monthly_rows(months: list[dt.date], sets: list[TableSet]) -> pl.DataFrame:
    """One row per month: start/end equity, return, fills, closed trades, realised P&L."""
    rows = []
    for month, tables in zip(months, sets, strict=True):
        start_equity = float(json.loads(tables.texts[PARTITION_FILE])["start_equity"])
        end_equity = float(tables.tables["equity"]["equity"][-1])
        closed = tables.tables["trades"].filter(pl.col("exit_reason") != "open")
        rows.append(
            {
                "month": month,
                "start_equity": start_equity,
                "end_equity": end_equity,
                "return": end_equity / start_equity - 1.0,
                "fills": tables.tables["fills"].height,
                "closed_trades": closed.height,
                "realised_pnl": float(closed["pnl"].sum()),
            }
        )
    return pl.DataFrame(rows)


def _by_month_markdown(table: pl.DataFrame) -> str:
    lines = [
        "| month | start equity | end equity | return | fills | closed trades | realised P&L |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['month']:%Y-%m} | {money_text(r['start_equity'])} | {money_text(r['end_equity'])} "
        f"| {percent_text(r['return'])} | {r['fills']} | {r['closed_trades']} "
        f"| {money_text(r['realised_pnl'])} |"
        for r in table.iter_rows(named=True)
    ]
    return "\n".join(lines)


def record_report_inputs(
    sets: list[TableSet],
    equity: pl.DataFrame,
    *,
    initial_cash: float,
    title: str,
    benchmark: Mapping[str, Any] | None = None,
) -> ReportInputs:
    """The report's inputs of chained months: their equity, fills and rejections one after the
    other, every closed trade and the trades still open after the last month."""
    trades = pl.concat(
        [s.tables["trades"].filter(pl.col("exit_reason") != "open") for s in sets]
        + [sets[-1].tables["trades"].filter(pl.col("exit_reason") == "open")],
        how="vertical_relaxed",
    )
    fills = pl.concat([s.tables["fills"] for s in sets], how="vertical_relaxed")
    return ReportInputs(
        equity=equity,
        trades=trades,
        fills=fills,
        rejections=pl.concat([s.tables["rejections"] for s in sets], how="vertical_relaxed"),
        attribution=attribution(trades),
        summary={
            "initial_cash": initial_cash,
            "fills": fills.height,
            **({"benchmark": dict(benchmark)} if benchmark else {}),
        },
        title=title,
    )


BENCHMARK_COLUMN = "benchmark"  # the equity table's column, and summary.json's section


def benchmark_section(
    sets: list[TableSet], equity: pl.DataFrame, initial_cash: float, periods: float
) -> dict[str, Any]:
    """The benchmark over every month (the months' `benchmark` column, which starts from the
    chain's initial cash) and the strategy against it, as a backtest's summary.json has it;
    {} when the months carry no benchmark."""
    if BENCHMARK_COLUMN not in equity.columns or equity.height == 0:
        return {}
    first = json.loads(sets[0].texts[SUMMARY_FILE]).get(BENCHMARK_COLUMN, {})
    values = equity[BENCHMARK_COLUMN].cast(pl.Float64).to_numpy()
    return {
        "kind": first.get("kind"),
        "final_value": float(values[-1]),
        **relative_metrics(
            equity["equity"].to_numpy(), initial_cash, values, initial_cash, periods
        ),
    }


def benchmark_metadata(section: Mapping[str, Any]) -> dict[str, dg.MetadataValue]:
    """The benchmark's headline in the asset's metadata (nothing without a benchmark)."""
    if not section:
        return {}
    return {
        "benchmark": dg.MetadataValue.text(str(section.get("kind"))),
        "benchmark_return_pct": percent(section.get("total_return")),
        "excess_return_pct": percent(section.get("excess_return")),
        "benchmark_sharpe": ratio(section.get("sharpe")),
        "beta": ratio(section.get("beta")),
        "alpha_pct": percent(section.get("alpha")),
        "information_ratio": ratio(section.get("information_ratio")),
        "tracking_error_pct": percent(section.get("tracking_error")),
        "correlation": ratio(section.get("correlation")),
    }


def summarize_performance(
    context: dg.AssetExecutionContext, store: ResultStore, backtest_config: BacktestConfigResource
) -> dg.Output[pl.DataFrame]:
    universe = context.partition_key
    start_month = backtest_config.partition_spec().start_month
    months = contiguous_months(store.stored_months(universe), universe, start_month)
    sets = [store.read_backtest(MonthKey(m, universe)) for m in months]
    run_config = backtest_config.run_config()
    initial_cash = run_config.execution.initial_cash
    equity = pl.concat([s.tables["equity"] for s in sets], how="vertical_relaxed")
    metrics = compute_metrics(
        equity,
        pl.concat([s.tables["trades"] for s in sets], how="vertical_relaxed"),
        pl.concat([s.tables["fills"] for s in sets], how="vertical_relaxed"),
        start_equity=initial_cash,
        periods=run_config.metrics.periods_per_year,
    )
    table = monthly_rows(months, sets)
    title = f"{universe}, all months"
    against = benchmark_section(sets, equity, initial_cash, metrics["periods_per_year"])
    inputs = record_report_inputs(
        sets, equity, initial_cash=initial_cash, title=title, benchmark=against
    )
    chart = equity_png(inputs, title=title)
    report = store.layout.report_file([PERFORMANCE_SUMMARY], universe)
    write_text_atomic(render_report(inputs), report)
    return dg.Output(
        table,
        metadata={
            "months": f"{months[0]:%Y-%m} .. {months[-1]:%Y-%m} ({len(months)})",
            "initial_cash": money(initial_cash),
            **performance_metadata(final_equity=float(equity["equity"][-1]), metrics=metrics),
            **benchmark_metadata(against),
            "equity_curve": dg.MetadataValue.md(png_markdown(chart, f"equity {universe}")),
            "by_month": dg.MetadataValue.md(_by_month_markdown(table)),
            "report": dg.MetadataValue.path(str(report)),
            "report_url": dg.MetadataValue.url(report.as_uri()),
        },
    )


def performance_summary_deps() -> list[dg.AssetDep]:
    """A universe's summary depends on every month of that universe's `backtest` (the month x
    universe partitions whose universe is its partition key), so Dagster marks the summary
    stale when any of those months is materialized again, and an automation condition can
    react to it. Dagster 1.13 flags the mapping as beta; that one notice is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="Class `MultiToSingleDimensionPartitionMapping` is currently in beta",
            category=dg.BetaWarning,
        )
        mapping = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=UNIVERSE)
    return [dg.AssetDep(BACKTEST, partition_mapping=mapping)]


def performance_summary_asset(
    universes: dg.PartitionsDefinition,
    *,
    automation_condition: dg.AutomationCondition[Any] | None = None,
) -> dg.AssetsDefinition:
    """`performance_summary`, one partition per universe, depending on
    `performance_summary_deps()`;
    `automation_condition` (none by default) decides when Dagster refreshes it by itself."""
    return dg.asset(
        name=PERFORMANCE_SUMMARY,
        partitions_def=universes,
        group_name=REPORTS_GROUP,
        deps=performance_summary_deps(),
        automation_condition=automation_condition,
        description=__doc__,
    )(summarize_performance)
