"""`ml4t-pipeline sweep` as a user runs it: every variant is its own backtest, to the bit; the
outputs do not depend on the workers; a bad grid is an error before anything runs.

Real daily stocks (bokeh-sampledata: AAPL, IBM, MSFT around AAPL's 2005 split, with the
corporate-actions file) and real worker processes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from ml4t_pipeline import fingerprint
from ml4t_pipeline.cli import main
from ml4t_pipeline.engine import run_backtest, run_config_from_dict
from ml4t_pipeline.engine.feed.prepared import panel_cache_dir
from ml4t_pipeline.sample_data.real_stocks import SIGNAL, write_real_inputs
from ml4t_pipeline.sweep.run import run_variant
from tests.invariants import assert_backtest_invariants

GRID = {
    "strategy.params.top_k": [1, 2],
    "risk.0.pct": [0.04, 0.1],
    "execution.commission_rate": [0.0, 0.002],
}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_real_inputs(tmp_path_factory.mktemp("sweep-real"), dividends=True)


def _base(real: dict[str, Path]) -> dict[str, Any]:
    return {
        "data": {
            "prices": str(real["prices"]),
            "signals": str(real["signals"]),
            "context": str(real["context"]),
            "corporate_actions": str(real["corporate_actions"]),
        },
        "execution": {"initial_cash": 100_000, "commission_rate": 0.001},
        "strategy": {
            "name": "top_k_rotation",
            "params": {"score": SIGNAL, "top_k": 2, "weight": 0.45, "rebalance_every": 10},
        },
        "risk": [{"rule": "stop_loss", "pct": 0.06}],
    }


def _files(folder: Path, raw: dict[str, Any], grid: dict[str, Any]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    config, grid_file = folder / "run.yaml", folder / "grid.yaml"
    config.write_text(yaml.safe_dump(raw))
    grid_file.write_text(yaml.safe_dump(grid, sort_keys=False))
    return config, grid_file


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def swept(
    real: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, dict[str, Any]]:
    """One sweep of 8 variants in 2 worker processes (module-wide: the tests read it)."""
    folder = tmp_path_factory.mktemp("sweep")
    config, grid = _files(folder, _base(real), GRID)
    out = folder / "out"
    with pytest.MonkeyPatch.context() as patch:  # the inputs were written a moment ago
        patch.setattr(fingerprint, "SETTLE_NS", 0)
        code = main(["sweep", "--config", str(config), "--grid", str(grid), "--out", str(out),
                     "--workers", "2", "--blocks", "6"])  # fmt: skip
    assert code == 0
    return config, out, {}


def test_every_variant_is_its_own_backtest(
    swept: tuple[Path, Path, dict[str, Any]],
    real: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = swept
    variants = pl.read_parquet(out / "variants.parquet")
    equity = pl.read_parquet(out / "equity.parquet")
    assert variants.height == 8
    assert variants.columns[:4] == ["variant", *GRID]
    for row in variants.iter_rows(named=True):
        raw = _base(real)
        raw["strategy"]["params"]["top_k"] = row["strategy.params.top_k"]
        raw["risk"][0]["pct"] = row["risk.0.pct"]
        raw["execution"]["commission_rate"] = row["execution.commission_rate"]
        config = tmp_path / f"variant-{row['variant']}.yaml"
        config.write_text(yaml.safe_dump(raw))
        alone = tmp_path / f"alone-{row['variant']}"
        code, stdout, _ = _run(capsys, "backtest", "--config", str(config), "--out", str(alone),
                               "--no-report", "--no-cache")  # fmt: skip
        assert code == 0
        summary = json.loads(stdout.strip().splitlines()[-1])
        assert row["final_equity"] == summary["final_equity"]
        assert row["fills"] == summary["fills"]
        assert row["trades"] == summary["trades"]
        assert row["sharpe"] == summary["sharpe"]
        mine = equity.filter(pl.col("variant") == row["variant"]).drop("variant")
        theirs = pl.read_parquet(alone / "equity.parquet").select(mine.columns)
        assert mine.equals(theirs)
        assert_backtest_invariants(alone, prices=real["prices"])
    assert variants["final_equity"].n_unique() == 8  # every swept path changes the result


def test_the_best_variant_is_written_whole(
    swept: tuple[Path, Path, dict[str, Any]],
    real: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """best/ holds the same tables as `backtest --config best.yaml`, byte for byte."""
    _, out, _ = swept
    found = json.loads((out / "overfitting.json").read_text())
    variants = pl.read_parquet(out / "variants.parquet")
    best = found["best"]["variant"]
    assert variants["sharpe"].max() == variants.filter(pl.col("variant") == best)["sharpe"][0]
    alone = tmp_path / "alone"
    code, _, _ = _run(capsys, "backtest", "--config", str(out / "best.yaml"), "--out", str(alone))
    assert code == 0
    for name in ("equity", "fills", "orders", "trades", "rejections", "actions", "attribution"):
        file = f"{name}.parquet"
        assert (out / "best" / file).read_bytes() == (alone / file).read_bytes(), file
    assert (out / "best" / "state.json").read_bytes() == (alone / "state.json").read_bytes()
    assert (out / "best" / "report.html").stat().st_size > 10_000
    assert_backtest_invariants(out / "best", prices=real["prices"])
    assert found["n_trials"] == 8
    assert found["n_blocks"] == 6
    assert 0.0 <= found["pbo"] <= 1.0
    assert len(found["pbo_detail"]["logits"]) == 20  # C(6, 3) splits
    assert 0.0 <= found["deflated_sharpe"] <= 1.0
    page = (out / "sweep.html").read_text()
    for text in ("Probability of backtest overfitting", "Deflated Sharpe", "best/report.html"):
        assert text in page
    assert "data:image/png;base64," in page
    assert "http" not in page.replace("best/report", "")


def test_outputs_do_not_depend_on_the_workers(
    swept: tuple[Path, Path, dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fingerprint, "SETTLE_NS", 0)
    config, out, _ = swept
    grid = config.with_name("grid.yaml")
    alone = tmp_path / "one-worker"
    code, stdout, _ = _run(capsys, "sweep", "--config", str(config), "--grid", str(grid),
                           "--out", str(alone), "--workers", "1", "--blocks", "6")  # fmt: skip
    assert code == 0
    line = json.loads(stdout.strip().splitlines()[-1])
    assert set(line) >= {"variants", "best", "pbo", "deflated_sharpe", "wall_s"}
    assert line["variants"] == 8
    assert _digests(alone) == _digests(out)
    assert any(panel_cache_dir().iterdir())  # the panel was kept for the next run


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"data.prices": ["a.parquet"]}, "data.prices cannot be swept"),
        ({"risk.3.pct": [0.05]}, "grid: risk.3.pct: risk has 1 entry"),
        ({"strategy.params.topk": [1, 2]}, "grid variant 0 (strategy.params.topk=1)"),
        ({"risk.0.pct": [0.05, 5]}, "grid variant 1 (risk.0.pct=5): risk[0].pct"),
        ({"strategy.params.top_k": [1, 2], "risk.0.pct": [0.1], "mode": "zip"}, "one length"),
        ({"strategy.params.top_k": [1, 1]}, "lists the value 1 twice"),
        ({"strategy.params.top_k": 3}, "must be a non-empty list"),
        ({"strategy.params.top_k": [1, 2], "select": "luck"}, "select must be one of"),
        ({"strategy.params.top_k": [1, 2], "heatmap": ["a", "b"]}, "heatmap must name two"),
        ({"strategy.params.top_k.x": [1]}, "strategy.params.top_k is 2, not a mapping"),
        ({"strategy..top_k": [1]}, "not a dotted config path"),
        ({"execution": [1]}, "grid variant 0 (execution=1): execution must be a mapping"),
        ({"mode": "zip"}, "no config path to sweep"),
        ({"strategy.params.score": ["no_such_column"]}, "is not a column of the signals"),
    ],
)
def test_a_bad_grid_is_an_error_before_anything_runs(
    grid: dict[str, Any],
    message: str,
    real: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, grid_file = _files(tmp_path, _base(real), grid)
    out = tmp_path / "out"
    code, stdout, stderr = _run(capsys, "sweep", "--config", str(config), "--grid",
                                str(grid_file), "--out", str(out))  # fmt: skip
    assert code == 2, stderr
    assert stdout == ""
    assert message in stderr, stderr
    assert stderr.startswith("error: ")
    assert not out.exists()


def test_a_variant_without_a_snapshot_decodes_its_own_inputs(
    real: dict[str, Path], tmp_path: Path
) -> None:
    """A run too long for one chunk has no shared panel: its worker streams its own inputs,
    and the outcome is still the run's."""
    config = run_config_from_dict(_base(real))
    outcome = run_variant(3, config, None)
    alone = run_backtest(config)
    assert outcome.number == 3
    assert outcome.equity.tolist() == alone.equity["equity"].to_list()
    assert outcome.figures["final_equity"] == alone.final_equity


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "0"], "--workers must be a whole number >= 1, got 0"),
        (["--blocks", "7"], "--blocks must be an even number >= 2, got 7"),
        (["--blocks", "100000"], "--blocks 100000: the run has only"),
    ],
)
def test_bad_flags_are_errors_before_anything_is_written(
    flags: list[str],
    message: str,
    real: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, grid_file = _files(tmp_path, _base(real), {"strategy.params.top_k": [1, 2]})
    out = tmp_path / "out"
    code, stdout, stderr = _run(capsys, "sweep", "--config", str(config), "--grid",
                                str(grid_file), "--out", str(out), "--no-validate",
                                *flags)  # fmt: skip
    assert code == 2
    assert stdout == ""
    assert message in stderr, stderr
    assert not out.exists()
