"""Splits, price jumps and early ends in the prices, against the corporate actions file.

Every case writes its prices (and actions) to Parquet and validates the files; the expected
dates and ratios are the ones the test put into the data.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

import ml4t_pipeline.validation as validation
from ml4t_pipeline.cli import main
from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.validation import CoveragePolicy, Failure, Rule, Severity, ValidationReport
from ml4t_pipeline.validation.grid import key_panel
from ml4t_pipeline.validation.moves import move_failures, smallest_split_move
from ml4t_pipeline.validation.policy import DEFAULT_POLICY, STRICT_SPLITS
from tests.invariants import assert_backtest_invariants

START = dt.datetime(2005, 1, 3, tzinfo=dt.UTC)  # a Monday
DAYS = 60


def business_days(n: int) -> list[dt.datetime]:
    days: list[dt.datetime] = []
    day = START
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def bars(asset: str, *, seed: int, event: tuple[int, float, float] | None = None) -> pl.DataFrame:
    """Quiet daily bars (moves of ~1 %); `event` = (day, price factor, volume factor) applied
    from that day on (a split of s: price factor 1/s, volume factor s)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, DAYS)))
    volume = rng.integers(10_000, 11_000, DAYS).astype(np.float64)
    if event is not None:
        day, price, vol = event
        close[day:] *= price
        volume[day:] *= vol
    open_ = np.r_[close[0], close[:-1]] * (1 + rng.normal(0.0, 0.002, DAYS))
    if event is not None:
        open_[event[0]] = close[event[0]] * (1 + rng.normal(0.0, 0.002))
    return pl.DataFrame(
        {
            "timestamp": business_days(DAYS),
            "asset_id": asset,
            "open": open_,
            "high": np.maximum(open_, close) * 1.01,
            "low": np.minimum(open_, close) * 0.99,
            "close": close,
            "volume": volume,
        }
    )


def day(i: int) -> dt.datetime:
    return business_days(DAYS)[i]


def write(
    tmp_path: Path, prices: pl.DataFrame, actions: list[dict[str, Any]] | None = None
) -> dict[str, Path]:
    paths = {"prices": tmp_path / "prices.parquet"}
    prices.write_parquet(paths["prices"])
    if actions is not None:
        paths["corporate_actions"] = tmp_path / "actions.parquet"
        pl.DataFrame(actions).write_parquet(paths["corporate_actions"])
    return paths


def validate(paths: dict[str, Path], policy: CoveragePolicy = DEFAULT_POLICY) -> ValidationReport:
    return validation.validate_inputs(
        prices=paths["prices"], corporate_actions=paths.get("corporate_actions"), policy=policy
    )


def rules(report: ValidationReport) -> dict[Rule, Failure]:
    found = {f.rule: f for f in report.failures}
    assert len(found) == len(report.failures), report.summary()
    return found


def quiet(*assets: str) -> list[pl.DataFrame]:
    return [bars(a, seed=10 + i) for i, a in enumerate(assets)]


def test_quiet_prices_report_nothing(tmp_path: Path) -> None:
    report = validate(write(tmp_path, pl.concat(quiet("A", "B"))))
    assert report.failures == ()
    assert DEFAULT_POLICY.jump_threshold < smallest_split_move()  # a split is never missed


@pytest.mark.parametrize(
    ("split", "asset"), [(2.0, "AAPL"), (1.5, "IBM"), (10.0, "X"), (0.1, "REV"), (1 / 3, "R3")]
)
def test_an_unexplained_split_names_asset_date_and_ratio(
    tmp_path: Path, split: float, asset: str
) -> None:
    prices = pl.concat([*quiet("B"), bars(asset, seed=3, event=(30, 1 / split, split))])
    found = rules(validate(write(tmp_path, prices)))
    assert set(found) == {Rule.POSSIBLE_SPLIT}
    failure = found[Rule.POSSIBLE_SPLIT]
    assert failure.severity is Severity.WARNING
    assert failure.n_rows == 1
    (example,) = failure.examples
    assert f"asset_id={asset}" in example
    assert f"timestamp={day(30)}" in example
    assert f"split_ratio={split}" in example
    strict = validate(write(tmp_path, prices), STRICT_SPLITS)
    assert [f.rule for f in strict.errors] == [Rule.POSSIBLE_SPLIT]


def test_a_split_in_the_actions_file_explains_the_move(tmp_path: Path) -> None:
    prices = pl.concat([*quiet("B"), bars("AAPL", seed=3, event=(30, 0.5, 2.0))])
    actions = [{"timestamp": day(30), "asset_id": "AAPL", "split_ratio": 2.0}]
    assert validate(write(tmp_path, prices, actions)).failures == ()


