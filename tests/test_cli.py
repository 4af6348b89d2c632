"""The command line as a user runs it: outputs, JSON summary, clear errors, nothing lost."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from ml4t_pipeline.cli import main
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data
from tests.invariants import assert_backtest_invariants

TABLES = ("equity", "fills", "orders", "trades", "rejections", "attribution")


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spec = SampleSpec(assets=12, days=80, scenario="trending", seed=5, start=dt.date(2023, 1, 2))
    return write_sample_data(spec, tmp_path_factory.mktemp("cli-data"))


def _write_config(path: Path, market: dict[str, Path], **overrides: Any) -> Path:
    raw: dict[str, Any] = {
        "data": {k: str(market[k]) for k in ("prices", "signals", "context")},
        "execution": {
            "initial_cash": 1_000_000,
            "fill_at": "next_open",
            "commission_rate": 0.001,
            "allow_negative_cash": True,
        },
        "strategy": {
            "name": "top_k_rotation",
            "params": {
                "score": "ml_score",
                "top_k": 3,
                "weight": 0.2,
                "rebalance_every": 5,
                "warmup_bars": 5,
                "max_vix": 40,
            },
        },
        "risk": [{"rule": "stop_loss", "pct": 0.05}],
    }
    raw.update(overrides)
    path.write_text(yaml.safe_dump(raw))
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_backtest_writes_tables_and_prints_summary_last(
    tmp_path: Path, market: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(tmp_path / "run.yaml", market)
    code, out, _ = _run(capsys, "backtest", "--config", str(config), "--out", str(tmp_path / "res"))
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    for key in ("final_equity", "fills", "bars", "wall_s", "bars_per_s"):
        assert key in summary
    assert summary["bars"] == pl.read_parquet(market["prices"]).height
    assert summary["fills"] > 0
    for table in TABLES:
        assert (tmp_path / "res" / f"{table}.parquet").is_file()
    assert_backtest_invariants(tmp_path / "res", prices=market["prices"])


def _strict_json(text: str) -> Any:
    def refuse(token: str) -> None:
        msg = f"not JSON: {token}"
        raise AssertionError(msg)

    return json.loads(text, parse_constant=refuse)


def test_undefined_metrics_are_null_on_stdout_and_in_summary_json(
    tmp_path: Path, market: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # the VIX filter never lets it trade: a flat curve, whose Sharpe ratio is undefined
    never = {"name": "top_k_rotation", "params": {"score": "ml_score", "max_vix": 0.001}}
    config = _write_config(tmp_path / "run.yaml", market, strategy=never)
    code, out, _ = _run(capsys, "backtest", "--config", str(config), "--out", str(tmp_path / "res"))
    assert code == 0
    line = _strict_json(out.strip().splitlines()[-1])
    written = _strict_json((tmp_path / "res" / "summary.json").read_text())
    for summary in (line, written):
        assert summary["fills"] == 0
        assert summary["sharpe"] is None
        assert summary["sortino"] is None
        assert summary["benchmark"]["kind"] == "equal_weight"
        assert isinstance(summary["benchmark"]["total_return"], float)
    equity = pl.read_parquet(tmp_path / "res" / "equity.parquet")
    assert equity.columns == ["timestamp", "cash", "positions_value", "equity", "benchmark"]


def test_same_inputs_give_byte_identical_outputs(
    tmp_path: Path, market: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(tmp_path / "run.yaml", market)
    for name in ("a", "b"):
        assert (
            _run(capsys, "backtest", "--config", str(config), "--out", str(tmp_path / name))[0] == 0
        )
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_user_strategy_by_import_path(
    tmp_path: Path, market: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    strategy = {
        "class": "tests.fixtures.user_strategies:BuyAndHoldPercent",
        "params": {"percent": 0.05},
    }
    config = _write_config(tmp_path / "run.yaml", market, strategy=strategy, risk=[])
    code, _out, _ = _run(
        capsys, "backtest", "--config", str(config), "--out", str(tmp_path / "res")
    )
    assert code == 0
    fills = pl.read_parquet(tmp_path / "res" / "fills.parquet")
    assert fills["asset_id"].n_unique() == 12
    assert (fills["side"] == "buy").all()
    assert_backtest_invariants(tmp_path / "res", prices=market["prices"])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"strategy": {"name": "top_k_rotation", "params": {"top_kk": 3}}}, "top_kk"),
        ({"execution": {"commission_rate": "cheap"}}, "execution.commission_rate"),
        ({"execution": {"fill_at": "tomorrow"}}, "execution.fill_at"),
        ({"execution": {"slippage_bps": 2}}, "slippage_bps"),
        ({"risk": [{"rule": "stop_loss", "percent": 0.05}]}, "risk[0]"),
        ({"risk": [{"rule": "moon_phase"}]}, "moon_phase"),
        ({"strategy": {"class": "no.such.module:Strategy"}}, "no.such.module"),
        ({"strategy": {"name": "buy_the_dip"}}, "buy_the_dip"),
        ({"unexpected": 1}, "unexpected"),
        ({"benchmark": "none"}, "benchmark must be {kind: equal_weight}"),
        ({"benchmark": {"asset": "NOPE"}}, "benchmark.asset 'NOPE' is not an asset of the prices"),
        ({"benchmark": {"context": "spx"}}, "benchmark.context 'spx' is not a column"),
        ({"metrics": {"periods_per_year": -1}}, "metrics.periods_per_year"),
    ],
)
def test_config_mistakes_are_clear_errors(
    tmp_path: Path,
    market: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    overrides: dict[str, Any],
    expected: str,
) -> None:
    config = _write_config(tmp_path / "run.yaml", market, **overrides)
    code, _, err = _run(capsys, "backtest", "--config", str(config), "--out", str(tmp_path / "res"))
    assert code == 2
    assert expected in err
    assert "Traceback" not in err
    assert not (tmp_path / "res").exists()


def test_missing_input_file_names_the_key_and_path(
    tmp_path: Path, market: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = {"prices": str(tmp_path / "nope.parquet"), "signals": str(market["signals"])}
    config = _write_config(tmp_path / "run.yaml", market, data=data)
    code, _, err = _run(capsys, "backtest", "--config", str(config), "--out", str(tmp_path / "res"))
    assert code == 2
    assert "data.prices" in err
    assert "nope.parquet" in err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(
        capsys, "backtest", "--config", str(tmp_path / "x.yaml"), "--out", str(tmp_path)
    )
    assert code == 2
    assert "x.yaml" in err


def test_failed_run_keeps_earlier_results_and_inputs_untouched(
    tmp_path: Path, market: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "res"
    config = _write_config(tmp_path / "run.yaml", market)
    assert _run(capsys, "backtest", "--config", str(config), "--out", str(results))[0] == 0
    before = _digest(results)
    # the same prices with a duplicated row: the next run must fail and change nothing
    bad = tmp_path / "bad_prices.parquet"
    prices = pl.read_parquet(market["prices"])
    pl.concat([prices, prices.head(1)]).write_parquet(bad)
    inputs_before = {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (bad, market["signals"])
    }
    data = {
        "prices": str(bad),
        "signals": str(market["signals"]),
        "context": str(market["context"]),
    }
    bad_config = _write_config(tmp_path / "bad.yaml", market, data=data)
    code, _, err = _run(capsys, "backtest", "--config", str(bad_config), "--out", str(results))
    assert code != 0
    assert "bad_prices.parquet" in err
    assert "asset_id" in err
    assert "Traceback" not in err
    assert _digest(results) == before
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs_before} == inputs_before


def test_same_close_fills_at_the_decision_bar(
    tmp_path: Path, market: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    execution = {"fill_at": "same_close", "commission_rate": 0.0, "allow_negative_cash": True}
    config = _write_config(tmp_path / "run.yaml", market, execution=execution, risk=[])
    assert _run(capsys, "backtest", "--config", str(config), "--out", str(tmp_path / "res"))[0] == 0
    fills = pl.read_parquet(tmp_path / "res" / "fills.parquet")
    orders = pl.read_parquet(tmp_path / "res" / "orders.parquet")
    prices = pl.read_parquet(market["prices"])
    joined = fills.join(prices, on=["timestamp", "asset_id"]).join(
        orders.select("order_id", "created_at"), on="order_id"
    )
    assert joined.height == fills.height > 0
    assert (joined["price"] == joined["close"]).all()
    assert (joined["created_at"] == joined["timestamp"]).all()
    assert_backtest_invariants(tmp_path / "res", prices=market["prices"])


def test_validation_is_remembered_until_a_file_changes(
    tmp_path: Path,
    market: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ml4t_pipeline.validation as validation

    prices = tmp_path / "prices.parquet"
    prices.write_bytes(market["prices"].read_bytes())
    data = {
        "prices": str(prices),
        "signals": str(market["signals"]),
        "context": str(market["context"]),
    }
    config = _write_config(tmp_path / "run.yaml", market, data=data)
    assert _run(capsys, "backtest", "--config", str(config), "--out", str(tmp_path / "a"))[0] == 0

    calls: list[Path] = []
    real = validation.validate_inputs

    def counting(**kwargs: Any) -> Any:
        calls.append(kwargs["prices"])
        return real(**kwargs)

    monkeypatch.setattr(validation, "validate_inputs", counting)
    assert _run(capsys, "backtest", "--config", str(config), "--out", str(tmp_path / "b"))[0] == 0
    assert calls == []  # unchanged inputs: not validated again
    frame = pl.read_parquet(prices)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(-1.0).otherwise(pl.col("low")).alias("low")
    ).write_parquet(prices)
    code, _, err = _run(capsys, "backtest", "--config", str(config), "--out", str(tmp_path / "c"))
    assert calls == [prices]
    assert code == 2
    assert "non_positive_price" in err


def test_vix_filter_without_a_vix_column_is_a_clear_error(
    tmp_path: Path, market: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = {"prices": str(market["prices"]), "signals": str(market["signals"])}
    config = _write_config(tmp_path / "run.yaml", market, data=data)
    code, _, err = _run(capsys, "backtest", "--config", str(config), "--out", str(tmp_path / "res"))
    assert code == 2
    assert "max_vix" in err
    assert "'vix'" in err
    assert not (tmp_path / "res").exists()
