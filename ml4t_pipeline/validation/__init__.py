"""Data contracts and point-in-time correctness for the inputs of a backtest.

One implementation with two callers (the CLI and the Dagster asset checks); it imports polars,
numpy and pandera, never dagster::

    from ml4t_pipeline.validation import validate_inputs

    report = validate_inputs(prices=Path("prices.parquet"), signals=Path("signals.parquet"))
    # with data.corporate_actions: validate_inputs(..., corporate_actions=Path(...))
    print(report.summary())
    report.raise_if_failed()
"""

from ml4t_pipeline.fingerprint import FileFingerprint, fingerprint_file
from ml4t_pipeline.validation.coverage import CoveragePolicy
from ml4t_pipeline.validation.io import read_corporate_actions, read_input, validate_inputs
from ml4t_pipeline.validation.report import (
    MAX_EXAMPLES,
    Failure,
    Rule,
    Severity,
    ValidationReport,
    describe_rows,
    merge_reports,
)
from ml4t_pipeline.validation.schemas import (
    check_point_in_time,
    validate_context,
    validate_prices,
    validate_signals,
)
from ml4t_pipeline.validation.timing import align_point_in_time

__all__ = [
    "MAX_EXAMPLES",
    "CoveragePolicy",
    "Failure",
    "FileFingerprint",
    "Rule",
    "Severity",
    "ValidationReport",
    "align_point_in_time",
    "check_point_in_time",
    "describe_rows",
    "fingerprint_file",
    "merge_reports",
    "read_corporate_actions",
    "read_input",
    "validate_context",
    "validate_inputs",
    "validate_prices",
    "validate_signals",
]
