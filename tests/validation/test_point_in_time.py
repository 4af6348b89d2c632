"""Knowledge time: look-ahead is reported, late values move to the bar where they are known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml4t_pipeline.errors import DataError, LookAheadError
from ml4t_pipeline.validation import (
    Rule,
    Severity,
    align_point_in_time,
    check_point_in_time,
    read_input,
    validate_signals,
)

START = datetime(2024, 1, 1, tzinfo=UTC)


def day(n: int, hours: float = 0.0) -> datetime:
    return START + timedelta(days=n, hours=hours)


BARS = pl.Series("timestamp", [day(n) for n in range(6)])


def signals(rows: list[tuple[datetime, str, float, datetime | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "timestamp": pl.Datetime("us", "UTC"),
            "asset_id": pl.String,
            "ml_score": pl.Float64,
            "available_at": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


def test_look_ahead_in_feature_table_names_asset_times_and_count(tmp_path: Path) -> None:
    features = signals(
        [
            (day(0), "A", 0.1, day(0)),
            (day(1), "A", 0.2, day(1, 6)),
            (day(2), "B", 0.3, day(2)),
            (day(3), "B", 0.4, day(4)),
            (day(4), "B", 0.5, None),
        ]
    )
    path = tmp_path / "features.parquet"
    features.write_parquet(path)
    report = check_point_in_time(read_input(path, role="signals"), file=str(path))

    (failure,) = report.failures
    assert (failure.rule, failure.column, failure.severity) == (
        Rule.LOOK_AHEAD,
        "available_at",
        Severity.ERROR,
    )
    assert failure.n_rows == 3
    assert failure.examples == (
        "timestamp=2024-01-02 00:00:00+00:00 asset_id=A available_at=2024-01-02 06:00:00+00:00",
        "timestamp=2024-01-04 00:00:00+00:00 asset_id=B available_at=2024-01-05 00:00:00+00:00",
        "timestamp=2024-01-05 00:00:00+00:00 asset_id=B available_at=null",
    )
    with pytest.raises(LookAheadError) as caught:
        report.raise_if_failed()
    assert failure.message() in str(caught.value)
    assert isinstance(caught.value, DataError)


def test_feature_table_without_available_at_is_missing_a_column() -> None:
    report = check_point_in_time(signals([]).drop("available_at"), file="features")
    assert [(f.rule, f.column) for f in report.failures] == [(Rule.MISSING_COLUMN, "available_at")]


def test_late_prediction_moves_to_the_next_bar() -> None:
    aligned = align_point_in_time(
        signals([(day(1), "A", 0.7, day(1)), (day(2), "A", 0.9, day(2, 6))]), BARS
    )
    assert aligned.columns == ["timestamp", "asset_id", "ml_score", "event_time", "available_at"]
    assert aligned.rows() == [
        (day(1), "A", 0.7, day(1), day(1)),
        (day(3), "A", 0.9, day(2), day(2, 6)),
    ]
    assert check_point_in_time(aligned, file="aligned").ok


def test_latest_event_wins_then_latest_revision() -> None:
    aligned = align_point_in_time(
        signals(
            [
                (day(1), "A", 0.1, day(3, 1)),
                (day(3), "A", 0.3, day(3, 12)),
                (day(2), "B", 0.2, day(2, 1)),
                (day(2), "B", 0.25, day(2, 5)),
            ]
        ),
        BARS,
    )
    assert aligned.select("timestamp", "asset_id", "ml_score").rows() == [
        (day(3), "B", 0.25),
        (day(4), "A", 0.3),
    ]


def test_values_never_usable_are_dropped() -> None:
    aligned = align_point_in_time(
        signals([(day(5), "A", 0.1, day(5, 1)), (day(1), "A", 0.2, None)]), BARS
    )
    assert aligned.is_empty()


def test_value_is_never_used_before_its_own_timestamp() -> None:
    aligned = align_point_in_time(signals([(day(3), "A", 0.5, day(1))]), BARS)
    assert aligned.get_column("timestamp").to_list() == [day(3)]


def test_without_available_at_rows_are_unchanged() -> None:
    plain = signals([(day(2), "A", 0.1, None), (day(0, 12), "B", 0.2, None)]).drop("available_at")
    aligned = align_point_in_time(plain, BARS)
    assert aligned.select(plain.columns).equals(plain)
    assert aligned.get_column("available_at").equals(
        plain.get_column("timestamp"), check_names=False
    )
    assert aligned.get_column("event_time").equals(plain.get_column("timestamp"), check_names=False)


def test_align_refuses_frames_it_cannot_read() -> None:
    with pytest.raises(DataError, match="no 'timestamp' column"):
        align_point_in_time(pl.DataFrame({"asset_id": ["A"]}), BARS)


@settings(max_examples=60, deadline=None)
@given(
    bar_days=st.lists(st.integers(0, 40), min_size=1, max_size=15, unique=True),
    rows=st.lists(
        st.tuples(st.integers(0, 45), st.integers(-48, 96), st.sampled_from("AB")),
        max_size=25,
    ),
)
def test_aligned_rows_are_known_at_their_bar_and_at_no_earlier_bar(
    bar_days: list[int], rows: list[tuple[int, int, str]]
) -> None:
    bars = pl.Series([day(n) for n in sorted(bar_days)])
    frame = signals(
        [(day(n), asset, float(i), day(n, lag)) for i, (n, lag, asset) in enumerate(rows)]
    )
    aligned = align_point_in_time(frame, bars.sample(fraction=1.0, shuffle=True, seed=0))

    assert check_point_in_time(aligned, file="aligned").ok
    assert aligned.select(pl.col("timestamp").is_in(bars.implode()).all()).item()
    assert aligned.select(pl.col("timestamp") >= pl.col("event_time")).to_series().all()
    assert aligned.select("timestamp", "asset_id").is_unique().all()
    for row in aligned.iter_rows(named=True):
        known = max(row["event_time"], row["available_at"])
        earlier = bars.filter(bars < row["timestamp"])
        assert (earlier < known).all()


def test_signals_with_available_at_are_covered_where_they_become_usable() -> None:
    prices = pl.DataFrame(
        {"timestamp": [day(n) for n in range(4)] * 2, "asset_id": ["A"] * 4 + ["B"] * 3 + ["Z"]}
    )
    frame = signals(
        [
            (day(0), "A", 0.1, day(0)),
            (day(1), "A", 0.1, day(1, 1)),
            (day(2), "B", 0.2, day(2, 1)),
            (day(3), "A", 0.3, day(3, 1)),
        ]
    )
    report = validate_signals(frame, file="signals.parquet", prices=prices)
    (failure,) = report.failures
    assert (failure.rule, failure.n_rows) == (Rule.SIGNAL_WITHOUT_PRICE, 1)
    assert failure.examples == (
        "timestamp=2024-01-04 00:00:00+00:00 asset_id=B event_time=2024-01-03 00:00:00+00:00",
    )


def test_revisions_are_distinct_keys_but_null_knowledge_time_is_not_allowed() -> None:
    frame = signals(
        [
            (day(1), "A", 0.1, day(1)),
            (day(1), "A", 0.2, day(2)),
            (day(2), "A", 0.3, None),
            (day(3), "A", 0.4, day(3)),
            (day(3), "A", 0.4, day(3)),
        ]
    )
    report = validate_signals(frame, file="signals.parquet")
    assert [(f.rule, f.column, f.n_rows) for f in report.failures] == [
        (Rule.NULL_KEY, "available_at", 1),
        (Rule.DUPLICATE_KEY, None, 2),
    ]
