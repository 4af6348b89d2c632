"""examples/real_stocks.py runs as documented, and every backtest it runs keeps the invariants."""

from __future__ import annotations

import runpy
from pathlib import Path

import polars as pl
import pytest

from tests.invariants import assert_result_invariants

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "real_stocks.py"


def test_the_real_stocks_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(EXAMPLE), run_name="__main__")
    paths = module["paths"]
    runs = module["runs"]
    for name, result in runs.items():
        prices = paths["prices_split_adjusted" if "adjusted" in name else "prices"]
        assert_result_invariants(result, prices=prices)
    out = capsys.readouterr().out
    assert "validate raw prices, no actions file" in out
    assert "raw + actions" in out
    assert "trailing_stop" in out  # the run without actions sells AAPL at its split
    split = runs["raw + actions"].actions.filter(pl.col("action") == "split")
    assert split["asset_id"].to_list() == ["AAPL"]
    assert (split["qty_after"] == 2 * split["qty_before"]).all()
