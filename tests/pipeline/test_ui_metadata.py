"""What the UI shows a quant: rounded headline metadata, one-line check failures with a table
behind them, a summary that goes stale when a month of its universe changes, and accurate
owners, kinds, code versions and descriptions on every asset and check."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from ml4t_pipeline.pipeline import display
from ml4t_pipeline.pipeline.catalog import ASSET_CATALOG, OWNER, code_version
from ml4t_pipeline.pipeline.checks import SUMMARY_CHARS, Breach, breach_result
from ml4t_pipeline.pipeline.layout import PARTITION_FILE
from ml4t_pipeline.pipeline.partitions import MonthKey
from tests.pipeline.conftest import FEB, JAN, QUIET, Pipeline, make_pipeline, temp_instance

REPO = Path(__file__).resolve().parents[2]
SUMMARY = dg.AssetKey("performance_summary")


def _latest(pipeline: Pipeline, key: str, partition: str) -> dict[str, dg.MetadataValue]:
    records = pipeline.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1
    ).records
    assert len(records) == 1
    materialization = records[0].asset_materialization
    assert materialization is not None
    return dict(materialization.metadata)


def _value(metadata: dict[str, dg.MetadataValue], name: str) -> object:
    return metadata[name].value


def test_display_rounds_for_people_and_shows_no_made_up_numbers() -> None:
    assert display.percent(-0.058825600150055335) == dg.MetadataValue.float(-5.88)
    assert display.ratio(-4.215234) == dg.MetadataValue.float(-4.22)
    assert display.money(941174.404999) == dg.MetadataValue.float(941174.4)
    assert display.money(-0.001) == dg.MetadataValue.float(0.0)  # no "-0"
    for missing in (None, math.nan, math.inf):
        assert display.percent(missing) == dg.MetadataValue.null()
        assert display.percent_text(missing) == "n/a"
    assert display.percent_text(-0.058825600150055335) == "-5.88 %"
    assert display.money_text(1234567.891) == "1,234,567.89"
    assert display.money_text(-0.001) == "0.00"


def test_summary_and_attribution_headlines_are_rounded_from_the_stored_months(
    pipeline: Pipeline,
) -> None:
    pipeline.run("inputs_job")
    for month in (JAN, FEB):
        pipeline.run("backtest_job", MonthKey(month, "core").key)
    pipeline.run("summary_job", "core")
    months = [pipeline.backtest(MonthKey(m, "core")) for m in (JAN, FEB)]
    initial = float(json.loads(months[0].texts[PARTITION_FILE])["start_equity"])
    curve = pl.concat([m.tables["equity"]["equity"] for m in months]).to_list()
    peak, worst = initial, 0.0
    for value in curve:
        peak = max(peak, value)
        worst = min(worst, value / peak - 1.0)

    meta = _latest(pipeline, "performance_summary", "core")
    assert _value(meta, "final_equity") == round(curve[-1], 2)
    assert _value(meta, "initial_cash") == round(initial, 2)
    assert _value(meta, "return_pct") == round(100.0 * (curve[-1] / initial - 1.0), 2)
    assert _value(meta, "max_drawdown_pct") == round(100.0 * worst, 2)
    for name in ("sharpe", "sortino"):
        ratio = _value(meta, name)
        assert isinstance(ratio, float)
        assert math.isfinite(ratio)
        assert ratio == round(ratio, 2)
    by_month = str(_value(meta, "by_month"))
    for tables in months:
        start = float(json.loads(tables.texts[PARTITION_FILE])["start_equity"])
        end = float(tables.tables["equity"]["equity"][-1])
        assert f"| {100.0 * (end / start - 1.0):.2f} % |" in by_month
        assert f"| {end:,.2f} |" in by_month
    assert "](data:image/png;base64," in str(_value(meta, "equity_curve"))
    # the default equal-weight benchmark over both months, from the months' benchmark column
    bench = pl.concat([m.tables["equity"]["benchmark"] for m in months]).to_list()
    assert _value(meta, "benchmark") == "equal_weight"
    assert _value(meta, "benchmark_return_pct") == round(100.0 * (bench[-1] / initial - 1.0), 2)
    excess = (curve[-1] / initial - 1.0) - (bench[-1] / initial - 1.0)
    assert _value(meta, "excess_return_pct") == round(100.0 * excess, 2)
    beta = _value(meta, "beta")
    assert isinstance(beta, float)
    assert math.isfinite(beta)
    report = Path(str(_value(meta, "report")))
    assert report == pipeline.storage / "performance_summary" / "core.report.html"
    page = report.read_text(encoding="utf-8")
    assert "<h1>core, all months</h1>" in page
    assert f"final equity {curve[-1]:,.2f}" in page
    assert "<th>Benchmark (equal_weight)</th>" in page
    assert _value(meta, "report_url") == report.as_uri()

    trades = pipeline.backtest(MonthKey(FEB, "core")).tables["trades"]
    closed = trades.filter(pl.col("exit_reason") != "open")
    still_open = trades.filter(pl.col("exit_reason") == "open")
    attribution = _latest(pipeline, "trade_attribution", MonthKey(FEB, "core").key)
    assert _value(attribution, "realised_pnl") == round(float(closed["pnl"].sum()), 2)
    assert _value(attribution, "unrealised_pnl_open") == round(float(still_open["pnl"].sum()), 2)
    assert _value(attribution, "open_positions") == still_open.height
    assert " %" in str(_value(attribution, "attribution"))


def _summary_status(pipeline: Pipeline) -> dict[str, tuple[StaleStatus, list[str]]]:
    resolver = CachingStaleStatusResolver(
        pipeline.instance,
        asset_graph=pipeline.defs.resolve_asset_graph(),
        loading_context=LoadingContextForTest(pipeline.instance),
    )
    return {
        universe: (
            resolver.get_status(SUMMARY, universe),
            [
                str(cause.dependency.partition_key)
                for cause in resolver.get_stale_causes(SUMMARY, universe)
                if cause.dependency is not None
            ],
        )
        for universe in ("core", "liquid")
    }


def test_performance_summary_goes_stale_when_a_month_of_its_universe_changes(
    pipeline: Pipeline,
) -> None:
    graph = pipeline.defs.resolve_asset_graph()
    mapping = graph.get(SUMMARY).partition_mappings[dg.AssetKey("backtest")]
    assert isinstance(mapping, dg.MultiToSingleDimensionPartitionMapping)
    assert mapping.partition_dimension_name == "universe"
    pipeline.run("inputs_job")
    for key in (MonthKey(JAN, "core"), MonthKey(FEB, "core"), MonthKey(JAN, "liquid")):
        pipeline.run("backtest_job", key.key)
    pipeline.run("summary_job", "core")
    pipeline.run("summary_job", "liquid")
    assert _summary_status(pipeline) == {
        "core": (StaleStatus.FRESH, []),
        "liquid": (StaleStatus.FRESH, []),
    }
    # the same month again, same code and inputs: same data version, nothing goes stale
    pipeline.run("backtest_job", MonthKey(FEB, "core").key)
    assert _summary_status(pipeline)["core"] == (StaleStatus.FRESH, [])
    # a month whose data changed (here stamped by hand with a new data version)
    pipeline.instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="backtest",
            partition=MonthKey(FEB, "core").key,
            tags={"dagster/data_version": "changed-by-the-test"},
        )
    )
    assert _summary_status(pipeline) == {
        "core": (StaleStatus.STALE, [MonthKey(FEB, "core").key]),
        "liquid": (StaleStatus.FRESH, []),
    }


def test_a_failed_contract_says_what_failed_in_one_line_and_lists_it_in_a_table(
    sample_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("signals", "context"):
        (bad / f"{name}.parquet").write_bytes((sample_dir / f"{name}.parquet").read_bytes())
    prices = pl.read_parquet(sample_dir / "prices.parquet").with_row_index()
    broken = prices.with_columns(
        pl.when(pl.col("index").is_in([10, 20, 30]))
        .then(pl.col("low") - 1.0)
        .otherwise(pl.col("high"))
        .alias("high")
    ).drop("index")
    pl.concat([broken, broken.head(1)]).write_parquet(bad / "prices.parquet")
    with temp_instance(tmp_path / "home") as instance:
        result = make_pipeline(bad, tmp_path, instance).run("inputs_job", raise_on_error=False)
    contract = {c.check_name: c for c in result.get_asset_check_evaluations()}["prices_contract"]
    assert not contract.passed
    table = contract.metadata["failures"]
    assert isinstance(table, dg.TableMetadataValue)
    errors = [r.data for r in table.records if r.data["severity"] == "error"]
    assert {r["rule"] for r in errors} >= {"high_below_low", "duplicate_key"}
    description = str(contract.description)
    assert "\n" not in description
    assert len(description) <= SUMMARY_CHARS
    assert description.startswith(f"{len(errors)} error{'s' if len(errors) > 1 else ''}, ")
    assert "high_below_low (prices.parquet column 'high', 3 rows)" in description
    actions = {c.check_name: c for c in result.get_asset_check_evaluations()}[
        "corporate_actions_contract"
    ]
    assert actions.passed
    assert actions.description == "passed: no corporate actions, none are applied"


def test_many_breaches_read_as_one_line_with_every_breach_in_the_table() -> None:
    breaches = [
        Breach(rule=f"rule_{i}", n_rows=i + 1, detail="x" * 80, examples=(f"row {i}",))
        for i in range(5)
    ]
    result = breach_result("ledger_reconciles", breaches, rows_checked=1234)
    description = str(result.description)
    assert description.startswith("5 rules broken, 1,234 rows checked: rule_0 (1 row): x")
    assert description.endswith("; +4 more")  # the table has them all
    assert "\n" not in description
    assert len(description) <= SUMMARY_CHARS
    long = breach_result("no_nan_equity", [Breach(rule="r", n_rows=1, detail="y" * 999)], 1)
    assert len(str(long.description)) <= SUMMARY_CHARS + len("… (1043 characters)")
    table = result.metadata["breaches"]
    assert isinstance(table, dg.TableMetadataValue)
    assert [(r.data["rule"], r.data["n_rows"], r.data["examples"]) for r in table.records] == [
        (f"rule_{i}", i + 1, f"row {i}") for i in range(5)
    ]
    clean = breach_result("ledger_reconciles", [], rows_checked=3)
    assert clean.passed
    assert clean.description == "passed: 3 rows checked, every rule holds"


def test_every_asset_has_its_owner_kinds_code_version_and_description(pipeline: Pipeline) -> None:
    graph = pipeline.defs.resolve_asset_graph()
    names = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert names == set(ASSET_CATALOG)
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        entry = ASSET_CATALOG[key.to_user_string()]
        assert node.owners == [OWNER], key
        assert node.kinds == set(entry.kinds), key
        assert node.code_version is not None, key
        # the code's digest, then (backtest, feature_table) the version the asset declares
        assert node.code_version.split("+")[0] == code_version(entry.modules), key
        assert node.description, key
    for check_key in graph.asset_check_keys:
        assert graph.get_check_spec(check_key).description, check_key.name
    pipeline.run("inputs_job")
    pipeline.run("backtest_job", MonthKey(JAN, "core").key)
    event = pipeline.instance.get_latest_materialization_event(dg.AssetKey("backtest"))
    assert event is not None
    assert event.asset_materialization is not None
    tags = event.asset_materialization.tags or {}
    assert tags["dagster/code_version"] == graph.get(dg.AssetKey("backtest")).code_version


def test_the_unpartitioned_checks_run_on_their_own_as_the_ui_runs_them(pipeline: Pipeline) -> None:
    """The UI's "Execute" on a check launches the asset job with that check alone."""
    pipeline.run("inputs_job")
    job = pipeline.defs.resolve_implicit_global_asset_job_def()
    contracts = [
        key
        for key in pipeline.defs.resolve_asset_graph().asset_check_keys
        if key.asset_key.to_user_string().startswith("validated_")
    ]
    assert len(contracts) == 4
    for key in contracts:
        result = job.get_subset(
            asset_selection=set(), asset_check_selection={key}
        ).execute_in_process(instance=pipeline.instance, run_config=QUIET)
        assert [(e.check_name, e.passed) for e in result.get_asset_check_evaluations()] == [
            (key.name, True)
        ]
        assert result.get_asset_materialization_events() == []


