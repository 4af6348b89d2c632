"""Blocking checks: corrupted inputs stop the chain (in the run and in later runs), look-ahead
in a feature table fails, and each backtest bookkeeping rule catches its own breach."""

import datetime as dt
import json
import shutil
from dataclasses import replace
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml4t_pipeline.engine import run_backtest
from ml4t_pipeline.engine.config import RunConfig
from ml4t_pipeline.pipeline import checks
from ml4t_pipeline.pipeline.assets import (
    BACKTEST_ASSET_KEYS,
    INPUT_ASSET_KEYS,
    INPUT_ASSETS,
    build_assets,
)
from ml4t_pipeline.pipeline.assets.backtest import engine_frames
from ml4t_pipeline.pipeline.assets.features import build_feature_table
from ml4t_pipeline.pipeline.checks import (
    INPUT_CONTRACTS,
    Breach,
    backtest_bookkeeping,
    build_partitioned_checks,
    fill_breaches,
    ledger_breaches,
    nan_equity_breaches,
    no_look_ahead,
)
from ml4t_pipeline.pipeline.demo import failure_lines
from ml4t_pipeline.pipeline.io_manager import TableSet
from ml4t_pipeline.pipeline.layout import PARTITION_FILE
from ml4t_pipeline.pipeline.partitions import MonthKey, build_partitions, load_partition_spec
from ml4t_pipeline.pipeline.resources import BacktestConfigResource
from tests.pipeline.conftest import (
    JAN,
    QUIET,
    Pipeline,
    make_pipeline,
    materialized,
    temp_instance,
)

CORE = [f"A{i:04d}" for i in range(20)]


def _corrupt_prices(sample_dir: Path, out: Path) -> None:
    """3 rows with high < low, and one duplicated (timestamp, asset_id) row."""
    out.mkdir()
    for name in ("signals", "context"):
        shutil.copy(sample_dir / f"{name}.parquet", out / f"{name}.parquet")
    prices = pl.read_parquet(sample_dir / "prices.parquet").with_row_index()
    broken = prices.with_columns(
        pl.when(pl.col("index").is_in([10, 20, 30]))
        .then(pl.col("low") - 1.0)
        .otherwise(pl.col("high"))
        .alias("high")
    ).drop("index")
    pl.concat([broken, broken.head(1)]).write_parquet(out / "prices.parquet")


def test_a_corrupted_input_fails_its_check_and_nothing_downstream_runs(
    sample_dir: Path, tmp_path: Path
) -> None:
    bad_dir = tmp_path / "bad"
    _corrupt_prices(sample_dir, bad_dir)
    with temp_instance(tmp_path / "home") as instance:
        pipeline = make_pipeline(bad_dir, tmp_path, instance)
        partitions = build_partitions(load_partition_spec())
        key = MonthKey(JAN, "core").key
        result = dg.materialize(
            [
                *build_assets(partitions),
                *INPUT_CONTRACTS,
                *build_partitioned_checks(partitions.backtest),
            ],
            selection=[*INPUT_ASSET_KEYS, *BACKTEST_ASSET_KEYS],
            instance=instance,
            resources=pipeline.defs.resources,
            partition_key=key,
            run_config=QUIET,
            raise_on_error=False,
        )
        assert not result.success
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert not checks["prices_contract"].passed
        failures = checks["prices_contract"].metadata["failures"]
        assert isinstance(failures, dg.TableMetadataValue)
        by_rule = {r.data["rule"]: r.data for r in failures.records}
        assert by_rule["high_below_low"]["n_rows"] == 3
        assert by_rule["high_below_low"]["file"] == str(bad_dir / "prices.parquet")
        assert by_rule["high_below_low"]["column"] == "high"
        assert "asset_id=" in str(by_rule["high_below_low"]["examples"])
        assert by_rule["duplicate_key"]["n_rows"] == 2
        done = materialized(result)
        assert done.isdisjoint({"feature_table", "backtest", "trade_attribution"})

        later = pipeline.run("backtest_job", key, raise_on_error=False)
        assert not later.success
        message = "\n".join(failure_lines(later))
        assert "inputs are not validated" in message
        assert "prices_contract did not pass" in message
        assert later.get_asset_materialization_events() == []


