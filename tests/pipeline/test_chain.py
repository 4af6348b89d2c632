"""The partitioned chain in a real instance: one month, three months x two universes, the
month-by-month results against one engine run over the whole period, and the failure modes
(a missing previous month, inputs that were never validated)."""

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from ml4t_pipeline.engine import ATTRIBUTION_DIMENSIONS, EngineState
from ml4t_pipeline.errors import StateError
from ml4t_pipeline.pipeline.assets.summary import contiguous_months
from ml4t_pipeline.pipeline.chain import config_code_version
from ml4t_pipeline.pipeline.definitions import build_defs
from ml4t_pipeline.pipeline.demo import failure_lines
from ml4t_pipeline.pipeline.partitions import MonthKey, load_partition_spec
from ml4t_pipeline.pipeline.resources import BacktestConfigResource, ResultStore
from tests.invariants import check_backtest_tables
from tests.pipeline.conftest import (
    FEB,
    JAN,
    MAR,
    Pipeline,
    make_pipeline,
    materialized,
    temp_instance,
    universe_prices,
)
from tests.pipeline.one_run import one_engine_run, universe_assets

REPO = Path(__file__).resolve().parents[2]

MONTHS = (JAN, FEB, MAR)
SPEC = load_partition_spec()
UNIVERSES = tuple(SPEC.universes)
INITIAL_CASH = BacktestConfigResource().run_config().execution.initial_cash


@dataclass
class Chain:
    pipeline: Pipeline
    inputs: dg.ExecuteInProcessResult
    runs: dict[MonthKey, dg.ExecuteInProcessResult]
    summaries: dict[str, dg.ExecuteInProcessResult]


@pytest.fixture(scope="module")
def chain(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """inputs_job, then backtest_job for 3 months of each universe (in order), then summaries."""
    home = tmp_path_factory.mktemp("chain")
    with temp_instance(home / "home") as instance:
        pipeline = make_pipeline(sample_dir, home, instance)
        inputs = pipeline.run("inputs_job")
        runs = {}
        for universe in UNIVERSES:
            for month in MONTHS:
                key = MonthKey(month, universe)
                runs[key] = pipeline.run("backtest_job", key.key)
        summaries = {u: pipeline.run("summary_job", u) for u in UNIVERSES}
        yield Chain(pipeline, inputs, runs, summaries)


def _assets(universe: str, data_dir: Path) -> list[str]:
    return universe_assets(SPEC, universe, MONTHS, data_dir)


def _chained(chain: Chain, universe: str, table: str) -> pl.DataFrame:
    return pl.concat([chain.pipeline.backtest(MonthKey(m, universe)).tables[table] for m in MONTHS])


def test_one_partition_runs_the_whole_chain_with_every_check_passing(chain: Chain) -> None:
    assert chain.inputs.success
    assert {c.check_name for c in chain.inputs.get_asset_check_evaluations() if c.passed} == {
        "prices_contract",
        "signals_contract",
        "context_contract",
        "corporate_actions_contract",  # passes without a corporate_actions.parquet
    }
    first = MonthKey(JAN, "core")
    run = chain.runs[first]
    assert materialized(run) == {"feature_table", "backtest", "trade_attribution"}
    checks = {c.check_name: c.passed for c in run.get_asset_check_evaluations()}
    assert checks == {
        "no_look_ahead": True,
        "ledger_reconciles": True,
        "no_nan_equity": True,
        "fills_inside_bars": True,
    }
    meta = run.asset_materializations_for_node("backtest")[0].metadata
    for name in ("final_equity", "return_pct", "sharpe", "max_drawdown_pct", "trades_closed"):
        assert name in meta
    assert meta["final_equity"].value == round(meta["final_equity"].value, 2)  # type: ignore[arg-type]
    assert "| return |" in str(meta["headline"].value)
    assert "equity_curve" not in meta  # the per-month asset draws no chart (matplotlib costs)
    assert isinstance(meta["top_trades"], dg.TableMetadataValue)
    tables = chain.pipeline.backtest(first)
    prices = universe_prices(chain.pipeline.data_dir, _assets("core", chain.pipeline.data_dir))
    check_backtest_tables(
        fills=tables.tables["fills"],
        equity=tables.tables["equity"],
        prices=prices,
        initial_cash=INITIAL_CASH,
        summary=json.loads(tables.texts["summary.json"]),
    )


def test_three_months_of_two_universes_chain_month_to_month(chain: Chain) -> None:
    store = ResultStore(base_dir=str(chain.pipeline.storage))
    for universe in UNIVERSES:
        assert store.stored_months(universe) == list(MONTHS)
        previous: EngineState | None = None
        for month in MONTHS:
            tables = chain.pipeline.backtest(MonthKey(month, universe))
            start = json.loads(tables.texts["partition.json"])
            if previous is None:
                assert start["continued_from"] is None
                assert start["start_cash"] == INITIAL_CASH
            else:
                assert start["continued_from"] == MonthKey(month, universe).previous().key
                assert start["start_cash"] == previous.cash
                assert start["start_equity"] == previous.prev_equity
            equity = tables.tables["equity"]["timestamp"]
            assert equity.min() >= dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)  # type: ignore[operator]
            previous = EngineState.from_json(tables.texts["state.json"])
        prices = universe_prices(
            chain.pipeline.data_dir, _assets(universe, chain.pipeline.data_dir)
        )
        check_backtest_tables(
            fills=_chained(chain, universe, "fills"),
            equity=_chained(chain, universe, "equity"),
            prices=prices,
            initial_cash=INITIAL_CASH,
            final_cash=previous.cash if previous else None,
        )
        for month in MONTHS:
            key = MonthKey(month, universe)
            trades = chain.pipeline.backtest(key).tables["trades"]
            realised = float(trades.filter(pl.col("exit_reason") != "open")["pnl"].sum())
            attribution = pl.read_parquet(
                chain.pipeline.storage
                / "trade_attribution"
                / f"month={month}"
                / f"universe={universe}.parquet"
            )
            sums = dict(attribution.group_by("dimension").agg(pl.col("pnl").sum()).iter_rows())
            for dimension in ATTRIBUTION_DIMENSIONS:  # every dimension splits the same realised P&L
                assert sums.get(dimension, 0.0) == pytest.approx(realised)
        summary = chain.summaries[universe].output_for_node("performance_summary")
        assert summary["month"].to_list() == list(MONTHS)
        assert summary["end_equity"][-1] == _chained(chain, universe, "equity")["equity"][-1]


