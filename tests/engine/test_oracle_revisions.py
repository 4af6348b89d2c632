"""Signals and context with `available_at`: the engine (CLI and chained API runs) against the
oracle's own reading of knowledge time (`tests.oracle.workloads.known_values`).

The rule (README, Knowledge time): a row is usable from the first bar at or after
max(timestamp, available_at); at each bar the value is the known row with the latest timestamp,
in its latest known version, carried until a newer row is known; a row known before the run's
first bar counts at that bar. The markets (`MarketSpec(revisions=True)`) publish rows late,
revise some (some revisions are null), never publish others, and shuffle them on disk.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.engine import EngineState, load_run_config, run_backtest
from tests.engine.test_oracle import (
    TOPK_A,
    TOPK_B,
    WIDE,
    Case,
    assert_same_equity,
    assert_same_fills,
    check_run,
    materialize,
    run_oracle,
    write_config,
)
from tests.oracle.synthetic import MarketPaths, MarketSpec, explicit_market, make_market
from tests.oracle.workloads import load_panel


def _w1(seed: int, tz: str | None, stop_pct: float | None = None) -> Case:
    spec = MarketSpec(
        seed=seed, n_assets=3, n_bars=300, tz=tz, score_null_rate=0.02, revisions=True
    )
    return Case(data=spec, strategy="signal_threshold", params=WIDE, stop_pct=stop_pct)


def _w3(seed: int, params: dict[str, Any], decimals: int | None = None) -> Case:
    spec = MarketSpec(
        seed=seed,
        n_assets=30,
        n_bars=120,
        tz="Europe/London",
        score_decimals=decimals,
        revisions=True,
    )
    return Case(data=spec, strategy="top_k_rotation", params={"score": "ml_score", **params})


CASES = [
    pytest.param(_w1(71, None), id="w1-naive-71"),
    pytest.param(_w1(72, "America/New_York"), id="w1-tz-72"),
    pytest.param(_w1(73, "Asia/Tokyo", stop_pct=0.03), id="w2-tz-73"),
    pytest.param(_w3(81, TOPK_A), id="w3-a-81"),
    pytest.param(_w3(82, TOPK_B, decimals=2), id="w3-b-ties-82"),
    pytest.param(_w3(83, TOPK_B), id="w3-b-83"),
]


@pytest.mark.parametrize("case", CASES)
def test_engine_matches_oracle_with_revisions(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert case.data is not None
    check_run(case, materialize(case.data, tmp_path / "data"), tmp_path, capsys)


MONTHS = [None, "2021-02-01", "2021-03-01", "2021-04-01", None]


@pytest.mark.parametrize(
    "case",
    [pytest.param(_w1(74, "America/New_York"), id="w1"), pytest.param(_w3(84, TOPK_A), id="w3")],
)
def test_chained_months_match_one_oracle_run(case: Case, tmp_path: Path) -> None:
    """Month by month from saved state (each month's first bar reading what was known
    before it) gives the fills and equity of one oracle run over the whole period."""
    assert case.data is not None
    paths = materialize(case.data, tmp_path / "data")
    config = load_run_config(write_config(case, paths, tmp_path / "run.yaml"))
    state: EngineState | None = None
    fills, equity = [], []
    for start, end in itertools.pairwise(MONTHS):
        month = run_backtest(config, start=start, end=end, initial_state=state)
        state = EngineState.from_json(month.final_state.to_json())
        fills.append(month.fills)
        equity.append(month.equity)
    expected = run_oracle(case, paths)
    assert_same_fills(pl.concat(fills), expected)
    assert_same_equity(pl.concat(equity), expected, case.initial_cash)


# -- by hand ----------------------------------------------------------------------------------

DAY0 = datetime(2022, 3, 1)  # noqa: DTZ001  (explicit_market's first bar, naive = UTC)


def _at(bar: float) -> datetime:
    return DAY0 + timedelta(days=bar)


# (timestamp bar, available_at bar, score): X's signal rows, in the order written
HAND_SIGNALS: list[tuple[float, float, float | None]] = [
    (1, 0.9, 0.7),  # published 2.4 h before its stamp: known at bar 1
    (-2, -1, 0.65),  # known before the first bar: current at bar 0
    (0, 2.1, 0.9),  # bar 0's row, published late (bar 3): older than bar 1's, never current
    (1, 3.05, 0.3),  # a revision of bar 1's row, known at bar 4
    (5, 5, 0.8),
    (6, 6, None),  # a newer row whose value is null: NaN
    (3, 6, 0.1),  # late and older than bar 6's row: never current
]
# (timestamp bar, available_at bar, vix)
HAND_CONTEXT: list[tuple[float, float, float | None]] = [
    (0, 0, 20.0),
    (1, 2.5, 50.0),  # known at bar 3, after bar 2's row: never current
    (2, 2, 22.0),
    (2, 3.5, None),  # bar 2's row revised to null at bar 4
    (0, 5, 99.0),  # a revision of an old row: never current
    (5, 6.2, 30.0),  # known at bar 7
]
HAND_SCORE = [0.65, 0.7, 0.7, 0.7, 0.3, 0.8, math.nan, math.nan]
HAND_VIX = [20.0, 20.0, 22.0, 22.0, math.nan, math.nan, math.nan, 30.0]


def hand_revision_market(directory: Path) -> MarketPaths:
    """Eight bars of X (open = close = 100 + bar) and of Y (flat 50, never scored above 0.2)
    with the signal and context rows above."""
    n = len(HAND_SCORE)
    paths = explicit_market(
        directory,
        opens={"X": [100.0 + t for t in range(n)], "Y": [50.0] * n},
        closes={"X": [100.0 + t for t in range(n)], "Y": [50.0] * n},
        scores={"X": [None] * n, "Y": [None] * n},
        vix=[0.0] * n,
    )
    rows = [("X", ts, known, v) for ts, known, v in HAND_SIGNALS]
    rows += [("Y", t, t, 0.2 - 0.01 * t) for t in range(n)]
    pl.DataFrame(
        {
            "timestamp": [_at(r[1]) for r in rows],
            "asset_id": [r[0] for r in rows],
            "ml_score": [r[3] for r in rows],
            "available_at": [_at(r[2]) for r in rows],
        },
        schema_overrides={"ml_score": pl.Float64},
    ).write_parquet(paths.signals)
    pl.DataFrame(
        {
            "timestamp": [_at(r[0]) for r in HAND_CONTEXT],
            "vix": [r[2] for r in HAND_CONTEXT],
            "available_at": [_at(r[1]) for r in HAND_CONTEXT],
        },
        schema_overrides={"vix": pl.Float64},
    ).write_parquet(paths.context)
    return paths


def test_oracle_reads_knowledge_time_by_hand(tmp_path: Path) -> None:
    panel = load_panel(*hand_revision_market(tmp_path / "data").files())
    x = panel.asset_ids.index("X")
    np.testing.assert_array_equal(panel.signals["ml_score"][:, x], HAND_SCORE)
    np.testing.assert_array_equal(panel.vix, HAND_VIX)


HAND_W1 = Case(strategy="signal_threshold", params=WIDE)


def test_engine_matches_the_hand_worked_revisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """W1: bought at bar 1's open (the pre-run row, 0.65 > 0.6), sold at bar 5's open (the
    revision known at bar 4, 0.3 < 0.4), bought again at bar 6's open (0.8); neither the late
    0.9 nor the late 0.1 ever counts."""
    paths = hand_revision_market(tmp_path / "data")
    result = run_oracle(HAND_W1, paths)
    assert [(f.bar, f.asset_id, f.side, f.qty, f.price) for f in result.fills] == [
        (1, "X", "buy", 100, 101.0),
        (5, "X", "sell", 100, 105.0),
        (6, "X", "buy", 100, 106.0),
    ]
    check_run(HAND_W1, paths, tmp_path, capsys)


@pytest.mark.parametrize("max_vix", [21.0, 25.0])
def test_engine_matches_the_hand_worked_context(
    max_vix: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """W3, top 1 of X and Y at every bar: rebalances only where the known vix is <= max_vix
    (never where it is NaN: bars 4-6)."""
    case = Case(
        strategy="top_k_rotation",
        params={
            "score": "ml_score",
            "top_k": 1,
            "weight": 0.5,
            "rebalance_every": 1,
            "warmup_bars": 0,
            "max_vix": max_vix,
        },
    )
    paths = hand_revision_market(tmp_path / "data")
    rebalanced = {f.bar - 1 for f in run_oracle(case, paths).fills}
    assert rebalanced == ({0, 1} if max_vix == 21.0 else {0, 1, 2, 3, 7}) - {7}
    check_run(case, paths, tmp_path, capsys)


def _feed_events(table: pl.DataFrame, group: str | None) -> dict[str, int]:
    """Replay a generated feed by hand, counting what the rule meets: rows arriving after a
    newer one (never current), revisions that become current, and those whose value is null."""
    seen = {"late_older": 0, "revision": 0, "null_revision": 0, "before_first_bar": 0}
    bars = sorted(set(table["timestamp"].to_list()))
    value = "ml_score" if "ml_score" in table.columns else "vix"
    groups: dict[object, list[tuple[datetime, datetime, float | None]]] = {}
    for r in table.iter_rows(named=True):
        known = max(r["timestamp"], r["available_at"])
        groups.setdefault(r[group] if group else None, []).append((known, r["timestamp"], r[value]))
    for rows in groups.values():
        current: tuple[datetime, datetime] | None = None  # (timestamp, known) of the current row
        for known, ts, v in sorted(rows, key=lambda row: row[0]):
            if current is not None and ts < current[0]:
                seen["late_older"] += 1
            elif current is not None and ts == current[0]:
                seen["revision"] += 1
                seen["null_revision"] += v is None
            if current is None or (ts, known) > current:
                current = (ts, known)
        seen["before_first_bar"] += any(known < bars[0] for known, _, _ in rows)
    return seen


def test_revision_markets_exercise_the_rule() -> None:
    """The generated feeds meet every clause of the rule, signals and context alike."""
    totals: dict[str, int] = {}
    for param in CASES:
        case = param.values[0]
        assert isinstance(case, Case)
        assert case.data is not None
        market = make_market(case.data)
        for table, group in ((market.signals, "asset_id"), (market.context, None)):
            for key, n in _feed_events(table, group).items():
                name = f"{'signals' if group else 'context'}:{key}"
                totals[name] = totals.get(name, 0) + n
    for name in (
        "signals:late_older",
        "signals:revision",
        "signals:null_revision",
        "context:late_older",
        "context:revision",
        "context:null_revision",
    ):
        assert totals.get(name, 0) >= 3, totals
