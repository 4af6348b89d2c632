"""Context with a knowledge time: a market-wide row is used only from the first bar at or after
its `available_at`, and a revision (the same timestamp, a later `available_at`) replaces the
value from the bar it becomes known. Hand-built markets, answers by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from ml4t_pipeline.engine import Batch, Strategy, run_backtest
from ml4t_pipeline.engine.strategy.views import ContextView
from ml4t_pipeline.errors import DataError
from tests.engine.conftest import config, flat, panel, stamp


class Recorder(Strategy):
    def __init__(self) -> None:
        super().__init__()
        self.vix: list[float] = []

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        self.vix.append(context["vix"])


def _context(rows: list[tuple[int, int | None, float]]) -> pl.DataFrame:
    """(bar stamped, bar known or None, vix) rows; None means known when stamped."""
    return pl.DataFrame(
        {
            "timestamp": [stamp(b) for b, _, _ in rows],
            "available_at": [stamp(k if k is not None else b) for b, k, _ in rows],
            "vix": [v for _, _, v in rows],
        },
        schema_overrides={
            "timestamp": pl.Datetime("us", "UTC"),
            "available_at": pl.Datetime("us", "UTC"),
        },
    )


def _seen(tmp_path: Path, context: pl.DataFrame, n_bars: int = 5) -> list[float]:
    strategy = Recorder()
    prices = panel(A=[flat(10.0)] * n_bars)
    run_backtest(config(tmp_path), strategy=strategy, prices=prices, context=context)
    return strategy.vix


def test_a_late_published_value_drives_no_earlier_decision(tmp_path: Path) -> None:
    # stamped at bar 1 but published at bar 3: bars 1 and 2 still see bar 0's value
    seen = _seen(tmp_path, _context([(0, None, 15.0), (1, 3, 40.0)]))
    assert seen == [15.0, 15.0, 15.0, 40.0, 40.0]


def test_a_revision_replaces_the_value_from_the_bar_it_is_known(tmp_path: Path) -> None:
    rows = [(0, None, 15.0), (1, None, 20.0), (1, 3, 22.0), (2, 2, 30.0)]
    # bar 2: the row stamped 2 is the latest known; bar 3: the revision of bar 1 is known,
    # but the row stamped 2 is still the latest timestamp known
    assert _seen(tmp_path, _context(rows)) == [15.0, 20.0, 30.0, 30.0, 30.0]
    revised = [(0, None, 15.0), (1, None, 20.0), (1, 3, 22.0)]
    assert _seen(tmp_path, _context(revised)) == [15.0, 20.0, 20.0, 22.0, 22.0]


def test_the_same_version_twice_is_a_duplicate_key(tmp_path: Path) -> None:
    twice = _context([(0, None, 15.0), (1, 2, 20.0), (1, 2, 21.0)])
    with pytest.raises(DataError, match=r"duplicate_key.*\(timestamp, available_at\)"):
        _seen(tmp_path, twice)
