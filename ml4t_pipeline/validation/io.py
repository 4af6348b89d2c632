"""Reading input files at the boundary, and the one call that reads and validates them all.

`read_input` never writes to the file it reads. A file that cannot be read raises `DataError`
at once, naming the path and what is wrong with it; everything that can be said about the rows
of a readable file is collected in a `ValidationReport` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl
from polars.exceptions import PanicException, PolarsError

from ml4t_pipeline.engine.feed.actions import read_corporate_actions as _read_actions
from ml4t_pipeline.errors import ConfigError, DataError
from ml4t_pipeline.keys import AVAILABLE_AT, KEY_COLUMNS, TIMESTAMP
from ml4t_pipeline.validation.coverage import DEFAULT_POLICY, CoveragePolicy
from ml4t_pipeline.validation.report import (
    Failure,
    Rule,
    Severity,
    ValidationReport,
    describe_rows,
    merge_reports,
)
from ml4t_pipeline.validation.schemas import validate_context, validate_prices, validate_signals
from ml4t_pipeline.validation.timing import utc_expr

ROLES = ("prices", "signals", "context")
TIME_UNIT: Literal["us"] = "us"
"""Every datetime column is returned as Datetime(TIME_UNIT, "UTC")."""

_MAGIC = b"PAR1"
_TEXT_BYTES = frozenset(b"\t\n\r") | frozenset(range(0x20, 0x7F))


def _error(file: str, rule: Rule, detail: str, *, column: str | None = None) -> DataError:
    failure = Failure(
        file=file, column=column, rule=rule, severity=Severity.ERROR, n_rows=0, detail=detail
    )
    return DataError(failure.message())


def _check_parquet_bytes(path: Path, file: str) -> None:
    """Raise a readable DataError for a missing, empty, non-Parquet or truncated file."""
    if not path.exists():
        raise _error(file, Rule.MISSING_FILE, f"no such file ({path.absolute()})")
    if not path.is_file():
        raise _error(file, Rule.UNREADABLE_FILE, "not a regular file (a Parquet file is needed)")
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(64)
            handle.seek(max(size - len(_MAGIC), 0))
            tail = handle.read(len(_MAGIC))
    except OSError as exc:
        raise _error(file, Rule.UNREADABLE_FILE, f"cannot open: {exc.strerror}") from None
    if size == 0:
        raise _error(file, Rule.UNREADABLE_FILE, "empty file (0 bytes)")
    if not head.startswith(_MAGIC):
        detail = "not a Parquet file (no PAR1 header)"
        if set(head) <= _TEXT_BYTES:
            first_line = head.decode("ascii").splitlines()[0][:40]
            detail += f"; it looks like text, e.g. CSV, starting {first_line!r}"
        raise _error(file, Rule.UNREADABLE_FILE, detail)
    if size < 2 * len(_MAGIC) or tail != _MAGIC:
        detail = f"truncated or corrupt Parquet file: no footer at the end of its {size:,} bytes"
        raise _error(file, Rule.UNREADABLE_FILE, detail)


def _normalise_times(df: pl.DataFrame, file: str, *, role: str) -> pl.DataFrame:
    """Datetime columns to UTC microseconds; the role's time columns must be datetimes or
    dates (a date reads as its midnight UTC, in validation as in the engine)."""
    time_columns = (TIMESTAMP,) if role == "prices" else (TIMESTAMP, AVAILABLE_AT)
    for name in time_columns:
        dtype = df.schema.get(name)
        if dtype == pl.Date:  # a date is its midnight UTC, as the engine reads it
            df = df.with_columns(pl.col(name).cast(pl.Datetime(TIME_UNIT)))
            continue
        if dtype is not None and not isinstance(dtype, pl.Datetime):
            failure = Failure(
                file=file,
                column=name,
                rule=Rule.WRONG_DTYPE,
                severity=Severity.ERROR,
                n_rows=df.height,
                examples=describe_rows(df, [*_keys_other_than(df, name), name]),
                detail=f"expected a datetime, got {dtype}",
            )
            raise DataError(failure.message())
    exprs: list[pl.Expr] = []
    for name, dtype in df.schema.items():
        if not isinstance(dtype, pl.Datetime):
            continue
        if dtype.time_unit == "ns":
            finer = df.filter(pl.col(name).dt.nanosecond() % 1000 != 0)
            if finer.height:
                failure = Failure(
                    file=file,
                    column=name,
                    rule=Rule.WRONG_DTYPE,
                    severity=Severity.ERROR,
                    n_rows=finer.height,
                    examples=describe_rows(finer, [*_keys_other_than(df, name), name]),
                    detail="times finer than a microsecond; times are kept to the microsecond",
                )
                raise DataError(failure.message())
        exprs.append(utc_expr(name, dtype).dt.cast_time_unit(TIME_UNIT))
    return df.with_columns(exprs) if exprs else df


def _keys_other_than(df: pl.DataFrame, name: str) -> list[str]:
    return [c for c in KEY_COLUMNS if c in df.columns and c != name]


def read_input(path: str | Path, *, role: str) -> pl.DataFrame:
    """Read one input Parquet file with every datetime column in UTC (naive means UTC).

    Decimal columns become Float64 (the engine reads them as float64 too).
    `role` is "prices", "signals" or "context". A missing, empty, truncated or non-Parquet file,
    a `timestamp` column (for signals and context also `available_at`) that is not a datetime,
    or times finer than a microsecond raise `DataError` naming the path and the problem.
    Everything else about the rows is left to the validators. The file is only read.
    """
    if role not in ROLES:
        msg = f"unknown input role {role!r}; expected one of {', '.join(ROLES)}"
        raise ConfigError(msg)
    file = str(path)
    source = Path(path)
    _check_parquet_bytes(source, file)
    try:
        df = pl.read_parquet(source)
    except (PolarsError, OSError, PanicException) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _error(file, Rule.UNREADABLE_FILE, f"corrupt Parquet file ({reason})") from None
    decimals = [name for name, dtype in df.schema.items() if isinstance(dtype, pl.Decimal)]
    if decimals:  # as the engine reads them: each value's nearest float64
        df = df.with_columns(pl.col(decimals).cast(pl.Float64))
    return _normalise_times(df, file, role=role)


def read_corporate_actions(path: str | Path) -> pl.DataFrame:
    """A corporate actions file as the engine reads it (`engine.feed.actions`): timestamp (the
    ex-date, Datetime us UTC), asset_id, split_ratio (1.0 where none), dividend (0.0 where
    none); a bad file raises `DataError` naming it."""
    return _read_actions(path, name=str(path))


def validate_inputs(
    *,
    prices: str | Path,
    signals: str | Path | None = None,
    context: str | Path | None = None,
    corporate_actions: str | Path | None = None,
    policy: CoveragePolicy = DEFAULT_POLICY,
) -> ValidationReport:
    """Read and validate every input; files are named in failures as given here.

    `corporate_actions` (the run's `data.corporate_actions`, read by the engine's
    `read_corporate_actions`) explains the splits the prices show; without it every split-like
    move is reported. A file that cannot be read raises `DataError` at once; rule failures are
    collected in the returned report (call `raise_if_failed()` to stop on errors).
    """
    actions = None if corporate_actions is None else read_corporate_actions(corporate_actions)
    # one file in memory at a time: the other files' checks need only the price keys
    price_frame = read_input(prices, role="prices")
    reports = [
        validate_prices(
            price_frame,
            file=str(prices),
            policy=policy,
            corporate_actions=actions,
            actions_file=str(corporate_actions),
        )
    ]
    keys = [c for c in KEY_COLUMNS if c in price_frame.columns]
    price_keys = price_frame.select(keys)
    del price_frame
    if signals is not None:
        signal_frame = read_input(signals, role="signals")
        reports.append(
            validate_signals(signal_frame, file=str(signals), prices=price_keys, policy=policy)
        )
        del signal_frame
    if context is not None:
        context_frame = read_input(context, role="context")
        reports.append(
            validate_context(context_frame, file=str(context), prices=price_keys, policy=policy)
        )
    return merge_reports(*reports)
