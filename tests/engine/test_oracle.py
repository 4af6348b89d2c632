"""The engine, run through its CLI, against the independent oracle in tests/oracle.

Every case writes shuffled Parquet inputs and a YAML config in the WORKLOADS.md format, runs
`ml4t-pipeline backtest` in-process and asserts: the same fills as the oracle (timestamp, bar,
asset, side, qty, reason and price exactly; commission to 1e-9 relative), the same equity curve
and final equity (1e-9 relative), the summary line, and the backtest invariants.

The oracle itself is pinned to the spec in test_oracle_selfcheck.py; the last test here checks
that the generated data really exercises gap-aware stops, VIX-skipped rebalances and ties.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from tests.invariants import ABS_TOL, REL_TOL, assert_backtest_invariants
from tests.oracle.synthetic import (
    MarketPaths,
    MarketSpec,
    hand_rotation_market,
    hand_threshold_market,
    make_market,
    stop_boundary_market,
    write_market,
)
from tests.oracle.workloads import (
    OracleResult,
    equity_frame,
    fills_frame,
    load_panel,
    signal_threshold,
    top_k_rotation,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    strategy: str
    params: dict[str, Any]
    stop_pct: float | None = None
    initial_cash: float = 1_000_000.0
    commission_rate: float = 0.001
    data: MarketSpec | None = None  # None: the test brings hand-written bars


SINGLE_NAIVE = MarketSpec(seed=101, n_assets=1, n_bars=2000, tz=None, score_null_rate=0.02)
SINGLE_TZ = MarketSpec(seed=202, n_assets=1, n_bars=2000, tz="America/New_York")
TRIPLE_TZ = MarketSpec(seed=505, n_assets=3, n_bars=600, tz="Asia/Tokyo", score_null_rate=0.01)
PANEL_NAIVE = MarketSpec(seed=303, n_assets=40, n_bars=120, tz=None)
PANEL_TIES = MarketSpec(seed=404, n_assets=40, n_bars=120, tz="Europe/London", score_decimals=2)
PANEL_INT_IDS = MarketSpec(seed=606, n_assets=40, n_bars=120, score_decimals=1, int_ids=True)

WIDE = {"score": "ml_score", "entry_above": 0.6, "exit_below": 0.4, "qty": 100}
NARROW = {"score": "ml_score", "entry_above": 0.55, "exit_below": 0.45, "qty": 250}
TOPK_A = {"top_k": 3, "weight": 0.1, "rebalance_every": 3, "warmup_bars": 4, "max_vix": 25}
TOPK_B = {"top_k": 5, "weight": 0.2, "rebalance_every": 5, "warmup_bars": 10, "max_vix": 35}
TOPK_C = {"top_k": 5, "weight": 0.1, "rebalance_every": 3, "warmup_bars": 10, "max_vix": 35}

W1_CASES = [
    pytest.param(Case(data=d, strategy="signal_threshold", params=p), id=f"w1-{dn}-{pn}")
    for dn, d in (("naive", SINGLE_NAIVE), ("tz", SINGLE_TZ))
    for pn, p in (("wide", WIDE), ("narrow", NARROW))
]
W2_CASES = [
    pytest.param(
        Case(data=d, strategy="signal_threshold", params=p, stop_pct=s), id=f"w2-{dn}-stop{s}"
    )
    for dn, d, p in (("naive", SINGLE_NAIVE, WIDE), ("tz", SINGLE_TZ, NARROW))
    for s in (0.03, 0.05)
]
MULTI_CASES = [
    pytest.param(
        Case(data=TRIPLE_TZ, strategy="signal_threshold", params=WIDE, stop_pct=0.03),
        id="w2-three-assets",
    ),
    pytest.param(
        Case(
            data=SINGLE_NAIVE,
            strategy="signal_threshold",
            params=NARROW,
            initial_cash=250_000.0,
            commission_rate=0.0005,
        ),
        id="w1-other-cash-and-rate",
    ),
]
W3_CASES = [
    pytest.param(
        Case(data=d, strategy="top_k_rotation", params={"score": "ml_score", **p}),
        id=f"w3-{dn}-{pn}",
    )
    for dn, d in (("naive", PANEL_NAIVE), ("ties", PANEL_TIES), ("int-ids", PANEL_INT_IDS))
    for pn, p in (("a", TOPK_A), ("b", TOPK_B))
] + [
    pytest.param(
        Case(
            data=PANEL_TIES,
            strategy="top_k_rotation",
            params={"score": "ml_score", **TOPK_C},
            initial_cash=250_000.0,
            commission_rate=0.0005,
        ),
        id="w3-ties-c-other-cash-and-rate",
    )
]


def materialize(spec: MarketSpec, directory: Path) -> MarketPaths:
    return write_market(make_market(spec), directory, seed=spec.seed)


def run_oracle(case: Case, paths: MarketPaths) -> OracleResult:
    panel = load_panel(paths.prices, paths.signals, paths.context)
    p = case.params
    if case.strategy == "top_k_rotation":
        return top_k_rotation(
            panel,
            score=p["score"],
            top_k=p["top_k"],
            weight=p["weight"],
            rebalance_every=p["rebalance_every"],
            warmup_bars=p["warmup_bars"],
            max_vix=p["max_vix"],
            initial_cash=case.initial_cash,
            commission_rate=case.commission_rate,
        )
    return signal_threshold(
        panel,
        score=p["score"],
        entry_above=p["entry_above"],
        exit_below=p["exit_below"],
        qty=p["qty"],
        stop_pct=case.stop_pct,
        initial_cash=case.initial_cash,
        commission_rate=case.commission_rate,
    )


def write_config(case: Case, paths: MarketPaths, path: Path) -> Path:
    config: dict[str, Any] = {
        "data": {
            "prices": str(paths.prices),
            "signals": str(paths.signals),
            "context": str(paths.context),
        },
        "execution": {
            "initial_cash": case.initial_cash,
            "fill_at": "next_open",
            "commission_rate": case.commission_rate,
            "allow_negative_cash": True,
        },
        "strategy": {"name": case.strategy, "params": case.params},
    }
    if case.stop_pct is not None:
        config["risk"] = [{"rule": "stop_loss", "pct": case.stop_pct}]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_cli(config: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    from ml4t_pipeline.cli import main

    code = main(["backtest", "--config", str(config), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    last = captured.out.strip().splitlines()[-1]
    summary: dict[str, Any] = json.loads(last)
    return summary


def _fill_key(row: dict[str, Any]) -> tuple[int, str, str, str]:
    return (row["ts_us"], row["asset_id"], row["side"], row["reason"])


def assert_same_fills(engine: pl.DataFrame, expected: OracleResult) -> None:
    columns = ["ts_us", "bar", "asset_id", "side", "qty", "price", "commission", "reason"]
    got = sorted(
        engine.with_columns(pl.col("timestamp").dt.epoch("us").alias("ts_us"))
        .select(columns)
        .to_dicts(),
        key=_fill_key,
    )
    want = sorted(
        fills_frame(expected)
        .with_columns(pl.col("timestamp").dt.epoch("us").alias("ts_us"))
        .select(columns)
        .to_dicts(),
        key=_fill_key,
    )
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        exact = {k: g[k] for k in columns if k != "commission"}
        assert exact == {k: w[k] for k in columns if k != "commission"}, (
            f"fill #{i}: engine {g} != oracle {w}"
        )
        assert math.isclose(g["commission"], w["commission"], rel_tol=REL_TOL), (
            f"fill #{i}: {g} != {w}"
        )
    assert len(got) == len(want), f"engine has {len(got)} fills, oracle {len(want)}"


def assert_sells_before_buys(engine: pl.DataFrame) -> None:
    """Within each bar, in the table's (execution) order, no strategy sell follows a buy."""
    signal = engine.filter(pl.col("reason") == "signal").with_row_index("row")
    late = signal.group_by("timestamp").agg(
        (
            pl.col("row").filter(pl.col("side") == "sell").max()
            > pl.col("row").filter(pl.col("side") == "buy").min()
        ).alias("late")
    )
    assert not late["late"].fill_null(False).any(), late.filter(pl.col("late"))


