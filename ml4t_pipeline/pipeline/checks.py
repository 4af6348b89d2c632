"""Blocking asset checks: input contracts, point-in-time features, and backtest bookkeeping.

Input and feature checks call the validators of `ml4t_pipeline.validation` over every row and
put each failure (file, column, rule, rows, examples) into the check's metadata; the
corporate-actions contract reads the rows with the engine's own `read_corporate_actions`. The backtest
checks re-derive the account from the stored tables. Every check here is blocking: an ERROR
stops the assets downstream of the checked asset in the same run, and `feature_table` refuses
to start in a later run unless the latest input checks passed (`require_passed_input_checks`).
Checks refer to assets by key so this module does not import the asset modules. The checks of
partitioned assets carry the partitions, so `build_partitioned_checks` makes them (called by
`build_defs`); the input contracts are plain module-level definitions.
"""

import contextlib
import json
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from ml4t_pipeline.engine import OrderReason, read_corporate_actions
from ml4t_pipeline.engine.tolerances import FILL_BAR_RTOL, MONEY_ATOL, MONEY_RTOL
from ml4t_pipeline.errors import DataError, clipped
from ml4t_pipeline.keys import plural
from ml4t_pipeline.pipeline.io_manager import TableSet
from ml4t_pipeline.pipeline.layout import PARTITION_FILE
from ml4t_pipeline.pipeline.resources import DataDirResource
from ml4t_pipeline.validation import (
    MAX_EXAMPLES,
    Failure,
    ValidationReport,
    check_point_in_time,
    describe_rows,
    merge_reports,
    validate_context,
    validate_prices,
    validate_signals,
)

INPUT_CHECKS = {
    dg.AssetKey(f"validated_{role}"): dg.AssetCheckKey(
        dg.AssetKey(f"validated_{role}"), f"{role}_contract"
    )
    for role in ("prices", "signals", "context", "corporate_actions")
}
PROTECTIVE_STOPS = frozenset(
    r.label for r in (OrderReason.STOP_LOSS, OrderReason.TRAILING_STOP, OrderReason.VOLATILITY_STOP)
)

_FAILURE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("file", "string"),
        dg.TableColumn("column", "string"),
        dg.TableColumn("rule", "string"),
        dg.TableColumn("severity", "string"),
        dg.TableColumn("n_rows", "int"),
        dg.TableColumn("examples", "string"),
        dg.TableColumn("detail", "string"),
    ]
)


SUMMARY_CHARS = 200
"""A check's description stays within about this many characters; the table has every detail."""
_MORE_CHARS = len("; +999 more")


def one_line(headline: str, items: Sequence[str]) -> str:
    """`headline: a; b; +2 more`: what a check says at a glance in the UI (its description),
    naming as many items as fit in `SUMMARY_CHARS`; the metadata table has one row per item.
    Only a first item that does not fit on its own is cut (`clipped`)."""
    items = [" ".join(item.split()) for item in items]
    text = " ".join(headline.split())
    for shown, item in enumerate(items):
        candidate = f"{text}{'; ' if shown else ': '}{item}"
        room = SUMMARY_CHARS - (_MORE_CHARS if shown + 1 < len(items) else 0)
        if shown and len(candidate) > room:
            return f"{text}; +{len(items) - shown} more"
        text = candidate
    return clipped(text, SUMMARY_CHARS)


def _failure_item(failure: Failure) -> str:
    where = Path(failure.file).name + (f" column '{failure.column}'" if failure.column else "")
    rows = f", {plural(failure.n_rows, 'row')}" if failure.n_rows else ""
    return f"{failure.rule} ({where}{rows})"


def report_description(report: ValidationReport) -> str:
    """One line: how many errors and warnings, then the first rules broken (errors first),
    each with its file, column and row count."""
    checked = plural(sum(report.rows_checked.values()), "row")
    if not report.failures:
        return f"passed: {checked} checked, no rule broken"
    counts = f"{plural(len(report.errors), 'error')}, {plural(len(report.warnings), 'warning')}"
    headline = f"{counts}, {checked} checked" if report.errors else f"passed with {counts}"
    return one_line(headline, [_failure_item(f) for f in (*report.errors, *report.warnings)])


