"""Hypothesis properties of corporate actions on random order plans over random panels.

(a) The engine equals the oracle (tests/oracle/plans.py) on random plans and random splits and
    dividends: cash and equity of every bar, fills, the actions table, the orders a split
    ended, the trades' P&L per asset (`test_oracle_actions.check`).
(b) Chained runs, cut at a random bar (the state passed through JSON, as stored), equal one
    run bit for bit: equity, fills, actions and rejections.
(c) 2:1 split: N shares on raw prices plus the split equal 2N shares on the split-adjusted
    prices, bit for bit, when every price is a multiple of 1/64 (halving and doubling lose no
    bit): equity, and the fills in the new shares; also when the asset has no bar on the
    ex-date (the last close it is marked at is halved).

Every run passes the invariants (tests/invariants.py).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ml4t_pipeline.engine import (
    BacktestResult,
    EngineState,
    run_backtest,
    run_config_from_dict,
)
from tests.engine.test_oracle_actions import actions_config, check, run_engine
from tests.invariants import assert_result_invariants
from tests.oracle.plans import (
    CorporateAction,
    Knobs,
    OrderKind,
    PlanOrder,
    random_actions,
    random_panel,
    random_plan,
    unadjust,
)

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None)

knobs = st.builds(
    Knobs,
    initial_cash=st.sampled_from([30_000.0, 100_000.0, 400_000.0]),
    commission_rate=st.sampled_from([0.0, 0.0005, 0.002]),
    slippage_bps=st.sampled_from([0.0, 5.0]),
    allow_short=st.booleans(),
    allow_negative_cash=st.booleans(),
    stop_loss_pct=st.sampled_from([None, 0.02, 0.04]),
    on_insufficient_cash=st.sampled_from(["reject", "resize"]),
    on_no_bar=st.sampled_from(["reject", "wait"]),
    on_delist=st.sampled_from(["hold", "close"]),
)
seeds = st.integers(0, 2**31 - 1)


def random_inputs(seed: int) -> tuple[pl.DataFrame, list[PlanOrder], list[CorporateAction]]:
    """A panel taken as split-adjusted, its raw bars, a plan and actions on them."""
    adjusted = random_panel(seed % 10_000)
    actions = random_actions(adjusted, seed + 1, n_actions=int(seed % 7) + 8)
    prices = unadjust(adjusted, actions)
    return prices, random_plan(prices, seed + 2, n_orders=40), actions


@PROPERTY
@given(seed=seeds, knobs=knobs)
def test_engine_equals_the_oracle(seed: int, knobs: Knobs) -> None:
    prices, plan, actions = random_inputs(seed)
    with tempfile.TemporaryDirectory() as folder:
        check(Path(folder), prices, plan, knobs, actions)


# -- (b) chained runs ---------------------------------------------------------------------------


def _same(parts: list[pl.DataFrame], whole: pl.DataFrame, what: str) -> None:
    joined = pl.concat(parts)
    assert joined.equals(whole), f"{what}: chained\n{joined}\n!= one run\n{whole}"


@PROPERTY
@given(seed=seeds, knobs=knobs, cut=st.floats(0.05, 0.95))
def test_chained_runs_equal_one_run(seed: int, knobs: Knobs, cut: float) -> None:
    prices, plan, actions = random_inputs(seed)
    stamps = sorted(set(prices["timestamp"].to_list()))
    boundary = stamps[max(1, int(cut * len(stamps)))]
    with tempfile.TemporaryDirectory() as folder:
        config = run_config_from_dict(actions_config(Path(folder), prices, plan, knobs, actions))
        whole = run_backtest(config)
        first = run_backtest(config, end=boundary)
        state = EngineState.from_json(first.final_state.to_json())
        second = run_backtest(config, start=boundary, initial_state=state)
    marked = prices  # (the invariants divide a close carried over a split)
    assert_result_invariants(whole, prices=marked)
    assert_result_invariants(first, prices=marked)
    parts = [first, second]
    assert second.final_equity == whole.final_equity
    for what in ("equity", "fills", "actions", "rejections"):
        _same([getattr(p, what) for p in parts], getattr(whole, what), what)
    event(f"actions in the second run: {min(second.actions.height, 3)}+")


# -- (c) N shares and a 2:1 split == 2N shares on adjusted prices --------------------------------


def _sixty_fourths(rng: np.random.Generator, n_bars: int, n_assets: int) -> dict[str, np.ndarray]:
    """OHLC in multiples of 1/64 (exact in float64, and after halving or doubling)."""
    steps = rng.integers(-128, 129, (n_bars, n_assets))
    close = 64 * 40 + np.cumsum(steps, axis=0)
    open_ = np.vstack([close[:1], close[:-1]]) + rng.integers(-64, 65, (n_bars, n_assets))
    high = np.maximum(open_, close) + rng.integers(0, 96, (n_bars, n_assets))
    low = np.minimum(open_, close) - rng.integers(0, 96, (n_bars, n_assets))
    return {"open": open_ / 64, "high": high / 64, "low": low / 64, "close": close / 64}


START = dt.datetime(2024, 3, 1, 21)  # noqa: DTZ001


def _frame(ohlc: dict[str, np.ndarray], assets: list[str]) -> pl.DataFrame:
    n_bars = ohlc["close"].shape[0]
    return pl.DataFrame(
        {
            "timestamp": [START + dt.timedelta(days=t) for t in range(n_bars) for _ in assets],
            "asset_id": assets * n_bars,
            **{k: v.reshape(-1) for k, v in ohlc.items()},
            "volume": np.full(n_bars * len(assets), 1e6),
        }
    )


def _plan(
    rng: np.random.Generator, ohlc: dict[str, np.ndarray], assets: list[str]
) -> list[PlanOrder]:
    """Even quantities (2N) and limit and stop prices in 1/64, near the close, on the
    adjusted prices."""
    n_bars = ohlc["close"].shape[0]
    kinds: list[OrderKind] = ["market", "limit", "stop", "stop_limit"]
    plan = []
    for _ in range(int(rng.integers(5, 30))):
        t, a = int(rng.integers(0, n_bars)), int(rng.integers(0, len(assets)))
        qty = 2 * int(rng.integers(1, 200)) * (1 if rng.random() < 0.6 else -1)
        kind = kinds[int(rng.integers(0, 4))]
        ref = float(ohlc["close"][t, a])
        away = int(rng.integers(-32, 96)) * (1 if qty > 0 else -1)
        limit = ref - away / 64 if kind in ("limit", "stop_limit") else None
        stop = ref + away / 64 if kind in ("stop", "stop_limit") else None
        if kind == "stop_limit":
            limit = stop + int(rng.integers(-16, 32)) * (1 if qty > 0 else -1) / 64  # type: ignore[operator]
        plan.append(PlanOrder(bar=t, asset=assets[a], qty=qty, type=kind, limit=limit, stop=stop))
    return sorted(plan, key=lambda p: p.bar)


def _in_old_shares(plan: list[PlanOrder], asset: str, ex: int) -> list[PlanOrder]:
    """The plan on raw prices: the split asset's orders before the ex-date in the old shares
    (N, limit and stop x 2)."""
    return [
        PlanOrder(
            bar=p.bar,
            asset=p.asset,
            qty=p.qty // 2,
            type=p.type,
            limit=None if p.limit is None else p.limit * 2,
            stop=None if p.stop is None else p.stop * 2,
        )
        if p.asset == asset and p.bar < ex
        else p
        for p in plan
    ]


def _new_shares(fills: pl.DataFrame, asset: str, ex: int) -> pl.DataFrame:
    """Fills of the raw run in the new shares (before the ex-date: qty x 2, price / 2)."""
    old = (pl.col("asset_id") == asset) & (pl.col("bar") < ex)
    return fills.with_columns(
        pl.when(old).then(pl.col("qty") * 2).otherwise(pl.col("qty")).alias("qty"),
        pl.when(old).then(pl.col("price") / 2).otherwise(pl.col("price")).alias("price"),
    )


def _runs(
    adjusted: pl.DataFrame,
    plan: list[PlanOrder],
    knobs: Knobs,
    asset: str,
    ex: int,
) -> tuple[BacktestResult, BacktestResult]:
    at = START + dt.timedelta(days=ex) - dt.datetime(1970, 1, 1)  # noqa: DTZ001 (naive: UTC)
    action = CorporateAction(ts_us=at // dt.timedelta(microseconds=1), asset=asset, split_ratio=2.0)
    raw = unadjust(adjusted, [action])
    with tempfile.TemporaryDirectory() as folder:
        on_raw = run_engine(
            Path(folder) / "raw", raw, _in_old_shares(plan, asset, ex), knobs, [action]
        )
        on_adjusted = run_engine(Path(folder) / "adjusted", adjusted, plan, knobs, [])
    return on_raw, on_adjusted


@PROPERTY
@given(
    seed=seeds,
    n_assets=st.integers(1, 3),
    n_bars=st.integers(8, 40),
    costs=st.sampled_from([(0.0, 0.0), (0.001, 0.0), (0.0005, 4.0)]),
    allow_short=st.booleans(),
    stop_loss_pct=st.sampled_from([None, 0.03]),
    ex_at=st.floats(0.1, 0.9),
    no_bars=st.sampled_from([0, 0, 1, 3]),
)
def test_two_for_one_equals_double_shares_on_adjusted_prices(
    seed: int,
    n_assets: int,
    n_bars: int,
    costs: tuple[float, float],
    allow_short: bool,
    stop_loss_pct: float | None,
    ex_at: float,
    no_bars: int,
) -> None:
    """With several assets, the split's replacements take ids after every other order, so the
    order in which fills meet the cash differs from the adjusted run: there, costs are 0 (every
    amount exact, so the order of the sums does not matter) and cash may go negative (no
    rejection depends on that order)."""
    if n_assets > 1:
        costs = (0.0, 0.0)
    rng = np.random.default_rng(seed)
    assets = ["AAA", "BBB", "CCC"][:n_assets]
    ohlc = _sixty_fourths(rng, n_bars, n_assets)
    ex = max(1, int(ex_at * n_bars))
    hole = (pl.col("asset_id") == assets[0]) & pl.col("timestamp").is_between(
        START + dt.timedelta(days=ex), START + dt.timedelta(days=ex + no_bars), closed="left"
    )  # the split asset may have no bar on the ex-date (and a few after)
    adjusted = _frame(ohlc, assets).filter(~hole)
    plan = _plan(rng, ohlc, assets)
    knobs = Knobs(
        initial_cash=200_000.0,
        commission_rate=costs[0],
        slippage_bps=costs[1],
        allow_short=allow_short,
        allow_negative_cash=n_assets > 1 or bool(rng.random() < 0.5),
        stop_loss_pct=stop_loss_pct,
    )
    on_raw, on_adjusted = _runs(adjusted, plan, knobs, assets[0], ex)
    assert on_raw.equity.equals(on_adjusted.equity), (on_raw.equity, on_adjusted.equity)
    columns = ["bar", "asset_id", "side", "qty", "price", "commission", "slippage", "reason"]
    got = _new_shares(on_raw.fills, assets[0], ex).select(columns).sort(columns)
    want = on_adjusted.fills.select(columns).sort(columns)
    assert got.equals(want), (got, want)
    assert on_adjusted.actions.height == 0
    held = on_raw.actions.filter(pl.col("action") == "split").height
    replaced = on_raw.rejections.filter(pl.col("reason") == "split").height
    event(f"split of a position held: {held}, orders replaced: {min(replaced, 2)}+")
