"""Data contracts for prices, signals, context and point-in-time feature tables.

Each validator runs its `Contract` (column presence, dtypes, nullability of keys and every
per-row rule, through pandera over all rows: `contract.run_contract`) and the cross-row rules.
The price rules are `ml4t_pipeline.keys.OHLC_RULES` and `VOLUME_RULES`, the conditions the
engine's own bar guard uses too: relations between prices (high >= open, close, low;
low <= open, close) are judged only on rows whose prices are all finite and positive, so one bad
value is reported once, by the rule it breaks. Key uniqueness is not pandera's ``unique=`` (its
``is_duplicated`` costs more than 1 GB at 5 M rows): (timestamp, asset_id) keys are counted per
panel cell in `coverage`, other keys with a ``group_by`` count.
"""

from __future__ import annotations

import polars as pl

from ml4t_pipeline.engine.tolerances import OHLC_RTOL
from ml4t_pipeline.keys import (
    ASSET_ID,
    AVAILABLE_AT,
    CLOSE,
    OHLC,
    OHLC_RULES,
    OPEN,
    TIMESTAMP,
    VOLUME,
    VOLUME_RULES,
    BarRule,
    duplicate_key_detail,
    key_columns,
    tolerance_detail,
)
from ml4t_pipeline.validation.contract import (
    ASSET_ID_KIND,
    FEATURE,
    NUMBER,
    UTC_DATETIME,
    ColumnSpec,
    Contract,
    RowRule,
    run_contract,
    usable_columns,
)
from ml4t_pipeline.validation.coverage import (
    DEFAULT_POLICY,
    CoveragePolicy,
    context_staleness,
    panel_failures,
    signal_failures,
)
from ml4t_pipeline.validation.grid import key_panel
from ml4t_pipeline.validation.moves import move_failures
from ml4t_pipeline.validation.report import (
    MAX_EXAMPLES,
    Failure,
    Rule,
    Severity,
    ValidationReport,
    describe_rows,
)

_ROWS = "rows"


def _row_rule(rule: BarRule) -> RowRule:
    return RowRule(
        rule=rule.rule,
        column=rule.column,
        passes=~rule.broken(pl.col, OHLC_RTOL),
        ignore_na=not rule.nulls_break,
        columns=rule.reads,
        detail=rule.detail,
    )


PRICES_CONTRACT = Contract(
    columns=(
        ColumnSpec(name=TIMESTAMP, kind=UTC_DATETIME, key=True),
        ColumnSpec(name=ASSET_ID, kind=ASSET_ID_KIND, key=True),
        *(ColumnSpec(name=name, kind=NUMBER) for name in (*OHLC, VOLUME)),
    ),
    rules=tuple(_row_rule(rule) for rule in (*OHLC_RULES, *VOLUME_RULES)),
)


def _value_rule(name: str) -> RowRule:
    column = pl.col(name)
    return RowRule(
        rule=Rule.NON_FINITE_VALUE,
        column=name,
        passes=~(column.is_nan() | column.is_infinite()),
        ignore_na=True,
        columns=(name,),
        detail="NaN or infinite value (nulls are the way to say 'missing')",
        severity=Severity.WARNING,
    )


def _values_contract(df: pl.DataFrame, keys: tuple[ColumnSpec, ...], values: list[str]) -> Contract:
    """Keys, an optional non-null `available_at`, and numeric value columns."""
    return Contract(
        columns=(
            *keys,
            ColumnSpec(name=AVAILABLE_AT, kind=UTC_DATETIME, key=True, required=False),
            *(ColumnSpec(name=name, kind=FEATURE) for name in values),
        ),
        rules=tuple(_value_rule(name) for name in values if df.schema[name].is_float()),
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
            detail=duplicate_key_detail(duplicated.height, key),
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
    ColumnSpec(name=TIMESTAMP, kind=UTC_DATETIME, key=True),
    ColumnSpec(name=ASSET_ID, kind=ASSET_ID_KIND, key=True),
)


