"""Every config value is checked where it is parsed: a bad one is a `ConfigError` naming its key
path, through the Python API and the command line alike (exit 2, one `error:` line, no
traceback, nothing written); good configs keep working."""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from ml4t_pipeline.cli import main
from ml4t_pipeline.engine import run_backtest, run_config_from_dict
from ml4t_pipeline.engine.config import DataConfig, ExecutionConfig, RunConfig, StrategyConfig
from ml4t_pipeline.engine.execution.costs import PerShareCommission, TieredCommission
from ml4t_pipeline.engine.risk.rules import StopLoss, TimeExit, TrailingStop
from ml4t_pipeline.engine.strategy.builtin import SignalThreshold, TopKRotation
from ml4t_pipeline.errors import ConfigError, shown
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spec = SampleSpec(assets=5, days=40, scenario="bull", seed=11, start=dt.date(2023, 3, 1))
    return write_sample_data(spec, tmp_path_factory.mktemp("strict"))


def _base(market: dict[str, Path]) -> dict[str, Any]:
    return {
        "data": {k: str(market[k]) for k in ("prices", "signals", "context")},
        "execution": {"initial_cash": 100_000, "commission_rate": 0.001},
        "strategy": {
            "name": "top_k_rotation",
            "params": {"top_k": 2, "weight": 0.3, "warmup_bars": 2, "rebalance_every": 3},
        },
        "risk": [{"rule": "stop_loss", "pct": 0.05}],
    }


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set `raw[a][b]...` for path 'a.b...'; value DROP removes the key."""
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if value == DROP:
        del node[last]
    else:
        node[last] = value


DROP = "<drop the key>"
LONG = "x" * 5000

#: case -> (changes to the base config as {path: value}, key path the message must name)
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "class_relative_import": ({"strategy": {"class": ".mod:Thing"}}, "strategy.class"),
    "class_not_a_path": ({"strategy": {"class": 5}}, "strategy.class"),
    "stop_pct_as_text": ({"risk": [{"rule": "stop_loss", "pct": "five"}]}, "risk[0].pct"),
    "stop_pct_in_percent": ({"risk": [{"rule": "stop_loss", "pct": 5}]}, "risk[0].pct"),
    "stop_pct_nan": ({"risk": [{"rule": "stop_loss", "pct": math.nan}]}, "risk[0].pct"),
    "stop_without_level": ({"risk": [{"rule": "stop_loss"}]}, "risk[0]"),
    "stop_pct_and_price": ({"risk": [{"rule": "stop_loss", "pct": 0.05, "price": 9}]}, "risk[0]"),
    "trailing_negative": (
        {"risk": [{"rule": "stop_loss", "pct": 0.05}, {"rule": "trailing_stop", "pct": -0.5}]},
        "risk[1].pct",
    ),
    "trailing_schedule_ragged": (
        {"risk": [{"rule": "trailing_stop", "schedule": [[0.1, 0.03, 5]]}]},
        "risk[0].schedule[0]",
    ),
    "trailing_schedule_scalar": (
        {"risk": [{"rule": "trailing_stop", "schedule": 0.1}]},
        "risk[0].schedule",
    ),
    "trailing_schedule_text": (
        {"risk": [{"rule": "trailing_stop", "schedule": [[0.1, "tight"]]}]},
        "risk[0].schedule[0][1]",
    ),
    "trailing_schedule_looser": (
        {"risk": [{"rule": "trailing_stop", "pct": 0.05, "schedule": [[0.1, 0.08]]}]},
        "risk[0].schedule[0][1]",
    ),
    "time_exit_text": ({"risk": [{"rule": "time_exit", "max_bars": "ten"}]}, "risk[0].max_bars"),
    "time_exit_zero": ({"risk": [{"rule": "time_exit", "max_bars": 0}]}, "risk[0].max_bars"),
    "take_profit_missing": ({"risk": [{"rule": "take_profit"}]}, "risk[0].pct"),
    "max_positions_negative": ({"risk": [{"rule": "max_positions", "n": -1}]}, "risk[0].n"),
    "volatility_multiplier_inf": (
        {"risk": [{"rule": "volatility_stop", "atr_multiplier": math.inf}]},
        "risk[0].atr_multiplier",
    ),
    "volatility_feature_nowhere": (
        {"risk": [{"rule": "volatility_stop", "feature": "atrr"}]},
        "risk[0].feature",
    ),
    "rule_unknown_key": ({"risk": [{"rule": "stop_loss", "pct": 0.05, "pc": 1}]}, "risk[0].pc"),
    "rule_name_not_text": ({"risk": [{"rule": 5}]}, "risk[0].rule"),
    "weight_nan": ({"strategy.params.weight": math.nan}, "strategy.params.weight"),
    "weight_inf": ({"strategy.params.weight": math.inf}, "strategy.params.weight"),
    "weight_negative": ({"strategy.params.weight": -0.1}, "strategy.params.weight"),
    "top_k_bool": ({"strategy.params.top_k": True}, "strategy.params.top_k"),
    "max_vix_nan": ({"strategy.params.max_vix": math.nan}, "strategy.params.max_vix"),
    "threshold_inverted": (
        {
            "strategy": {
                "name": "signal_threshold",
                "params": {"entry_above": 0.4, "exit_below": 0.6},
            }
        },
        "strategy.params.exit_below",
    ),
    "threshold_qty_zero": (
        {"strategy": {"name": "signal_threshold", "params": {"qty": 0}}},
        "strategy.params.qty",
    ),
    "signals_empty_path": ({"data.signals": ""}, "data.signals"),
    "signals_missing_for_score": ({"data.signals": DROP}, "strategy.params.score"),
    "score_nowhere": ({"strategy.params.score": "alpha"}, "strategy.params.score"),
    "commission_misspelt": (
        {
            "execution.commission_rate": DROP,
            "execution.commission": {"model": "per_share", "per_share": 0.01, "minimun": 1},
        },
        "execution.commission.minimun",
    ),
    "commission_rate_and_model": (
        {"execution.commission": {"model": "per_order", "per_order": 1.0}},
        "execution: give commission_rate",
    ),
    "commission_rate_inf": (
        {
            "execution.commission_rate": DROP,
            "execution.commission": {"model": "percent", "rate": math.inf},
        },
        "execution.commission.rate",
    ),
    "commission_tiers_descending": (
        {
            "execution.commission_rate": DROP,
            "execution.commission": {
                "model": "tiered",
                "tiers": [[0, 0.002], [5e4, 0.001], [1e4, 0.0]],
            },
        },
        "execution.commission.tiers",
    ),
    "slippage_misspelt": (
        {"execution.slippage": {"model": "fixed_bps", "bsp": 5}},
        "execution.slippage.bsp",
    ),
    "slippage_model_unknown": (
        {"execution.slippage": {"model": "sqrt"}},
        "execution.slippage.model",
    ),
    "initial_cash_inf": ({"execution.initial_cash": math.inf}, "execution.initial_cash"),
    "initial_cash_huge": ({"execution.initial_cash": 1e308}, "execution.initial_cash"),
    "participation_nan": ({"execution.max_participation": math.nan}, "execution.max_participation"),
    "on_no_bar_unknown": ({"execution.on_no_bar": "later"}, "execution.on_no_bar"),
    "on_delist_number": ({"execution.on_delist": 5}, "execution.on_delist"),
    "data_unknown_key": ({"data.pricess": "x.parquet"}, "data.pricess"),
    "long_value_is_cut": ({"execution.fill_at": LONG}, "execution.fill_at"),
}


def _bad_config(market: dict[str, Path], case: str) -> tuple[dict[str, Any], str]:
    changes, where = BAD[case]
    raw = _base(market)
    for path, value in copy.deepcopy(changes).items():
        _set(raw, path, value)
    return raw, where


def _api(raw: dict[str, Any]) -> None:
    run_backtest(run_config_from_dict(raw))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_value_through_the_api_names_its_key(market: dict[str, Path], case: str) -> None:
    raw, where = _bad_config(market, case)
    with pytest.raises(ConfigError, match=re.escape(where)) as caught:
        _api(raw)
    assert len(str(caught.value)) < 600  # values are cut to ~200 characters


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_value_through_the_cli_is_one_error_line(
    tmp_path: Path, market: dict[str, Path], capsys: pytest.CaptureFixture[str], case: str
) -> None:
    raw, where = _bad_config(market, case)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "res"
    code = main(["backtest", "--config", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert where in lines[0]
    assert "Traceback" not in err
    assert not out.exists()


def test_messages_say_what_a_fraction_is(market: dict[str, Path]) -> None:
    raw, _ = _bad_config(market, "stop_pct_in_percent")
    with pytest.raises(ConfigError) as caught:
        _api(raw)
    assert str(caught.value) == ("risk[0].pct must be a fraction in (0, 1): 0.05 for 5 %, got 5.0")


def test_a_missing_feature_lists_the_available_columns(market: dict[str, Path]) -> None:
    raw, _ = _bad_config(market, "volatility_feature_nowhere")
    with pytest.raises(ConfigError, match=re.escape("available: ['atr', 'ml_score']")):
        _api(raw)


def test_long_values_are_cut_in_messages() -> None:
    text = shown(LONG)
    assert len(text) < 260
    assert text.startswith("'xxx")
    assert text.endswith("(5002 characters)")
    assert shown(0.05) == "0.05"


#: good configs: each must run through the API and the CLI
GOOD: dict[str, dict[str, Any]] = {
    "base": {},
    "reference_rules": {
        "risk": [
            {"rule": "trailing_stop", "pct": 0.08, "schedule": [[0.10, 0.05], [0.20, 0.03]]},
            {"rule": "time_exit", "max_bars": 60},
            {"rule": "volatility_stop", "atr_multiplier": 2, "feature": "atr"},
            {"rule": "max_positions", "n": 0},
            {"rule": "regime", "feature": "vix", "threshold": 30, "exit_all": True},
        ]
    },
    "per_share_commission": {
        "execution.commission_rate": DROP,
        "execution.commission": {"model": "per_share", "per_share": 0.01, "minimum": 1},
        "execution.slippage": {"model": "fixed_bps", "bps": 5},
    },
    "tiered_commission": {
        "execution.commission_rate": DROP,
        "execution.commission": {"model": "tiered", "tiers": [[0, 0.002], [1e4, 0.001]]},
        "execution.slippage": {"model": "volume_share"},
        "execution.max_participation": 1,
    },
    "no_vix_filter": {"strategy.params.max_vix": None, "execution.initial_cash": 1e12},
    "threshold_strategy": {"strategy": {"name": "signal_threshold", "params": {"qty": 5}}},
}


@pytest.mark.parametrize("case", sorted(GOOD))
def test_good_configs_still_run(
    tmp_path: Path, market: dict[str, Path], capsys: pytest.CaptureFixture[str], case: str
) -> None:
    raw = _base(market)
    for path, value in copy.deepcopy(GOOD[case]).items():
        _set(raw, path, value)
    assert run_backtest(run_config_from_dict(raw)).equity.height > 0
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    code = main(["backtest", "--config", str(config), "--out", str(tmp_path / "res")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "res" / "equity.parquet").is_file()


def test_python_objects_are_checked_like_a_config(market: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match=re.escape("StopLoss.pct must be a fraction")):
        StopLoss(pct=5)
    with pytest.raises(ConfigError, match=re.escape("TrailingStop.pct")):
        TrailingStop(pct=-0.5)
    with pytest.raises(ConfigError, match=re.escape("TimeExit.max_bars")):
        TimeExit(max_bars="ten")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=re.escape("PerShareCommission.minimum")):
        PerShareCommission(per_share=0.01, minimum=math.nan)
    with pytest.raises(ConfigError, match=re.escape("TieredCommission.tiers")):
        TieredCommission(tiers=((100.0, 0.001),))
    with pytest.raises(ConfigError, match=re.escape("execution.initial_cash")):
        ExecutionConfig(initial_cash=math.inf)
    with pytest.raises(ConfigError, match=re.escape("execution.on_no_bar")):
        ExecutionConfig(on_no_bar="later")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=re.escape("strategy.params.weight")):
        TopKRotation(weight=math.nan)
    with pytest.raises(ConfigError, match=re.escape("strategy.params.qty")):
        SignalThreshold(qty=-3)
    data = DataConfig(prices=market["prices"], signals=market["signals"])
    strategy = StrategyConfig(name="top_k_rotation", params={"top_k": 2, "weight": 0.3})
    config = RunConfig(data=data, strategy=strategy, risk=({"rule": "stop_loss", "pct": 5},))
    with pytest.raises(ConfigError, match=re.escape("risk[0].pct")):
        run_backtest(config)
    config = RunConfig(data=data, strategy=strategy, risk=({"rule": "volatility_stop"},))
    run_backtest(config)  # 'atr' is a signal column
    with pytest.raises(ConfigError, match=re.escape("risk[0].feature = 'atr'")):
        run_backtest(config, signals=pl.read_parquet(market["signals"]).drop("atr"))
