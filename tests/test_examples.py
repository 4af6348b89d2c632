"""The examples run as documented, so the docs cannot drift from the code."""

from __future__ import annotations

import runpy
from pathlib import Path

import polars as pl
import pytest

from tests.invariants import assert_backtest_invariants, assert_result_invariants

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_quickstart_runs(capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="__main__")
    assert_result_invariants(module["result"], prices=module["paths"]["prices"])
    out = capsys.readouterr().out
    assert "sharpe" in out
    assert "exit_reason" in out


def test_reference_strategy_writes_attribution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = runpy.run_path(str(EXAMPLES / "reference_strategy.py"), run_name="example")
    module["main"](tmp_path)
    attribution = pl.read_parquet(tmp_path / "attribution.parquet")
    reasons = set(attribution.filter(pl.col("dimension") == "exit_reason")["key"])
    assert {"signal", "volatility_stop", "trailing_stop"} <= reasons
    trades = pl.read_parquet(tmp_path / "trades.parquet")
    for dimension in ("exit_reason", "exit_rule", "asset_id", "month"):
        total = attribution.filter(pl.col("dimension") == dimension)["pnl"].sum()
        assert total == pytest.approx(trades["pnl"].sum(), rel=1e-9)
    prices = module["DATA"] / "prices.parquet"
    assert_backtest_invariants(tmp_path, prices=prices)
    assert "volatility_" in capsys.readouterr().out  # the table wraps long keys


def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of README.md runs (from the repository root)."""
    root = EXAMPLES.parent
    module = runpy.run_path(str(EXAMPLES / "reference_strategy.py"), run_name="example")
    module["main"](tmp_path / "reference")  # makes sure the reference data exists
    monkeypatch.chdir(root)
    text = (root / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert blocks, "README has no python example"
    for block in blocks:
        namespace: dict[str, object] = {}
        exec(compile(block, "README.md", "exec"), namespace)  # our own README
        assert "result" in namespace
