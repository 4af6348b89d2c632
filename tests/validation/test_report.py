"""The report is plain data: messages, a frame for metadata, merging, and raising."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

from ml4t_pipeline.errors import DataError, LookAheadError
from ml4t_pipeline.validation import (
    Failure,
    Rule,
    Severity,
    ValidationReport,
    merge_reports,
)

GAP = Failure(
    file="signals.parquet",
    column=None,
    rule=Rule.LARGE_GAP,
    severity=Severity.WARNING,
    n_rows=7,
    examples=("asset_id=B from=2024-01-03 to=2024-01-09 bars=7",),
    detail="1 run of more than 5 price bars without a signal",
)
HIGH = Failure(
    file="prices.parquet",
    column="high",
    rule=Rule.HIGH_BELOW_LOW,
    severity=Severity.ERROR,
    n_rows=3,
    examples=("timestamp=2024-01-03 00:00:00+00:00 asset_id=A0001 high=9.5 low=10.0",),
)
MISSING = Failure(
    file="prices.parquet",
    column="volume",
    rule=Rule.MISSING_COLUMN,
    severity=Severity.ERROR,
    n_rows=0,
    detail="column not found",
)
AHEAD = Failure(
    file="features.parquet",
    column="available_at",
    rule=Rule.LOOK_AHEAD,
    severity=Severity.ERROR,
    n_rows=1_234,
)


def test_messages_name_file_column_rule_rows_and_examples() -> None:
    assert HIGH.message() == (
        "prices.parquet: column 'high', rule high_below_low: 3 rows, e.g. "
        "timestamp=2024-01-03 00:00:00+00:00 asset_id=A0001 high=9.5 low=10.0"
    )
    assert GAP.message() == (
        "signals.parquet, rule large_gap: 7 rows, 1 run of more than 5 price bars without a "
        "signal, e.g. asset_id=B from=2024-01-03 to=2024-01-09 bars=7"
    )
    assert MISSING.message() == (
        "prices.parquet: column 'volume', rule missing_column: column not found"
    )
    assert AHEAD.message().endswith("rule look_ahead: 1,234 rows")


def test_ok_errors_and_warnings() -> None:
    report = ValidationReport(failures=(GAP, HIGH), rows_checked={"prices.parquet": 10})
    assert not report.ok
    assert report.errors == (HIGH,)
    assert report.warnings == (GAP,)
    assert ValidationReport(failures=(GAP,)).ok
    assert ValidationReport().ok


def test_raise_if_failed_lists_every_error_but_no_warning() -> None:
    report = ValidationReport(failures=(GAP, HIGH, MISSING))
    with pytest.raises(DataError) as caught:
        report.raise_if_failed()
    assert not isinstance(caught.value, LookAheadError)
    text = str(caught.value)
    assert text.startswith("2 data contract errors:")
    assert HIGH.message() in text
    assert MISSING.message() in text
    assert "large_gap" not in text
    ValidationReport(failures=(GAP,)).raise_if_failed()


def test_look_ahead_raises_look_ahead_error() -> None:
    with pytest.raises(LookAheadError, match="rule look_ahead"):
        ValidationReport(failures=(HIGH, AHEAD)).raise_if_failed()


def test_to_frame_has_one_row_per_failure_and_a_fixed_schema() -> None:
    frame = ValidationReport(failures=(HIGH, GAP)).to_frame()
    assert frame.height == 2
    assert frame.row(0, named=True) == {
        "file": "prices.parquet",
        "column": "high",
        "rule": "high_below_low",
        "severity": "error",
        "n_rows": 3,
        "detail": "",
        "examples": HIGH.examples[0],
        "message": HIGH.message(),
    }
    assert frame.get_column("column").to_list() == ["high", None]
    empty = ValidationReport().to_frame()
    assert empty.is_empty()
    assert empty.schema == frame.schema
    assert empty.schema["n_rows"] == pl.Int64


def test_merge_keeps_order_and_largest_row_count_per_file() -> None:
    merged = merge_reports(
        ValidationReport(failures=(HIGH,), rows_checked={"prices.parquet": 10}),
        ValidationReport(failures=(GAP,), rows_checked={"signals.parquet": 8}),
        ValidationReport(failures=(), rows_checked={"signals.parquet": 5}),
    )
    assert merged.failures == (HIGH, GAP)
    assert merged.rows_checked == {"prices.parquet": 10, "signals.parquet": 8}
    assert "WARNING signals.parquet, rule large_gap" in merged.summary()


def test_failure_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="n_rows must be >= 0"):
        Failure(file="f", column=None, rule=Rule.EMPTY_TABLE, severity=Severity.ERROR, n_rows=-1)


def test_validation_package_does_not_import_dagster() -> None:
    probe = "import sys, ml4t_pipeline.validation; print('dagster' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    )
    assert result.stdout.strip() == "False"
