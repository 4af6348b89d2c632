"""Golden outputs: every case of cases.yaml must write the stored files, byte for byte.

`pytest tests/golden --regen-golden` (`make golden`) rewrites tests/golden/expected/ instead.
Each run also passes the suite-wide invariant check and shows what its case `covers`.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import pytest

from ml4t_pipeline.engine import BacktestResult
from tests.golden.cases import EXPECTED_DIR, Inputs, load_catalog
from tests.golden.compare import compare_trees
from tests.invariants import assert_backtest_invariants, check_backtest_tables

CATALOG = load_catalog()


def check_invariants(results: Mapping[str, BacktestResult], out: Path, prices: Path) -> None:
    """Each written run; a chain also as one account (later months start holding positions)."""
    runs = list(results.values())
    if len(runs) == 1:
        assert_backtest_invariants(out, prices=prices)
        return
    assert_backtest_invariants(out / next(iter(results)), prices=prices)
    check_backtest_tables(
        fills=pl.concat([r.fills for r in runs]),
        equity=pl.concat([r.equity for r in runs]),
        prices=pl.read_parquet(prices),
        initial_cash=runs[0].start_equity,
        final_cash=runs[-1].final_cash,
    )


@pytest.mark.parametrize("name", list(CATALOG.cases))
def test_golden_outputs(
    name: str, golden_inputs: Inputs, regen_golden: bool, tmp_path: Path
) -> None:
    case = CATALOG.cases[name]
    inputs = golden_inputs(case.dataset)
    results = case.run(inputs)
    out = tmp_path / name
    for folder, result in results.items():
        result.write(out / folder)
    check_invariants(results, out, inputs["prices"])
    missing = case.missing_coverage(results)
    assert not missing, f"[{name}] no longer exercises {missing}"
    expected = EXPECTED_DIR / name
    if regen_golden:
        shutil.rmtree(expected, ignore_errors=True)
        shutil.copytree(out, expected)
        return
    problems = compare_trees(name, out, expected)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def test_every_stored_case_is_defined(regen_golden: bool) -> None:
    stored = (
        sorted(p.name for p in EXPECTED_DIR.iterdir() if p.is_dir())
        if EXPECTED_DIR.is_dir()
        else []
    )
    stale = [name for name in stored if name not in CATALOG.cases]
    if regen_golden:
        for name in stale:
            shutil.rmtree(EXPECTED_DIR / name)
        return
    assert not stale, f"{EXPECTED_DIR} holds outputs of cases cases.yaml no longer defines: {stale}"