def test_no_look_ahead_fails_on_a_value_used_before_it_was_known(sample_dir: Path) -> None:
    table = build_feature_table(
        pl.scan_parquet(sample_dir / "prices.parquet"),
        pl.scan_parquet(sample_dir / "signals.parquet"),
        pl.scan_parquet(sample_dir / "context.parquet"),
        assets=CORE,
        start=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        end=dt.datetime(2024, 2, 1, tzinfo=dt.UTC),
    )
    clean = no_look_ahead(feature_table=table)
    assert isinstance(clean, dg.AssetCheckResult)
    assert clean.passed
    leaked = table.with_row_index().with_columns(
        pl.when(pl.col("index") < 2)
        .then(pl.col("timestamp") + dt.timedelta(days=1))
        .otherwise(pl.col("available_at"))
        .alias("available_at")
    )
    result = no_look_ahead(feature_table=leaked.drop("index"))
    assert isinstance(result, dg.AssetCheckResult)
    assert not result.passed
    failures = result.metadata["failures"]
    assert isinstance(failures, dg.TableMetadataValue)
    assert [(r.data["rule"], r.data["n_rows"]) for r in failures.records] == [("look_ahead", 2)]


def _backtest_core(
    sample_dir: Path, config: RunConfig, *, months: int = 1
) -> tuple[TableSet, pl.DataFrame]:
    """A real backtest of `core` from 2024-01-01 over `months` months, and its feature table."""
    start, end = (
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2024, 1 + months, 1, tzinfo=dt.UTC),
    )
    table = build_feature_table(
        pl.scan_parquet(sample_dir / "prices.parquet"),
        pl.scan_parquet(sample_dir / "signals.parquet"),
        pl.scan_parquet(sample_dir / "context.parquet"),
        assets=CORE,
        start=start,
        end=end,
    )
    frames = engine_frames(table)
    result = run_backtest(
        config,
        prices=frames.prices,
        signals=frames.signals,
        context=frames.context,
        start=start,
        end=end,
    )
    tables = TableSet(
        tables={"equity": result.equity, "fills": result.fills},
        texts={PARTITION_FILE: json.dumps({"start_cash": config.execution.initial_cash})},
    )
    return tables, table


@pytest.fixture(scope="module")
def january(sample_dir: Path) -> tuple[TableSet, pl.DataFrame]:
    """A real first-month backtest of `core` (the pipeline's run config) and its feature table."""
    return _backtest_core(sample_dir, BacktestConfigResource().run_config())


@pytest.fixture(scope="module")
def slipped_quarter(sample_dir: Path) -> tuple[TableSet, pl.DataFrame]:
    """January to March with 20 bps of fixed slippage on every fill (January alone is warm-up
    and one rebalance: buys only; the quarter also sells, on signal and on the stop loss)."""
    config = BacktestConfigResource().run_config()
    execution = replace(config.execution, slippage={"model": "fixed_bps", "bps": 20})
    return _backtest_core(sample_dir, replace(config, execution=execution), months=3)


def test_bookkeeping_passes_on_a_real_month(january: tuple[TableSet, pl.DataFrame]) -> None:
    tables, features = january
    assert tables.tables["fills"].height > 0
    assert ledger_breaches(tables) == []
    assert nan_equity_breaches(tables.tables["equity"]) == []
    assert fill_breaches(tables.tables["fills"], features) == []


def test_ledger_breaches_name_the_rule(january: tuple[TableSet, pl.DataFrame]) -> None:
    tables, _ = january
    equity = tables.tables["equity"].with_row_index()
    off = equity.with_columns(
        pl.when(pl.col("index") == 5).then(pl.col("cash") + 100.0).otherwise(pl.col("cash"))
    ).drop("index")
    breaches = ledger_breaches(
        TableSet(tables={**tables.tables, "equity": off}, texts=tables.texts)
    )
    assert [(b.rule, b.n_rows) for b in breaches] == [("equity_is_cash_plus_positions", 1)]
    richer = TableSet(tables=tables.tables, texts={PARTITION_FILE: json.dumps({"start_cash": 1.0})})
    assert [b.rule for b in ledger_breaches(richer)] == ["cash_reconciles"]


def test_nan_equity_is_a_breach(january: tuple[TableSet, pl.DataFrame]) -> None:
    equity = (
        january[0]
        .tables["equity"]
        .with_columns(
            pl.when(pl.int_range(pl.len()) == 3)
            .then(float("nan"))
            .otherwise(pl.col("equity"))
            .alias("equity")
        )
    )
    assert [(b.rule, b.n_rows) for b in nan_equity_breaches(equity)] == [("no_nan_equity", 1)]


def test_fills_outside_their_bar_are_breaches(january: tuple[TableSet, pl.DataFrame]) -> None:
    tables, features = january
    fills = tables.tables["fills"].with_row_index()
    outside = fills.with_columns(
        pl.when(pl.col("index") == 0).then(pl.col("price") * 10.0).otherwise(pl.col("price"))
    ).drop("index")
    breaches = fill_breaches(outside, features)
    assert [(b.rule, b.n_rows) for b in breaches] == [("fill_inside_bar", 1)]
    assert "raw_price=" in breaches[0].examples[0]


