"""The month chain as Dagster sees it, in a real instance: single-run ranges (a backfill's run),
gaps, re-execution from failure, lineage refusals (tampered state, failed checks), staleness
in Dagster's own terms, bounded months, point-in-time universes, the automation condition,
one-version reads under concurrent writes, debris, and the instance settings."""

import datetime as dt
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from ml4t_pipeline.pipeline import checks
from ml4t_pipeline.pipeline.checks import Breach
from ml4t_pipeline.pipeline.definitions import build_defs
from ml4t_pipeline.pipeline.demo import failure_lines
from ml4t_pipeline.pipeline.io_manager import (
    TableSet,
    read_table_set,
    remove_debris,
    write_table_set_atomic,
)
from ml4t_pipeline.pipeline.layout import PARTITION_FILE, STATE_FILE, StorageLayout
from ml4t_pipeline.pipeline.partitions import CONFIG_DIR_ENV, MonthKey, Universe
from ml4t_pipeline.pipeline.resources import BacktestConfigResource
from tests.invariants import check_backtest_tables
from tests.pipeline.conftest import (
    FEB,
    JAN,
    MAR,
    QUIET,
    Pipeline,
    make_pipeline,
    materialized,
    temp_instance,
    universe_prices,
)

REPO = Path(__file__).resolve().parents[2]
CHAIN = ["feature_table", "backtest", "trade_attribution"]
APR = dt.date(2024, 4, 1)


def run_range(
    pipeline: Pipeline, first: MonthKey, last: MonthKey, *, raise_on_error: bool = True
) -> dg.ExecuteInProcessResult:
    """One run over months first..last of one universe: what a single-run backfill launches."""
    return pipeline.defs.resolve_job_def("backtest_job").execute_in_process(
        run_config=QUIET,
        instance=pipeline.instance,
        tags={
            "dagster/asset_partition_range_start": first.key,
            "dagster/asset_partition_range_end": last.key,
        },
        raise_on_error=raise_on_error,
    )


@pytest.fixture
def ready(pipeline: Pipeline) -> Pipeline:
    assert pipeline.run("inputs_job").success
    return pipeline