def test_an_ex_date_on_a_weekend_is_the_next_bar(tmp_path: Path) -> None:
    prices = pl.concat([*quiet("B"), bars("AAPL", seed=3, event=(30, 0.5, 2.0))])
    saturday = day(30) - dt.timedelta(days=2)
    assert day(30).weekday() == 0
    actions = [{"timestamp": saturday, "asset_id": "AAPL", "split_ratio": 2.0}]
    assert validate(write(tmp_path, prices, actions)).failures == ()


def test_a_split_of_another_ratio_does_not_explain_the_move(tmp_path: Path) -> None:
    prices = pl.concat([*quiet("B"), bars("AAPL", seed=3, event=(30, 0.5, 2.0))])
    actions = [{"timestamp": day(30), "asset_id": "AAPL", "split_ratio": 3.0}]
    found = rules(validate(write(tmp_path, prices, actions)))
    assert set(found) == {Rule.POSSIBLE_SPLIT, Rule.SPLIT_NOT_IN_PRICES}


def test_a_split_the_prices_do_not_show_would_adjust_twice(tmp_path: Path) -> None:
    """Prices already adjusted, and the split still in the actions file."""
    actions = [
        {"timestamp": day(20), "asset_id": "A", "split_ratio": 2.0, "dividend": None},
        {"timestamp": day(25), "asset_id": "B", "split_ratio": None, "dividend": 0.5},
    ]
    paths = write(tmp_path, pl.concat(quiet("A", "B")), actions)
    found = rules(validate(paths))
    assert set(found) == {Rule.SPLIT_NOT_IN_PRICES}
    failure = found[Rule.SPLIT_NOT_IN_PRICES]
    assert failure.file == str(paths["corporate_actions"])
    assert failure.n_rows == 1
    assert "asset_id=A " in failure.examples[0]
    assert "split_ratio=2.0" in failure.examples[0]
    strict = validate(paths, STRICT_SPLITS)
    assert [f.rule for f in strict.errors] == [Rule.SPLIT_NOT_IN_PRICES]


def test_actions_outside_the_prices_are_not_judged(tmp_path: Path) -> None:
    actions = [
        {"timestamp": day(0), "asset_id": "A", "split_ratio": 2.0},  # the first bar: no move
        {"timestamp": day(DAYS - 1) + dt.timedelta(days=30), "asset_id": "A", "split_ratio": 2.0},
        {"timestamp": day(10), "asset_id": "ZZZ", "split_ratio": 2.0},  # no prices at all
    ]
    assert validate(write(tmp_path, pl.concat(quiet("A")), actions)).failures == ()


def test_a_crash_with_volume_is_a_jump_not_a_split(tmp_path: Path) -> None:
    prices = pl.concat([*quiet("B"), bars("CRASH", seed=3, event=(40, 0.6, 3.0))])
    found = rules(validate(write(tmp_path, prices)))
    assert set(found) == {Rule.PRICE_JUMP}
    assert "asset_id=CRASH" in found[Rule.PRICE_JUMP].examples[0]
    assert found[Rule.PRICE_JUMP].n_rows == 1


def test_a_halving_with_falling_volume_is_still_a_possible_split(tmp_path: Path) -> None:
    """Sources that adjust volume but not prices exist (bokeh-sampledata's stocks): the volume
    is shown (volume_confirms), not required."""
    prices = pl.concat([*quiet("B"), bars("HALF", seed=3, event=(40, 0.5, 0.5))])
    found = rules(validate(write(tmp_path, prices)))
    assert set(found) == {Rule.POSSIBLE_SPLIT}
    assert "volume_confirms=false" in found[Rule.POSSIBLE_SPLIT].examples[0].lower()
    confirmed = pl.concat([*quiet("B"), bars("HALF", seed=3, event=(40, 0.5, 2.0))])
    example = rules(validate(write(tmp_path, confirmed)))[Rule.POSSIBLE_SPLIT].examples[0]
    assert "volume_confirms=true" in example.lower()


def test_a_move_below_the_threshold_is_not_reported(tmp_path: Path) -> None:
    prices = pl.concat([*quiet("B"), bars("DIP", seed=3, event=(40, 0.8, 3.0))])
    assert validate(write(tmp_path, prices)).failures == ()
    tight = validate(write(tmp_path, prices), CoveragePolicy(jump_threshold=0.2))
    assert set(rules(tight)) == {Rule.PRICE_JUMP}