def test_slipped_multi_share_fills_pass_fills_inside_bars(
    slipped_quarter: tuple[TableSet, pl.DataFrame],
) -> None:
    """The fills table's `slippage` is the fill's total cost (|qty| x |price - match price|):
    the check takes it per share before it recovers the match price."""
    tables, features = slipped_quarter
    fills = tables.tables["fills"]
    multi_share = fills.filter((pl.col("qty") > 1) & (pl.col("slippage") > 0))
    assert set(multi_share.select("side", "reason").unique().iter_rows()) == {
        ("buy", "signal"),
        ("sell", "signal"),
        ("sell", "stop_loss"),
    }
    evaluations = {
        r.check_name: r for r in backtest_bookkeeping(backtest=tables, feature_table=features)
    }
    result = evaluations["fills_inside_bars"]
    assert result.passed, result.description
    assert result.metadata["rows_checked"] == dg.MetadataValue.int(fills.height)


def test_slipped_fills_with_a_raw_price_outside_their_bar_are_breaches(
    slipped_quarter: tuple[TableSet, pl.DataFrame],
) -> None:
    """A buy whose match price is above the high and a sell whose match price is below the low,
    each carrying its real slippage: both break `fill_inside_bar`."""
    tables, features = slipped_quarter
    bars = features.select("timestamp", "asset_id", "low", "high")
    slipped = (
        tables.tables["fills"]
        .join(bars, on=["timestamp", "asset_id"])
        .filter((pl.col("qty") > 1) & (pl.col("slippage") > 0))
    )
    picked = pl.concat([slipped.filter(pl.col("side") == side).head(1) for side in ("buy", "sell")])
    assert picked["side"].to_list() == ["buy", "sell"]
    per_share = pl.col("slippage") / pl.col("qty")
    outside = picked.with_columns(
        pl.when(pl.col("side") == "buy")
        .then(pl.col("high") * 1.001 + per_share)
        .otherwise(pl.col("low") * 0.999 - per_share)
        .alias("price")
    ).drop("low", "high")
    breaches = fill_breaches(outside, features)
    assert [(b.rule, b.n_rows) for b in breaches] == [("fill_inside_bar", 2)]
    evaluations = {
        r.check_name: r
        for r in backtest_bookkeeping(
            backtest=TableSet(tables={**tables.tables, "fills": outside}, texts=tables.texts),
            feature_table=features,
        )
    }
    assert not evaluations["fills_inside_bars"].passed
    assert "fill_inside_bar (2 rows)" in str(evaluations["fills_inside_bars"].description)


def test_a_stop_filled_above_the_open_is_a_breach(january: tuple[TableSet, pl.DataFrame]) -> None:
    tables, features = january
    bars = features.select("timestamp", "asset_id", "open", "high")
    fill = (
        tables.tables["fills"]
        .join(bars, on=["timestamp", "asset_id"])
        .filter(pl.col("high") > pl.col("open"))
        .head(1)
    )
    assert fill.height == 1
    stop_above_open = fill.with_columns(
        pl.lit("sell").alias("side"),
        pl.lit("stop_loss").alias("reason"),
        ((pl.col("open") + pl.col("high")) / 2).alias("price"),
    ).drop("open", "high")
    breaches = fill_breaches(stop_above_open, features)
    assert [(b.rule, b.n_rows) for b in breaches] == [("stop_not_beyond_open", 1)]


def test_a_failed_bookkeeping_check_stops_trade_attribution(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.run("inputs_job")
    broken = [Breach(rule="cash_reconciles", n_rows=1, detail="planted by the test")]
    monkeypatch.setattr(checks, "ledger_breaches", lambda tables: broken)
    result = pipeline.run("backtest_job", MonthKey(JAN, "core").key, raise_on_error=False)
    assert not result.success
    evaluations = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not evaluations["ledger_reconciles"].passed
    assert "planted by the test" in str(evaluations["ledger_reconciles"].description)
    assert evaluations["fills_inside_bars"].passed
    assert materialized(result) == {"feature_table", "backtest"}


def test_an_input_rematerialized_without_its_check_is_refused(pipeline: Pipeline) -> None:
    pipeline.run("inputs_job")
    dg.materialize(
        INPUT_ASSETS,
        selection=["validated_prices"],
        instance=pipeline.instance,
        resources=pipeline.defs.resources,
        run_config=QUIET,
    )
    result = pipeline.run("backtest_job", MonthKey(JAN, "core").key, raise_on_error=False)
    assert not result.success
    assert "validated_prices changed after prices_contract last passed" in "\n".join(
        failure_lines(result)
    )
