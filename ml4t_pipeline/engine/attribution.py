"""Trade attribution: where the P&L came from, by exit reason, rule, asset and month."""

from __future__ import annotations

import polars as pl

DIMENSIONS = ("exit_reason", "exit_rule", "asset_id", "month")


def attribution(trades: pl.DataFrame) -> pl.DataFrame:
    """One long table: (dimension, key) -> trades, wins, pnl, gross, costs, average return.

    Open trades (exit_reason == "open") are included with their mark-to-market P&L, so the
    pnl column of each dimension sums to the same total as the trades table.
    """
    frame = trades.with_columns(
        pl.col("exit_time").dt.strftime("%Y-%m").alias("month"),
        pl.col("asset_id").cast(pl.String),
        pl.when(pl.col("exit_rule") == "")
        .then(pl.lit("strategy"))
        .otherwise(pl.col("exit_rule"))
        .alias("exit_rule"),
    )
    parts = [
        frame.group_by(dim)
        .agg(
            pl.len().alias("trades"),
            (pl.col("pnl") > 0).sum().alias("wins"),
            pl.col("pnl").sum().alias("pnl"),
            pl.col("gross_pnl").sum().alias("gross_pnl"),
            (pl.col("commission") + pl.col("slippage")).sum().alias("costs"),
            pl.col("return_pct").mean().alias("avg_return_pct"),
        )
        .select(
            pl.lit(dim).alias("dimension"),
            pl.col(dim).cast(pl.String).alias("key"),
            pl.exclude(dim),
        )
        for dim in DIMENSIONS
    ]
    schema = pl.Schema(
        {
            "dimension": pl.String(),
            "key": pl.String(),
            "trades": pl.UInt32(),
            "wins": pl.UInt32(),
            "pnl": pl.Float64(),
            "gross_pnl": pl.Float64(),
            "costs": pl.Float64(),
            "avg_return_pct": pl.Float64(),
        }
    )
    out = (
        pl.concat([p.cast(schema) for p in parts]) if trades.height else pl.DataFrame(schema=schema)
    )
    return out.sort(["dimension", "key"])
