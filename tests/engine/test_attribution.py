"""Attribution sums are exact, in trade order, and bit-identical from run to run."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from ml4t_pipeline.engine.results.attribution import DIMENSIONS, attribution


def _trades(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    pnl = rng.normal(0, 1_000, n) * 10.0 ** rng.integers(-3, 4, n)
    commission = rng.uniform(0, 5, n)
    exit_time = [
        dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=int(d))
        for d in rng.integers(0, 700, n)
    ]
    return pl.DataFrame(
        {
            "asset_id": [f"A{k:03d}" for k in rng.integers(0, 40, n)],
            "exit_time": exit_time,
            "exit_reason": rng.choice(["signal", "stop_loss", "open"], n).tolist(),
            "exit_rule": rng.choice(["", "stop_loss", "trailing_stop"], n).tolist(),
            "pnl": pnl,
            "gross_pnl": pnl + commission,
            "commission": commission,
            "slippage": rng.uniform(0, 1, n),
            "dividends": np.where(rng.random(n) < 0.2, rng.uniform(-50, 200, n), 0.0),
            "splits": rng.choice([0, 0, 0, 1, 2], n),
            "return_pct": rng.normal(0, 0.05, n),
        }
    )


def test_sums_equal_a_sequential_python_sum_per_group() -> None:
    trades = _trades(20_000, seed=1)
    table = attribution(trades)
    rows = trades.with_columns(
        pl.col("exit_time").dt.strftime("%Y-%m").alias("month"),
        pl.col("exit_rule").replace("", "strategy"),
    ).to_dicts()
    for dim in DIMENSIONS:
        expected: dict[str, list[float]] = {}
        for row in rows:
            acc = expected.setdefault(str(row[dim]), [0.0, 0.0, 0, 0.0, 0])
            acc[0] += row["pnl"]
            acc[1] += row["commission"] + row["slippage"]
            acc[2] += 1
            acc[3] += row["dividends"]
            acc[4] += row["splits"]
        got = table.filter(pl.col("dimension") == dim)
        assert got["key"].to_list() == sorted(expected)
        columns = ("key", "pnl", "costs", "trades", "dividends", "splits")
        for key, *sums in got.select(columns).iter_rows():
            assert tuple(sums) == tuple(expected[key])  # exact, not approximate


def test_identical_trades_give_identical_tables() -> None:
    trades = _trades(50_000, seed=2)
    first = attribution(trades)
    for _ in range(5):
        assert attribution(trades).equals(first)


def test_realised_only_leaves_open_trades_out() -> None:
    trades = _trades(500, seed=3)
    realised = attribution(trades, include_open=False)
    closed = trades.filter(pl.col("exit_reason") != "open")
    by_reason = realised.filter(pl.col("dimension") == "exit_reason")
    assert "open" not in by_reason["key"].to_list()
    assert by_reason["trades"].sum() == closed.height
    assert attribution(trades.head(0)).height == 0
