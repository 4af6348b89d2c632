"""`trade_attribution`: where a month's realised P&L came from.

One row per (dimension, value) for the dimensions exit_reason, exit_rule, asset_id and month
(of the exit). Only trades closed in the month count; a position still open at the month's end
is counted in the month it closes, so months add up without double counting.
"""

import dagster as dg
import polars as pl

from ml4t_pipeline.assets.features import BACKTEST_GROUP
from ml4t_pipeline.io_manager import TableSet
from ml4t_pipeline.partitions import BACKTEST_PARTITIONS

DIMENSIONS = ("exit_reason", "exit_rule", "asset_id", "month")
ATTRIBUTION_SCHEMA = {
    "dimension": pl.String,
    "value": pl.String,
    "n_trades": pl.Int64,
    "pnl": pl.Float64,
    "gross_pnl": pl.Float64,
    "commission": pl.Float64,
    "win_rate": pl.Float64,
}


def attribute_trades(trades: pl.DataFrame) -> pl.DataFrame:
    """Realised P&L of closed trades grouped by each of `DIMENSIONS` (long format)."""
    closed = trades.filter(pl.col("exit_reason") != "open").with_columns(
        pl.col("exit_time").dt.strftime("%Y-%m").alias("month"),
        pl.col("exit_rule").replace("", "strategy"),
    )
    parts = [
        closed.group_by(dimension)
        .agg(
            pl.len().cast(pl.Int64).alias("n_trades"),
            pl.col("pnl").sum(),
            pl.col("gross_pnl").sum(),
            pl.col("commission").sum(),
            (pl.col("pnl") > 0).mean().alias("win_rate"),
        )
        .select(
            pl.lit(dimension).alias("dimension"),
            pl.col(dimension).cast(pl.String).alias("value"),
            *[pl.col(c) for c in list(ATTRIBUTION_SCHEMA)[2:]],
        )
        .sort("pnl", "value", descending=[True, False])
        for dimension in DIMENSIONS
    ]
    return pl.concat([pl.DataFrame(schema=ATTRIBUTION_SCHEMA), *parts], how="vertical_relaxed")


def _markdown(table: pl.DataFrame) -> str:
    lines = ["| dimension | value | trades | P&L |", "|---|---|---:|---:|"]
    lines += [
        f"| {row['dimension']} | {row['value']} | {row['n_trades']} | {row['pnl']:,.2f} |"
        for row in table.filter(pl.col("dimension") != "asset_id").iter_rows(named=True)
    ]
    return "\n".join(lines)


@dg.asset(
    partitions_def=BACKTEST_PARTITIONS,
    group_name=BACKTEST_GROUP,
    kinds={"polars"},
    ins={"backtest": dg.AssetIn("backtest")},
    description=__doc__,
)
def trade_attribution(backtest: TableSet) -> dg.Output[pl.DataFrame]:
    trades = backtest.tables["trades"]
    table = attribute_trades(trades)
    open_trades = trades.filter(pl.col("exit_reason") == "open")
    return dg.Output(
        table,
        metadata={
            "realised_pnl": float(table.filter(pl.col("dimension") == "month")["pnl"].sum()),
            "unrealised_pnl_open": float(open_trades["pnl"].sum()),
            "open_positions": open_trades.height,
            "attribution": dg.MetadataValue.md(_markdown(table)),
        },
    )