def report_result(report: ValidationReport) -> dg.AssetCheckResult:
    """Pass unless the report holds an ERROR. The description is one line
    (`report_description`); every failure (warnings too) and every tolerated entry (severity
    info) is one row of the `failures` table."""
    records = [
        dg.TableRecord(
            {
                "file": f.file,
                "column": f.column or "",
                "rule": str(f.rule),
                "severity": str(f.severity),
                "n_rows": f.n_rows,
                "examples": "; ".join(f.examples),
                "detail": f.detail,
            }
        )
        for f in (*report.failures, *report.tolerated)
    ]
    return dg.AssetCheckResult(
        passed=report.ok,
        severity=dg.AssetCheckSeverity.ERROR,
        description=report_description(report),
        metadata={
            "rows_checked": sum(report.rows_checked.values()),
            "errors": len(report.errors),
            "warnings": len(report.warnings),
            "tolerated": sum(t.n_rows for t in report.tolerated),
            "failures": dg.MetadataValue.table(records, schema=_FAILURE_SCHEMA),
        },
    )


@dg.asset_check(
    asset="validated_prices",
    blocking=True,
    additional_ins={"corporate_actions": dg.AssetIn("validated_corporate_actions")},
    description="Prices data contract, every row; splits against the corporate actions.",
)
def prices_contract(
    prices: pl.DataFrame, corporate_actions: pl.DataFrame, data_dir: DataDirResource
) -> dg.AssetCheckResult:
    """The prices' rules; a split the corporate actions (none: an empty frame) explain is not
    reported, one they hold that the prices do not show is."""
    file = str(data_dir.file("corporate_actions"))
    report = validate_prices(
        prices,
        file=str(data_dir.file("prices")),
        corporate_actions=read_corporate_actions(corporate_actions, name=file)
        if corporate_actions.height
        else None,
        actions_file=file,
    )
    return report_result(report)


@dg.asset_check(
    asset="validated_signals",
    blocking=True,
    additional_ins={"prices": dg.AssetIn("validated_prices")},
    description="Signals data contract and coverage against prices, every row.",
)
def signals_contract(
    signals: pl.DataFrame, prices: pl.DataFrame, data_dir: DataDirResource
) -> dg.AssetCheckResult:
    file = str(data_dir.file("signals"))
    return report_result(validate_signals(signals, file=file, prices=prices))


@dg.asset_check(
    asset="validated_context",
    blocking=True,
    additional_ins={"prices": dg.AssetIn("validated_prices")},
    description="Context data contract and staleness against prices, every row.",
)
def context_contract(
    context_frame: pl.DataFrame, prices: pl.DataFrame, data_dir: DataDirResource
) -> dg.AssetCheckResult:
    file = str(data_dir.file("context"))
    return report_result(validate_context(context_frame, file=file, prices=prices))


@dg.asset_check(
    asset="validated_corporate_actions",
    blocking=True,
    description=(
        "Corporate actions read as the engine reads them (read_corporate_actions): columns, "
        "dtypes, keys, ratios and dividends; passes when the data directory has no file."
    ),
)
def corporate_actions_contract(
    corporate_actions: pl.DataFrame, data_dir: DataDirResource
) -> dg.AssetCheckResult:
    return corporate_actions_result(corporate_actions, file=str(data_dir.file("corporate_actions")))


def corporate_actions_result(frame: pl.DataFrame, *, file: str) -> dg.AssetCheckResult:
    """Pass if `read_corporate_actions` accepts the rows; its `DataError` is the failure.
    No rows (the data directory has no actions file, or an empty one) pass: nothing applies,
    and the backtest hands the engine no actions input."""
    if frame.is_empty():
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.ERROR,
            description="passed: no corporate actions, none are applied",
            metadata={"rows_checked": 0, "errors": 0, "splits": 0, "dividends": 0, "assets": 0},
        )
    try:
        actions = read_corporate_actions(frame, name=file)
    except DataError as exc:
        record = dg.TableRecord(
            {
                "file": file,
                "column": "",
                "rule": "read_corporate_actions",
                "severity": "error",
                "n_rows": frame.height,
                "examples": "",
                "detail": str(exc),
            }
        )
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=one_line(str(exc).splitlines()[0], []),
            metadata={
                "rows_checked": frame.height,
                "errors": 1,
                "failures": dg.MetadataValue.table([record], schema=_FAILURE_SCHEMA),
            },
        )
    return dg.AssetCheckResult(
        passed=True,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"passed: {plural(frame.height, 'row')} read as the engine reads them",
        metadata={
            "rows_checked": frame.height,
            "errors": 0,
            "splits": int((actions["split_ratio"] != 1.0).sum()),
            "dividends": int((actions["dividend"] != 0.0).sum()),
            "assets": actions["asset_id"].n_unique(),
        },
    )


