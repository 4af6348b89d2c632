"""Precomputed features with a knowledge time: a row is used from the first bar at or after
its `available_at`; at each bar the value comes from the latest timestamp known by then, in
its latest known version (a late-published older row never replaces a newer one)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from ml4t_pipeline.engine import Batch, PrecomputedFeatures, Strategy, run_backtest
from ml4t_pipeline.engine.strategy.views import ContextView
from tests.engine.conftest import config, flat, panel, stamp


class Recorder(Strategy):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        self.seen.append(float(batch.signals["score"][0]))


def _features(rows: list[tuple[int, int, float]]) -> PrecomputedFeatures:
    """(bar stamped, bar known, score) rows of asset A."""
    frame = pl.DataFrame(
        {
            "timestamp": [stamp(b) for b, _, _ in rows],
            "asset_id": ["A"] * len(rows),
            "available_at": [stamp(k) for _, k, _ in rows],
            "score": [s for _, _, s in rows],
        },
        schema_overrides={
            "timestamp": pl.Datetime("us", "UTC"),
            "available_at": pl.Datetime("us", "UTC"),
        },
    )
    return PrecomputedFeatures(frame, columns=["score"])


def _seen(tmp_path: Path, rows: list[tuple[int, int, float]]) -> list[float]:
    strategy = Recorder()
    prices = panel(A=[flat(10.0)] * 5)
    run_backtest(config(tmp_path), strategy=strategy, prices=prices, features=[_features(rows)])
    return strategy.seen


def test_a_feature_is_used_from_its_available_at(tmp_path: Path) -> None:
    assert _seen(tmp_path, [(0, 0, 0.1), (1, 3, 0.9)]) == [0.1, 0.1, 0.1, 0.9, 0.9]


def test_a_late_older_row_never_replaces_a_newer_one_but_a_revision_does(tmp_path: Path) -> None:
    # bar 1's row is published at bar 3, after bar 2's: bar 3 still shows bar 2's value
    assert _seen(tmp_path, [(0, 0, 0.1), (1, 3, 0.5), (2, 2, 0.7)]) == [0.1, 0.1, 0.7, 0.7, 0.7]
    # a revision of bar 2 (published at bar 4) replaces it from bar 4
    rows = [(0, 0, 0.1), (2, 2, 0.7), (2, 4, 0.8)]
    assert _seen(tmp_path, rows) == [0.1, 0.1, 0.7, 0.7, 0.8]
