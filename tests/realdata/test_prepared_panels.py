"""Prepared panels (`engine.feed.prepared`): a run on a cached panel is the run on the files.

Real daily stocks (bokeh-sampledata, with splits and dividends) and a generated market with
text ids, late signals (`available_at`) and delistings: a run that builds the entry and a run
that memory-maps it write the same tables as a run that decodes the files, and a file changed
behind the cache (new content, same size and times) is read again, never served stale.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline import fingerprint
from ml4t_pipeline.engine import BacktestResult, run_backtest, run_config_from_dict
from ml4t_pipeline.engine.api import feed_inputs, plan_run, run_on
from ml4t_pipeline.engine.feed import MarketData, prepared
from ml4t_pipeline.engine.feed.features import CallableFeatures
from ml4t_pipeline.engine.feed.prepared import PreparedData, prepared_data
from ml4t_pipeline.engine.results.output import TABLES
from ml4t_pipeline.engine.strategy.history import History
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data
from ml4t_pipeline.sample_data.real_stocks import SIGNAL
from tests.invariants import assert_result_invariants


@pytest.fixture(autouse=True)
def _settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust the stat of files written a moment ago (the tests write their inputs)."""
    monkeypatch.setattr(fingerprint, "SETTLE_NS", 0)


def _cached(config: Any, cache: Path, **window: Any) -> BacktestResult:
    """A run through the panel cache, its entry (if new) written when it returns."""
    result = run_backtest(config, panel_cache=cache, **window)
    prepared.finish_writing()
    return result


def _same(a: BacktestResult, b: BacktestResult) -> None:
    for name in TABLES:
        assert getattr(a, name).equals(getattr(b, name)), name
    skip = {"wall_s", "bars_per_s"}
    assert {k: v for k, v in a.summary().items() if k not in skip} == {
        k: v for k, v in b.summary().items() if k not in skip
    }
    assert a.final_state.to_json() == b.final_state.to_json()


