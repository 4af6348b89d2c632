"""Invariants of the engine's output on random order plans over random panels.

Each seed draws a panel (holes, a late listing, an early delisting), a plan of market, limit,
stop and stop-limit orders and a set of execution settings, runs the engine through
`run_backtest` and checks, from the result tables alone:

- an exit (a fill whose reason is not `signal`) never takes a position through zero;
- a limit or stop-limit fill is never worse than its limit (fills joined to orders by id);
- cash + sum(qty x last close), rebuilt from the fills, equals the equity of every bar;
- no fill is on a bar where its asset has no bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.engine import BacktestResult, run_backtest, run_config_from_dict
from tests.engine.test_oracle_plans import engine_config, write_inputs
from tests.oracle.plans import Knobs, random_panel, random_plan

SEEDS = range(30)


def knobs_for(seed: int) -> Knobs:
    """Settings drawn per seed, among those the engine's YAML knows today."""
    rng = np.random.default_rng(seed + 1000)
    return Knobs(
        initial_cash=float(rng.choice([20_000.0, 60_000.0, 200_000.0])),
        commission_rate=float(rng.choice([0.0, 0.0005, 0.002])),
        slippage_bps=float(rng.choice([0.0, 5.0])),
        allow_short=bool(rng.random() < 0.5),
        allow_negative_cash=bool(rng.random() < 0.5),
        stop_loss_pct=float(rng.choice([0.02, 0.04])) if rng.random() < 0.6 else None,
    )


def run(seed: int, tmp_path: Path) -> tuple[pl.DataFrame, Knobs, BacktestResult]:
    prices = random_panel(seed)
    plan = random_plan(prices, seed + 500, n_orders=50)
    knobs = knobs_for(seed)
    prices_path, plan_path = write_inputs(tmp_path, prices, plan)
    config = run_config_from_dict(engine_config(prices_path, plan_path, knobs))
    return prices, knobs, run_backtest(config)


def assert_exits_never_flip(fills: pl.DataFrame) -> None:
    held: dict[str, int] = {}
    for f in fills.iter_rows(named=True):  # booking order
        before = held.get(f["asset_id"], 0)
        after = before + (f["qty"] if f["side"] == "buy" else -f["qty"])
        held[f["asset_id"]] = after
        if f["reason"] != "signal":
            assert before != 0, f"exit from a flat position: {f}"
            assert before * after >= 0, f"exit flipped {before} -> {after}: {f}"


def assert_limits_honoured(fills: pl.DataFrame, orders: pl.DataFrame) -> None:
    joined = fills.join(
        orders.select("order_id", "order_type", "limit_price"), on="order_id", how="left"
    ).filter(pl.col("order_type").is_in(["limit", "stop_limit"]))
    bad = joined.filter(
        ((pl.col("side") == "buy") & (pl.col("price") > pl.col("limit_price")))
        | ((pl.col("side") == "sell") & (pl.col("price") < pl.col("limit_price")))
    )
    assert bad.height == 0, f"fills past their limit:\n{bad}"


def assert_equity_from_fills(
    prices: pl.DataFrame, fills: pl.DataFrame, equity: pl.DataFrame, initial_cash: float
) -> None:
    stamps = equity["timestamp"].dt.epoch("us").to_list()
    bar_of = {t: i for i, t in enumerate(stamps)}
    assets = sorted(set(prices["asset_id"].to_list()))
    col = {a: j for j, a in enumerate(assets)}
    close = np.full((len(stamps), len(assets)), np.nan)
    px = prices.with_columns(pl.col("timestamp").dt.replace_time_zone("UTC").dt.epoch("us"))
    for t, a, c in px.select("timestamp", "asset_id", "close").iter_rows():
        close[bar_of[t], col[a]] = c
    by_bar: dict[int, list[tuple[str, int, float, float]]] = {}
    for f in fills.iter_rows(named=True):
        signed = f["qty"] if f["side"] == "buy" else -f["qty"]
        by_bar.setdefault(f["bar"], []).append((f["asset_id"], signed, f["price"], f["commission"]))
    cash = initial_cash
    qty = [0] * len(assets)
    last = [0.0] * len(assets)
    for t, row in enumerate(equity.iter_rows(named=True)):
        for asset, signed, price, commission in by_bar.get(t, []):
            cash -= signed * price + commission
            qty[col[asset]] += signed
        for j in range(len(assets)):
            if not np.isnan(close[t, j]):
                last[j] = float(close[t, j])
        value = sum(q * c for q, c in zip(qty, last, strict=True))
        scale = max(1.0, abs(cash) + abs(value))
        assert abs(row["cash"] - cash) <= 1e-9 * scale, (t, row["cash"], cash)
        assert abs(row["equity"] - (cash + value)) <= 1e-9 * scale, (t, row["equity"], cash + value)


def assert_fills_on_bars(prices: pl.DataFrame, fills: pl.DataFrame) -> None:
    keys = prices.select(
        pl.col("timestamp").dt.replace_time_zone("UTC").dt.epoch("us").alias("ts_us"), "asset_id"
    )
    stray = fills.with_columns(pl.col("timestamp").dt.epoch("us").alias("ts_us")).join(
        keys, on=["ts_us", "asset_id"], how="anti"
    )
    assert stray.height == 0, f"fills without a bar:\n{stray}"


@pytest.mark.parametrize("seed", SEEDS)
def test_plan_invariants(seed: int, tmp_path: Path) -> None:
    prices, knobs, result = run(seed, tmp_path)
    fills = result.fills
    assert_exits_never_flip(fills)
    assert_limits_honoured(fills, result.orders)
    assert_equity_from_fills(prices, fills, result.equity, knobs.initial_cash)
    assert_fills_on_bars(prices, fills)


def test_seeds_exercise_the_invariants(tmp_path: Path) -> None:
    """Over the seeds, exits, limit fills and assets missing bars all occur."""
    exits = limit_fills = holes = 0
    for seed in SEEDS:
        prices, _, result = run(seed, tmp_path / str(seed))
        fills = result.fills
        exits += fills.filter(pl.col("reason") != "signal").height
        types = fills.join(result.orders.select("order_id", "order_type"), on="order_id")
        limit_fills += types.filter(pl.col("order_type").is_in(["limit", "stop_limit"])).height
        n_bars = prices["timestamp"].n_unique()
        holes += n_bars * prices["asset_id"].n_unique() - prices.height
    assert exits >= 20
    assert limit_fills >= 50
    assert holes >= 30