def require_passed_input_checks(instance: dg.DagsterInstance) -> None:
    """Raise `DataError` unless each input's latest materialization passed its contract check.

    Blocking checks stop downstream assets within one run; this extends the gate to runs that
    start later (a monthly backtest run reads inputs validated by an earlier `inputs_job` run).
    """
    problems: list[str] = []
    latest = instance.get_latest_materialization_events(list(INPUT_CHECKS))
    for asset_key, check_key in INPUT_CHECKS.items():
        name = asset_key.to_user_string()
        materialization = latest.get(asset_key)
        record = instance.get_latest_asset_check_evaluation_record(check_key)
        if materialization is None:
            problems.append(f"{name} has never been materialized")
        elif record is None:
            problems.append(f"{name} has never been checked by {check_key.name}")
        elif record.status.value != "SUCCEEDED":
            status = record.status.value.lower()
            problems.append(f"{check_key.name} did not pass on the latest {name} ({status})")
        elif record.event is None or record.event.timestamp < materialization.timestamp:
            problems.append(f"{name} changed after {check_key.name} last passed")
    if problems:
        msg = (
            "inputs are not validated: "
            + "; ".join(problems)
            + ". Run inputs_job (raw files -> frames -> contract checks) and fix what it reports."
        )
        raise DataError(msg)


NO_LOOK_AHEAD = (
    "Point in time: every signal and context value in the feature table was known at its bar "
    "(available_at <= timestamp), row by row."
)


def no_look_ahead(feature_table: pl.DataFrame) -> dg.AssetCheckResult:
    """Every signal and context value in the table was known at its bar."""
    signals = feature_table.filter(pl.col("signals").is_not_null()).select(
        "timestamp", "asset_id", "available_at"
    )
    context = (
        feature_table.filter(pl.col("context").is_not_null())
        .select("timestamp", pl.col("context_available_at").alias("available_at"))
        .unique("timestamp", maintain_order=True)
    )
    return report_result(
        merge_reports(
            check_point_in_time(signals, file="feature_table (signals)"),
            check_point_in_time(context, file="feature_table (context)"),
        )
    )


# -- backtest bookkeeping -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Breach:
    """One broken bookkeeping rule: how many rows broke it and a few of them."""

    rule: str
    n_rows: int
    detail: str
    examples: tuple[str, ...] = ()


def _money_close(actual: pl.Expr, expected: pl.Expr) -> pl.Expr:
    scale = pl.max_horizontal(actual.abs(), expected.abs(), pl.lit(1.0))
    return (actual - expected).abs() <= MONEY_ATOL + MONEY_RTOL * scale


def action_cash(tables: TableSet) -> float:
    """The cash corporate actions paid in the month (dividends, + for longs; cash in lieu of
    split fractions), from its `actions` table; 0.0 for a run without an actions input."""
    actions = tables.tables.get("actions")
    return float(actions["cash"].sum()) if actions is not None else 0.0


