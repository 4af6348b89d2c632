"""The synthetic market generator: layout, bar invariants, skill, ATR, scenarios, determinism."""

from __future__ import annotations

import datetime
import json
import math
import pathlib
from typing import Any

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.errors import ConfigError, DataError
from ml4t_pipeline.sample_data import (
    SCENARIOS,
    SampleData,
    SampleSpec,
    asset_ids,
    generate,
    measured_skill,
    wilder_atr,
    write_sample_data,
)

KEYS = ["timestamp", "asset_id"]
UTC_MICROS = pl.Datetime("us", "UTC")


def _panel(frame: pl.DataFrame, column: str, assets: int) -> np.ndarray[Any, np.dtype[Any]]:
    """A (timestamp, asset_id)-ordered column as a bars x assets array."""
    return frame[column].to_numpy().reshape(-1, assets)


def _log_returns(data: SampleData, assets: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.diff(np.log(_panel(data.prices, "close", assets)), axis=0)


def _lag1_autocorrelation(returns: np.ndarray[Any, np.dtype[np.float64]]) -> float:
    """Pooled lag-1 autocorrelation of market-neutral returns, demeaned per asset.

    Removing the cross-sectional mean of each bar takes out the shared market factor, whose
    own sample autocorrelation would otherwise add noise common to every asset.
    """
    neutral = returns - returns.mean(axis=1, keepdims=True)
    demeaned = neutral - neutral.mean(axis=0)
    return float(np.corrcoef(demeaned[1:].ravel(), demeaned[:-1].ravel())[0, 1])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_gives_a_complete_consistent_panel(scenario: str) -> None:
    spec = SampleSpec(assets=20, days=300, scenario=scenario, seed=11)
    data = generate(spec)
    prices, signals, context = data.prices, data.signals, data.context

    keys = [("timestamp", UTC_MICROS), ("asset_id", pl.String)]
    prices_columns = ["open", "high", "low", "close", "volume"]
    assert list(prices.schema.items()) == keys + [(c, pl.Float64) for c in prices_columns]
    assert list(signals.schema.items()) == [*keys, ("ml_score", pl.Float64), ("atr", pl.Float64)]
    assert list(context.schema.items()) == [("timestamp", UTC_MICROS), ("vix", pl.Float64)]

    rows = spec.assets * spec.days
    assert prices.height == signals.height == rows
    assert context.height == spec.days
    assert prices.select(KEYS).n_unique() == rows
    assert prices.select(KEYS).equals(prices.select(KEYS).sort(KEYS))
    assert prices.select(KEYS).equals(signals.select(KEYS))
    assert context["timestamp"].equals(prices["timestamp"].unique(maintain_order=True))
    assert prices["asset_id"].n_unique() == spec.assets

    ohlcv = prices.select("open", "high", "low", "close", "volume")
    assert ohlcv.null_count().sum_horizontal().item() == 0
    assert not ohlcv.select(pl.all().is_nan().any()).to_numpy().any()
    assert prices.filter(
        (pl.col("high") < pl.max_horizontal("open", "close"))
        | (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.min_horizontal("open", "high", "low", "close") <= 0.0)
        | (pl.col("volume") < 0.0)
    ).is_empty()

    assert signals["ml_score"].null_count() == context["vix"].null_count() == 0
    score = signals["ml_score"].to_numpy()
    assert 0.0 <= score.min() <= score.max() <= 1.0
    assert context["vix"].to_numpy().min() > 0.0


def test_overnight_gaps_exist() -> None:
    assets = 20
    data = generate(SampleSpec(assets=assets, days=300, seed=3))
    opens, closes = _panel(data.prices, "open", assets), _panel(data.prices, "close", assets)
    gaps = np.abs(np.log(opens[1:] / closes[:-1]))
    assert (gaps > 1e-9).mean() > 0.99
    assert gaps.max() > 0.05  # overnight jumps big enough to jump a 5% stop


def test_timestamps_are_business_days_at_utc_midnight() -> None:
    saturday = datetime.date(2024, 1, 6)
    context = generate(SampleSpec(assets=1, days=30, start=saturday)).context
    timestamps = context["timestamp"]
    assert timestamps[0] == datetime.datetime(2024, 1, 8, tzinfo=datetime.UTC)
    assert timestamps.dt.weekday().max() == 5  # Monday=1 .. Friday=5
    assert (timestamps.dt.truncate("1d") == timestamps).all()
    assert timestamps.is_sorted()
    assert timestamps.n_unique() == 30


def test_asset_ids_sort_in_numeric_order() -> None:
    assert asset_ids(3) == ["A0000", "A0001", "A0002"]
    wide = asset_ids(12_000)
    assert wide[0] == "A00000"
    assert wide[-1] == "A11999"
    assert wide == sorted(wide)


@pytest.mark.parametrize("skill", [0.5, 0.55, 0.65])
def test_measured_skill_is_close_to_the_target(skill: float) -> None:
    spec = SampleSpec(assets=100, days=500, skill=skill, seed=17)
    data = generate(spec)
    measured = measured_skill(data.prices, data.signals, spec.horizon)
    print(f"\nskill target={skill:.2f} measured={measured:.4f} ({spec.assets}x{spec.days} bars)")
    assert measured == pytest.approx(skill, abs=0.02)


def test_measured_skill_ignores_row_order() -> None:
    data = generate(SampleSpec(assets=30, days=200, skill=0.6, seed=5))
    ordered = measured_skill(data.prices, data.signals, 5)
    shuffled = measured_skill(
        data.prices.sample(fraction=1.0, shuffle=True, seed=1),
        data.signals.sample(fraction=1.0, shuffle=True, seed=2),
        5,
    )
    assert shuffled == pytest.approx(ordered, abs=1e-12)


def test_measured_skill_counts_the_rule_of_its_docstring() -> None:
    stamps = [datetime.datetime(2024, 1, d, tzinfo=datetime.UTC) for d in (1, 2, 3, 4)]
    prices = pl.DataFrame(
        {"timestamp": stamps, "asset_id": ["A0000"] * 4, "close": [10.0, 11.0, 10.5, 10.0]}
    )
    # t0: up next bar, score high -> hit; t1: down, score high -> miss; t2: down, 0.5 -> skipped;
    # t3: no next bar -> skipped.
    signals = prices.select(KEYS).with_columns(ml_score=pl.Series([0.9, 0.8, 0.5, 0.1]))
    assert measured_skill(prices, signals, 1) == pytest.approx(0.5)
    with pytest.raises(DataError, match="no row"):
        measured_skill(prices, signals, 4)
    with pytest.raises(ConfigError, match="horizon"):
        measured_skill(prices, signals, 0)


def test_atr_is_null_exactly_during_its_warm_up() -> None:
    spec = SampleSpec(assets=7, days=60, atr_window=14, seed=8)
    signals = generate(spec).signals.with_columns(
        bar=pl.int_range(pl.len()).over("asset_id"),
    )
    assert signals.filter(pl.col("atr").is_null())["bar"].max() == spec.atr_window - 1
    assert signals["atr"].null_count() == spec.atr_window * spec.assets
    assert signals["atr"].drop_nulls().to_numpy().min() > 0.0


def test_atr_matches_a_plain_wilder_loop() -> None:
    assets, window = 3, 5
    data = generate(SampleSpec(assets=assets, days=40, atr_window=window, seed=4))
    high, low, close = (_panel(data.prices, c, assets) for c in ("high", "low", "close"))
    atr = _panel(data.signals.with_columns(pl.col("atr").fill_null(np.nan)), "atr", assets)
    for i in range(assets):
        expected = [math.nan] * window
        ranges = [
            max(
                high[t, i] - low[t, i],
                abs(high[t, i] - close[t - 1, i]),
                abs(low[t, i] - close[t - 1, i]),
            )
            for t in range(1, len(close))
        ]
        expected.append(sum(ranges[:window]) / window)
        for tr in ranges[window:]:
            expected.append(expected[-1] + (tr - expected[-1]) / window)
        np.testing.assert_allclose(atr[:, i], expected, rtol=1e-12)


@pytest.mark.parametrize("t", [0, 13, 14, 15, 100, 198])
def test_atr_at_t_does_not_see_bars_after_t(t: int) -> None:
    assets = 5
    prices = generate(SampleSpec(assets=assets, days=200, seed=9)).prices
    high, low, close = (_panel(prices, c, assets).copy() for c in ("high", "low", "close"))
    before = wilder_atr(high, low, close, 14)
    rng = np.random.default_rng(t)
    bump = rng.uniform(0.5, 2.0, size=close[t + 1 :].shape)
    high[t + 1 :] *= bump * 1.1
    low[t + 1 :] *= bump * 0.9
    close[t + 1 :] *= bump
    after = wilder_atr(high, low, close, 14)
    np.testing.assert_array_equal(after[: t + 1], before[: t + 1])
    if t + 1 < len(close) and t + 1 >= 14:
        assert not np.array_equal(after[t + 1 :], before[t + 1 :])


def test_wilder_atr_handles_short_and_one_dimensional_series() -> None:
    values = np.array([10.0, 11.0, 12.0])
    assert np.isnan(wilder_atr(values + 1, values - 1, values, 5)).all()
    atr = wilder_atr(values + 1, values - 1, values, 2)
    np.testing.assert_allclose(atr, [math.nan, math.nan, 2.0])
    for window in (0, 2.5, True):
        with pytest.raises(ConfigError, match="window must be an integer"):
            wilder_atr(values, values, values, window)  # type: ignore[arg-type]


def _scenario_returns(scenario: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    assets = 100
    return _log_returns(generate(SampleSpec(assets=assets, days=500, scenario=scenario)), assets)


def test_bull_rises_and_bear_falls() -> None:
    bull, bear = _scenario_returns("bull"), _scenario_returns("bear")
    print(f"\nmean daily log return: bull={bull.mean():.5f} bear={bear.mean():.5f}")
    assert bull.mean() > 0.0 > bear.mean()
    assert np.expm1(bull).mean() > 0.0 > np.expm1(bear).mean()


def test_high_volatility_is_more_volatile_than_low_volatility() -> None:
    high = _scenario_returns("high_volatility").std()
    low = _scenario_returns("low_volatility").std()
    print(f"\ndaily return sd: high_volatility={high:.4f} low_volatility={low:.4f}")
    assert high > 2.0 * low


def test_mean_reverting_returns_reverse_and_trending_returns_persist() -> None:
    reverting = _lag1_autocorrelation(_scenario_returns("mean_reverting"))
    trending = _lag1_autocorrelation(_scenario_returns("trending"))
    print(f"\nlag-1 autocorrelation: mean_reverting={reverting:.4f} trending={trending:.4f}")
    assert reverting < -0.02
    assert trending > 0.08


def test_mixed_vix_follows_the_market_volatility_regime() -> None:
    assets = 50
    data = generate(SampleSpec(assets=assets, days=1500, scenario="mixed", seed=2))
    market = _log_returns(data, assets).mean(axis=1)
    realised = pl.Series(market).rolling_std(21).to_numpy()[20:]
    vix = data.context["vix"].to_numpy()[21:]
    assert np.corrcoef(realised, vix)[0, 1] > 0.5
    assert 8.0 < vix.min() < 20.0 < vix.max() < 100.0


def test_same_spec_writes_byte_identical_files(tmp_path: pathlib.Path) -> None:
    spec = SampleSpec(assets=30, days=120, seed=21)
    first = write_sample_data(spec, tmp_path / "first")
    second = write_sample_data(spec, tmp_path / "second")
    assert set(first) == {"prices", "signals", "context", "spec"}
    for key, path in first.items():
        assert path.read_bytes() == second[key].read_bytes(), key
    summary = json.loads(first["spec"].read_text(encoding="utf-8"))
    assert summary["generator"] == "ml4t_pipeline.sample_data"  # the package, not a submodule
    assert summary["spec"]["seed"] == 21
    assert summary["spec"]["start"] == "2020-01-01"
    assert sorted(p.name for p in (tmp_path / "first").iterdir()) == [
        "context.parquet",
        "prices.parquet",
        "sample.json",
        "signals.parquet",
    ]


def test_written_files_read_back_as_generated(tmp_path: pathlib.Path) -> None:
    spec = SampleSpec(assets=10, days=50, seed=6)
    paths = write_sample_data(spec, tmp_path)
    data = generate(spec)
    assert pl.read_parquet(paths["prices"]).equals(data.prices)
    assert pl.read_parquet(paths["signals"]).equals(data.signals)
    assert pl.read_parquet(paths["context"]).equals(data.context)


def test_rewriting_replaces_the_files(tmp_path: pathlib.Path) -> None:
    write_sample_data(SampleSpec(assets=5, days=20, seed=1), tmp_path)
    paths = write_sample_data(SampleSpec(assets=6, days=20, seed=1), tmp_path)
    assert pl.read_parquet(paths["prices"])["asset_id"].n_unique() == 6
    assert len(list(tmp_path.iterdir())) == 4  # no temporary files left behind


def test_a_different_seed_gives_different_data() -> None:
    first = generate(SampleSpec(assets=10, days=50, seed=1))
    second = generate(SampleSpec(assets=10, days=50, seed=2))
    assert not first.prices.equals(second.prices)
    assert not first.signals.equals(second.signals)
    assert not first.context.equals(second.context)


def test_prices_do_not_depend_on_the_score_settings() -> None:
    base = generate(SampleSpec(assets=10, days=50, skill=0.55, horizon=5))
    other = generate(SampleSpec(assets=10, days=50, skill=0.7, horizon=3))
    assert base.prices.equals(other.prices)
    assert not base.signals.equals(other.signals)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("assets", 0),
        ("assets", 2.5),
        ("days", 1),
        ("scenario", "sideways"),
        ("skill", -0.1),
        ("skill", 1.5),
        ("skill", True),
        ("horizon", 0),
        ("seed", -1),
        ("atr_window", 0),
        ("start", "2020-01-01"),
    ],
)
def test_a_bad_spec_is_a_config_error_naming_the_field(field: str, value: object) -> None:
    arguments: dict[str, Any] = {field: value}
    with pytest.raises(ConfigError, match=f"SampleSpec.{field}"):
        SampleSpec(**arguments)
