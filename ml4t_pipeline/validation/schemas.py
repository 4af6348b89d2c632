"""Data contracts for prices, signals, context and point-in-time feature tables.

Column presence, dtypes, nullability of keys and every per-row rule run through pandera's polars
backend over all rows with ``lazy=True``, so one call collects every broken rule; each pandera
error is turned into a `Failure` with a row count and the earliest example rows, and no pandera
text reaches a user. Key uniqueness is not pandera's ``unique=`` (its ``is_duplicated`` costs
more than 1 GB at 5 M rows): (timestamp, asset_id) keys are counted per panel cell in
`coverage`, other keys with a ``group_by`` count.

The contract is built for the frame at hand: a column stored with the wrong dtype is reported once
as WRONG_DTYPE and its value rules are not run (they would only repeat the same problem), and a
rule that reads several columns runs only when all of them have usable dtypes. Relations between
prices (high >= open, close, low; low <= open, close) are judged only on rows whose prices are
all finite and positive, so one bad value is reported once, by the rule it breaks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from ml4t_pipeline.validation.coverage import (
    DEFAULT_POLICY,
    CoveragePolicy,
    context_staleness,
    panel_failures,
    signal_failures,
)
from ml4t_pipeline.validation.report import (
    MAX_EXAMPLES,
    Failure,
    Rule,
    Severity,
    ValidationReport,
    describe_rows,
    plural,
)
from ml4t_pipeline.validation.timing import ASSET_ID, AVAILABLE_AT, TIMESTAMP, UTC

# pandera (with the hypothesis strategies it loads on first use, ~0.2 s) is imported only
# where a contract runs, so importing this package (e.g. with the Dagster definitions) stays
# cheap for processes that never validate.
if TYPE_CHECKING:
    import pandera.polars as pa
    from pandera.engines import polars_engine
    from pandera.errors import SchemaError

OPEN = "open"
HIGH = "high"
LOW = "low"
CLOSE = "close"
VOLUME = "volume"
PRICE_COLUMNS = (OPEN, HIGH, LOW, CLOSE)
_ROWS = "rows"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Kind:
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


UTC_DATETIME = _Kind(
    description="a UTC datetime", canonical=pl.Datetime("us", UTC), accepts=_is_utc_datetime
)
ASSET_ID_KIND = _Kind(
    description="a string or integer id", canonical=pl.String(), accepts=_is_asset_id
)
NUMBER = _Kind(description="an integer or float", canonical=pl.Float64(), accepts=_is_number)
FEATURE = _Kind(
    description="an integer or float (or all null)", canonical=pl.Float64(), accepts=_is_feature
)


@functools.cache
def _kind_dtype_class() -> Callable[[_Kind], polars_engine.DataType]:
    """The pandera dtype class below, defined on first use (pandera is imported lazily)."""
    from pandera.engines import polars_engine

    class _KindDtype(polars_engine.DataType):
        """A pandera dtype that accepts every polars dtype of a `_Kind`."""

        kind: _Kind

        def __init__(self, kind: _Kind) -> None:
            object.__setattr__(self, "type", kind.canonical)
            object.__setattr__(self, "kind", kind)

        def check(self, pandera_dtype: object, data_container: object = None) -> bool:
            if isinstance(pandera_dtype, pl.DataType):
                return self.kind.accepts(pandera_dtype)
            return self.kind.accepts(polars_engine.Engine.dtype(pandera_dtype).type)

        def __str__(self) -> str:
            return self.kind.description

    return _KindDtype


@dataclass(frozen=True, slots=True, kw_only=True)
class _ColumnSpec:
    name: str
    kind: _Kind
    key: bool = False
    required: bool = True


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _RowRule:
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
class _Contract:
    columns: tuple[_ColumnSpec, ...]
    rules: tuple[_RowRule, ...] = ()


def _all_valid_prices(*names: str) -> pl.Expr:
    """True where every named price is finite and positive (other rules own the rest)."""
    return pl.all_horizontal(
        (pl.col(name).is_finite() & (pl.col(name) > 0)).fill_null(False) for name in names
    )


def _price_rules() -> tuple[_RowRule, ...]:
    rules: list[_RowRule] = []
    for name in PRICE_COLUMNS:
        column = pl.col(name)
        rules += [
            _RowRule(
                rule=Rule.NON_FINITE_PRICE,
                column=name,
                passes=column.is_finite(),
                ignore_na=False,
                columns=(name,),
                detail="price is null, NaN or infinite",
            ),
            _RowRule(
                rule=Rule.NON_POSITIVE_PRICE,
                column=name,
                passes=(column > 0) | ~column.is_finite(),
                ignore_na=True,
                columns=(name,),
                detail="price is zero or negative",
            ),
        ]
    high, low = pl.col(HIGH), pl.col(LOW)
    rules += [
        _RowRule(
            rule=Rule.HIGH_BELOW_MAX_OPEN_CLOSE,
            column=HIGH,
            passes=~_all_valid_prices(*PRICE_COLUMNS) | (high >= pl.max_horizontal(OPEN, CLOSE)),
            ignore_na=True,
            columns=(OPEN, HIGH, CLOSE),
            detail="high is below open or close",
        ),
        _RowRule(
            rule=Rule.LOW_ABOVE_MIN_OPEN_CLOSE,
            column=LOW,
            passes=~_all_valid_prices(*PRICE_COLUMNS) | (low <= pl.min_horizontal(OPEN, CLOSE)),
            ignore_na=True,
            columns=(OPEN, LOW, CLOSE),
            detail="low is above open or close",
        ),
        _RowRule(
            rule=Rule.HIGH_BELOW_LOW,
            column=HIGH,
            passes=~_all_valid_prices(HIGH, LOW) | (high >= low),
            ignore_na=True,
            columns=(HIGH, LOW),
            detail="high is below low",
        ),
        _RowRule(
            rule=Rule.NON_FINITE_VOLUME,
            column=VOLUME,
            passes=pl.col(VOLUME).is_finite(),
            ignore_na=False,
            columns=(VOLUME,),
            detail="volume is null, NaN or infinite",
        ),
        _RowRule(
            rule=Rule.NEGATIVE_VOLUME,
            column=VOLUME,
            passes=(pl.col(VOLUME) >= 0) | ~pl.col(VOLUME).is_finite(),
            ignore_na=True,
            columns=(VOLUME,),
            detail="volume is negative",
        ),
    ]
    return tuple(rules)


PRICES_CONTRACT = _Contract(
    columns=(
        _ColumnSpec(name=TIMESTAMP, kind=UTC_DATETIME, key=True),
        _ColumnSpec(name=ASSET_ID, kind=ASSET_ID_KIND, key=True),
        *(_ColumnSpec(name=name, kind=NUMBER) for name in (*PRICE_COLUMNS, VOLUME)),
    ),
    rules=_price_rules(),
)


def _value_rule(name: str) -> _RowRule:
    column = pl.col(name)
    return _RowRule(
        rule=Rule.NON_FINITE_VALUE,
        column=name,
        passes=~(column.is_nan() | column.is_infinite()),
        ignore_na=True,
        columns=(name,),
        detail="NaN or infinite value (nulls are the way to say 'missing')",
        severity=Severity.WARNING,
    )


def _values_contract(
    df: pl.DataFrame, keys: tuple[_ColumnSpec, ...], values: list[str]
) -> _Contract:
    """Keys, an optional non-null `available_at`, and numeric value columns."""
    return _Contract(
        columns=(
            *keys,
            _ColumnSpec(name=AVAILABLE_AT, kind=UTC_DATETIME, key=True, required=False),
            *(_ColumnSpec(name=name, kind=FEATURE) for name in values),
        ),
        rules=tuple(_value_rule(name) for name in values if df.schema[name].is_float()),
    )


def _pandera_check(row_rule: _RowRule) -> pa.Check:
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


def usable_columns(df: pl.DataFrame, specs: Iterable[_ColumnSpec]) -> set[str]:
    """Names of the columns that are present with a dtype their contract accepts."""
    return {
        spec.name
        for spec in specs
        if spec.name in df.schema and spec.kind.accepts(df.schema[spec.name])
    }


def _build_schema(df: pl.DataFrame, contract: _Contract, usable: set[str]) -> pa.DataFrameSchema:
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


def run_contract(df: pl.DataFrame, contract: _Contract, *, file: str) -> list[Failure]:
    """Run one contract over every row of `df` with pandera and explain what broke."""
    from pandera.config import ValidationDepth, config_context
    from pandera.errors import SchemaErrors

    usable = usable_columns(df, contract.columns)
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


def _key_columns(df: pl.DataFrame) -> list[str]:
    return [name for name in (TIMESTAMP, ASSET_ID) if name in df.columns]


def _failing(
    df: pl.DataFrame, check_output: pl.DataFrame, columns: list[str]
) -> tuple[int, tuple[str, ...]]:
    """How many rows failed, and the earliest few (by timestamp, asset_id) as examples."""
    from pandera.constants import CHECK_OUTPUT_KEY

    failed = check_output.get_column(CHECK_OUTPUT_KEY).not_()
    shown = list(dict.fromkeys(columns))
    rows = df.select(shown).filter(failed)
    order = _key_columns(df)
    earliest = rows.bottom_k(MAX_EXAMPLES, by=order) if order else rows.head(MAX_EXAMPLES)
    return rows.height, describe_rows(earliest.sort(order) if order else earliest, shown)


def _explain(
    df: pl.DataFrame,
    error: SchemaError,
    *,
    file: str,
    rules: dict[tuple[str, str], _RowRule],
    kinds: dict[str, _Kind],
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
            examples=describe_rows(df.head(3), [*_key_columns(df), column]),
            detail=f"expected {kind.description}, got {actual}",
        )
    if reason is SchemaErrorReason.SERIES_CONTAINS_NULLS and error.check_output is not None:
        n_rows, examples = _failing(df, error.check_output, [*_key_columns(df), str(column)])
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
        n_rows, examples = _failing(df, error.check_output, [*_key_columns(df), *row_rule.columns])
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


def duplicate_keys(df: pl.DataFrame, key: list[str], *, file: str) -> list[Failure]:
    """DUPLICATE_KEY: rows sharing a key, counted with a group_by (null keys are NULL_KEY's)."""
    duplicated = (
        df.group_by(key).agg(pl.len().alias(_ROWS)).filter(pl.col(_ROWS) > 1).drop_nulls(key)
    )
    if duplicated.is_empty():
        return []
    shown = duplicated.sort(key).head(MAX_EXAMPLES)
    return [
        Failure(
            file=file,
            column=None,
            rule=Rule.DUPLICATE_KEY,
            severity=Severity.ERROR,
            n_rows=int(duplicated.get_column(_ROWS).sum()),
            examples=describe_rows(shown, [*key, _ROWS]),
            detail=f"{plural(duplicated.height, 'repeated key')} ({', '.join(key)})",
        )
    ]


def _empty(df: pl.DataFrame, *, file: str) -> list[Failure]:
    if df.height:
        return []
    return [
        Failure(
            file=file,
            column=None,
            rule=Rule.EMPTY_TABLE,
            severity=Severity.ERROR,
            n_rows=0,
            detail="the table has no rows",
        )
    ]


def _report(failures: list[Failure], *, file: str, df: pl.DataFrame) -> ValidationReport:
    return ValidationReport(failures=tuple(failures), rows_checked={file: df.height})


_KEY_SPECS = (
    _ColumnSpec(name=TIMESTAMP, kind=UTC_DATETIME, key=True),
    _ColumnSpec(name=ASSET_ID, kind=ASSET_ID_KIND, key=True),
)


def validate_prices(
    df: pl.DataFrame, *, file: str, policy: CoveragePolicy = DEFAULT_POLICY
) -> ValidationReport:
    """Check a prices frame (timestamp, asset_id, open, high, low, close, volume).

    ERROR: missing column, wrong dtype, non-UTC timestamps, null key, duplicate
    (timestamp, asset_id), null/NaN/infinite or non-positive price, high below open/close/low,
    low above open/close, null/NaN/infinite or negative volume, no rows. Price equality is exact:
    a bar with high == close is fine, high one tick below close is not.
    Coverage (severity from `policy`): LARGE_GAP when an asset misses more than
    `policy.max_gap_bars` calendar bars in a row between its first and last bar.
    """
    failures = _empty(df, file=file) + run_contract(df, PRICES_CONTRACT, file=file)
    if usable_columns(df, _KEY_SPECS) == {TIMESTAMP, ASSET_ID}:
        failures += panel_failures(df, file=file, policy=policy)
    return _report(failures, file=file, df=df)


def _prices_usable(prices: pl.DataFrame | None, names: set[str]) -> bool:
    return prices is not None and usable_columns(prices, _KEY_SPECS) >= names


def validate_signals(
    df: pl.DataFrame,
    *,
    file: str,
    prices: pl.DataFrame | None = None,
    policy: CoveragePolicy = DEFAULT_POLICY,
) -> ValidationReport:
    """Check a signals frame: timestamp, asset_id, optional available_at, numeric features.

    ERROR: missing key column, no feature column, wrong dtype (a feature must be numeric),
    non-UTC timestamps, null key or available_at, duplicate key, no rows. The key is
    (timestamp, asset_id), plus available_at when present (revisions of one value are rows with
    the same timestamp and different available_at). WARNING: NaN/infinite feature values (nulls
    are allowed, e.g. indicator warm-up).
    With `prices` (severity from `policy`): SIGNAL_WITHOUT_PRICE, LARGE_GAP. Signals with
    available_at are judged at the bar where they become usable.
    """
    reserved = {TIMESTAMP, ASSET_ID, AVAILABLE_AT}
    features = [name for name in df.columns if name not in reserved]
    contract = _values_contract(df, _KEY_SPECS, features)
    failures = _empty(df, file=file) + run_contract(df, contract, file=file)
    if not features:
        failures.append(
            Failure(
                file=file,
                column=None,
                rule=Rule.MISSING_COLUMN,
                severity=Severity.ERROR,
                n_rows=0,
                detail="no feature column besides timestamp, asset_id and available_at",
            )
        )
    usable = usable_columns(df, contract.columns)
    keys_usable = {TIMESTAMP, ASSET_ID} <= usable and (
        AVAILABLE_AT not in df.columns or AVAILABLE_AT in usable
    )
    if keys_usable and AVAILABLE_AT in df.columns:
        failures += duplicate_keys(df, [TIMESTAMP, ASSET_ID, AVAILABLE_AT], file=file)
    if keys_usable:
        failures += signal_failures(
            df,
            file=file,
            prices=prices if _prices_usable(prices, {TIMESTAMP, ASSET_ID}) else None,
            policy=policy,
        )
    return _report(failures, file=file, df=df)


def validate_context(
    df: pl.DataFrame,
    *,
    file: str,
    prices: pl.DataFrame | None = None,
    policy: CoveragePolicy = DEFAULT_POLICY,
) -> ValidationReport:
    """Check a market-wide context frame: timestamp, optional available_at, numeric columns.

    ERROR: missing timestamp, wrong dtype, non-UTC timestamps, null timestamp or available_at,
    duplicate timestamp (with available_at: duplicate (timestamp, available_at)), no rows.
    WARNING: NaN/infinite values. With `prices` (severity from `policy`): STALE_CONTEXT when a
    column's latest value at a price bar is more than `policy.max_context_staleness_bars` bars
    old, or there is no value yet.
    """
    values = [name for name in df.columns if name not in (TIMESTAMP, AVAILABLE_AT)]
    contract = _values_contract(df, (_KEY_SPECS[0],), values)
    failures = _empty(df, file=file) + run_contract(df, contract, file=file)
    usable = usable_columns(df, contract.columns)
    keys_usable = TIMESTAMP in usable and (AVAILABLE_AT not in df.columns or AVAILABLE_AT in usable)
    if keys_usable:
        key = [TIMESTAMP, *([AVAILABLE_AT] if AVAILABLE_AT in df.columns else [])]
        failures += duplicate_keys(df, key, file=file)
    if keys_usable and prices is not None and _prices_usable(prices, {TIMESTAMP}):
        failures += context_staleness(
            df,
            file=file,
            columns=[name for name in values if name in usable],
            prices=prices,
            policy=policy,
        )
    return _report(failures, file=file, df=df)


POINT_IN_TIME_CONTRACT = _Contract(
    columns=(
        _ColumnSpec(name=TIMESTAMP, kind=UTC_DATETIME, key=True),
        _ColumnSpec(name=ASSET_ID, kind=ASSET_ID_KIND, key=True, required=False),
        _ColumnSpec(name=AVAILABLE_AT, kind=UTC_DATETIME),
    ),
    rules=(
        _RowRule(
            rule=Rule.LOOK_AHEAD,
            column=AVAILABLE_AT,
            passes=pl.col(AVAILABLE_AT) <= pl.col(TIMESTAMP),
            ignore_na=False,
            columns=(TIMESTAMP, AVAILABLE_AT),
            detail=(
                "available_at is after timestamp (or unknown): the value would be used "
                "before it was known"
            ),
        ),
    ),
)


def check_point_in_time(features: pl.DataFrame, *, file: str) -> ValidationReport:
    """LOOK_AHEAD unless every row has ``available_at <= timestamp``.

    For a feature table keyed by the bar at which each value is used (e.g. the output of
    `align_point_in_time`); a null available_at cannot be proven safe and fails too.
    """
    failures = run_contract(features, POINT_IN_TIME_CONTRACT, file=file)
    return _report(failures, file=file, df=features)