def tolerated_rows(df: pl.DataFrame, *, file: str) -> list[Failure]:
    """INFO entries: rows breaking an OHLC relation exactly but within `OHLC_RTOL` (accepted).

    One pass counts every relation; examples are read only for the relations that tolerated
    rows. Needs all four prices usable (the relations are judged on valid prices only)."""
    relations = [rule for rule in OHLC_RULES if rule.relation]
    masks = [rule.tolerated(pl.col, OHLC_RTOL) for rule in relations]
    counts = df.select(
        mask.sum().alias(str(rule.rule)) for rule, mask in zip(relations, masks, strict=True)
    ).row(0)
    entries: list[Failure] = []
    order = [c for c in (TIMESTAMP, ASSET_ID) if c in df.columns]
    for rule, mask, n_rows in zip(relations, masks, counts, strict=True):
        if not n_rows:
            continue
        rows = df.filter(mask).select(*order, *rule.reads)
        shown = rows.bottom_k(MAX_EXAMPLES, by=order).sort(order) if order else rows
        entries.append(
            Failure(
                file=file,
                column=rule.column,
                rule=rule.rule,
                severity=Severity.INFO,
                n_rows=int(n_rows),
                examples=describe_rows(shown, [*order, *rule.reads]),
                detail=f"{rule.detail}, {tolerance_detail(OHLC_RTOL)}",
            )
        )
    return entries


def validate_prices(
    df: pl.DataFrame,
    *,
    file: str,
    policy: CoveragePolicy = DEFAULT_POLICY,
    corporate_actions: pl.DataFrame | None = None,
    actions_file: str = "corporate_actions",
) -> ValidationReport:
    """Check a prices frame (timestamp, asset_id, open, high, low, close, volume).

    ERROR: missing column, wrong dtype, non-UTC timestamps, null key, duplicate
    (timestamp, asset_id), null/NaN/infinite or non-positive price, high below open/close/low,
    low above open/close, null/NaN/infinite or negative volume, no rows. The price relations
    accept a difference within `OHLC_RTOL` of the price (split-adjusted prices differ in the
    15th digit): such rows are listed in `tolerated` (INFO), never silently accepted.
    Severity from `policy`: LARGE_GAP when an asset misses more than `policy.max_gap_bars`
    calendar bars in a row between its first and last bar; DATA_ENDS for an asset whose bars
    end before the file's last timestamp (delisted, or its data ends); POSSIBLE_SPLIT,
    PRICE_JUMP and, for `corporate_actions` (as `read_corporate_actions` returns them, named
    `actions_file`), SPLIT_NOT_IN_PRICES (`moves.move_failures`; not run on a file with
    duplicate keys, where "the previous bar" has no meaning).
    """
    failures = _empty(df, file=file) + run_contract(df, PRICES_CONTRACT, file=file)
    usable = usable_columns(df, PRICES_CONTRACT.columns)
    keys = {TIMESTAMP, ASSET_ID} <= usable
    panel = key_panel(df, max_grid_cells=None) if keys else None
    if panel is not None:
        failures += panel_failures(df, file=file, policy=policy, panel=panel)
    tolerated = tolerated_rows(df, file=file) if usable >= set(OHLC) else []
    one_row_per_key = not any(f.rule is Rule.DUPLICATE_KEY for f in failures)
    if panel is not None and one_row_per_key and usable >= {OPEN, CLOSE, VOLUME}:
        failures += move_failures(
            df,
            file=file,
            policy=policy,
            panel=panel,
            actions=corporate_actions,
            actions_file=actions_file,
        )
    return ValidationReport(
        failures=tuple(failures), rows_checked={file: df.height}, tolerated=tuple(tolerated)
    )


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
    `keys.key_columns`, as in the engine's feed: (timestamp, asset_id), plus available_at when
    present (revisions of one value are rows with the same timestamp and different
    available_at). WARNING: NaN/infinite feature values (nulls
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
    if keys_usable and AVAILABLE_AT in df.columns:  # without it, `signal_failures` counts keys
        failures += duplicate_keys(df, list(key_columns(df.columns)), file=file)
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
        failures += duplicate_keys(df, list(key_columns(df.columns, per_asset=False)), file=file)
    if keys_usable and prices is not None and _prices_usable(prices, {TIMESTAMP}):
        failures += context_staleness(
            df,
            file=file,
            columns=[name for name in values if name in usable],
            prices=prices,
            policy=policy,
        )
    return _report(failures, file=file, df=df)


POINT_IN_TIME_CONTRACT = Contract(
    columns=(
        ColumnSpec(name=TIMESTAMP, kind=UTC_DATETIME, key=True),
        ColumnSpec(name=ASSET_ID, kind=ASSET_ID_KIND, key=True, required=False),
        ColumnSpec(name=AVAILABLE_AT, kind=UTC_DATETIME),
    ),
    rules=(
        RowRule(
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