@pytest.mark.parametrize("universe", UNIVERSES)
def test_chained_months_equal_one_run_over_the_whole_period(chain: Chain, universe: str) -> None:
    data = chain.pipeline.data_dir
    full = one_engine_run(SPEC, universe, MONTHS, data, end=dt.datetime(2024, 4, 1, tzinfo=dt.UTC))
    equity = _chained(chain, universe, "equity")
    fills = _chained(chain, universe, "fills")
    assert equity.equals(full.equity)
    assert fills.equals(full.fills)
    last = chain.pipeline.backtest(MonthKey(MAR, universe))
    assert float(json.loads(last.texts["summary.json"])["final_equity"]) == full.final_equity
    closed = _chained(chain, universe, "trades").filter(pl.col("exit_reason") != "open")
    assert closed.drop("entry_time").equals(
        full.trades.filter(pl.col("exit_reason") != "open").drop("entry_time")
    )


def test_the_summary_needs_months_without_a_gap() -> None:
    assert contiguous_months([JAN, FEB], "core", JAN) == [JAN, FEB]
    with pytest.raises(StateError, match="2024-02-01 is missing"):
        contiguous_months([JAN, MAR], "core", JAN)
    with pytest.raises(StateError, match="from 2023-12-01 without a gap"):
        contiguous_months([JAN], "core", dt.date(2023, 12, 1))
    with pytest.raises(StateError, match="no stored backtest months"):
        contiguous_months([], "core", JAN)


