"""`performance_summary`: every stored month of one universe, chained into one track record."""

import datetime as dt
import json

import dagster as dg
import polars as pl

from ml4t_pipeline.engine import compute_metrics
from ml4t_pipeline.errors import StateError
from ml4t_pipeline.pipeline.io_manager import TableSet
from ml4t_pipeline.pipeline.layout import PARTITION_FILE
from ml4t_pipeline.pipeline.partitions import MonthKey
from ml4t_pipeline.pipeline.plots import equity_drawdown_png, png_markdown
from ml4t_pipeline.pipeline.resources import BacktestConfigResource, ResultStore
from ml4t_pipeline.pipeline.resources.storage import BACKTEST

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


def summarize_performance(
    context: dg.AssetExecutionContext, store: ResultStore, backtest_config: BacktestConfigResource
) -> dg.Output[pl.DataFrame]:
    universe = context.partition_key
    start_month = backtest_config.partition_spec().start_month
    months = contiguous_months(store.stored_months(universe), universe, start_month)
    sets = [store.read_backtest(MonthKey(m, universe)) for m in months]
    initial_cash = backtest_config.run_config().execution.initial_cash
    equity = pl.concat([s.tables["equity"] for s in sets], how="vertical_relaxed")
    metrics = compute_metrics(
        equity,
        pl.concat([s.tables["trades"] for s in sets], how="vertical_relaxed"),
        pl.concat([s.tables["fills"] for s in sets], how="vertical_relaxed"),
        start_equity=initial_cash,
    )
    table = monthly_rows(months, sets)
    chart = equity_drawdown_png(equity, start_equity=initial_cash, title=f"{universe}, all months")
    return dg.Output(
        table,
        metadata={
            "months": f"{months[0]:%Y-%m} .. {months[-1]:%Y-%m} ({len(months)})",
            "final_equity": float(equity["equity"][-1]),
            **{
                name: metrics[name]
                for name in ("total_return", "sharpe", "max_drawdown", "n_trades")
            },
            "equity_curve": dg.MetadataValue.md(png_markdown(chart, f"equity {universe}")),
            "by_month": dg.MetadataValue.md(
                "| month | return | closed trades | realised P&L |\n|---|---:|---:|---:|\n"
                + "\n".join(
                    f"| {r['month']:%Y-%m} | {r['return']:.2%} | {r['closed_trades']} | "
                    f"{r['realised_pnl']:,.2f} |"
                    for r in table.iter_rows(named=True)
                )
            ),
        },
    )


def performance_summary_asset(universes: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`performance_summary`, one partition per universe."""
    return dg.asset(
        name=PERFORMANCE_SUMMARY,
        partitions_def=universes,
        group_name=REPORTS_GROUP,
        deps=[BACKTEST],
        kinds={"polars"},
        description=__doc__,
    )(summarize_performance)
