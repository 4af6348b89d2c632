"""The real-stocks builder: the splits it finds are the known ones, the split-adjusted prices
divide by exactly those ratios, the signal is point in time, and the files are published whole."""

from __future__ import annotations

import datetime as dt
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.errors import ConfigError, DataError
from ml4t_pipeline.sample_data import real_stocks
from ml4t_pipeline.sample_data.real_stocks import (
    FILE_NAMES,
    SIGNAL,
    classify_steps,
    load_stocks,
    write_real_inputs,
)
from tests.realdata.conftest import KNOWN_SPLITS


def _splits(actions: pl.DataFrame) -> dict[tuple[str, dt.date], float]:
    rows = actions.filter(pl.col("split_ratio") != 1.0)
    return {
        (asset, when.date()): ratio
        for when, asset, ratio in rows.select("timestamp", "asset_id", "split_ratio").iter_rows()
    }


def test_the_splits_found_are_the_known_ones(real_dir: dict[str, Path]) -> None:
    actions = pl.read_parquet(real_dir["corporate_actions"])
    assert _splits(actions) == KNOWN_SPLITS
    assert actions.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert set(actions.columns) == {"timestamp", "asset_id", "split_ratio", "dividend"}


def test_each_split_is_an_overnight_gap_of_its_ratio_in_the_raw_prices(
    real_dir: dict[str, Path],
) -> None:
    """Read from the unadjusted bars alone (not from adj_close): the close before the ex-date
    over the ex-date's open is near the ratio."""
    prices = pl.read_parquet(real_dir["prices"]).sort("asset_id", "timestamp")
    gaps = prices.with_columns(
        (pl.col("close").shift(1) / pl.col("open")).over("asset_id").alias("gap")
    )
    for (asset, day), ratio in KNOWN_SPLITS.items():
        row = gaps.filter((pl.col("asset_id") == asset) & (pl.col("timestamp").dt.date() == day))
        assert row.height == 1
        assert row["gap"][0] == pytest.approx(ratio, rel=0.1)


def test_split_adjusted_prices_divide_by_the_later_splits_exactly(
    real_dir: dict[str, Path],
) -> None:
    raw = pl.read_parquet(real_dir["prices"])
    adjusted = pl.read_parquet(real_dir["prices_split_adjusted"])
    assert adjusted.columns == raw.columns
    assert adjusted.select("timestamp", "asset_id").equals(raw.select("timestamp", "asset_id"))

    def later_splits(asset: str, when: dt.datetime) -> float:
        factor = 1.0
        for (a, day), ratio in KNOWN_SPLITS.items():
            if a == asset and day > when.date():
                factor *= ratio
        return factor

    factor = np.array(
        [later_splits(a, t) for t, a in raw.select("timestamp", "asset_id").iter_rows()]
    )
    for field in ("open", "high", "low", "close"):
        assert np.array_equal(adjusted[field].to_numpy(), raw[field].to_numpy() / factor)
    assert np.array_equal(adjusted["volume"].to_numpy(), raw["volume"].to_numpy() * factor)
    assert factor.max() == 4.0  # AAPL before 2000-06-21: both of its splits are later


def test_split_adjusted_closes_are_continuous_where_the_raw_ones_halve(
    real_dir: dict[str, Path],
) -> None:
    def overnight(path: Path) -> pl.DataFrame:
        frame = pl.read_parquet(path).sort("asset_id", "timestamp")
        return frame.with_columns(
            (pl.col("open") / pl.col("close").shift(1)).over("asset_id").alias("gap")
        )

    raw, adjusted = overnight(real_dir["prices"]), overnight(real_dir["prices_split_adjusted"])
    for asset, day in KNOWN_SPLITS:
        on_day = (pl.col("asset_id") == asset) & (pl.col("timestamp").dt.date() == day)
        assert raw.filter(on_day)["gap"][0] < 0.6
        assert 0.9 < adjusted.filter(on_day)["gap"][0] < 1.1


def test_derived_dividends_are_near_the_declared_ones(real_dir: dict[str, Path]) -> None:
    """Approximate, as documented: within 0.10 of MSFT's declared 2004 special dividend (3.00
    plus the regular 0.08) and one per quarter for IBM."""
    actions = pl.read_parquet(real_dir["corporate_actions"])
    msft = actions.filter(
        (pl.col("asset_id") == "MSFT") & (pl.col("timestamp").dt.date() == dt.date(2004, 11, 15))
    )
    assert msft["dividend"][0] == pytest.approx(3.08, abs=0.10)
    ibm = actions.filter((pl.col("asset_id") == "IBM") & (pl.col("dividend") > 0.0))
    per_year = ibm.group_by(pl.col("timestamp").dt.year()).len()
    assert set(per_year.filter(pl.col("timestamp").is_between(2001, 2012))["len"]) == {4}
    assert actions.filter(pl.col("asset_id").is_in(["GOOG", "FB"])).is_empty()
    dividends = pl.read_parquet(real_dir["dividends_split_adjusted"])
    assert dividends.height == actions.filter(pl.col("dividend") > 0.0).height