def test_a_missing_previous_month_is_a_clear_error(pipeline: Pipeline) -> None:
    pipeline.run("inputs_job")
    march = MonthKey(MAR, "core")
    result = pipeline.run("backtest_job", march.key, raise_on_error=False)
    assert not result.success
    message = "\n".join(failure_lines(result))
    assert "month 2024-02-01|core (the month before it, universe 'core') is not stored" in message
    assert materialized(result).isdisjoint({"backtest", "trade_attribution"})
    # backtest retries transient errors once (its RetryPolicy); a gap is not retried
    assert [e.step_key for e in result.all_events if e.is_step_failure] == ["backtest"]
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_backtests_need_materialized_inputs(pipeline: Pipeline) -> None:
    result = pipeline.run("backtest_job", MonthKey(JAN, "core").key, raise_on_error=False)
    assert not result.success
    message = "\n".join(failure_lines(result))
    assert "has not been materialized" in message
    assert result.get_asset_materialization_events() == []


def test_rematerializing_a_month_makes_later_months_stale_and_refused(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.run("inputs_job")
    jan, feb, mar = (MonthKey(m, "core") for m in (JAN, FEB, MAR))
    for key in (jan, feb, mar):
        pipeline.run("backtest_job", key.key)
    store = ResultStore(base_dir=str(pipeline.storage))
    config = BacktestConfigResource()
    fingerprint = config.fingerprint("core", corporate_actions=False)
    assert store.stale_months("core", start_month=JAN, fingerprint=fingerprint) == []
    # identical inputs give an identical state: nothing later becomes stale
    assert pipeline.run("backtest_job", jan.key).success
    assert store.stale_months("core", start_month=JAN, fingerprint=fingerprint) == []

    # a different run config: every stored month was built under another fingerprint
    raw = yaml.safe_load((REPO / "configs" / "pipeline.yaml").read_text())
    raw["execution"]["initial_cash"] = 2_000_000
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    changed = Pipeline(
        defs=build_defs(
            data_dir=str(pipeline.data_dir),
            storage_dir=str(pipeline.storage),
            run_config_path=str(tmp_path / "pipeline.yaml"),
        ),
        instance=pipeline.instance,
        storage=pipeline.storage,
        data_dir=pipeline.data_dir,
    )
    result = changed.run("backtest_job", mar.key, raise_on_error=False)
    assert not result.success
    message = "\n".join(failure_lines(result))
    assert f"month {jan} it was built under another run config" in message
    assert f"re-materialize backtest from {jan}" in message

    # January re-run under the new config: February and March are stale (transitively)
    assert changed.run("backtest_job", jan.key).success
    new = BacktestConfigResource(run_config_path=str(tmp_path / "pipeline.yaml"))
    new_fingerprint = new.fingerprint("core", corporate_actions=False)
    assert new_fingerprint != fingerprint
    assert store.stale_months("core", start_month=JAN, fingerprint=new_fingerprint) == [feb, mar]
    result = changed.run(
        "backtest_job", MonthKey(dt.date(2024, 4, 1), "core").key, raise_on_error=False
    )
    assert not result.success
    assert f"month {feb} it was built under another run config" in "\n".join(failure_lines(result))
    # re-running in order clears it
    assert changed.run("backtest_job", feb.key).success
    assert changed.run("backtest_job", mar.key).success
    assert store.stale_months("core", start_month=JAN, fingerprint=new_fingerprint) == []


@pytest.mark.parametrize(
    "change",
    [
        {"benchmark": {"asset": "A0003"}},
        {"benchmark": {"kind": "none"}},
        {"benchmark": {"context": "vix"}},
        {"metrics": {"periods_per_year": 365}},
    ],
)
def test_a_changed_benchmark_or_annualization_changes_the_fingerprint(
    tmp_path: Path, change: dict[str, object]
) -> None:
    # (a stored month built under the old one is then stale: the rule above)
    raw = yaml.safe_load((REPO / "configs" / "pipeline.yaml").read_text())
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(raw | change))
    before = BacktestConfigResource()
    after = BacktestConfigResource(run_config_path=str(tmp_path / "pipeline.yaml"))
    assert after.fingerprint("core", corporate_actions=False) != before.fingerprint(
        "core", corporate_actions=False
    )
    assert config_code_version(after.run_config(), SPEC) != config_code_version(
        before.run_config(), SPEC
    )
