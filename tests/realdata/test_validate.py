"""`validate` on real prices: each split of the unadjusted prices is a warning naming the asset
and the ex-date, unless the actions file explains it; the split-adjusted prices have none."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from ml4t_pipeline.cli import main
from ml4t_pipeline.validation import ValidationReport, validate_inputs
from tests.realdata.conftest import KNOWN_SPLITS

#: AAPL's close fell by half on 2000-09-29 after a profit warning: a real move, no split.
AAPL_2000_CRASH = ("AAPL", dt.date(2000, 9, 29))
MOVE_RULES = {"possible_split", "price_jump"}


def _flagged(report: ValidationReport) -> set[tuple[str, str, dt.date]]:
    """(rule, asset, date) of every split or jump warning's examples."""
    found = set()
    for failure in report.warnings:
        if str(failure.rule) not in MOVE_RULES:
            continue
        for example in failure.examples:
            fields = dict(part.split("=", 1) for part in example.split(" ") if "=" in part)
            stamp = example.split("timestamp=", 1)[1][:10]
            found.add((str(failure.rule), fields["asset_id"], dt.date.fromisoformat(stamp)))
    return found


def test_each_split_is_a_warning_unless_the_actions_file_explains_it(
    real_dir: dict[str, Path],
) -> None:
    crash = ("price_jump", *AAPL_2000_CRASH)
    splits = {("possible_split", asset, day) for asset, day in KNOWN_SPLITS}
    without = validate_inputs(prices=real_dir["prices"])
    assert without.ok
    assert _flagged(without) == {*splits, crash}
    with_actions = validate_inputs(
        prices=real_dir["prices"], corporate_actions=real_dir["corporate_actions"]
    )
    assert _flagged(with_actions) == {crash}
    assert with_actions.ok
    adjusted = validate_inputs(prices=real_dir["prices_split_adjusted"])
    assert adjusted.ok
    assert _flagged(adjusted) == {crash}
    # the actions applied to already adjusted prices would adjust them twice: each is reported
    twice = validate_inputs(
        prices=real_dir["prices_split_adjusted"], corporate_actions=real_dir["corporate_actions"]
    )
    assert {str(f.rule) for f in twice.warnings} >= {"split_not_in_prices"}


def _config(folder: Path, paths: dict[str, Path], name: str = "run", **extra: object) -> Path:
    body = {
        "data": {"prices": str(paths["prices"]), **extra.pop("data", {})},  # type: ignore[dict-item]
        "strategy": {"name": "signal_threshold", "params": {"score": "momentum_20", "qty": 10}},
        **extra,
    }
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


def test_a_strict_policy_in_the_config_makes_unexplained_splits_errors(
    tmp_path: Path, split_2005_dir: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    signals = {"signals": str(split_2005_dir["signals"])}
    strict = {"possible_split": "error", "split_not_in_prices": "error"}
    config = _config(tmp_path, split_2005_dir, "strict", data=signals, validation=strict)
    assert main(["validate", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "rule possible_split" in err
    assert "asset_id=AAPL" in err
    # the backtest refuses the same inputs before it runs (no cache entry of the lenient pass)
    lenient = _config(tmp_path, split_2005_dir, "lenient", data=signals)
    assert main(["validate", "--config", str(lenient)]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["backtest", "--config", str(config), "--out", str(out)]) != 0
    assert "rule possible_split" in capsys.readouterr().err
    assert not out.exists()
    # the actions file explains the split: strict passes
    actions = {**signals, "corporate_actions": str(split_2005_dir["corporate_actions"])}
    explained = _config(tmp_path, split_2005_dir, "explained", data=actions, validation=strict)
    assert main(["validate", "--config", str(explained)]) == 0


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ({"possible_splits": "error"}, "validation.possible_splits"),
        ({"possible_split": "strict"}, "possible_split"),
        ({"jump_threshold": -1}, "jump_threshold"),
    ],
)
def test_a_bad_policy_is_an_error_naming_the_key(
    tmp_path: Path,
    split_2005_dir: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    policy: dict[str, object],
    named: str,
) -> None:
    config = _config(tmp_path, split_2005_dir, validation=policy)
    assert main(["validate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert named in err
