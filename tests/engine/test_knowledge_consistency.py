"""Knowledge time read the same way everywhere: precomputed features, context and signals
agree on a newer row with a null value, and the engine and `validate` agree on which rows
repeat a key (the raw key, over every row of the file)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import polars as pl
import pytest

from ml4t_pipeline.engine import Batch, PrecomputedFeatures, Strategy, run_backtest
from ml4t_pipeline.engine.strategy.views import ContextView
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.validation import Rule, validate_context, validate_signals
from tests.engine.conftest import config, flat, panel, stamp

HOUR = dt.timedelta(hours=1)
TIMED = {"timestamp": pl.Datetime("us", "UTC"), "available_at": pl.Datetime("us", "UTC")}


class Recorder(Strategy):
    """What the strategy reads at each close: asset A's `score` and the context's `vix`."""

    def __init__(self) -> None:
        super().__init__()
        self.score: list[float] = []
        self.vix: list[float] = []

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        if "score" in batch.signals:
            self.score.append(float(batch.signals["score"][0]))
        if "vix" in context:
            self.vix.append(float(context["vix"]))


def _same(seen: list[float], expected: list[float]) -> bool:
    return len(seen) == len(expected) and all(
        (math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(seen, expected, strict=True)
    )


def test_a_newer_feature_row_with_a_null_value_reads_nan(tmp_path: Path) -> None:
    # asset A: 1.0 at bar 0, null at bar 2 (the newest knowledge), 3.0 at bar 4; the market-wide
    # row (null asset_id) likewise. By hand: 1, 1, NaN, NaN, 3.
    frame = pl.DataFrame(
        {
            "timestamp": [stamp(0), stamp(2), stamp(4)] * 2,
            "asset_id": ["A"] * 3 + [None] * 3,
            "available_at": [stamp(0), stamp(2), stamp(4)] * 2,
            "score": [1.0, None, 3.0] * 2,
        },
        schema_overrides=TIMED,
    ).with_columns(pl.col("score").alias("vix"))
    per_asset = PrecomputedFeatures(
        frame.filter(pl.col("asset_id").is_not_null()), columns=["score"]
    )
    market = PrecomputedFeatures(frame.filter(pl.col("asset_id").is_null()), columns=["vix"])
    strategy = Recorder()
    prices = panel(A=[flat(10.0)] * 5)
    run_backtest(config(tmp_path), strategy=strategy, prices=prices, features=[per_asset, market])
    nan = math.nan
    assert _same(strategy.score, [1.0, 1.0, nan, nan, 3.0])
    assert _same(strategy.vix, [1.0, 1.0, nan, nan, 3.0])

    # the same rows as signals and as context read the same numbers
    signals = frame.filter(pl.col("asset_id").is_not_null()).drop("vix")
    context = frame.filter(pl.col("asset_id").is_null()).drop("asset_id", "score")
    strategy = Recorder()
    run_backtest(
        config(tmp_path), strategy=strategy, prices=prices, signals=signals, context=context
    )
    assert _same(strategy.score, [1.0, 1.0, nan, nan, 3.0])
    assert _same(strategy.vix, [1.0, 1.0, nan, nan, 3.0])


def _two_versions_before_their_timestamp() -> pl.DataFrame:
    # one timestamp (bar 2), two available_at values both before it: max(timestamp,
    # available_at) is bar 2 for both, but the raw keys differ
    return pl.DataFrame(
        {
            "timestamp": [stamp(2), stamp(2)],
            "available_at": [stamp(0) + 2 * HOUR, stamp(0) + HOUR],
            "vix": [2.0, 1.0],
        },
        schema_overrides=TIMED,
    )


def test_context_versions_are_keyed_on_the_raw_available_at(tmp_path: Path) -> None:
    context = _two_versions_before_their_timestamp()
    report = validate_context(context, file="context.parquet")
    assert [f.rule for f in report.failures] == []
    strategy = Recorder()
    prices = panel(A=[flat(10.0)] * 4)
    run_backtest(config(tmp_path), strategy=strategy, prices=prices, context=context)
    # both known at bar 2: the later available_at (the revision, 2.0) wins, whatever the file order
    assert _same(strategy.vix, [math.nan, math.nan, 2.0, 2.0])

    repeated = pl.concat([context, context.head(1)])
    assert Rule.DUPLICATE_KEY in [f.rule for f in validate_context(repeated, file="c").failures]
    with pytest.raises(DataError, match=r"duplicate_key.*\(timestamp, available_at\)"):
        run_backtest(config(tmp_path), strategy=Recorder(), prices=prices, context=repeated)


@pytest.mark.parametrize(
    ("asset", "stamped", "known"),
    [
        ("Z", 1, 1),  # an asset outside the run
        ("A", 1, 9),  # known only after the run's last bar
    ],
)
def test_the_engine_refuses_every_repeated_signal_key_validate_does(
    tmp_path: Path, asset: str, stamped: int, known: int
) -> None:
    row = {"timestamp": stamp(stamped), "asset_id": asset, "available_at": stamp(known)}
    signals = pl.DataFrame(
        [
            {"timestamp": stamp(0), "asset_id": "A", "available_at": stamp(0), "score": 0.1},
            row | {"score": 0.2},
            row | {"score": 0.3},
        ],
        schema_overrides=TIMED,
    )
    failures = validate_signals(signals, file="signals.parquet").failures
    assert [(f.rule, f.n_rows) for f in failures] == [(Rule.DUPLICATE_KEY, 2)]
    with pytest.raises(DataError, match=r"duplicate_key: 2 rows, 1 repeated key") as caught:
        run_backtest(
            config(tmp_path), strategy=Recorder(), prices=panel(A=[flat(10.0)] * 3), signals=signals
        )
    assert f"asset_id={asset}" in str(caught.value)


def test_coverage_judges_only_rows_the_engine_makes_current() -> None:
    # B has no bar 3; its bar-1 row is published at bar 3, after the bar-2 row: the engine never
    # reads it, so it is no signal without a price (the bar-2 row is current at bar 3)
    prices = pl.DataFrame(
        {"timestamp": [stamp(b) for b in (0, 1, 2, 3, 0, 1, 2)], "asset_id": ["A"] * 4 + ["B"] * 3}
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    signals = pl.DataFrame(
        {
            "timestamp": [stamp(0), stamp(2), stamp(1)],
            "asset_id": ["B", "B", "B"],
            "available_at": [stamp(0), stamp(2), stamp(3)],
            "score": [0.1, 0.2, 0.3],
        },
        schema_overrides=TIMED,
    )
    report = validate_signals(signals, file="signals.parquet", prices=prices)
    assert [f.rule for f in report.failures] == []
