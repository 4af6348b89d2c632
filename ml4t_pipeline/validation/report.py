"""What a validation run found: rules, severities, failures and the report that holds them.

Every data rule is a `Rule` (named once, in `ml4t_pipeline.keys`, for the engine's feed too);
every broken rule in one file/column is one `Failure` carrying the number of rows that broke it
and a few example rows. A `ValidationReport` is plain data: the CLI prints it, Dagster asset
checks turn `to_frame()` into metadata, the backtest calls `raise_if_failed()` before the loop
starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import polars as pl

from ml4t_pipeline.errors import DataError, LookAheadError
from ml4t_pipeline.keys import (
    MAX_EXAMPLES,
    Rule,
    describe_row,
    errors_message,
    failure_message,
    format_value,
    plural,
)

__all__ = [
    "MAX_EXAMPLES",
    "Failure",
    "Rule",
    "Severity",
    "ValidationReport",
    "describe_rows",
    "format_value",
    "merge_reports",
    "plural",
]


SPLIT_RULES = frozenset({Rule.POSSIBLE_SPLIT, Rule.SPLIT_NOT_IN_PRICES})
"""The rules whose warnings a backtest summary repeats (`ValidationReport.split_warnings`)."""


class Severity(StrEnum):
    """ERROR blocks a backtest; WARNING is reported and the run goes on; INFO marks rows that
    were accepted within a tolerance (`ValidationReport.tolerated`), reported so nothing is
    accepted silently."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """One rule broken in one file (and column): how many rows, and a few of them.

    `examples` are ready-to-read strings such as
    ``timestamp=2024-01-03 00:00:00+00:00 asset_id=A0001 high=9.5 low=10.0``;
    `detail` is free text for people, nothing parses it.
    """

    file: str
    column: str | None
    rule: Rule
    severity: Severity
    n_rows: int
    examples: tuple[str, ...] = ()
    detail: str = ""

    def __post_init__(self) -> None:
        # A negative count can only come from a bug in this package, not from user data.
        if self.n_rows < 0:
            msg = f"Failure.n_rows must be >= 0, got {self.n_rows}"
            raise ValueError(msg)

    def message(self) -> str:
        """One line naming file, column, rule, row count, detail and examples."""
        return failure_message(
            file=self.file,
            column=self.column,
            rule=self.rule,
            n_rows=self.n_rows,
            detail=self.detail,
            examples=self.examples,
        )


_FRAME_SCHEMA = pl.Schema(
    {
        "file": pl.String,
        "column": pl.String,
        "rule": pl.String,
        "severity": pl.String,
        "n_rows": pl.Int64,
        "detail": pl.String,
        "examples": pl.String,
        "message": pl.String,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationReport:
    """Every failure found in one or more input files, plus how many rows each file had.

    `tolerated` lists, per file and rule, the rows that break a rule's exact form but lie
    within its tolerance (severity INFO: accepted, e.g. OHLC relations off in the 15th digit of
    split-adjusted prices); they are not failures and never change `ok`.
    """

    failures: tuple[Failure, ...] = ()
    rows_checked: dict[str, int] = field(default_factory=dict)
    tolerated: tuple[Failure, ...] = ()

    @property
    def errors(self) -> tuple[Failure, ...]:
        return tuple(f for f in self.failures if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Failure, ...]:
        return tuple(f for f in self.failures if f.severity is Severity.WARNING)

    def tolerated_counts(self) -> dict[str, dict[str, int]]:
        """file -> rule -> rows accepted within the rule's tolerance (only rules that did)."""
        counts: dict[str, dict[str, int]] = {}
        for entry in self.tolerated:
            per_file = counts.setdefault(entry.file, {})
            per_file[str(entry.rule)] = per_file.get(str(entry.rule), 0) + entry.n_rows
        return counts

    def split_warnings(self) -> tuple[str, ...]:
        """The messages of the split warnings (POSSIBLE_SPLIT, SPLIT_NOT_IN_PRICES) a
        backtest summary repeats: each names the file, the row count and the first examples
        (asset, date, ratio)."""
        return tuple(f.message() for f in self.warnings if f.rule in SPLIT_RULES)

    @property
    def ok(self) -> bool:
        """True when nothing blocks a backtest (warnings allowed)."""
        return not self.errors

    def summary(self) -> str:
        """Human-readable text: rows checked per file, then every error and warning."""
        checked = ", ".join(f"{name}: {n:,} rows" for name, n in self.rows_checked.items())
        lines = [f"checked {checked or 'no files'}"]
        lines += [f"ERROR {f.message()}" for f in self.errors]
        lines += [f"WARNING {f.message()}" for f in self.warnings]
        lines += [f"TOLERATED {f.message()}" for f in self.tolerated]
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise `DataError` listing every error (`LookAheadError` if one is a look-ahead)."""
        errors = self.errors
        if not errors:
            return
        msg = errors_message([f.message() for f in errors])
        if any(f.rule is Rule.LOOK_AHEAD for f in errors):
            raise LookAheadError(msg)
        raise DataError(msg)

    def to_frame(self) -> pl.DataFrame:
        """One row per failure, then one per tolerated entry (severity "info"), with plain
        string/integer columns (for metadata tables)."""
        rows = (*self.failures, *self.tolerated)
        return pl.DataFrame(
            {
                "file": [f.file for f in rows],
                "column": [f.column for f in rows],
                "rule": [str(f.rule) for f in rows],
                "severity": [str(f.severity) for f in rows],
                "n_rows": [f.n_rows for f in rows],
                "detail": [f.detail for f in rows],
                "examples": ["; ".join(f.examples) for f in rows],
                "message": [f.message() for f in rows],
            },
            schema=_FRAME_SCHEMA,
        )


def merge_reports(*reports: ValidationReport) -> ValidationReport:
    """All failures in order; a file checked by several reports counts its largest row count."""
    rows: dict[str, int] = {}
    for report in reports:
        for name, n in report.rows_checked.items():
            rows[name] = max(n, rows.get(name, 0))
    return ValidationReport(
        failures=tuple(f for report in reports for f in report.failures),
        rows_checked=rows,
        tolerated=tuple(f for report in reports for f in report.tolerated),
    )


def describe_rows(rows: pl.DataFrame, columns: Sequence[str]) -> tuple[str, ...]:
    """``name=value`` strings for each row of an (already short) frame, in column order."""
    present = [c for c in dict.fromkeys(columns) if c in rows.columns]
    return tuple(
        describe_row(row.items())
        for row in rows.head(MAX_EXAMPLES).select(present).iter_rows(named=True)
    )
