"""Backtests on real prices: N shares on the unadjusted prices with the actions file are
exactly N x (later splits) shares on the split-adjusted prices, bar for bar; a top-k rotation
on the momentum signal decides the same on both; trades and the actions table show the splits;
without the actions file a split reads as a crash."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.engine import BacktestResult, Strategy, run_backtest, run_config_from_dict
from ml4t_pipeline.engine.tolerances import MONEY_RTOL
from ml4t_pipeline.sample_data.real_stocks import SIGNAL, split_factor
from tests.invariants import assert_backtest_invariants, assert_result_invariants
from tests.realdata.conftest import AAPL_2005_SPLIT, KNOWN_SPLITS
from tests.realdata.strategies import FixedShares

N = 100


def _config(paths: dict[str, Path], prices: str, **extra: Any) -> Any:
    data = {
        "prices": str(paths[prices]),
        "signals": str(paths["signals"]),
        "context": str(paths["context"]),
    }
    return run_config_from_dict(
        {
            "data": data,
            "execution": {"commission_rate": 0.001, "allow_negative_cash": False},
            "strategy": {"name": "top_k_rotation", "params": {"score": SIGNAL}},
            **extra,
        }
    )


def _fixed(
    paths: dict[str, Path],
    prices: str,
    qty: dict[str, int],
    actions: pl.DataFrame | Path | None,
) -> BacktestResult:
    strategy: Strategy = FixedShares(qty)
    result = run_backtest(_config(paths, prices), strategy=strategy, corporate_actions=actions)
    assert_result_invariants(result, prices=paths[prices])
    return result


def _factor_at_first_fill(paths: dict[str, Path], asset: str) -> int:
    """The product of the known splits after the run's second bar (the first fill)."""
    stamps = pl.read_parquet(paths["prices"])["timestamp"].unique().sort()
    fill_day = stamps[1].date()
    factor = 1.0
    for (a, day), ratio in KNOWN_SPLITS.items():
        if a == asset and day > fill_day:
            factor *= ratio
    return int(factor)


def test_n_shares_with_actions_equal_the_split_adjusted_shares_on_every_bar(
    real_dir: dict[str, Path],
) -> None:
    """2000-03 to 2013-03: AAPL splits twice (100 shares are 400 split-adjusted ones), MSFT
    once (200), IBM and GOOG never; dividends left out here (see the next test)."""
    actions = pl.read_parquet(real_dir["corporate_actions"])
    splits = actions.filter(pl.col("split_ratio") != 1.0).select(
        "timestamp", "asset_id", "split_ratio"
    )
    assets = ("AAPL", "IBM", "MSFT")
    factors = {a: _factor_at_first_fill(real_dir, a) for a in assets}
    assert factors == {"AAPL": 4, "IBM": 1, "MSFT": 2}
    raw = _fixed(real_dir, "prices", dict.fromkeys(assets, N), splits)
    adjusted = _fixed(
        real_dir, "prices_split_adjusted", {a: N * f for a, f in factors.items()}, None
    )
    assert raw.equity["timestamp"].equals(adjusted.equity["timestamp"])
    for column in ("equity", "cash", "positions_value"):
        np.testing.assert_array_equal(
            raw.equity[column].to_numpy(), adjusted.equity[column].to_numpy(), err_msg=column
        )
    assert raw.final_equity == adjusted.final_equity
    applied = raw.actions.filter(pl.col("action") == "split")
    assert {
        (a, t.date()): (r, before, after)
        for t, a, r, before, after in applied.select(
            "timestamp", "asset_id", "split_ratio", "qty_before", "qty_after"
        ).iter_rows()
    } == {
        ("AAPL", dt.date(2000, 6, 21)): (2.0, N, 2 * N),
        ("AAPL", dt.date(2005, 2, 28)): (2.0, 2 * N, 4 * N),
        ("MSFT", dt.date(2003, 2, 18)): (2.0, N, 2 * N),
    }
    assert (applied["cash"] == 0.0).all()
    trades = raw.trades.sort("asset_id")
    assert trades["asset_id"].to_list() == list(assets)
    assert trades["splits"].to_list() == [2, 0, 1]
    assert trades["qty"].to_list() == [N * f for f in factors.values()]
    assert raw.summary()["corporate_actions"]["splits"] == 3
    by_asset = raw.attribution.filter(pl.col("dimension") == "asset_id").sort("key")
    assert by_asset.select("key", "splits").rows() == [("AAPL", 2), ("IBM", 0), ("MSFT", 1)]


