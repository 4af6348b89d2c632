"""The contract machinery: column specs and per-row rules run through pandera's polars backend.

A `Contract` lists columns (name, accepted dtype family, key or not, required or not) and
`RowRule`s. `run_contract` builds the pandera schema for the frame at hand and runs it over all
rows with ``lazy=True``, so one call collects every broken rule; each pandera error is turned
into a `Failure` with a row count and the earliest example rows, and no pandera text reaches a
user. A column stored with the wrong dtype is reported once as WRONG_DTYPE and its value rules
are not run (they would only repeat the same problem), and a rule that reads several columns
runs only when all of them have usable dtypes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from ml4t_pipeline.keys import ASSET_ID, TIMESTAMP, UTC
from ml4t_pipeline.validation.report import (
    MAX_EXAMPLES,
    Failure,
    Rule,
    Severity,
    describe_rows,
)

# pandera (with the hypothesis strategies it loads on first use, ~0.2 s) is imported only
# where a contract runs, so importing this package (e.g. with the Dagster definitions) stays
# cheap for processes that never validate.
if TYPE_CHECKING:
    import pandera.polars as pa
    from pandera.engines import polars_engine
    from pandera.errors import SchemaError


@dataclass(frozen=True, slots=True, kw_only=True)
class Kind:
    """The family of polars dtypes a column accepts (e.g. every integer and float type)."""

    description: str
    canonical: pl.DataType
    accepts: Callable[[pl.DataType], bool]


def _is_utc_datetime(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.Datetime) and dtype.time_zone == UTC


def _is_asset_id(dtype: pl.DataType) -> bool:
    return dtype.is_integer() or isinstance(dtype, pl.String | pl.Categorical | pl.Enum)


def _is_number(dtype: pl.DataType) -> bool:
    return dtype.is_integer() or dtype.is_float()


def _is_feature(dtype: pl.DataType) -> bool:
    return _is_number(dtype) or isinstance(dtype, pl.Null)


UTC_DATETIME = Kind(
    description="a UTC datetime", canonical=pl.Datetime("us", UTC), accepts=_is_utc_datetime
)
ASSET_ID_KIND = Kind(
    description="a string or integer id", canonical=pl.String(), accepts=_is_asset_id
)
NUMBER = Kind(description="an integer or float", canonical=pl.Float64(), accepts=_is_number)
FEATURE = Kind(
    description="an integer or float (or all null)", canonical=pl.Float64(), accepts=_is_feature
)


@functools.cache
def _kind_dtype_class() -> Callable[[Kind], polars_engine.DataType]:
    """The pandera dtype class below, defined on first use (pandera is imported lazily)."""
    from pandera.engines import polars_engine

    class KindDtype(polars_engine.DataType):
        """A pandera dtype that accepts every polars dtype of a `Kind`."""

        kind: Kind

        def __init__(self, kind: Kind) -> None:
            object.__setattr__(self, "type", kind.canonical)
            object.__setattr__(self, "kind", kind)

        def check(self, pandera_dtype: object, data_container: object = None) -> bool:
            if isinstance(pandera_dtype, pl.DataType):
                return self.kind.accepts(pandera_dtype)
            return self.kind.accepts(polars_engine.Engine.dtype(pandera_dtype).type)

        def __str__(self) -> str:
            return self.kind.description

    return KindDtype


@dataclass(frozen=True, slots=True, kw_only=True)
class ColumnSpec:
    name: str
    kind: Kind
    key: bool = False
    required: bool = True


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RowRule:
    """A per-row rule attached to `column`: `passes` is True for good rows.

    With `ignore_na` a null result passes (another rule owns nulls); without it a null fails.
    `columns` are the columns the rule reads; they are shown in examples.
    """

    rule: Rule
    column: str
    passes: pl.Expr
    ignore_na: bool
    columns: tuple[str, ...]
    detail: str
    severity: Severity = Severity.ERROR


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Contract:
    columns: tuple[ColumnSpec, ...]
    rules: tuple[RowRule, ...] = ()


def _pandera_check(row_rule: RowRule) -> pa.Check:
    import pandera.polars as pa
    from pandera.constants import CHECK_OUTPUT_KEY

    passes = row_rule.passes.alias(CHECK_OUTPUT_KEY)

    def check_fn(data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(passes)

    return pa.Check(
        check_fn,
        name=row_rule.rule.value,
        ignore_na=row_rule.ignore_na,
        n_failure_cases=MAX_EXAMPLES,
    )


def usable_columns(df: pl.DataFrame, specs: Iterable[ColumnSpec]) -> set[str]:
    """Names of the columns that are present with a dtype their contract accepts."""
    return {
        spec.name
        for spec in specs
        if spec.name in df.schema and spec.kind.accepts(df.schema[spec.name])
    }


def _build_schema(df: pl.DataFrame, contract: Contract, usable: set[str]) -> pa.DataFrameSchema:
    import pandera.polars as pa

    kind_dtype = _kind_dtype_class()
    columns: dict[str, pa.Column] = {}
    for spec in contract.columns:
        checks = [
            _pandera_check(rule)
            for rule in contract.rules
            if rule.column == spec.name and usable.issuperset(rule.columns)
        ]
        columns[spec.name] = pa.Column(
            # pandera's annotation lists polars dtypes only; its own DataType is accepted too.
            kind_dtype(spec.kind),  # type: ignore[arg-type]
            checks=checks,
            nullable=not (spec.key and spec.name in usable),
            required=spec.required,
            name=spec.name,
        )
    return pa.DataFrameSchema(columns)


def run_contract(df: pl.DataFrame, contract: Contract, *, file: str) -> list[Failure]:
    """Run one contract over every row of `df` with pandera and explain what broke.

    A frame that breaks nothing is recognized first by one polars query of the same
    predicates (`_passes_everything`), without importing pandera: importing it costs ~0.4-1 s
    (it imports pandas when pandas is installed), which was a fifth of a one-partition Dagster
    run whose only contract is the feature table's point-in-time check. Pandera still runs,
    and reports, whenever anything could fail; tests/validation/test_contract_fast_path.py
    checks that both answer alike.
    """
    usable = usable_columns(df, contract.columns)
    if _passes_everything(df, contract, usable):
        return []
    return pandera_failures(df, contract, usable, file=file)


def pandera_failures(
    df: pl.DataFrame, contract: Contract, usable: set[str], *, file: str
) -> list[Failure]:
    """Every failure pandera finds in `df` under `contract`, explained."""
    from pandera.config import ValidationDepth, config_context
    from pandera.errors import SchemaErrors

    schema = _build_schema(df, contract, usable)
    with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        try:
            schema.validate(df, lazy=True)
        except SchemaErrors as exc:
            errors: list[SchemaError] = list(exc.schema_errors)
        else:
            return []
    rules = {(rule.column, rule.rule.value): rule for rule in contract.rules}
    kinds = {spec.name: spec.kind for spec in contract.columns}
    return [_explain(df, error, file=file, rules=rules, kinds=kinds) for error in errors]


def _passes_everything(df: pl.DataFrame, contract: Contract, usable: set[str]) -> bool:
    """Whether the schema `_build_schema` makes would find nothing wrong in `df`, decided with
    polars alone, mirroring pandera's polars backend: every contract column present is of an
    accepted kind and every required one is present; key columns hold no null (nor NaN in a
    float column); each attached rule's `passes` holds on every row, a null result passing
    only with `ignore_na`. False means "let pandera look", never "failed"."""
    for spec in contract.columns:
        if (spec.name in df.schema and spec.name not in usable) or (
            spec.required and spec.name not in df.schema
        ):
            return False
    tests: list[pl.Expr] = []
    for spec in contract.columns:
        if spec.key and spec.name in usable:
            present = pl.col(spec.name).is_not_null()
            if df.schema[spec.name].is_float():
                present = present & pl.col(spec.name).is_not_nan()
            tests.append(present.all())
    tests.extend(
        rule.passes.fill_null(rule.ignore_na).all()
        for rule in contract.rules
        if rule.column in usable and usable.issuperset(rule.columns)
    )
    if not tests:
        return True
    try:
        verdict = df.select(pl.all_horizontal(tests)).item()
    except pl.exceptions.PolarsError:
        return False  # pandera will say what is wrong
    return verdict is True


def key_columns(df: pl.DataFrame) -> list[str]:
    return [name for name in (TIMESTAMP, ASSET_ID) if name in df.columns]


def _failing(
    df: pl.DataFrame, check_output: pl.DataFrame, columns: list[str]
) -> tuple[int, tuple[str, ...]]:
    """How many rows failed, and the earliest few (by timestamp, asset_id) as examples."""
    from pandera.constants import CHECK_OUTPUT_KEY

    failed = check_output.get_column(CHECK_OUTPUT_KEY).not_()
    shown = list(dict.fromkeys(columns))
    rows = df.select(shown).filter(failed)
    order = key_columns(df)
    earliest = rows.bottom_k(MAX_EXAMPLES, by=order) if order else rows.head(MAX_EXAMPLES)
    return rows.height, describe_rows(earliest.sort(order) if order else earliest, shown)


def _explain(
    df: pl.DataFrame,
    error: SchemaError,
    *,
    file: str,
    rules: dict[tuple[str, str], RowRule],
    kinds: dict[str, Kind],
) -> Failure:
    from pandera.errors import SchemaErrorReason

    reason = error.reason_code
    column = getattr(error.schema, "name", None)
    if reason is SchemaErrorReason.COLUMN_NOT_IN_DATAFRAME:
        return Failure(
            file=file,
            column=str(error.failure_cases),
            rule=Rule.MISSING_COLUMN,
            severity=Severity.ERROR,
            n_rows=0,
            detail=f"column not found (columns present: {', '.join(df.columns) or 'none'})",
        )
    if reason is SchemaErrorReason.WRONG_DATATYPE and column in kinds:
        actual = df.schema[column]
        kind = kinds[column]
        naive_or_zoned = kind is UTC_DATETIME and isinstance(actual, pl.Datetime)
        return Failure(
            file=file,
            column=column,
            rule=Rule.NON_UTC_TIMESTAMP if naive_or_zoned else Rule.WRONG_DTYPE,
            severity=Severity.ERROR,
            n_rows=df.height,
            examples=describe_rows(df.head(3), [*key_columns(df), column]),
            detail=f"expected {kind.description}, got {actual}",
        )
    if reason is SchemaErrorReason.SERIES_CONTAINS_NULLS and error.check_output is not None:
        n_rows, examples = _failing(df, error.check_output, [*key_columns(df), str(column)])
        return Failure(
            file=file,
            column=column,
            rule=Rule.NULL_KEY,
            severity=Severity.ERROR,
            n_rows=n_rows,
            examples=examples,
            detail="key column is null",
        )
    check_name = getattr(error.check, "name", None)
    row_rule = rules.get((str(column), str(check_name)))
    if (
        reason is SchemaErrorReason.DATAFRAME_CHECK
        and row_rule is not None
        and error.check_output is not None
    ):
        n_rows, examples = _failing(df, error.check_output, [*key_columns(df), *row_rule.columns])
        return Failure(
            file=file,
            column=column,
            rule=row_rule.rule,
            severity=row_rule.severity,
            n_rows=n_rows,
            examples=examples,
            detail=row_rule.detail,
        )
    return Failure(
        file=file,
        column=column,
        rule=Rule.CHECK_ERROR,
        severity=Severity.ERROR,
        n_rows=0,
        detail=f"check {check_name or error.check} could not run ({reason.name})",
    )
