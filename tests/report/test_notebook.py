"""A result in a notebook: its HTML view, its report as a string or file, its tables in pandas."""

from __future__ import annotations

import importlib.util
from importlib.machinery import ModuleSpec
from pathlib import Path

import polars as pl
import pytest

from ml4t_pipeline.engine import BacktestResult, load_run_config, run_backtest
from ml4t_pipeline.engine.results import TABLES


@pytest.fixture(scope="module")
def result(report_config: Path) -> BacktestResult:
    return run_backtest(load_run_config(report_config))


def test_the_html_view_is_the_headline_and_one_small_chart(result: BacktestResult) -> None:
    view = result._repr_html_()
    assert "<td>Sharpe ratio</td>" in view
    assert "<td>Max drawdown</td>" in view
    assert view.count("data:image/png;base64,") == 1
    assert "<html" not in view  # a fragment for the notebook's page
    assert "Monthly returns" not in view


def test_report_returns_the_page_and_writes_it_when_given_a_path(
    result: BacktestResult, tmp_path: Path
) -> None:
    page = result.report()
    assert page.startswith("<!DOCTYPE html>")
    assert list(tmp_path.iterdir()) == []
    assert result.report(tmp_path / "r.html") == page
    assert (tmp_path / "r.html").read_text(encoding="utf-8") == page


def test_to_pandas_gives_every_table(result: BacktestResult) -> None:
    if importlib.util.find_spec("pandas") is None:
        pytest.skip("pandas is not installed (the `pandas` extra)")
    frames = result.to_pandas()
    assert sorted(frames) == sorted(TABLES)
    assert {f"{type(f).__module__.split('.')[0]}.{type(f).__name__}" for f in frames.values()} == {
        "pandas.DataFrame"
    }
    assert len(frames["equity"]) == result.equity.height
    assert list(frames["trades"].columns) == result.trades.columns


def test_to_pandas_without_pandas_says_what_to_install(
    result: BacktestResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def without_pandas(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "pandas" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_pandas)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'ml4t-pipeline\[pandas\]'"):
        result.to_pandas()
    assert isinstance(result.equity, pl.DataFrame)
