"""`trade_attribution`: where a month's realised P&L came from.

One row per (dimension, key) for the dimensions exit_reason, exit_rule, asset_id and month
(of the exit), from the engine's `attribution` (the same table a CLI run writes), realised P&L
only: only trades closed in the month count; a position still open at the month's end
is counted in the month it closes, so months add up without double counting.
"""

import dagster as dg
import polars as pl

from ml4t_pipeline.engine import attribution
from ml4t_pipeline.pipeline.assets.features import BACKTEST_GROUP
from ml4t_pipeline.pipeline.display import money, money_text, percent_text
from ml4t_pipeline.pipeline.io_manager import TableSet

TRADE_ATTRIBUTION = "trade_attribution"


def _markdown(table: pl.DataFrame) -> str:
    lines = ["| dimension | key | trades | win rate | P&L |", "|---|---|---:|---:|---:|"]
    shown = table.filter(pl.col("dimension") != "asset_id").sort(
        "dimension", "pnl", descending=[False, True]
    )
    lines += [
        f"| {row['dimension']} | {row['key']} | {row['trades']} | {percent_text(row['win_rate'])}"
        f" | {money_text(row['pnl'])} |"
        for row in shown.iter_rows(named=True)
    ]
    return "\n".join(lines)


def attribute_trades(backtest: TableSet) -> dg.Output[pl.DataFrame]:
    trades = backtest.tables["trades"]
    table = attribution(trades, include_open=False)
    open_trades = trades.filter(pl.col("exit_reason") == "open")
    return dg.Output(
        table,
        metadata={
            "realised_pnl": money(float(table.filter(pl.col("dimension") == "month")["pnl"].sum())),
            "unrealised_pnl_open": money(float(open_trades["pnl"].sum())),
            "open_positions": dg.MetadataValue.int(open_trades.height),
            "attribution": dg.MetadataValue.md(_markdown(table)),
        },
    )


def trade_attribution_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`trade_attribution` over the (month, universe) partitions."""
    return dg.asset(
        name=TRADE_ATTRIBUTION,
        partitions_def=partitions,
        group_name=BACKTEST_GROUP,
        ins={"backtest": dg.AssetIn("backtest")},
        description=__doc__,
    )(attribute_trades)