def _real_config(paths: dict[str, Path], **strategy: Any) -> Any:
    return run_config_from_dict(
        {
            "data": {
                "prices": str(paths["prices"]),
                "signals": str(paths["signals"]),
                "context": str(paths["context"]),
                "corporate_actions": str(paths["corporate_actions"]),
            },
            "execution": {"commission_rate": 0.001},
            "strategy": {
                "name": "top_k_rotation",
                "params": {"score": SIGNAL, "top_k": 2, "weight": 0.45, **strategy},
            },
            "risk": [{"rule": "stop_loss", "pct": 0.08}],
        }
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Text ids, signals published late (`available_at`), assets that list and delist."""
    folder = tmp_path_factory.mktemp("prepared-generated")
    paths = write_sample_data(SampleSpec(assets=12, days=160, seed=5), folder)
    signals = pl.read_parquet(paths["signals"])
    late = pl.col("timestamp") + pl.duration(hours=18)  # known the next morning
    signals.with_columns(available_at=late).write_parquet(paths["signals"])
    prices = pl.read_parquet(paths["prices"])
    first = prices["timestamp"].unique().sort()
    listed = prices.filter(
        ~((pl.col("asset_id") == prices["asset_id"][0]) & (pl.col("timestamp") > first[90]))
        & ~((pl.col("asset_id") == prices["asset_id"][-1]) & (pl.col("timestamp") < first[30]))
    )
    listed.write_parquet(paths["prices"])
    return paths


def _generated_config(paths: dict[str, Path], **params: Any) -> Any:
    return run_config_from_dict(
        {
            "data": {k: str(paths[k]) for k in ("prices", "signals", "context")},
            "execution": {"initial_cash": 250_000.0, "commission_rate": 0.0005},
            "strategy": {
                "name": "top_k_rotation",
                "params": {"top_k": 3, "weight": 0.3, "warmup_bars": 5, **params},
            },
        }
    )


@pytest.mark.parametrize("market", ["real", "generated"])
def test_built_and_mapped_panels_run_as_the_files(
    market: str,
    real_dir: dict[str, Path],
    generated: dict[str, Path],
    tmp_path: Path,
) -> None:
    paths = real_dir if market == "real" else generated
    config = _real_config(paths) if market == "real" else _generated_config(paths)
    fresh = run_backtest(config)
    built = _cached(config, tmp_path)  # decodes, keeps the entry
    mapped = _cached(config, tmp_path)  # memory-maps it
    assert_result_invariants(fresh, prices=paths["prices"])
    assert fresh.fills.height > 0
    _same(fresh, built)
    _same(fresh, mapped)
    (entry,) = tmp_path.iterdir()
    data = prepared_data(feed_inputs(config, plan_run(config)), cache=tmp_path)
    assert isinstance(data, PreparedData)
    assert isinstance(data.panel.close.base, np.memmap) or isinstance(data.panel.close, np.memmap)
    assert not data.panel.close.flags.writeable
    assert (entry / "manifest.json").is_file()


def test_a_changed_file_is_read_again(generated: dict[str, Path], tmp_path: Path) -> None:
    """Same size, same mtime, new bytes: the fingerprint's hash decides, not the stat."""
    folder = tmp_path / "inputs"
    shutil.copytree(generated["prices"].parent, folder)
    paths = {
        k: folder / p.name for k, p in generated.items() if p.parent == generated["prices"].parent
    }
    config = _generated_config(paths)
    cache = tmp_path / "cache"
    first = _cached(config, cache)
    prices = pl.read_parquet(paths["prices"])
    stat = paths["prices"].stat()
    changed = prices.with_columns(pl.col("close") * 1.0)  # same values...
    changed = changed.with_columns(  # ...but one close moved by a cent, inside the bar
        pl.when(pl.int_range(pl.len()) == 400)
        .then(pl.col("close") + 0.01)
        .otherwise(pl.col("close"))
        .clip(pl.col("low"), pl.col("high"))
        .alias("close")
    )
    assert not changed.equals(prices)
    changed.write_parquet(paths["prices"])
    os.utime(paths["prices"], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = _cached(config, cache)
    _same(again, run_backtest(config))
    assert not again.equity.equals(first.equity) or not again.fills.equals(first.fills)


def test_a_damaged_entry_is_rebuilt(generated: dict[str, Path], tmp_path: Path) -> None:
    config = _generated_config(generated)
    _cached(config, tmp_path)
    (entry,) = tmp_path.iterdir()
    close = entry / "close.npy"
    close.write_bytes(close.read_bytes()[: close.stat().st_size // 2])
    _same(_cached(config, tmp_path), run_backtest(config))
    assert close.stat().st_size > 1000  # written whole again


def test_an_unwritable_cache_only_costs_the_decode(
    generated: dict[str, Path], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = _generated_config(generated)
    _same(_cached(config, blocker / "cache"), run_backtest(config))


def test_entries_per_feed_and_the_oldest_evicted(
    generated: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another window or other columns is another entry; beyond MAX_ENTRIES the least
    recently used go."""
    monkeypatch.setattr(prepared, "MAX_ENTRIES", 2)
    config = _generated_config(generated)
    stamps = pl.read_parquet(generated["prices"])["timestamp"].unique().sort()
    windows = [(None, None), (stamps[20], None), (stamps[40], stamps[150])]
    for start, end in windows:
        _cached(config, tmp_path, start=start, end=end)
    assert len(list(tmp_path.iterdir())) == 2
    for start, end in windows:  # each still equals the decoded run
        _same(
            _cached(config, tmp_path, start=start, end=end),
            run_backtest(config, start=start, end=end),
        )


def test_a_long_run_streams_and_is_not_kept(generated: dict[str, Path], tmp_path: Path) -> None:
    config = _generated_config(generated)
    data = prepared_data(feed_inputs(config, plan_run(config)), cache=tmp_path, max_chunk_cells=200)
    assert isinstance(data, MarketData)
    assert data.n_chunks > 1
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_runs_sharing_a_panel_do_not_share_features(
    generated: dict[str, Path], tmp_path: Path
) -> None:
    """A feature provider adds its arrays to its own run's chunk, not to the shared panel."""

    def momentum(history: History) -> np.ndarray:
        close = history.prices("close")
        return np.asarray(close[-1] / close[0] - 1.0)

    config = _generated_config(generated, score="momentum")
    plan = plan_run(config, features=[CallableFeatures({"momentum": momentum})])
    data = prepared_data(feed_inputs(config, plan), cache=tmp_path)
    assert isinstance(data, PreparedData)
    first = run_on(config, data, plan)
    assert "momentum" not in data.panel.signals
    second = run_on(
        config, data, plan_run(config, features=[CallableFeatures({"momentum": momentum})])
    )
    fresh = run_backtest(config, features=[CallableFeatures({"momentum": momentum})])
    assert fresh.fills.height > 0
    _same(first, fresh)
    _same(second, fresh)


def test_files_changed_a_moment_ago_are_not_trusted_later(
    generated: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stat record taken within SETTLE_NS of a change cannot tell a later change in the
    same timestamp tick: such a run keeps nothing."""
    monkeypatch.setattr(fingerprint, "SETTLE_NS", 3_600 * 10**9)
    config = _generated_config(generated)
    _same(_cached(config, tmp_path), run_backtest(config))
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_shared_copy_is_one_snapshot(generated: dict[str, Path], tmp_path: Path) -> None:
    """Hard links to the entry: replacing the entry leaves the snapshot whole."""
    config = _generated_config(generated)
    plan = plan_run(config)
    data = prepared_data(feed_inputs(config, plan), cache=tmp_path)
    assert isinstance(data, PreparedData)
    assert data.entry is not None
    with prepared.shared_copy(data, tmp_path) as folder:
        assert folder.parent == tmp_path
        assert (folder / "close.npy").stat().st_ino == (data.entry / "close.npy").stat().st_ino
        shutil.rmtree(data.entry)  # e.g. evicted, or replaced by a rebuild
        shared = prepared.load_entry(folder, None)
        _same(run_on(config, shared, plan_run(config)), run_backtest(config))
    assert not folder.exists()
