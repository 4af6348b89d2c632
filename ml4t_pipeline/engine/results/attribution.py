"""Trade attribution: where the P&L came from, by exit reason, rule, asset and month."""

from __future__ import annotations

import numpy as np
import polars as pl

DIMENSIONS = ("exit_reason", "exit_rule", "asset_id", "month")
SCHEMA = pl.Schema(
    {
        "dimension": pl.String(),
        "key": pl.String(),
        "trades": pl.Int64(),
        "wins": pl.Int64(),
        "win_rate": pl.Float64(),
        "pnl": pl.Float64(),
        "gross_pnl": pl.Float64(),
        "commission": pl.Float64(),
        "costs": pl.Float64(),
        "dividends": pl.Float64(),  # dividends received (paid, short) during the trades
        "splits": pl.Int64(),  # splits the trades went through
        "avg_return_pct": pl.Float64(),
    }
)


def attribution(trades: pl.DataFrame, *, include_open: bool = True) -> pl.DataFrame:
    """One long table: (dimension, key) -> trades, wins, P&L, costs, average return.

    With `include_open`, open trades (exit_reason == "open") count with their mark-to-market
    P&L, so the pnl column of each dimension sums to the trades table's total; without it only
    realised P&L counts. Sums run in trade order (numpy `bincount`), never in a thread-dependent
    order, so the same trades give bit-identical sums.
    """
    frame = trades if include_open else trades.filter(pl.col("exit_reason") != "open")
    if frame.height == 0:
        return pl.DataFrame(schema=SCHEMA)
    keys = frame.select(
        pl.col("exit_reason").cast(pl.String),
        pl.col("exit_rule").replace("", "strategy").cast(pl.String),
        pl.col("asset_id").cast(pl.String),
        pl.col("exit_time").dt.strftime("%Y-%m").alias("month"),
    )
    pnl = frame["pnl"].to_numpy()
    gross = frame["gross_pnl"].to_numpy()
    commission = frame["commission"].to_numpy()
    costs = commission + frame["slippage"].to_numpy()
    returns = frame["return_pct"].to_numpy()
    dividends = frame["dividends"].to_numpy()
    splits = frame["splits"].to_numpy().astype(np.float64)
    wins = (pnl > 0).astype(np.float64)
    parts = []
    for dim in DIMENSIONS:
        groups, inverse = np.unique(keys[dim].to_numpy().astype(str), return_inverse=True)
        m = groups.shape[0]
        count = np.bincount(inverse, minlength=m)
        won = np.bincount(inverse, weights=wins, minlength=m).astype(np.int64)
        parts.append(
            pl.DataFrame(
                {
                    "dimension": [dim] * m,
                    "key": groups.tolist(),
                    "trades": count,
                    "wins": won,
                    "win_rate": won / count,
                    "pnl": np.bincount(inverse, weights=pnl, minlength=m),
                    "gross_pnl": np.bincount(inverse, weights=gross, minlength=m),
                    "commission": np.bincount(inverse, weights=commission, minlength=m),
                    "costs": np.bincount(inverse, weights=costs, minlength=m),
                    "dividends": np.bincount(inverse, weights=dividends, minlength=m),
                    "splits": np.bincount(inverse, weights=splits, minlength=m).astype(np.int64),
                    "avg_return_pct": np.bincount(inverse, weights=returns, minlength=m) / count,
                },
                schema=SCHEMA,
            )
        )
    return pl.concat(parts).sort(["dimension", "key"])
