"""Corporate actions replayed by the engine and by the reference in tests/oracle/plans.py.

The same order plans as test_oracle_plans.py, now with a corporate-actions input: splits of
2, 3, 1.5, 0.5, 0.1, 1/3 and 0.01, dividends on longs and shorts, actions on assets not held,
on assets without a bar on the ex-date, and ex-dates between bars. Each case compares, engine
against oracle: cash and equity of every bar (MONEY tolerances), the fills (as in
test_oracle_plans), the actions table (keys exactly, cash and prices to MONEY tolerances),
the orders ended by a split, and the P&L of the trades of each asset. Every engine run passes
the invariants of tests/invariants.py (which count the actions' cash and shares).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from ml4t_pipeline.engine import BacktestResult, run_backtest, run_config_from_dict
from ml4t_pipeline.engine.tolerances import MONEY_ATOL, MONEY_RTOL
from tests.engine.test_oracle_plans import (
    Bar,
    FillRow,
    RejectionRow,
    assert_hand_fills,
    assert_same_fills,
    engine_config,
    hand_prices,
    write_inputs,
)
from tests.invariants import assert_backtest_invariants, assert_result_invariants
from tests.oracle.plans import (
    SPLIT_RATIOS,
    ActionRow,
    CorporateAction,
    EquityRow,
    Knobs,
    PlanOrder,
    Replayed,
    actions_by_bar,
    actions_frame,
    bars_of,
    random_actions,
    random_panel,
    random_plan,
    replay_all,
    thin_volume,
    unadjust,
)

#: A known engine bug (see the test of that name at the end).
# -- running the engine -------------------------------------------------------------------------


def actions_config(
    folder: Path,
    prices: pl.DataFrame,
    plan: list[PlanOrder],
    knobs: Knobs,
    actions: list[CorporateAction],
) -> dict[str, Any]:
    """The run's inputs written as Parquet (rows shuffled) and its config, every knob named
    (no corporate-actions input when there are no actions)."""
    prices_path, plan_path = write_inputs(folder, prices, plan)
    config = engine_config(prices_path, plan_path, knobs)
    if actions:
        actions_path = folder / "actions.parquet"
        frame = actions_frame(actions).sample(fraction=1.0, shuffle=True, seed=3)
        frame.write_parquet(actions_path)
        config["data"]["corporate_actions"] = str(actions_path)
    return config


def run_engine(
    folder: Path,
    prices: pl.DataFrame,
    plan: list[PlanOrder],
    knobs: Knobs,
    actions: list[CorporateAction],
) -> BacktestResult:
    """One in-memory run; the result passes the invariants."""
    config = actions_config(folder, prices, plan, knobs, actions)
    result = run_backtest(run_config_from_dict(config))
    assert_result_invariants(result, prices=prices)
    return result


def money_close(got: float, want: float) -> bool:
    return math.isclose(got, want, rel_tol=MONEY_RTOL, abs_tol=MONEY_ATOL)


# -- comparing ----------------------------------------------------------------------------------


def with_ts(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("timestamp").dt.epoch("us").alias("ts_us"))


def assert_same_money(equity: pl.DataFrame, oracle: list[EquityRow]) -> None:
    assert equity.height == len(oracle)
    for row, want in zip(equity.iter_rows(named=True), oracle, strict=True):
        for column in ("cash", "positions_value", "equity"):
            assert money_close(row[column], getattr(want, column)), (
                f"{column} at bar {want.bar}: engine {row[column]!r} != oracle "
                f"{getattr(want, column)!r}"
            )


_ACTION_KEY = ("bar", "ts_us", "asset_id", "action", "qty_before", "qty_after")


def assert_same_actions(actions: pl.DataFrame, oracle: list[ActionRow]) -> None:
    """The rows in the order applied: keys exactly, ratio and dividend as given, cash and the
    reference price to MONEY tolerances."""
    got = with_ts(actions).to_dicts()
    assert len(got) == len(oracle), f"engine {len(got)} action rows, oracle {len(oracle)}"
    for i, (g, w) in enumerate(zip(got, oracle, strict=True)):
        want = {k: getattr(w, k) for k in _ACTION_KEY}
        assert {k: g[k] for k in _ACTION_KEY} == want, f"action #{i}: engine {g} != oracle {w}"
        assert (g["split_ratio"], g["dividend"]) == (w.split_ratio, w.dividend), (i, g, w)
        assert money_close(g["cash"], w.cash), f"action #{i} cash: engine {g} != oracle {w}"
        assert math.isclose(g["ref_price"], w.ref_price, rel_tol=1e-12), (i, g, w)


def split_endings(rejections: pl.DataFrame) -> list[tuple[int, str, str, int]]:
    rows = with_ts(rejections).filter(pl.col("reason") == "split")
    return sorted(rows.select("ts_us", "asset_id", "side", "qty").iter_rows())


def oracle_split_endings(done: Replayed, ts_us: list[int]) -> list[tuple[int, str, str, int]]:
    return sorted(
        (ts_us[r.bar], r.asset_id, "buy" if r.qty > 0 else "sell", abs(r.qty))
        for r in done.rejections
        if r.reason == "split"
    )


def oracle_pnl(done: Replayed) -> dict[str, float]:
    """Per asset: the cash flows of its fills and actions, plus what is held at the last
    close (the oracle's P&L, asset by asset)."""
    pnl = {asset: qty * close if qty else 0.0 for asset, (qty, close) in done.positions.items()}
    for f in done.fills:
        signed = f.qty if f.side == "buy" else -f.qty
        pnl[f.asset_id] -= signed * f.price + f.commission
    for act in done.actions:
        pnl[act.asset_id] += act.cash
    return pnl


def assert_same_trade_pnl(result: BacktestResult, done: Replayed) -> None:
    """The engine's trades of each asset carry every cash flow the oracle has for it (fills,
    dividends, fractions) and the position still open at the last close."""
    got = dict(result.trades.group_by("asset_id").agg(pl.col("pnl").sum()).iter_rows())
    for asset, want in oracle_pnl(done).items():
        assert money_close(got.get(asset, 0.0), want), f"{asset}: engine {got.get(asset)} != {want}"
    total = done.equity[-1].equity - result.start_equity
    assert money_close(float(result.trades["pnl"].sum()), total)


def check(
    folder: Path,
    prices: pl.DataFrame,
    plan: list[PlanOrder],
    knobs: Knobs,
    actions: list[CorporateAction],
) -> tuple[BacktestResult, Replayed]:
    result = run_engine(folder, prices, plan, knobs, actions)
    done = replay_all(prices, plan, knobs, actions)
    assert_same_fills(with_ts(result.fills), done.fills)
    assert_same_money(result.equity, done.equity)
    assert_same_actions(result.actions, done.actions)
    ts_us = result.equity["timestamp"].dt.epoch("us").to_list()
    assert split_endings(result.rejections) == oracle_split_endings(done, ts_us)
    assert_same_trade_pnl(result, done)
    return result, done


# -- random plans and actions on random panels ---------------------------------------------------

CASES: dict[str, Knobs] = {
    "long_only_cash": Knobs(initial_cash=60_000.0, commission_rate=0.001),
    "shorts_slippage": Knobs(
        commission_rate=0.0005, slippage_bps=5.0, allow_short=True, allow_negative_cash=True
    ),
    "short_stops": Knobs(
        commission_rate=0.0005, allow_short=True, allow_negative_cash=True, stop_loss_pct=0.03
    ),
    "resize_delist": Knobs(
        initial_cash=40_000.0,
        commission_rate=0.001,
        allow_short=True,
        on_insufficient_cash="resize",
        on_delist="close",
    ),
    "no_bar_wait": Knobs(commission_rate=0.001, allow_negative_cash=True, on_no_bar="wait"),
    "participation_stops": Knobs(
        commission_rate=0.0005,
        allow_short=True,
        allow_negative_cash=True,
        stop_loss_pct=0.02,
        max_participation=0.1,
    ),
}
SEEDS = (1, 2, 3)


def case_inputs(
    case: str, seed: int
) -> tuple[pl.DataFrame, list[PlanOrder], list[CorporateAction]]:
    """A panel taken as split-adjusted, the raw bars of its splits, a plan on the raw bars."""
    adjusted = random_panel(seed)
    actions = random_actions(adjusted, seed + 300)
    prices = unadjust(adjusted, actions)
    if CASES[case].max_participation is not None:
        prices = thin_volume(prices, seed + 200)
    return prices, random_plan(prices, seed + 100), actions


def _random_case(case: str, seed: int) -> Any:
    return pytest.param(case, seed, id=f"{case}-{seed}")


@pytest.mark.parametrize(("case", "seed"), [_random_case(c, s) for c in CASES for s in SEEDS])
def test_random_plans_with_actions_match_the_oracle(case: str, seed: int, tmp_path: Path) -> None:
    prices, plan, actions = case_inputs(case, seed)
    check(tmp_path, prices, plan, CASES[case], actions)


# -- hand-computed cases ------------------------------------------------------------------------

ActionSpec = tuple[
    int, str, float, float
]  # ex-date bar (its day's midnight), asset, ratio, dividend
ActionOut = tuple[int, str, str, int, int, float]  # bar, asset, action, qty before, after, cash


def ex_dates(prices: pl.DataFrame, specs: list[ActionSpec]) -> list[CorporateAction]:
    """Each action's ex-date: midnight of its bar's day (before the bar, after the one before)."""
    days = sorted(set(prices["timestamp"].dt.truncate("1d").dt.epoch("us").to_list()))
    return [
        CorporateAction(ts_us=days[bar], asset=asset, split_ratio=ratio, dividend=dividend)
        for bar, asset, ratio, dividend in specs
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionCase:
    """A few bars worked out by hand (see the comment above each case)."""

    bars: dict[str, list[Bar]]
    plan: list[PlanOrder]
    knobs: Knobs
    actions: list[ActionSpec]
    fills: list[FillRow]
    rejections: list[RejectionRow] = field(default_factory=list)
    applied: list[ActionOut]
    cash: list[float]
    final_equity: float


HAND: dict[str, ActionCase] = {
    # Long 101 X at 100 (cash 9,900), a sell limit of 101 at 110 working. 3:2 split: 151.5 new
    # shares, 151 kept and the half share paid at 100 / 1.5: +33.33; the limit becomes 151 at
    # 73.33, reached by bar 3's high 74 (open 70): sold at 73.33, +11,073.33. Z is not held: its
    # 2:1 split and dividend pay nothing, its buy limit (30 at 24) becomes 60 at 12.
    "three_for_two_and_an_unheld_asset": ActionCase(
        bars={
            "X": [
                (100, 100, 100, 100),
                (100, 101, 99, 100),
                (66.5, 67, 66, 66.5),
                (70, 74, 69, 73),
            ],
            "Z": [(50, 50, 50, 50), (50, 50, 50, 50), (25, 25.5, 24.5, 25), (24, 24.5, 23, 24)],
        },
        plan=[
            PlanOrder(bar=0, asset="X", qty=101, type="market"),
            PlanOrder(bar=1, asset="X", qty=-101, type="limit", limit=110.0),
            PlanOrder(bar=1, asset="Z", qty=30, type="limit", limit=24.0),
        ],
        knobs=Knobs(initial_cash=20_000.0),
        actions=[(2, "X", 1.5, 0.0), (2, "Z", 2.0, 1.0)],
        fills=[(1, "X", "buy", 101, 100.0, "signal"), (3, "X", "sell", 151, 110 / 1.5, "signal")],
        rejections=[],
        applied=[(2, "X", "split", 101, 151, 100 / 3)],
        cash=[20_000.0, 9_900.0, 9_900.0 + 100 / 3, 9_900.0 + 100 / 3 + 151 * 110 / 1.5],
        final_equity=9_900.0 + 100 / 3 + 151 * 110 / 1.5,
    ),
    # Short 50 Y at 40, long 25 W at 10 (a sell stop of 25 at 9 working, stop_loss level 9.5),
    # long 3 V at 20 (a buy of 5 working): cash 11,690. Bar 2, before the open: Y's dividend of
    # 0.5 costs the short 25; V's 1:100 leaves 0.03 shares: sold at 20 (+60), its buy of 5
    # becomes 0.05 shares and only ends; W has no bar on bar 2: its 1:10 leaves 2 shares and
    # half a share paid at 10 / 0.1 = 100 (+50), its stop becomes 2 at 90, its level 95, and
    # it is marked at 100 on bar 2. Bar 3 (low 94): the stop_loss sells 2 at 95, the stop order
    # is stopped out.
    "short_dividend_reverse_splits_no_bar": ActionCase(
        bars={
            "V": [(20, 20, 20, 20), (20, 20, 20, 20), (2000, 2000, 2000, 2000), (2000,) * 4],
            "W": [(10, 10, 10, 10), (10, 10, 10, 10), None, (100, 101, 94, 100)],
            "Y": [(40, 40, 40, 40), (40, 40.5, 39.5, 40), (40, 41, 39, 40.5), (40.5, 41, 40, 40.5)],
        },
        plan=[
            PlanOrder(bar=0, asset="Y", qty=-50, type="market"),
            PlanOrder(bar=0, asset="W", qty=25, type="market"),
            PlanOrder(bar=0, asset="V", qty=3, type="market"),
            PlanOrder(bar=1, asset="W", qty=-25, type="stop", stop=9.0),
            PlanOrder(bar=1, asset="V", qty=5, type="market"),
        ],
        knobs=Knobs(initial_cash=10_000.0, allow_short=True, stop_loss_pct=0.05),
        actions=[(2, "Y", 1.0, 0.5), (2, "V", 0.01, 0.0), (2, "W", 0.1, 0.0)],
        fills=[
            (1, "Y", "sell", 50, 40.0, "signal"),
            (1, "W", "buy", 25, 10.0, "signal"),
            (1, "V", "buy", 3, 20.0, "signal"),
            (3, "W", "sell", 2, 95.0, "stop_loss"),
        ],
        rejections=[("V", "buy", 5, "split"), ("W", "sell", 2, "stopped_out")],
        applied=[
            (2, "Y", "dividend", -50, -50, -25.0),
            (2, "V", "split", 3, 0, 60.0),
            (2, "W", "split", 25, 2, 50.0),
        ],
        cash=[10_000.0, 11_690.0, 11_775.0, 11_965.0],
        final_equity=9_940.0,
    ),
    # Long 300 A at 30, short 7 B at 20, short 5 C at 8 (cash 1,280), A's buy stop of 31 at 40
    # working. A 1:3 given as 0.333...: 100 shares, no cash; the stop becomes 10 at 120. B 3:1:
    # short 21. C 1:10 leaves half a share: the short is bought back at the previous close 8
    # (-40). Bar 3: B's dividend of 0.25 costs the short 5.25. Bar 4 opens at 121 over the
    # stop: 10 bought at 121. Equity 24.75 + 110 x 121 - 21 x 6.7.
    "one_for_three_and_a_short_split": ActionCase(
        bars={
            "A": [(30,) * 4, (30,) * 4, (90, 91, 89, 90), (90, 92, 89, 91), (121, 122, 120, 121)],
            "B": [(20,) * 4, (20,) * 4, (6.6, 6.8, 6.5, 6.7), (6.7, 6.8, 6.6, 6.7), (6.7,) * 4],
            "C": [(8,) * 4, (8,) * 4, (80,) * 4, (80,) * 4, (80,) * 4],
        },
        plan=[
            PlanOrder(bar=0, asset="A", qty=300, type="market"),
            PlanOrder(bar=0, asset="B", qty=-7, type="market"),
            PlanOrder(bar=0, asset="C", qty=-5, type="market"),
            PlanOrder(bar=1, asset="A", qty=31, type="stop", stop=40.0),
        ],
        knobs=Knobs(initial_cash=10_100.0, allow_short=True),
        actions=[(2, "A", 1 / 3, 0.0), (2, "B", 3.0, 0.0), (2, "C", 0.1, 0.0), (3, "B", 1.0, 0.25)],
        fills=[
            (1, "B", "sell", 7, 20.0, "signal"),
            (1, "C", "sell", 5, 8.0, "signal"),
            (1, "A", "buy", 300, 30.0, "signal"),
            (4, "A", "buy", 10, 121.0, "signal"),
        ],
        rejections=[],
        applied=[
            (2, "A", "split", 300, 100, 0.0),
            (2, "B", "split", -7, -21, 0.0),
            (2, "C", "split", -5, 0, -40.0),
            (3, "B", "dividend", -21, -21, -5.25),
        ],
        cash=[10_100.0, 1_280.0, 1_240.0, 1_234.75, 24.75],
        final_equity=24.75 + 110 * 121 - 21 * 6.7,
    ),
}


def assert_hand_actions(got: list[ActionOut], case: ActionCase) -> None:
    assert [g[:5] for g in got] == [w[:5] for w in case.applied], got
    for g, w in zip(got, case.applied, strict=True):
        assert g[5] == pytest.approx(w[5], abs=1e-9), (g, w)


def assert_hand_money(cash: list[float], final_equity: float, case: ActionCase) -> None:
    assert cash == pytest.approx(case.cash, abs=1e-9)
    assert final_equity == pytest.approx(case.final_equity, abs=1e-9)


@pytest.mark.parametrize("name", list(HAND))
def test_oracle_by_hand(name: str) -> None:
    """The oracle itself against the hand-worked numbers."""
    case = HAND[name]
    prices = hand_prices(case.bars)
    done = replay_all(prices, case.plan, case.knobs, ex_dates(prices, case.actions))
    fills = [(f.bar, f.asset_id, f.side, f.qty, f.price, f.reason) for f in done.fills]
    assert_hand_fills(fills, case.fills)
    assert [
        (r.asset_id, "buy" if r.qty > 0 else "sell", abs(r.qty), r.reason) for r in done.rejections
    ] == case.rejections
    applied = [
        (r.bar, r.asset_id, r.action, r.qty_before, r.qty_after, r.cash) for r in done.actions
    ]
    assert_hand_actions(applied, case)
    assert_hand_money([e.cash for e in done.equity], done.equity[-1].equity, case)


@pytest.mark.parametrize("name", list(HAND))
def test_engine_by_hand(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The engine, through the command line, against the same numbers and the oracle; the
    files it wrote pass the invariants."""
    from ml4t_pipeline.cli import main

    case = HAND[name]
    prices = hand_prices(case.bars)
    actions = ex_dates(prices, case.actions)
    config_path = tmp_path / "run.yaml"
    config = actions_config(tmp_path / "data", prices, case.plan, case.knobs, actions)
    config_path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    code = main(["backtest", "--config", str(config_path), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert_backtest_invariants(out, prices=prices)
    fills = pl.read_parquet(out / "fills.parquet")
    assert_hand_fills(
        [
            (r["bar"], r["asset_id"], r["side"], r["qty"], r["price"], r["reason"])
            for r in fills.iter_rows(named=True)
        ],
        case.fills,
    )
    rejections = pl.read_parquet(out / "rejections.parquet")
    assert [
        (r["asset_id"], r["side"], r["qty"], r["reason"]) for r in rejections.iter_rows(named=True)
    ] == case.rejections
    table = pl.read_parquet(out / "actions.parquet")
    assert_hand_actions(
        [
            (r["bar"], r["asset_id"], r["action"], r["qty_before"], r["qty_after"], r["cash"])
            for r in table.iter_rows(named=True)
        ],
        case,
    )
    equity = pl.read_parquet(out / "equity.parquet")
    assert_hand_money(equity["cash"].to_list(), float(equity["equity"][-1]), case)
    # and the whole comparison with the oracle, in memory
    check(tmp_path / "memory", prices, case.plan, case.knobs, actions)


# -- what the random cases meet ------------------------------------------------------------------


def test_random_inputs_exercise_every_rule() -> None:
    """The randomized cases are only worth running if the oracle meets each rule in them:
    every ratio on a position held, fractions paid by longs and shorts, splits that leave no
    share (of a long; of a short: the hand cases), dividends on longs and shorts, splits on bars where the asset has
    none, actions on assets not held, and the actions the run must ignore."""
    seen: dict[str, int] = {}

    def count(key: str, n: int = 1) -> None:
        seen[key] = seen.get(key, 0) + n

    for case, knobs in CASES.items():
        for seed in SEEDS:
            prices, plan, actions = case_inputs(case, seed)
            done = replay_all(prices, plan, knobs, actions)
            bars = bars_of(prices)
            placed = actions_by_bar(bars, actions)
            count("ignored", len(actions) - sum(len(v) for v in placed.values()))
            rows = {(r.bar, r.asset_id, r.action) for r in done.actions}
            for t, acts in placed.items():
                for a, act in acts:
                    if act.split_ratio != 1.0 and (t, act.asset, "split") not in rows:
                        count("split_not_held")
                    if act.split_ratio != 1.0 and not bars.has_bar(t, a):
                        held = (t, act.asset, "split") in rows
                        count("split_held_without_a_bar" if held else "split_without_a_bar")
            for r in done.actions:
                side = "long" if r.qty_before > 0 else "short"
                if r.action == "dividend":
                    count(f"dividend_{side}")
                    continue
                count(f"ratio_{r.split_ratio:.4f}")
                if r.qty_after == 0:
                    count(f"split_to_zero_{side}")
                elif r.cash != 0:
                    count(f"fraction_{side}")
    for key in (
        *(f"ratio_{r:.4f}" for r in SPLIT_RATIOS),
        "fraction_long",
        "fraction_short",
        "split_to_zero_long",
        "dividend_long",
        "dividend_short",
        "split_not_held",
        "split_without_a_bar",
        "split_held_without_a_bar",
        "ignored",
    ):
        assert seen.get(key, 0) > 0, f"{key} never happens: {sorted(seen.items())}"


# -- cases that once failed ------------------------------------------------------------------------


def test_a_split_keeps_the_priority_of_the_orders_it_amends(tmp_path: Path) -> None:
    """Cap 10 % of volume. Bar 0: a market buy of 30 (id 0) and a buy limit of 5 at 95 (id 1).
    Bar 1 (volume 100) fills 10 of the 30; the rest of 20 keeps working, appended after the
    limit. Bar 2, 2:1 split: the rest is 40, the limit 10 at 47.5; the bar opens at 45 under
    the limit with room for 20 shares. The rest (the older order) takes the 20, as on the
    split-adjusted prices: the split amends the orders where they stand (when it replaced them
    with new ids, the limit came first)."""
    knobs = Knobs(initial_cash=10_000.0, max_participation=0.1)
    bars: dict[str, list[Bar]] = {
        "X": [(100, 100, 100, 100), (100, 100, 99, 100), (45, 46, 44, 45), (45, 46, 44, 45)]
    }
    raw = hand_prices(bars, volumes={"X": [1e4, 100.0, 200.0, 1e4]})
    plan = [
        PlanOrder(bar=0, asset="X", qty=30, type="market"),
        PlanOrder(bar=0, asset="X", qty=5, type="limit", limit=95.0),
    ]
    actions = ex_dates(raw, [(2, "X", 2.0, 0.0)])
    adjusted = unadjust(raw, [CorporateAction(ts_us=actions[0].ts_us, asset="X", split_ratio=0.5)])
    doubled = [
        PlanOrder(bar=0, asset="X", qty=60, type="market"),
        PlanOrder(bar=0, asset="X", qty=10, type="limit", limit=47.5),
    ]
    on_adjusted = run_engine(tmp_path / "adjusted", adjusted, doubled, knobs, [])
    want = [(2, "buy", 20, 45.0)]
    assert [
        (r["bar"], r["side"], r["qty"], r["price"])
        for r in on_adjusted.fills.filter(pl.col("bar") == 2).iter_rows(named=True)
    ] == want
    done = replay_all(raw, plan, knobs, actions)
    assert [(f.bar, f.side, f.qty, f.price) for f in done.fills if f.bar == 2] == want
    on_raw = run_engine(tmp_path / "raw", raw, plan, knobs, actions)
    assert [
        (r["bar"], r["side"], r["qty"], r["price"])
        for r in on_raw.fills.filter(pl.col("bar") == 2).iter_rows(named=True)
    ] == want


def test_an_actions_file_without_rows_is_no_actions(tmp_path: Path) -> None:
    """A corporate-actions file with its columns and no rows (a month without actions) runs
    as the same run without the file."""
    prices = random_panel(4)
    plan = random_plan(prices, 104, n_orders=20)
    knobs = Knobs(commission_rate=0.001, allow_negative_cash=True)
    config = actions_config(tmp_path, prices, plan, knobs, [])
    without = run_backtest(run_config_from_dict(config))
    empty = tmp_path / "empty_actions.parquet"
    actions_frame([]).write_parquet(empty)
    config["data"]["corporate_actions"] = str(empty)
    result = run_backtest(run_config_from_dict(config))
    assert_result_invariants(result, prices=prices)
    assert result.equity.equals(without.equity)
    assert result.actions.height == 0


def test_a_chained_split_of_a_carried_order(tmp_path: Path) -> None:
    """A buy limit placed at bar 1 works through a chain cut at bar 5; the 2:1 split at bar 6
    amends it (20 shares at 25) and the fall after it fills it. The later run fills it as the
    one run does, and does not list the carried order in its orders table (the earlier run's
    table has it, open)."""
    before: list[Bar | None] = [(100.0, 101.0, 99.0, 100.0)] * 6
    after: list[Bar | None] = [(24.0, 25.0, 23.0, 24.0)] * 4
    prices = hand_prices({"X": before + after})
    plan = [PlanOrder(bar=1, asset="X", qty=10, type="limit", limit=50.0)]
    actions = ex_dates(prices, [(6, "X", 2.0, 0.0)])
    config = run_config_from_dict(actions_config(tmp_path, prices, plan, Knobs(), actions))
    whole = run_backtest(config)
    boundary = sorted(set(prices["timestamp"].to_list()))[5]
    first = run_backtest(config, end=boundary)
    second = run_backtest(config, start=boundary, initial_state=first.final_state)
    assert pl.concat([first.fills, second.fills]).equals(whole.fills)
    assert whole.fills.select("qty", "price").rows() == [(20, 24.0)]
    assert whole.orders.select("order_id", "qty", "limit_price", "status").rows() == [
        (0, 20, 25.0, "filled")
    ]
    assert first.orders["status"].to_list() == ["open"]
    assert second.orders.height == 0