def test_momentum_is_known_at_its_close(real_dir: dict[str, Path]) -> None:
    """Each value is the 20-bar return of the split-adjusted close, recomputed here with
    numpy; changing every bar after t leaves the values up to t as they were."""
    adjusted = pl.read_parquet(real_dir["prices_split_adjusted"])
    signals = pl.read_parquet(real_dir["signals"])
    aapl = adjusted.filter(pl.col("asset_id") == "AAPL")["close"].to_numpy()
    got = signals.filter(pl.col("asset_id") == "AAPL")[SIGNAL].to_numpy()
    expected = np.full(aapl.shape, np.nan)
    expected[20:] = aapl[20:] / aapl[:-20] - 1.0
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.allclose(got[20:], expected[20:], rtol=1e-15, atol=0.0)

    cut = adjusted["timestamp"].sort()[adjusted.height // 2]
    perturbed = adjusted.with_columns(
        pl.when(pl.col("timestamp") > cut)
        .then(pl.col("close") * 3.0)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    before = real_stocks.momentum_signals(adjusted).filter(pl.col("timestamp") <= cut)
    after = real_stocks.momentum_signals(perturbed).filter(pl.col("timestamp") <= cut)
    assert before.equals(after)


def test_a_step_no_split_explains_is_an_error_naming_asset_and_date() -> None:
    """1.4: no split, and 40 % is no dividend; 0.45: 1:3 would leave a 35 % dividend."""
    stocks = load_stocks(["IBM"])
    day = dt.datetime(2006, 3, 1, tzinfo=dt.UTC)
    for step in (1.4, 0.45):
        bent = stocks.with_columns(
            pl.when(pl.col("timestamp") < day)
            .then(pl.col("adj_close") / step)
            .otherwise(pl.col("adj_close"))
            .alias("adj_close")
        )
        with pytest.raises(DataError, match=rf"IBM on 2006-03-01: .* steps by {step}"):
            classify_steps(bent)


def test_a_reverse_split_and_a_split_with_a_dividend_are_read_as_such() -> None:
    stocks = load_stocks(["IBM"])
    day = dt.datetime(2006, 3, 1, tzinfo=dt.UTC)
    for step, ratio in ((0.1, 0.1), (3.0 * 1.01, 3.0)):
        bent = stocks.with_columns(
            pl.when(pl.col("timestamp") < day)
            .then(pl.col("adj_close") / step)
            .otherwise(pl.col("adj_close"))
            .alias("adj_close")
        )
        row = classify_steps(bent).filter(pl.col("timestamp") == day)
        assert row["split_ratio"].to_list() == [ratio]
        prev_close = stocks.filter(pl.col("timestamp") < day)["close"][-1]
        dividend = round(prev_close / ratio * (1 - 1 / 1.01), 2) if ratio == 3.0 else 0.0
        assert row["dividend"].to_list() == [pytest.approx(dividend, abs=0.005)]


def test_files_are_byte_identical_on_a_rerun_and_cover_the_period(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {
        "tickers": ["AAPL", "MSFT"],
        "start": dt.date(2003, 1, 1),
        "end": dt.date(2003, 4, 1),
    }
    first = write_real_inputs(tmp_path / "a", **kwargs)
    second = write_real_inputs(tmp_path / "b", **kwargs)
    assert set(first) == set(FILE_NAMES) - {"dividends_split_adjusted"}
    for key, path in first.items():
        assert path.read_bytes() == second[key].read_bytes(), key
    prices = pl.read_parquet(first["prices"])
    assert prices["timestamp"].min() == dt.datetime(2003, 1, 2, tzinfo=dt.UTC)
    assert prices["timestamp"].max() == dt.datetime(2003, 3, 31, tzinfo=dt.UTC)
    assert prices["asset_id"].unique().sort().to_list() == ["AAPL", "MSFT"]
    # momentum at the first bar of the period reads the 20 bars before it
    assert pl.read_parquet(first["signals"])[SIGNAL].null_count() == 0
    provenance = json.loads(first["provenance"].read_text())
    assert provenance["splits"] == [
        {"asset_id": "MSFT", "ex_date": "2003-02-18", "split_ratio": 2.0}
    ]
    assert provenance["source_version"] == importlib.import_module("bokeh_sampledata").__version__


def test_a_failed_write_leaves_the_earlier_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    paths = write_real_inputs(out, tickers=["IBM"], start=dt.date(2003, 1, 1))
    before = {key: path.read_bytes() for key, path in paths.items()}

    def broken(text: str) -> Any:
        def write(path: Path) -> None:
            msg = "disk full"
            raise OSError(msg)

        return write

    monkeypatch.setattr(real_stocks, "text_writer", broken)
    with pytest.raises(OSError, match="disk full"):
        write_real_inputs(out, tickers=["AAPL"])
    assert {key: path.read_bytes() for key, path in paths.items()} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())


def test_without_the_package_the_error_names_the_dev_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = importlib.import_module

    def no_bokeh(name: str, package: str | None = None) -> Any:
        if name.startswith("bokeh_sampledata"):
            msg = f"No module named {name!r}"
            raise ModuleNotFoundError(msg)
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", no_bokeh)
    with pytest.raises(ConfigError, match=r"bokeh-sampledata .*pip install -e '\.\[dev\]'"):
        load_stocks()


def test_unknown_tickers_and_empty_periods_are_errors() -> None:
    with pytest.raises(ConfigError, match="expected some of AAPL, FB, GOOG, IBM, MSFT"):
        load_stocks(["TSLA"])
    with pytest.raises(ConfigError, match="no bars"):
        real_stocks.real_inputs(tickers=["FB"], end=dt.date(2012, 1, 1))
    with pytest.raises(ConfigError, match="must come before"):
        real_stocks.real_inputs(start=dt.date(2005, 1, 1), end=dt.date(2004, 1, 1))