def _failure(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(failure_lines(result))


def test_a_range_run_chains_its_months_like_runs_month_by_month(
    ready: Pipeline, sample_dir: Path, tmp_path: Path
) -> None:
    keys = [MonthKey(m, "liquid") for m in (JAN, FEB, MAR)]
    result = run_range(ready, keys[0], keys[-1])
    assert {
        (e.materialization.asset_key.to_user_string(), e.materialization.partition)
        for e in result.get_asset_materialization_events()
    } == {(asset, k.key) for asset in CHAIN for k in keys}
    with temp_instance(tmp_path / "other") as instance:
        one_by_one = make_pipeline(sample_dir, tmp_path / "other", instance)
        one_by_one.run("inputs_job")
        for key in keys:
            assert one_by_one.run("backtest_job", key.key).success
        for key in keys:
            ranged, single = ready.backtest(key), one_by_one.backtest(key)
            for name in ("equity", "fills", "trades", "orders", "rejections"):
                assert ranged.tables[name].equals(single.tables[name]), (key, name)
            assert ranged.texts[STATE_FILE] == single.texts[STATE_FILE]
    # each month's metadata is its own: headline numbers and the universe it traded
    meta = {
        e.materialization.partition: e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey("backtest")
    }
    assert meta[keys[0].key]["continued_from"].value == "fresh start"
    assert meta[keys[2].key]["continued_from"].value == keys[1].key
    equity = pl.concat([ready.backtest(k).tables["equity"] for k in keys])
    fills = pl.concat([ready.backtest(k).tables["fills"] for k in keys])
    assets = sorted(set(fills["asset_id"].to_list()) | {"A0000"})
    check_backtest_tables(
        fills=fills,
        equity=equity,
        prices=universe_prices(ready.data_dir, assets),
        initial_cash=BacktestConfigResource().run_config().execution.initial_cash,
    )


def test_a_range_after_a_gap_fails_once_naming_the_month_to_run(ready: Pipeline) -> None:
    result = run_range(ready, MonthKey(FEB, "core"), MonthKey(MAR, "core"), raise_on_error=False)
    assert not result.success
    assert "month 2024-01-01|core (the month before it, universe 'core') is not stored" in (
        _failure(result)
    )
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert "backtest" not in materialized(result)


def test_a_failed_month_inside_a_range_stops_the_months_after_it(
    ready: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = checks.ledger_breaches
    planted = Breach(rule="cash_reconciles", n_rows=1, detail="planted by the test")

    def broken_in_february(tables: TableSet) -> list[Breach]:
        month = json.loads(tables.texts[PARTITION_FILE])["month"]
        return [planted] if month == FEB.isoformat() else real(tables)

    monkeypatch.setattr(checks, "ledger_breaches", broken_in_february)
    result = run_range(ready, MonthKey(JAN, "core"), MonthKey(MAR, "core"), raise_on_error=False)
    assert not result.success
    message = _failure(result)
    assert "backtest partition 2024-02-01|core failed its bookkeeping" in message
    assert "re-run from 2024-02-01|core" in message
    assert "backtest" not in materialized(result)


def test_a_failed_blocking_check_on_a_month_stops_the_next_month(
    ready: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    jan, feb = MonthKey(JAN, "core"), MonthKey(FEB, "core")
    broken = [Breach(rule="cash_reconciles", n_rows=1, detail="planted by the test")]
    monkeypatch.setattr(checks, "ledger_breaches", lambda tables: broken)
    first = ready.run("backtest_job", jan.key, raise_on_error=False)
    assert materialized(first) == {"feature_table", "backtest"}  # stored, check failed
    monkeypatch.undo()
    result = ready.run("backtest_job", feb.key, raise_on_error=False)
    assert not result.success
    assert f"month {jan} blocking check(s) failed on it: ledger_reconciles" in _failure(result)
    # re-materializing January (its checks pass now) lets February continue
    assert ready.run("backtest_job", jan.key).success
    assert ready.run("backtest_job", feb.key).success


def test_a_tampered_state_is_refused_naming_the_month(ready: Pipeline) -> None:
    jan, feb, mar = (MonthKey(m, "core") for m in (JAN, FEB, MAR))
    assert run_range(ready, jan, feb).success
    state = ready.storage / "backtest" / f"month={JAN}" / "universe=core" / STATE_FILE
    text = state.read_text()
    cash = json.loads(text)["cash"]
    state.write_text(text.replace(json.dumps(cash), json.dumps(cash + 1000.0), 1))
    result = ready.run("backtest_job", mar.key, raise_on_error=False)
    assert not result.success
    assert f"month {jan} its state.json does not match the sha256" in _failure(result)


def test_reexecution_from_failure_reloads_every_input_from_storage(
    ready: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML4T_DATA_DIR", str(ready.data_dir))
    monkeypatch.setenv("ML4T_STORAGE_DIR", str(ready.storage))
    job = dg.reconstructable(_backtest_job)
    feb = MonthKey(FEB, "core")
    tags = {"dagster/partition": feb.key}
    with dg.execute_job(job, instance=ready.instance, tags=tags, run_config=QUIET) as failed:
        assert not failed.success  # January is not stored yet
        assert "feature_table" in materialized_keys(failed)
    assert ready.run("backtest_job", MonthKey(JAN, "core").key).success
    options = dg.ReexecutionOptions.from_failure(failed.run_id, ready.instance)
    with dg.execute_job(
        job, instance=ready.instance, reexecution_options=options, run_config=QUIET, tags=tags
    ) as again:
        assert again.success
        assert materialized_keys(again) == {"backtest", "trade_attribution"}


def materialized_keys(result: Any) -> set[str]:
    return {
        e.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key is not None
    }


def _backtest_job() -> dg.JobDefinition:
    """backtest_job of the definitions the environment names (reconstructable)."""
    return build_defs().resolve_job_def("backtest_job")


def test_a_config_change_makes_every_stored_month_stale_in_dagster(
    ready: Pipeline, tmp_path: Path
) -> None:
    assert run_range(ready, MonthKey(JAN, "core"), MonthKey(FEB, "core")).success
    raw = yaml.safe_load((REPO / "configs" / "pipeline.yaml").read_text())
    raw["risk"] = [{"rule": "stop_loss", "pct": 0.08}]
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(raw))

    def status(defs: dg.Definitions, month: dt.date) -> StaleStatus:
        resolver = CachingStaleStatusResolver(
            ready.instance, defs.resolve_asset_graph(), LoadingContextForTest(ready.instance)
        )
        return resolver.get_status(dg.AssetKey("backtest"), MonthKey(month, "core").key)

    same = build_defs(data_dir=str(ready.data_dir), storage_dir=str(ready.storage))
    changed = build_defs(
        data_dir=str(ready.data_dir),
        storage_dir=str(ready.storage),
        run_config_path=str(tmp_path / "pipeline.yaml"),
    )
    assert status(same, JAN) == StaleStatus.FRESH
    assert status(changed, JAN) == StaleStatus.STALE
    assert status(changed, FEB) == StaleStatus.STALE


def test_the_month_axis_ends_with_the_data_or_end_month(sample_dir: Path, tmp_path: Path) -> None:
    last = pl.read_parquet(sample_dir / "prices.parquet")["timestamp"].max()
    assert isinstance(last, dt.datetime)
    months = build_defs(data_dir=str(sample_dir)).resolve_assets_def("backtest").partitions_def
    assert months is not None
    keys = months.get_partition_keys()
    assert keys[-1].startswith(f"{last:%Y-%m}-01|")
    assert len(keys) == 2 * (last.month - JAN.month + 1)  # 2 universes, Jan .. the last month
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "pipeline.yaml").write_text((REPO / "configs" / "pipeline.yaml").read_text())
    (configs / "universes.yaml").write_text(
        "start_month: '2024-01-01'\nend_month: '2024-02-01'\nuniverses: {solo: [A0001]}\n"
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv(CONFIG_DIR_ENV, str(configs))
        defs = build_defs(data_dir=str(sample_dir))
    bounded = defs.resolve_assets_def("backtest").partitions_def
    assert bounded is not None
    assert bounded.get_partition_keys() == ["2024-01-01|solo", "2024-02-01|solo"]
    assert defs.resources is not None
    resource = defs.resources["backtest_config"]
    assert isinstance(resource, BacktestConfigResource)
    assert resource.universes_file() == configs / "universes.yaml"


def test_a_dollar_volume_universe_is_formed_on_the_bars_before_each_month(
    ready: Pipeline,
) -> None:
    rule = BacktestConfigResource().universe("liquid")
    assert rule.top_n_dollar_volume is not None
    prices = pl.read_parquet(ready.data_dir / "prices.parquet")
    result = run_range(ready, MonthKey(JAN, "liquid"), MonthKey(MAR, "liquid"))
    meta = {
        e.materialization.partition: e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey("feature_table")
    }
    chosen = {}
    for month in (FEB, MAR):
        start = dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)
        bars = sorted(set(prices.filter(pl.col("timestamp") < start)["timestamp"].to_list()))
        window = bars[-rule.formation_bars :]
        volume: dict[str, float] = {}
        for row in prices.filter(pl.col("timestamp").is_in(window)).iter_rows(named=True):
            volume[row["asset_id"]] = (
                volume.get(row["asset_id"], 0.0) + row["close"] * row["volume"]
            )
        ranked = sorted(volume, key=lambda a: (-volume[a], a))[: rule.top_n_dollar_volume]
        chosen[month] = sorted(ranked)
        shown = meta[MonthKey(month, "liquid").key]
        assert shown["universe_assets"].value == ", ".join(chosen[month])
        assert str(shown["formation_window"].value).startswith(f"{window[0]:%Y-%m-%d} .. ")
        features = pl.read_parquet(
            ready.storage / "feature_table" / f"month={month}" / "universe=liquid.parquet"
        )
        with_signals = features.filter(pl.col("signals").is_not_null())["asset_id"].unique()
        assert set(with_signals.to_list()) <= set(chosen[month])
    assert chosen[FEB] != chosen[MAR]  # the membership moves with the volume (mixed scenario)
    january = meta[MonthKey(JAN, "liquid").key]
    assert "reaches into the month" in str(january["formation_window"].value)


def _configs(tmp_path: Path, end_month: str | None) -> Path:
    configs = tmp_path / f"configs-{end_month}"
    configs.mkdir()
    (configs / "pipeline.yaml").write_text((REPO / "configs" / "pipeline.yaml").read_text())
    raw = yaml.safe_load((REPO / "configs" / "universes.yaml").read_text())
    if end_month is not None:
        raw["end_month"] = end_month
    (configs / "universes.yaml").write_text(yaml.safe_dump(raw))
    return configs


@pytest.mark.filterwarnings("ignore:Parameter `include_sources`:dagster.BetaWarning")
def test_a_new_month_materializes_once_its_data_and_the_previous_month_are_stored(
    ready: Pipeline, tmp_path: Path
) -> None:
    """Data through April, then May arrives (the code location reloads with a longer month
    axis): May's features are requested at once, May's backtest once April is stored."""

    def defs_until(end_month: str | None) -> dg.Definitions:
        return build_defs(
            data_dir=str(ready.data_dir),
            storage_dir=str(ready.storage),
            config_dir=str(_configs(tmp_path, end_month)),
        )

    def requested(defs: dg.Definitions, cursor: Any) -> tuple[set[tuple[str, str]], Any]:
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=ready.instance, cursor=cursor
        )
        keys = {
            (key.to_user_string(), str(partition))
            for key in (dg.AssetKey("feature_table"), dg.AssetKey("backtest"))
            for partition in result.get_requested_partitions(key)
        }
        return keys, result.cursor

    april = defs_until("2024-04-01")
    before, cursor = requested(april, None)
    assert before == set()  # nothing new: the months there were are not "arrivals"
    may = defs_until(None)
    assert may.resolve_assets_def("backtest").partitions_def is not None
    arrived, cursor = requested(may, cursor)
    assert arrived == {("feature_table", "2024-05-01|core"), ("feature_table", "2024-05-01|liquid")}
    may.resolve_job_def("backtest_job").execute_in_process(
        run_config=QUIET,
        instance=ready.instance,
        partition_key="2024-05-01|core",
        asset_selection=[dg.AssetKey("feature_table")],
    )
    waiting, cursor = requested(may, cursor)
    assert waiting == set()  # April of core is not stored yet
    core = [MonthKey(m, "core") for m in (JAN, FEB, MAR, APR)]
    assert run_range(ready, core[0], core[-1]).success
    ready_now, _ = requested(may, cursor)
    assert ready_now == {("backtest", "2024-05-01|core")}  # liquid's April is still missing


def test_concurrent_writers_never_show_a_reader_two_versions(tmp_path: Path) -> None:
    layout = StorageLayout(tmp_path / "store")
    target = layout.location(("backtest",), {"month": "2024-01-01", "universe": "core"})
    versions = layout.versions_dir(("backtest",))

    def version(n: int) -> TableSet:
        frame = pl.DataFrame({"v": [n] * 50})
        return TableSet(
            tables={"equity": frame, "fills": frame},
            texts={STATE_FILE: json.dumps({"v": n}), PARTITION_FILE: json.dumps({"v": n})},
        )

    write_table_set_atomic(version(0), target, versions=versions)
    stop = threading.Event()
    mixed: list[set[int]] = []
    reads = [0]

    def writer(offset: int) -> None:
        n = offset
        while not stop.is_set():
            n += 2
            write_table_set_atomic(version(n), target, versions=versions)

    def reader() -> None:
        while not stop.is_set():
            got = read_table_set(target)
            seen = {int(got.tables[t]["v"][0]) for t in ("equity", "fills")}
            seen |= {json.loads(got.texts[n])["v"] for n in (STATE_FILE, PARTITION_FILE)}
            reads[0] += 1
            if len(seen) != 1:
                mixed.append(seen)

    threads = [threading.Thread(target=writer, args=(k,)) for k in (0, 1)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(3.0)
    stop.set()
    for thread in threads:
        thread.join()
    assert reads[0] > 100
    assert mixed == []


def test_crash_debris_is_removed_once_old_and_live_versions_stay(tmp_path: Path) -> None:
    layout = StorageLayout(tmp_path / "store")
    target = layout.location(("backtest",), {"month": "2024-01-01", "universe": "core"})
    versions = layout.versions_dir(("backtest",))
    write_table_set_atomic(TableSet(tables={}, texts={"a": "1"}), target, versions=versions)
    orphan = versions / "universe=core.crashed"
    orphan.mkdir()
    (orphan / "equity.parquet").write_bytes(b"half")
    link = target.parent / ".universe=core.dead.link"
    link.symlink_to("nowhere")
    fresh = versions / "universe=core.in-progress"
    fresh.mkdir()
    old = time.time() - 7200
    for path in (orphan, link):
        os.utime(path, (old, old), follow_symlinks=False)
    removed = remove_debris(layout.location(("backtest",)), versions)
    assert sorted(p.name for p in removed) == sorted([orphan.name, link.name])
    assert fresh.is_dir()  # young: may be a write in progress
    assert read_table_set(target).texts == {"a": "1"}


def test_the_instance_settings_run_universes_in_parallel_and_never_retry_asset_failures(
    sample_dir: Path, tmp_path: Path
) -> None:
    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert settings["run_queue"]["max_concurrent_runs"] > 1
    assert settings["run_retries"]["retry_on_asset_or_op_failure"] is False
    assert settings["run_monitoring"]["enabled"] is True
    with dg.instance_for_test(overrides=settings) as instance:
        assert instance.run_retries_enabled
        assert instance.run_monitoring_enabled
        pipeline = make_pipeline(sample_dir, tmp_path, instance)
        pipeline.run("inputs_job")
        result = pipeline.run("backtest_job", MonthKey(MAR, "core").key, raise_on_error=False)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        assert run.tags.get("dagster/will_retry") == "false"
        assert run.tags.get("dagster/partition/universe") == "core"  # the concurrency key


def test_formation_of_explicit_ids_ignores_the_month() -> None:
    prices = pl.LazyFrame(
        {
            "timestamp": [dt.datetime(2024, 1, d, tzinfo=dt.UTC) for d in (1, 2)],
            "asset_id": ["A", "A"],
            "close": [1.0, 1.0],
            "volume": [1.0, 1.0],
        }
    )
    formation = Universe(name="x", asset_ids=("A",)).formation(
        prices, before=dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    )
    assert formation.members == ("A",)
    assert formation.window is None