def assert_same_equity(engine: pl.DataFrame, expected: OracleResult, scale: float) -> None:
    want = equity_frame(expected)
    assert (
        engine["timestamp"].dt.epoch("us").to_list() == want["timestamp"].dt.epoch("us").to_list()
    )
    for column in ("cash", "positions_value", "equity"):
        got, ref = engine[column].to_numpy(), want[column].to_numpy()
        diff = np.abs(got - ref)
        bound = REL_TOL * np.maximum(np.abs(ref), scale)
        worst = int(np.argmax(diff - bound))
        assert (diff <= bound).all(), (
            f"{column} at bar {worst}: engine {got[worst]} != {ref[worst]}"
        )


def check_run(
    case: Case, paths: MarketPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run `case` on `paths` through the CLI and compare everything with the oracle."""
    expected = run_oracle(case, paths)
    out = tmp_path / "out"
    line = run_cli(write_config(case, paths, tmp_path / "run.yaml"), out, capsys)

    assert_backtest_invariants(out, prices=paths.prices, initial_cash=case.initial_cash)
    fills = pl.read_parquet(out / "fills.parquet")
    assert_same_fills(fills, expected)
    assert_sells_before_buys(fills)
    assert_same_equity(pl.read_parquet(out / "equity.parquet"), expected, case.initial_cash)
    summary = json.loads((out / "summary.json").read_text())
    n_rows = pl.scan_parquet(paths.prices).select(pl.len()).collect().item()
    for reported in (line, summary):
        assert math.isclose(reported["final_equity"], expected.final_equity, rel_tol=REL_TOL)
        assert reported["fills"] == len(expected.fills)
        assert reported["bars"] == n_rows
    assert {"wall_s", "bars_per_s"} <= line.keys()
    assert math.isclose(
        summary["final_cash"], expected.final_cash, rel_tol=REL_TOL, abs_tol=ABS_TOL
    )


def check_case(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert case.data is not None
    check_run(case, materialize(case.data, tmp_path / "data"), tmp_path, capsys)


@pytest.mark.parametrize("case", W1_CASES + W2_CASES + MULTI_CASES + W3_CASES)
def test_engine_matches_oracle(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_case(case, tmp_path, capsys)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            Case(
                data=MarketSpec(seed=11, n_assets=1, n_bars=10_000),
                strategy="signal_threshold",
                params=WIDE,
                stop_pct=0.05,
            ),
            id="w2-full",
        ),
        pytest.param(
            Case(
                data=MarketSpec(seed=11, n_assets=1, n_bars=10_000),
                strategy="signal_threshold",
                params=WIDE,
            ),
            id="w1-full",
        ),
        pytest.param(
            Case(
                data=MarketSpec(seed=13, n_assets=500, n_bars=252, tz="America/New_York"),
                strategy="top_k_rotation",
                params={
                    "score": "ml_score",
                    "top_k": 25,
                    "weight": 0.04,
                    "rebalance_every": 5,
                    "warmup_bars": 20,
                    "max_vix": 30,
                },
            ),
            id="w3-full",
        ),
    ],
)
def test_engine_matches_oracle_at_workload_size(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_case(case, tmp_path, capsys)


HAND_W1 = Case(strategy="signal_threshold", params=WIDE)
HAND_W3 = Case(
    strategy="top_k_rotation",
    params={
        "score": "ml_score",
        "top_k": 1,
        "weight": 0.5,
        "rebalance_every": 2,
        "warmup_bars": 2,
        "max_vix": 30,
    },
)


@pytest.mark.parametrize(
    ("case", "build"),
    [
        pytest.param(HAND_W1, hand_threshold_market, id="w1-hand"),
        pytest.param(replace(HAND_W1, stop_pct=0.05), hand_threshold_market, id="w2-hand"),
        pytest.param(HAND_W3, hand_rotation_market, id="w3-hand"),
    ],
)
def test_engine_matches_oracle_by_hand(
    case: Case,
    build: Callable[[Path], MarketPaths],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    check_run(case, build(tmp_path / "data"), tmp_path, capsys)


@pytest.mark.parametrize("low", [95.96, 95.95, 95.94])
def test_engine_stop_level_matches_oracle_at_the_boundary(
    low: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Entry 101, stop 5%: the level is 101 * (1 - 0.05) == 95.94999999999999, not 95.95."""
    paths = stop_boundary_market(tmp_path / "data", low_after_entry=low)
    check_run(replace(HAND_W1, stop_pct=0.05), paths, tmp_path, capsys)


def _case(param: Any) -> Case:
    case = param.values[0]
    assert isinstance(case, Case)
    return case


def test_cases_exercise_the_rules(tmp_path: Path) -> None:
    """The parameter grid is only worth running if its data hits every rule's edge."""
    gap_stops = level_stops = null_scores = 0
    for i, param in enumerate(W2_CASES + MULTI_CASES):
        case = _case(param)
        assert case.data is not None
        paths = materialize(case.data, tmp_path / f"s{i}")
        panel = load_panel(paths.prices, paths.signals, paths.context)
        null_scores += int(np.isnan(panel.signals["ml_score"]).sum())
        for f in run_oracle(case, paths).fills:
            if f.reason == "stop_loss":
                at_open = f.price == panel.open[f.bar, panel.asset_ids.index(f.asset_id)]
                gap_stops += at_open
                level_stops += not at_open
    assert gap_stops >= 3
    assert level_stops >= 10
    assert null_scores > 0

    vix_skips = boundary_ties = negative_cash = 0
    for i, param in enumerate(W3_CASES):
        case = _case(param)
        assert case.data is not None
        paths = materialize(case.data, tmp_path / f"r{i}")
        panel = load_panel(paths.prices, paths.signals, paths.context)
        p = case.params
        for t in range(p["warmup_bars"], len(panel.ts_us), p["rebalance_every"]):
            vix_skips += bool(panel.vix[t] > p["max_vix"])
            ranked = np.sort(panel.signals["ml_score"][t])[::-1]
            boundary_ties += bool(ranked[p["top_k"] - 1] == ranked[p["top_k"]])
        negative_cash += any(e.cash < 0 for e in run_oracle(case, paths).equity)
    assert vix_skips >= 5
    assert boundary_ties >= 1
    assert negative_cash >= 1