def ledger_breaches(tables: TableSet) -> list[Breach]:
    """equity == cash + positions_value on every bar, and the month's cash flows add up:
    start cash - sum(signed fill notional) - sum(commission) + action cash == final cash."""
    equity = tables.tables["equity"]
    fills = tables.tables["fills"]
    start_cash = float(json.loads(tables.texts[PARTITION_FILE])["start_cash"])
    breaches: list[Breach] = []
    off = equity.filter(~_money_close(pl.col("equity"), pl.col("cash") + pl.col("positions_value")))
    if off.height:
        breaches.append(
            Breach(
                rule="equity_is_cash_plus_positions",
                n_rows=off.height,
                detail="equity != cash + positions_value",
                examples=describe_rows(off, ["timestamp", "equity", "cash", "positions_value"]),
            )
        )
    signed = pl.when(pl.col("side") == "buy").then(1.0).otherwise(-1.0) * pl.col("qty")
    flows = fills.select(
        (signed * pl.col("price")).sum().alias("notional"), pl.col("commission").sum()
    ).row(0)
    paid = action_cash(tables)
    expected = start_cash - float(flows[0] or 0.0) - float(flows[1] or 0.0) + paid
    final_cash = float(equity["cash"][-1]) if equity.height else start_cash
    scale = max(abs(expected), abs(final_cash), 1.0)
    if abs(final_cash - expected) > MONEY_ATOL + MONEY_RTOL * scale:
        with_actions = " + corporate actions' cash" if "actions" in tables.tables else ""
        breaches.append(
            Breach(
                rule="cash_reconciles",
                n_rows=1,
                detail=(
                    f"start cash {start_cash!r} - signed notional - commissions{with_actions} "
                    f"= {expected!r}, but final cash is {final_cash!r}"
                ),
            )
        )
    return breaches


def nan_equity_breaches(equity: pl.DataFrame) -> list[Breach]:
    columns = ["equity", "cash", "positions_value"]
    bad = equity.filter(
        pl.any_horizontal(pl.col(c).is_null() | pl.col(c).is_nan() for c in columns)
    )
    if bad.is_empty():
        return []
    return [
        Breach(
            rule="no_nan_equity",
            n_rows=bad.height,
            detail="equity, cash or positions_value is NaN or null",
            examples=describe_rows(bad, ["timestamp", *columns]),
        )
    ]


def fill_breaches(fills: pl.DataFrame, bars: pl.DataFrame) -> list[Breach]:
    """Fill prices (before slippage) inside [low, high] of their bar; protective-stop exits
    never worse than the open (long exits at or below it, short exits at or above it).

    The fills table's `slippage` is the fill's total cost of slippage, |qty| x |price - match
    price| (`qty` is unsigned there), so the match price is `price` less (buys) or plus
    (sells) `slippage / qty`."""
    if fills.is_empty():
        return []
    sign = pl.when(pl.col("side") == "buy").then(1.0).otherwise(-1.0)
    per_share = (
        pl.when(pl.col("qty") != 0)
        .then(pl.col("slippage").fill_null(0.0) / pl.col("qty").abs())
        .otherwise(0.0)
    )
    joined = fills.join(
        bars.select("timestamp", "asset_id", "open", "high", "low"),
        on=["timestamp", "asset_id"],
        how="left",
    ).with_columns((pl.col("price") - sign * per_share).alias("raw_price"))
    shown = ["timestamp", "asset_id", "side", "reason", "raw_price", "open", "low", "high"]
    # the bars as stored; the engine may have widened one within the OHLC tolerance
    slack = FILL_BAR_RTOL * pl.col("raw_price").abs()
    rules = [
        ("fill_has_bar", pl.col("low").is_null(), "fill on a (timestamp, asset_id) without a bar"),
        (
            "fill_inside_bar",
            pl.col("low").is_not_null()
            & (
                (pl.col("raw_price") < pl.col("low") - slack)
                | (pl.col("raw_price") > pl.col("high") + slack)
            ),
            "fill price (before slippage) outside [low, high]",
        ),
        (
            "stop_not_beyond_open",
            pl.col("reason").is_in(list(PROTECTIVE_STOPS))
            & (
                ((pl.col("side") == "sell") & (pl.col("raw_price") > pl.col("open") + slack))
                | ((pl.col("side") == "buy") & (pl.col("raw_price") < pl.col("open") - slack))
            ),
            "protective stop filled beyond the open (a long exit must be <= open)",
        ),
    ]
    breaches: list[Breach] = []
    for rule, broken, detail in rules:
        bad = joined.filter(broken)
        if bad.height:
            breaches.append(
                Breach(
                    rule=rule,
                    n_rows=bad.height,
                    detail=detail,
                    examples=describe_rows(bad.head(MAX_EXAMPLES), shown),
                )
            )
    return breaches


_BREACH_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("rule", "string"),
        dg.TableColumn("n_rows", "int"),
        dg.TableColumn("detail", "string"),
        dg.TableColumn("examples", "string"),
    ]
)