def test_dividends_match_the_split_adjusted_dividends_to_the_cent(
    real_dir: dict[str, Path],
) -> None:
    """With the derived dividends: the unadjusted run and the split-adjusted run (dividends
    per split-adjusted share) are paid the same cash on every ex-date."""
    assets = ("AAPL", "IBM", "MSFT")
    factors = {a: _factor_at_first_fill(real_dir, a) for a in assets}
    dividends = pl.read_parquet(real_dir["dividends_split_adjusted"])
    raw = _fixed(real_dir, "prices", dict.fromkeys(assets, N), real_dir["corporate_actions"])
    adjusted = _fixed(
        real_dir, "prices_split_adjusted", {a: N * f for a, f in factors.items()}, dividends
    )
    np.testing.assert_allclose(
        raw.equity["equity"].to_numpy(),
        adjusted.equity["equity"].to_numpy(),
        rtol=MONEY_RTOL,
        atol=0,
    )
    paid = raw.actions.filter(pl.col("action") == "dividend")
    assert paid.height == dividends.height > 80
    assert raw.summary()["corporate_actions"]["dividend_cash"] == pytest.approx(
        adjusted.summary()["corporate_actions"]["dividend_cash"], rel=MONEY_RTOL
    )
    by_asset = dict(raw.trades.select("asset_id", "dividends").iter_rows())
    assert by_asset["AAPL"] > 0.0
    assert by_asset["IBM"] > by_asset["MSFT"] > 0.0


ROTATION = {
    "score": SIGNAL,
    "top_k": 1,
    "weight": 0.9,
    "rebalance_every": 5,
    "warmup_bars": 0,
}


def _rotation(
    paths: dict[str, Path], prices: str, actions: Path | None, out: Path
) -> BacktestResult:
    config = _config(
        paths,
        prices,
        strategy={"name": "top_k_rotation", "params": ROTATION},
        risk=[{"rule": "trailing_stop", "pct": 0.15}],
    )
    result = run_backtest(config, corporate_actions=actions)
    result.write(out)
    assert_backtest_invariants(out, prices=paths[prices])
    return result


def _held(result: BacktestResult, paths: dict[str, Path], *, adjusted: bool) -> pl.DataFrame:
    """Each asset's position after each of its fills, in split-adjusted shares, with the
    split factor at that bar (1 on the split-adjusted prices)."""
    actions = pl.read_parquet(paths["corporate_actions"])
    factors = split_factor(pl.read_parquet(paths["prices"]), actions).select(
        "timestamp", "asset_id", pl.col("split_factor").alias("factor")
    )
    signed = pl.when(pl.col("side") == "buy").then(pl.col("qty")).otherwise(-pl.col("qty"))
    fills = result.fills.join(factors, on=["timestamp", "asset_id"], how="left")
    scale = pl.lit(1.0) if adjusted else pl.col("factor")
    return (
        fills.sort("timestamp")
        .with_columns((signed * scale).cum_sum().over("asset_id").alias("held"))
        .group_by("timestamp", "asset_id")
        .agg(pl.col("held").last(), pl.col("factor").first())
    )


def test_a_top_k_rotation_decides_the_same_on_raw_prices_with_actions_as_on_adjusted(
    split_2005_dir: dict[str, Path], tmp_path: Path
) -> None:
    paths = split_2005_dir
    raw = _rotation(paths, "prices", paths["corporate_actions"], tmp_path / "raw")
    adjusted = _rotation(paths, "prices_split_adjusted", None, tmp_path / "adjusted")
    naive = _rotation(paths, "prices", None, tmp_path / "naive")
    held = raw.trades.filter(
        (pl.col("asset_id") == "AAPL")
        & (pl.col("entry_time") < AAPL_2005_SPLIT)
        & ((pl.col("exit_time") >= AAPL_2005_SPLIT) | pl.col("exit_time").is_null())
    )
    assert held.height == 1, "the window must hold AAPL across its split"
    assert held["splits"].to_list() == [1]
    key = ["asset_id", "entry_time", "exit_time", "exit_reason"]
    assert raw.trades.select(key).equals(adjusted.trades.select(key))
    # sizes: F x floor(y / F) shares against floor(y), y the target in split-adjusted
    # shares and F the later splits: at most F split-adjusted shares apart, never more
    raw_held, adjusted_held = (
        _held(raw, paths, adjusted=False),
        _held(adjusted, paths, adjusted=True),
    )
    joined = raw_held.join(adjusted_held, on=["timestamp", "asset_id"], how="full", coalesce=True)
    gap = (pl.col("held").fill_null(0) - pl.col("held_right").fill_null(0)).abs()
    assert joined.filter(gap > pl.col("factor").fill_null(1.0)).is_empty()
    assert joined.filter(gap > 0).height > 0  # the floors do differ: equality is not exact
    # the naive run sells AAPL at the split: its trailing stop sees the halved price
    crash = naive.trades.filter(
        (pl.col("asset_id") == "AAPL") & (pl.col("exit_time") == AAPL_2005_SPLIT)
    )
    assert crash["exit_reason"].to_list() == ["trailing_stop"]
