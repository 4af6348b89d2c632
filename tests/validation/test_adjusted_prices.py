"""Split-adjusted prices: OHLC relations off in the 15th digit are accepted and reported.

The data follows the usual recipe for adjusted bars: close := adj_close, and open, high, low
scaled by adj_close / close, where adj_close is a vendor's adjusted close (rounded to six
decimals) and the raw bars often close at their high or low. Beyond `OHLC_RTOL` a bar is
still refused, naming the rule, by `validate` and by `backtest --no-validate` alike.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from ml4t_pipeline.cli import main
from ml4t_pipeline.engine.feed.panel import Calendar, check_bars
from ml4t_pipeline.engine.tolerances import OHLC_RTOL
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.validation import Rule, Severity, validate_inputs
from tests.invariants import assert_backtest_invariants

DAYS = 400
ASSETS = ("AAPL", "MSFT")


def raw_bars(asset: str, seed: int) -> pl.DataFrame:
    """Unadjusted daily bars in cents, a 2:1 split at day 200; about a third of the bars close
    at their high and a third at their low."""
    rng = np.random.default_rng(seed)
    close = np.round(80.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, DAYS))), 2)
    open_ = np.round(np.r_[close[0], close[:-1]] * (1 + rng.normal(0.0, 0.004, DAYS)), 2)
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    mode = rng.integers(0, 3, DAYS)  # 0: close at the high, 1: at the low, 2: neither
    high = np.where(mode == 0, top, np.round(top + rng.uniform(0.01, 1.0, DAYS), 2))
    low = np.where(mode == 1, bottom, np.round(bottom - rng.uniform(0.01, 1.0, DAYS), 2))
    before = np.arange(DAYS) < 200
    scale = np.where(before, 2.0, 1.0)  # the raw prices before the split are twice as high
    start = dt.datetime(2005, 1, 3, tzinfo=dt.UTC)
    return pl.DataFrame(
        {
            "timestamp": [start + dt.timedelta(days=d) for d in range(DAYS)],
            "asset_id": asset,
            "open": open_ * scale,
            "high": high * scale,
            "low": low * scale,
            "close": close * scale,
            "volume": rng.integers(1_000, 5_000, DAYS) * np.where(before, 1, 2),
            # the vendor's adjusted close: split and dividend factors, six decimals
            "adj_close": np.round(close * scale * np.where(before, 0.5, 1.0) * 0.987654, 6),
        }
    )


def adjusted(raw: pl.DataFrame) -> pl.DataFrame:
    """x * adj_close / close, evaluated left to right as a spreadsheet or pandas would."""
    return raw.select(
        "timestamp",
        "asset_id",
        *(
            (pl.col(c) * pl.col("adj_close") / pl.col("close")).alias(c)
            for c in ("open", "high", "low")
        ),
        pl.col("adj_close").alias("close"),
        "volume",
    )


def exact_breaks(frame: pl.DataFrame) -> dict[str, int]:
    """Rows breaking each OHLC relation exactly, counted with numpy (not the rules)."""
    o, h, low, c = (frame.get_column(n).to_numpy() for n in ("open", "high", "low", "close"))
    counts = {
        "high_below_max_open_close": int(((h < o) | (h < c)).sum()),
        "low_above_min_open_close": int(((low > o) | (low > c)).sum()),
        "high_below_low": int((h < low).sum()),
    }
    return {rule: n for rule, n in counts.items() if n}


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    prices = pl.concat([adjusted(raw_bars(a, seed)) for seed, a in enumerate(ASSETS)])
    rng = np.random.default_rng(9)
    signals = prices.select("timestamp", "asset_id").with_columns(
        ml_score=pl.Series(rng.uniform(0.0, 1.0, prices.height))
    )
    paths = {"prices": tmp_path / "prices.parquet", "signals": tmp_path / "signals.parquet"}
    prices.write_parquet(paths["prices"])
    signals.write_parquet(paths["signals"])
    return paths


def write_config(tmp_path: Path, inputs: dict[str, Path]) -> Path:
    raw = {
        "data": {k: str(v) for k, v in inputs.items()},
        "execution": {"commission_rate": 0.001},
        "strategy": {
            "name": "signal_threshold",
            "params": {"score": "ml_score", "entry_above": 0.6, "exit_below": 0.4, "qty": 100},
        },
        "risk": [{"rule": "stop_loss", "pct": 0.02}],
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_recipe_breaks_relations_in_the_last_digits_only(inputs: dict[str, Path]) -> None:
    frame = pl.read_parquet(inputs["prices"])
    assert exact_breaks(frame)  # the recipe does produce float noise...
    o, h, c = (frame.get_column(n).to_numpy() for n in ("open", "high", "close"))
    worst = np.max(np.maximum(o - h, c - h) / np.maximum(o, c))
    assert 0 < worst < 1e-14  # ...in the 15th digit


def test_validate_accepts_and_reports_what_it_tolerated(
    tmp_path: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    expected = exact_breaks(pl.read_parquet(inputs["prices"]))
    report = validate_inputs(prices=inputs["prices"], signals=inputs["signals"])
    assert report.ok, report.summary()
    assert report.tolerated_counts() == {str(inputs["prices"]): expected}
    assert {t.severity for t in report.tolerated} == {Severity.INFO}
    assert all(t.examples for t in report.tolerated)

    code = main(["validate", "--config", str(write_config(tmp_path, inputs))])
    captured = capsys.readouterr()
    assert code == 0
    line = json.loads(captured.out.strip().splitlines()[-1])
    assert line["ok"] is True
    assert line["errors"] == 0
    assert line["tolerated"] == {str(inputs["prices"]): expected}
    assert "info:" in captured.err
    assert "high_below_max_open_close" in captured.err


@pytest.mark.parametrize("validate", [True, False])
def test_backtest_runs_on_adjusted_bars(
    tmp_path: Path, inputs: dict[str, Path], validate: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "res"
    argv = ["backtest", "--config", str(write_config(tmp_path, inputs)), "--out", str(out)]
    code = main([*argv] if validate else [*argv, "--no-validate"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["fills"] > 0
    assert summary["ohlc_widened_bars"] > 0  # said in the summary, with or without validation
    # the fills are checked against the bars as written in the file
    assert_backtest_invariants(out, prices=inputs["prices"])


def test_beyond_the_tolerance_is_refused_by_both_paths(
    tmp_path: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pl.read_parquet(inputs["prices"])
    bad_row = 57
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == bad_row)
        .then(pl.max_horizontal("open", "close") * (1 - 10 * OHLC_RTOL))
        .otherwise(pl.col("high"))
        .alias("high")
    )
    frame.write_parquet(inputs["prices"])
    report = validate_inputs(prices=inputs["prices"])
    broken = [f for f in report.errors if f.rule is Rule.HIGH_BELOW_MAX_OPEN_CLOSE]
    assert len(broken) == 1
    assert broken[0].n_rows == 1
    config = str(write_config(tmp_path, inputs))
    code = main(["backtest", "--config", config, "--out", str(tmp_path / "r"), "--no-validate"])
    err = capsys.readouterr().err
    assert code == 2
    assert "high_below_max_open_close" in err
    assert "1 row" in err


def _calendar(n_bars: int, n_assets: int) -> Calendar:
    return Calendar(
        timestamps=np.arange(n_bars, dtype=np.int64) * 86_400_000_000,
        assets=np.array([f"A{a}" for a in range(n_assets)], dtype=object),
    )


def test_the_feed_widens_a_tolerated_bar_and_nothing_else() -> None:
    close = np.array([[10.0, 20.0], [11.0, 21.6]])
    dense = {
        "open": np.array([[10.0, 19.5], [10.5, 21.5]]),
        "high": np.array([[10.0 * (1 - 1e-12), 20.5], [11.5, 21.7]]),  # cell (0, 0): high < close
        "low": np.array([[9.5, 19.0], [10.0, 21.5 * (1 + 1e-12)]]),  # cell (1, 1): low > open
        "close": close,
    }
    before = {k: v.copy() for k, v in dense.items()}
    has_bar = np.ones((2, 2), dtype=bool)
    assert check_bars(dense, has_bar, _calendar(2, 2), 0, "prices") == 2
    assert dense["high"][0, 0] == 10.0  # max(high, open, close)
    assert dense["low"][1, 1] == 21.5  # min(low, open, close)
    untouched = np.ones((2, 2), dtype=bool)
    untouched[0, 0] = untouched[1, 1] = False
    for name in dense:
        assert np.array_equal(dense[name][untouched], before[name][untouched])
    assert abs(dense["high"][0, 0] - before["high"][0, 0]) <= OHLC_RTOL * close[0, 0]


def test_the_feed_refuses_beyond_the_tolerance() -> None:
    dense = {
        "open": np.array([[10.0]]),
        "high": np.array([[10.0 * (1 - 1e-8)]]),
        "low": np.array([[9.0]]),
        "close": np.array([[9.5]]),
    }
    with pytest.raises(DataError, match="high_below_max_open_close"):
        check_bars(dense, np.ones((1, 1), dtype=bool), _calendar(1, 1), 0, "prices")