def test_holes_in_the_panel_compare_with_the_previous_bar_either_way(tmp_path: Path) -> None:
    """The grid and the sort find the same previous bar around missing bars."""
    prices = pl.concat([*quiet("B", "C"), bars("AAPL", seed=3, event=(30, 0.5, 2.0))])
    dropped = prices.filter(
        ~((pl.col("asset_id") == "AAPL") & pl.col("timestamp").is_in([day(28), day(29)]))
    )
    panel = key_panel(dropped, max_grid_cells=None)
    assert panel is not None
    on_grid = move_failures(dropped, file="p", policy=DEFAULT_POLICY, panel=panel)
    sorted_ = move_failures(dropped, file="p", policy=DEFAULT_POLICY, panel=panel, max_grid_cells=0)
    assert on_grid == sorted_
    assert [f.rule for f in on_grid] == [Rule.POSSIBLE_SPLIT]
    assert f"timestamp={day(30)}" in on_grid[0].examples[0]


def test_an_asset_whose_data_ends_early_is_reported(tmp_path: Path) -> None:
    prices = pl.concat([*quiet("A", "C"), bars("GONE", seed=4).head(40)])
    found = rules(validate(write(tmp_path, prices)))
    assert set(found) == {Rule.DATA_ENDS}
    failure = found[Rule.DATA_ENDS]
    assert "delisted or data ends" in failure.detail
    assert failure.examples == (f"asset_id=GONE last_bar={day(39)}",)
    assert str(day(DAYS - 1).date()) in failure.detail


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("jump_threshold", 0),
        ("jump_threshold", float("nan")),
        ("jump_threshold", "big"),
        ("possible_split", "info"),
        ("price_jump", "loud"),
        ("data_ends", None),
    ],
)
def test_policy_fields_are_checked(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        CoveragePolicy(**{field: value})  # type: ignore[arg-type]


def test_policy_severities_read_from_strings() -> None:
    policy = CoveragePolicy(possible_split="error", jump_threshold=1)  # type: ignore[arg-type]
    assert policy.possible_split is Severity.ERROR
    assert policy.jump_threshold == 1.0


# -- the backtest summary ---------------------------------------------------------------------


def _config(tmp_path: Path, paths: dict[str, Path]) -> Path:
    signals = pl.read_parquet(paths["prices"]).select("timestamp", "asset_id")
    signals = signals.with_columns(
        ml_score=pl.Series(np.random.default_rng(1).uniform(0, 1, signals.height))
    )
    signals.write_parquet(tmp_path / "signals.parquet")
    raw = {
        "data": {
            **{k: str(v) for k, v in paths.items()},
            "signals": str(tmp_path / "signals.parquet"),
        },
        "strategy": {
            "name": "signal_threshold",
            "params": {"score": "ml_score", "entry_above": 0.6, "exit_below": 0.4, "qty": 10},
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _backtest(
    capsys: pytest.CaptureFixture[str], config: Path, out: Path, *flags: str
) -> dict[str, Any]:
    code = main(["backtest", "--config", str(config), "--out", str(out), *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary: dict[str, Any] = json.loads(captured.out.strip().splitlines()[-1])
    return summary


def test_the_summary_repeats_split_warnings_also_from_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = pl.concat([*quiet("B"), bars("AAPL", seed=3, event=(30, 0.5, 2.0))])
    paths = write(tmp_path, prices)
    config = _config(tmp_path, paths)
    first = _backtest(capsys, config, tmp_path / "a")
    (warning,) = first["data_warnings"]
    assert "possible_split" in warning
    assert "asset_id=AAPL" in warning
    assert "split_ratio=2.0" in warning
    assert_backtest_invariants(tmp_path / "a", prices=paths["prices"])

    calls: list[object] = []
    real = validation.validate_inputs

    def counting(**kwargs: Any) -> ValidationReport:
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(validation, "validate_inputs", counting)
    second = _backtest(capsys, config, tmp_path / "b")
    assert calls == []  # the cache entry answered
    assert second["data_warnings"] == first["data_warnings"]

    skipped = _backtest(capsys, config, tmp_path / "c", "--no-validate")
    assert skipped["data_warnings"] == "not checked: validation skipped (--no-validate)"


def test_the_actions_file_is_part_of_the_cache_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = pl.concat([*quiet("B"), bars("AAPL", seed=3, event=(30, 0.5, 2.0))])
    actions = [{"timestamp": day(30), "asset_id": "AAPL", "split_ratio": 2.0}]
    paths = write(tmp_path, prices, actions)
    config = _config(tmp_path, paths)
    assert _backtest(capsys, config, tmp_path / "a")["data_warnings"] == []
    pl.DataFrame([{**actions[0], "split_ratio": 3.0}]).write_parquet(paths["corporate_actions"])
    warned = _backtest(capsys, config, tmp_path / "b")["data_warnings"]
    assert len(warned) == 2
    assert "rule possible_split" in warned[1]
    assert "rule split_not_in_prices" in warned[0]