def breach_result(
    check_name: str, breaches: Sequence[Breach], rows_checked: int
) -> dg.AssetCheckResult:
    """One line naming the rules broken (with their row counts and details) as the
    description; one row per broken rule in the `breaches` table, with examples."""
    checked = plural(rows_checked, "row")
    description = (
        one_line(
            f"{plural(len(breaches), 'rule')} broken, {checked} checked",
            [f"{b.rule} ({plural(b.n_rows, 'row')}): {b.detail}" for b in breaches],
        )
        if breaches
        else f"passed: {checked} checked, every rule holds"
    )
    return dg.AssetCheckResult(
        asset_key="backtest",
        check_name=check_name,
        passed=not breaches,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "rows_checked": rows_checked,
            "breaches": dg.MetadataValue.table(
                [
                    dg.TableRecord(
                        {
                            "rule": b.rule,
                            "n_rows": b.n_rows,
                            "detail": b.detail,
                            "examples": "; ".join(b.examples),
                        }
                    )
                    for b in breaches
                ],
                schema=_BREACH_SCHEMA,
            ),
        },
    )


BACKTEST_CHECKS: Mapping[str, str] = {
    "ledger_reconciles": (
        "Bookkeeping: equity = cash + positions value on every bar, and start cash - signed "
        "fill notional - commissions (+ corporate actions' cash) = final cash."
    ),
    "no_nan_equity": "Equity, cash and positions value are never NaN or null.",
    "fills_inside_bars": (
        "Every fill has a bar and its price before slippage lies in [low, high]; protective "
        "stops never fill beyond the open."
    ),
}
"""The three bookkeeping checks on `backtest` (one pass, `backtest_bookkeeping`), described."""


def bookkeeping_breaches(backtest: TableSet, feature_table: pl.DataFrame) -> list[Breach]:
    """Every bookkeeping breach of one month (what the three checks report, in one list):
    the gate a run applies before the next month of its range starts from this one."""
    return [
        *ledger_breaches(backtest),
        *nan_equity_breaches(backtest.tables["equity"]),
        *fill_breaches(backtest.tables["fills"], feature_table),
    ]


def _months(value: TableSet | pl.DataFrame | Mapping[str, Any]) -> dict[str, Any]:
    """An input of a partitioned check as {partition key: value}; a one-partition run hands
    over the bare value (key "")."""
    return dict(value) if isinstance(value, Mapping) else {"": value}


def _in_months(
    per_month: Mapping[str, Sequence[Breach]], rule_rows: Mapping[str, int]
) -> tuple[list[Breach], int]:
    """Breaches of several months, each rule prefixed with its month (one month: as is)."""
    breaches = [
        Breach(
            rule=b.rule,
            n_rows=b.n_rows,
            detail=f"{key}: {b.detail}" if key else b.detail,
            examples=b.examples,
        )
        for key, found in sorted(per_month.items())
        for b in found
    ]
    return breaches, sum(rule_rows.values())


def backtest_bookkeeping(
    backtest: Any, feature_table: Any, context: dg.AssetCheckExecutionContext | None = None
) -> Iterable[dg.AssetCheckResult]:
    """Ledger reconciles, no NaN equity, fills inside their bars (one pass, three checks).
    A run over several months (a single-run backfill) checks each; a failure names its month.
    The inputs are a `TableSet` and a frame, or {partition key: value} for a range run.

    Dagster 1.13 records a check result of a step over a range of partitions without a
    partition (and each month's planned check as skipped), so a range run also logs each
    month's own evaluation, with its partition: the UI shows every month's result."""
    sets, features = _months(backtest), _months(feature_table)
    if context is not None and len(sets) > 1:
        for key, tables in sorted(sets.items()):
            equity, fills_table = tables.tables["equity"], tables.tables["fills"]
            for name, per_month, rows in (
                ("ledger_reconciles", ledger_breaches(tables), equity.height),
                ("no_nan_equity", nan_equity_breaches(equity), equity.height),
                (
                    "fills_inside_bars",
                    fill_breaches(fills_table, features[key]),
                    fills_table.height,
                ),
            ):
                check = dg.AssetCheckKey(dg.AssetKey("backtest"), name)
                _log_month(context, check, key, breach_result(name, list(per_month), rows))
    equity_rows = {k: t.tables["equity"].height for k, t in sets.items()}
    fill_rows = {k: t.tables["fills"].height for k, t in sets.items()}
    ledger = _in_months({k: ledger_breaches(t) for k, t in sets.items()}, equity_rows)
    nan = _in_months(
        {k: nan_equity_breaches(t.tables["equity"]) for k, t in sets.items()}, equity_rows
    )
    fills = _in_months(
        {k: fill_breaches(t.tables["fills"], features[k]) for k, t in sets.items()}, fill_rows
    )
    yield breach_result("ledger_reconciles", *ledger)
    yield breach_result("no_nan_equity", *nan)
    yield breach_result("fills_inside_bars", *fills)