_VERSION_PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
from ml4t_pipeline.pipeline.catalog import ASSET_CATALOG, code_version
print(code_version(["probe"]), *(code_version(e.modules) for e in ASSET_CATALOG.values()))
"""

_PROBE = '''
"""Module docstring."""
LIMIT = 3
NAMES = frozenset({"a", "b", "c", "d"})


def f(x):
    """Docstring."""
    return x * LIMIT if x in {"a", "b"} else None
'''


def _versions(module_dir: Path, seed: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _VERSION_PROBE, str(module_dir)],
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.split()


@pytest.mark.parametrize(
    ("edit", "changes"),
    [
        (
            lambda s: s.replace('"""Docstring."""', '"""Another docstring."""\n    # a comment'),
            False,
        ),
        (lambda s: "\n\n" + s.replace("LIMIT = 3", "LIMIT = 3  # moved down"), False),
        (lambda s: s.replace("LIMIT = 3", "LIMIT = 4"), True),
        (lambda s: s.replace("x * LIMIT", "x + LIMIT"), True),
        (lambda s: s.replace('{"a", "b"}', '{"a", "c"}'), True),
    ],
)
def test_a_code_version_follows_what_the_code_does_in_every_process(
    tmp_path: Path, edit: object, changes: bool
) -> None:
    assert callable(edit)
    source = textwrap.dedent(_PROBE)
    (tmp_path / "probe.py").write_text(source)
    before = _versions(tmp_path, "1")
    assert _versions(tmp_path, "2") == before  # set constants and string hashing do not matter
    (tmp_path / "probe.py").write_text(edit(source))
    after = _versions(tmp_path, "3")
    assert after[1:] == before[1:]
    assert (after[0] != before[0]) is changes
