"""Hypothesis properties of the engine on small random markets (in memory, fixed seeds).

1. Cash conservation: final cash == initial - sum(signed notional) - sum(commission).
2. No look-ahead: replacing every bar strictly after t (prices, signals, context) leaves every
   fill, equity row and rejection stamped at or before t unchanged.
3. A protective stop never fills above the open for a long exit (gap-aware).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ml4t_pipeline.engine import (
    BacktestResult,
    MarketData,
    RunConfig,
    run_backtest,
    run_config_from_dict,
)
from ml4t_pipeline.engine.feed import DEFAULT_MAX_CHUNK_CELLS
from tests.invariants import (
    ABS_TOL,
    REL_TOL,
    STOP_REASONS,
    assert_result_invariants,
    utc_us,
)
from tests.oracle.synthetic import Market, MarketSpec, make_market

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None)

markets = st.builds(
    MarketSpec,
    seed=st.integers(0, 2**31 - 1),
    n_assets=st.integers(1, 6),
    n_bars=st.integers(8, 60),
    tz=st.sampled_from([None, "UTC", "America/New_York"]),
)
thresholds: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "name": st.just("signal_threshold"),
        "entry_above": st.sampled_from([0.5, 0.55, 0.6, 0.7]),
        "exit_below": st.sampled_from([0.3, 0.4, 0.45, 0.5]),
        "qty": st.integers(1, 500),
    }
)
rotations: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "name": st.just("top_k_rotation"),
        "top_k": st.integers(1, 4),
        "weight": st.sampled_from([0.05, 0.1, 0.2, 0.3]),
        "rebalance_every": st.integers(1, 5),
        "warmup_bars": st.integers(0, 6),
        "max_vix": st.sampled_from([20.0, 25.0, 35.0, 45.0]),
    }
)
#: Every built-in rule, so that no look-ahead and cash conservation cover the whole order path.
RULE_POOL: list[dict[str, Any]] = [
    {"rule": "stop_loss", "pct": 0.03},
    {"rule": "take_profit", "pct": 0.04},
    {"rule": "volatility_stop", "atr_multiplier": 1.5},
    {"rule": "trailing_stop", "pct": 0.04},
    {"rule": "time_exit", "max_bars": 4},
    {"rule": "regime", "feature": "vix", "threshold": 30.0, "exit_all": True},
    {"rule": "max_positions", "n": 2},
    {"rule": "max_gross_exposure", "max_ratio": 0.5},
    {"rule": "max_drawdown_halt", "max_drawdown": 0.02, "flatten": True},
    {"rule": "daily_loss_limit", "max_loss": 0.01},
]
#: (initial cash, allow_negative_cash): the small account makes "not enough cash" rejections.
accounts = st.sampled_from([(1_000_000.0, True), (1_000_000.0, False), (20_000.0, False)])
TRAILING_AND_VOLATILITY = [
    r for r in RULE_POOL if r["rule"] in ("trailing_stop", "volatility_stop")
]
risk_rules = st.lists(st.sampled_from(RULE_POOL), max_size=3, unique_by=lambda r: r["rule"])


def config(
    strategy: dict[str, Any],
    risk: list[dict[str, Any]],
    *,
    commission_rate: float = 0.001,
    allow_negative_cash: bool = True,
    initial_cash: float = 1_000_000.0,
    fill_at: str = "next_open",
) -> RunConfig:
    params = {k: v for k, v in strategy.items() if k != "name"}
    raw: dict[str, Any] = {
        "data": {
            "prices": "prices.parquet",
            "signals": "signals.parquet",
            "context": "context.parquet",
        },
        "execution": {
            "initial_cash": initial_cash,
            "fill_at": fill_at,
            "commission_rate": commission_rate,
            "allow_negative_cash": allow_negative_cash,
        },
        "strategy": {"name": strategy["name"], "params": {"score": "ml_score", **params}},
        "risk": risk,
    }
    return run_config_from_dict(raw, base_dir=Path(), check_files=False)


def run(
    market: Market, cfg: RunConfig, *, max_chunk_cells: int = DEFAULT_MAX_CHUNK_CELLS
) -> BacktestResult:
    return run_backtest(
        cfg,
        prices=market.prices,
        signals=market.signals,
        context=market.context,
        max_chunk_cells=max_chunk_cells,
    )


@PROPERTY_SETTINGS
@given(
    spec=markets,
    strategy=st.one_of(thresholds, rotations),
    risk=risk_rules,
    commission_rate=st.sampled_from([0.0, 0.0005, 0.001, 0.01]),
    account=accounts,
)
def test_cash_is_conserved(
    spec: MarketSpec,
    strategy: dict[str, Any],
    risk: list[dict[str, Any]],
    commission_rate: float,
    account: tuple[float, bool],
) -> None:
    market = make_market(spec)
    initial_cash, allow_negative_cash = account
    cfg = config(
        strategy,
        risk,
        commission_rate=commission_rate,
        allow_negative_cash=allow_negative_cash,
        initial_cash=initial_cash,
    )
    res = run(market, cfg)
    fills = res.fills
    event(f"fills: {'some' if fills.height else 'none'}")
    event(f"rejections: {'some' if res.rejections.height else 'none'}")
    signed = np.where(fills["side"].to_numpy() == "buy", 1.0, -1.0) * fills["qty"].to_numpy()
    notional = float(np.sum(signed * fills["price"].to_numpy()))
    commission = float(fills["commission"].sum())
    expected = initial_cash - notional - commission
    assert abs(res.final_cash - expected) <= REL_TOL * max(initial_cash, abs(expected))
    assert commission == pytest.approx(
        commission_rate * float(np.abs(signed * fills["price"].to_numpy()).sum()),
        rel=REL_TOL,
        abs=ABS_TOL,
    )
    if not allow_negative_cash:
        assert (res.equity["cash"] >= -ABS_TOL).all()
    assert_result_invariants(res, prices=market.prices)


def _splice_after(base: Market, other: Market, cut_us: int) -> Market:
    """`base` up to and including `cut_us`, `other`'s values (same keys) strictly after it."""

    def splice(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
        later = utc_us(a)["ts_us"].to_numpy() > cut_us
        values = [c for c in a.columns if c not in ("timestamp", "asset_id")]
        return a.with_columns(
            pl.Series(c, np.where(later, b[c].to_numpy(), a[c].to_numpy()), dtype=a.schema[c])
            for c in values
        )

    return Market(
        prices=splice(base.prices, other.prices),
        signals=splice(base.signals, other.signals),
        context=splice(base.context, other.context),
    )


def _upto(df: pl.DataFrame, cut_us: int) -> pl.DataFrame:
    return utc_us(df).filter(pl.col("ts_us") <= cut_us)


@PROPERTY_SETTINGS
@given(
    spec=markets,
    strategy=st.one_of(thresholds, rotations),
    risk=risk_rules,
    account=accounts,
    fill_at=st.sampled_from(["next_open", "same_close"]),
    other_seed=st.integers(0, 2**31 - 1),
    cut_fraction=st.floats(0.0, 0.95),
)
def test_no_look_ahead(
    spec: MarketSpec,
    strategy: dict[str, Any],
    risk: list[dict[str, Any]],
    account: tuple[float, bool],
    fill_at: str,
    other_seed: int,
    cut_fraction: float,
) -> None:
    base = make_market(spec)
    other = make_market(replace(spec, seed=spec.seed + 1 + other_seed))
    stamps = utc_us(base.context)["ts_us"].sort()
    cut_us = int(stamps[int(cut_fraction * (stamps.len() - 1))])
    perturbed = _splice_after(base, other, cut_us)
    assert not perturbed.prices.equals(base.prices)
    cfg = config(
        strategy, risk, initial_cash=account[0], allow_negative_cash=account[1], fill_at=fill_at
    )
    before, after = run(base, cfg), run(perturbed, cfg)
    event(f"fills after the cut differ: {not before.fills.equals(after.fills)}")
    for table in ("fills", "equity", "rejections"):
        left, right = getattr(before, table), getattr(after, table)
        assert _upto(left, cut_us).equals(_upto(right, cut_us)), table
    assert_result_invariants(after, prices=perturbed.prices)


@PROPERTY_SETTINGS
@given(
    spec=markets,
    strategy=thresholds,
    pct=st.sampled_from([0.01, 0.02, 0.03, 0.05]),
    other_stops=st.lists(st.sampled_from(TRAILING_AND_VOLATILITY), max_size=1),
)
def test_stop_never_fills_above_the_open(
    spec: MarketSpec, strategy: dict[str, Any], pct: float, other_stops: list[dict[str, Any]]
) -> None:
    market = make_market(replace(spec, n_bars=spec.n_bars * 3))
    res = run(market, config(strategy, [{"rule": "stop_loss", "pct": pct}, *other_stops]))
    fills = utc_us(res.fills).sort("ts_us")
    entries = fills.filter(pl.col("side") == "buy").select(
        "asset_id", pl.col("ts_us").alias("entry_us"), pl.col("price").alias("entry_price")
    )
    exits = (
        fills.filter(pl.col("reason").is_in(list(STOP_REASONS)))
        .join(utc_us(market.prices).drop("timestamp"), on=["ts_us", "asset_id"])
        .join_asof(
            entries,
            left_on="ts_us",
            right_on="entry_us",
            by="asset_id",
            strategy="backward",
            allow_exact_matches=False,
        )
    )
    event(f"stop exits: {'some' if exits.height else 'none'}")
    assert (exits["side"] == "sell").all()
    assert (exits["price"] <= exits["open"]).all(), exits
    assert (exits["price"] >= exits["low"]).all(), exits
    fixed = exits.filter(pl.col("reason") == "stop_loss")
    level = fixed["entry_price"].to_numpy() * (1 - pct)
    expected = np.minimum(fixed["open"].to_numpy(), level)
    assert (fixed["price"].to_numpy() == expected).all(), fixed
    assert_result_invariants(res, prices=market.prices)


@PROPERTY_SETTINGS
@given(
    spec=markets,
    strategy=st.one_of(thresholds, rotations),
    risk=risk_rules,
    account=accounts,
)
def test_month_chunks_change_nothing(
    spec: MarketSpec,
    strategy: dict[str, Any],
    risk: list[dict[str, Any]],
    account: tuple[float, bool],
) -> None:
    """A run cut into monthly chunks (bounded memory) equals the run in one piece, exactly."""
    market = make_market(replace(spec, n_bars=spec.n_bars * 3))
    cfg = config(strategy, risk, initial_cash=account[0], allow_negative_cash=account[1])
    cells = spec.n_assets * 20
    n_chunks = MarketData(market.prices, max_chunk_cells=cells).n_chunks
    event(f"chunks: {min(n_chunks, 4)}{'+' if n_chunks >= 4 else ''}")
    whole, chunked = run(market, cfg), run(market, cfg, max_chunk_cells=cells)
    for table in ("fills", "equity", "rejections", "orders", "trades"):
        assert getattr(whole, table).equals(getattr(chunked, table)), table
    assert (whole.final_cash, whole.final_equity) == (chunked.final_cash, chunked.final_equity)