def _backtest_bookkeeping_check(
    context: dg.AssetCheckExecutionContext, backtest: Any, feature_table: Any
) -> Iterable[dg.AssetCheckResult]:
    yield from backtest_bookkeeping(backtest, feature_table, context)


def no_look_ahead_months(
    feature_table: Any, context: dg.AssetCheckExecutionContext | None = None
) -> dg.AssetCheckResult:
    """`no_look_ahead` over one month, or every month of a range run (merged; with `context`,
    each month's own evaluation is logged with its partition, as `backtest_bookkeeping`)."""
    tables = _months(feature_table)
    if len(tables) == 1:
        return no_look_ahead(next(iter(tables.values())))
    if context is not None:
        for key, month in sorted(tables.items()):
            _log_month(context, _NO_LOOK_AHEAD_KEY, key, no_look_ahead(month))
    return no_look_ahead(pl.concat(list(tables.values()), how="vertical_relaxed"))


_NO_LOOK_AHEAD_KEY = dg.AssetCheckKey(dg.AssetKey("feature_table"), "no_look_ahead")


def _no_look_ahead_check(
    context: dg.AssetCheckExecutionContext, feature_table: Any
) -> dg.AssetCheckResult:
    return no_look_ahead_months(feature_table, context)


def _log_month(
    context: dg.AssetCheckExecutionContext,
    check: dg.AssetCheckKey,
    partition: str,
    result: dg.AssetCheckResult,
) -> None:
    """Record `result` as the check's evaluation of one month (`partition`) of a range run.
    Dagster 1.13 gives the result of a step over a range no partition and marks each month's
    planned evaluation skipped; an evaluation logged with its partition is the month's own."""
    evaluation = dg.AssetCheckEvaluation(
        asset_key=check.asset_key,
        check_name=check.name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        blocking=True,
        partition=partition,
    )
    # (log_event takes check evaluations, though it is typed for materializations only)
    context.op_execution_context.log_event(evaluation)  # type: ignore[arg-type]


@contextlib.contextmanager
def _partitioned_check_preview() -> Iterator[None]:
    """Checks of partitioned assets carry the partitions so each run checks (and loads) only
    its own partition. Dagster 1.13 flags `partitions_def` on a check as a preview feature;
    that one notice is silenced here, nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
        )
        yield


INPUT_CONTRACTS = [prices_contract, signals_contract, context_contract, corporate_actions_contract]


def build_partitioned_checks(
    partitions: dg.PartitionsDefinition,
) -> list[dg.AssetChecksDefinition]:
    """`no_look_ahead` on feature_table and the three bookkeeping checks on backtest."""
    with _partitioned_check_preview():
        look_ahead = dg.asset_check(
            asset="feature_table",
            name="no_look_ahead",
            blocking=True,
            partitions_def=partitions,
            description=NO_LOOK_AHEAD,
        )(_no_look_ahead_check)
        bookkeeping = dg.multi_asset_check(
            name="backtest_bookkeeping",
            specs=[
                dg.AssetCheckSpec(
                    name,
                    asset="backtest",
                    blocking=True,
                    additional_deps=["feature_table"],
                    partitions_def=partitions,
                    description=description,
                )
                for name, description in BACKTEST_CHECKS.items()
            ],
            ins={"backtest": dg.AssetIn("backtest"), "feature_table": dg.AssetIn("feature_table")},
        )(_backtest_bookkeeping_check)
    return [look_ahead, bookkeeping]
