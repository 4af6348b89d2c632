"""A real backtest's results folder (written by the CLI, report included), shared by the
report tests; tests that change a folder work on a copy."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from ml4t_pipeline.cli import main
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data

#: a benchmark section as summary.json carries it (null: undefined)
BENCHMARK_SECTION: dict[str, Any] = {
    "kind": "equal_weight",
    "total_return": 0.0812,
    "cagr": 0.0533,
    "volatility": 0.1414,
    "sharpe": 0.4321,
    "max_drawdown": -0.0977,
    "excess_return": 0.0123,
    "beta": 0.8765,
    "alpha": None,
    "tracking_error": 0.0456,
    "information_ratio": 0.2712,
    "correlation": 0.6543,
}


def write_config(path: Path, data: dict[str, Path], **execution: Any) -> Path:
    raw = {
        "data": {k: str(data[k]) for k in ("prices", "signals", "context")},
        "execution": {
            "initial_cash": 100_000,
            "commission_rate": 0.001,
            "allow_negative_cash": False,
            **execution,
        },
        "strategy": {
            "name": "top_k_rotation",
            "params": {"score": "ml_score", "top_k": 4, "weight": 0.3, "rebalance_every": 5},
        },
        "risk": [{"rule": "stop_loss", "pct": 0.04}, {"rule": "time_exit", "max_bars": 15}],
    }
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def report_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report-data")
    spec = SampleSpec(assets=15, days=300, scenario="mixed", seed=11, start=dt.date(2021, 3, 1))
    return write_config(folder / "run.yaml", write_sample_data(spec, folder))


@pytest.fixture(scope="session")
def results(report_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder the CLI wrote, report.html included (treat as read-only)."""
    out = tmp_path_factory.mktemp("report-results") / "run"
    code = main(["backtest", "--config", str(report_config), "--out", str(out), "--no-validate"])
    assert code == 0
    return out


def copy_results(results: Path, to: Path) -> Path:
    shutil.copytree(results, to)
    return to


def add_benchmark(folder: Path) -> None:
    """Give a results folder the benchmark's column and summary section."""
    equity = pl.read_parquet(folder / "equity.parquet")
    start = json.loads((folder / "summary.json").read_text())["initial_cash"]
    steps = np.random.default_rng(5).normal(0.0003, 0.009, equity.height)
    equity = equity.with_columns(pl.Series("benchmark", start * np.cumprod(1.0 + steps)))
    equity.write_parquet(folder / "equity.parquet")
    summary = json.loads((folder / "summary.json").read_text())
    summary["benchmark"] = BENCHMARK_SECTION
    (folder / "summary.json").write_text(json.dumps(summary))
