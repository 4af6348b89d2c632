"""Price rules: each bad input is written to Parquet, read back and reported precisely."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pandera.config import config_context

from ml4t_pipeline.validation import (
    CoveragePolicy,
    Failure,
    Rule,
    Severity,
    ValidationReport,
    read_input,
    validate_inputs,
    validate_prices,
)
from ml4t_pipeline.validation.coverage import DEFAULT_POLICY, panel_failures

START = datetime(2024, 1, 1, tzinfo=UTC)


def make_prices(*, assets: int = 3, days: int = 10, seed: int = 1) -> pl.DataFrame:
    """A valid panel with UTC timestamps, rows shuffled."""
    rng = np.random.default_rng(seed)
    n = assets * days
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = close * (1.0 + rng.normal(0.0, 0.002, n))
    frame = pl.DataFrame(
        {
            "timestamp": [START + timedelta(days=d) for _ in range(assets) for d in range(days)],
            "asset_id": [f"A{a:04d}" for a in range(1, assets + 1) for _ in range(days)],
            "open": open_,
            "high": np.maximum(open_, close) + 0.5,
            "low": np.minimum(open_, close) - 0.5,
            "close": close,
            "volume": rng.integers(100, 10_000, n),
        }
    )
    return frame.sample(fraction=1.0, shuffle=True, seed=seed)


def set_cell(frame: pl.DataFrame, *, asset: str, day: int, **values: object) -> pl.DataFrame:
    """Overwrite columns of the row (asset, START + day)."""
    hit = (pl.col("asset_id") == asset) & (pl.col("timestamp") == START + timedelta(days=day))
    return frame.with_columns(
        pl.when(hit).then(pl.lit(value)).otherwise(pl.col(name)).alias(name)
        for name, value in values.items()
    )


def report_for(
    frame: pl.DataFrame, tmp_path: Path, *, policy: CoveragePolicy = DEFAULT_POLICY
) -> ValidationReport:
    """Write `frame` with naive timestamps (read back as UTC) and validate the file."""
    path = tmp_path / "prices.parquet"
    frame.with_columns(pl.col("timestamp").dt.replace_time_zone(None)).write_parquet(path)
    return validate_inputs(prices=path, policy=policy)


def only(report: ValidationReport, rule: Rule) -> Failure:
    found = [f for f in report.failures if f.rule is rule]
    assert len(found) == 1, report.summary()
    return found[0]


def test_clean_prices_are_ok_with_rows_checked(tmp_path: Path) -> None:
    report = report_for(make_prices(assets=3, days=10), tmp_path)
    assert report.ok
    assert report.failures == ()
    assert report.rows_checked == {str(tmp_path / "prices.parquet"): 30}


def test_duplicate_rows_are_counted_with_examples(tmp_path: Path) -> None:
    prices = make_prices()
    repeated = prices.filter(
        (pl.col("asset_id") == "A0002") & (pl.col("timestamp") <= START + timedelta(days=1))
    )
    report = report_for(pl.concat([prices, repeated]), tmp_path)
    failure = only(report, Rule.DUPLICATE_KEY)
    assert not report.ok
    assert failure.file.endswith("prices.parquet")
    assert failure.n_rows == 4
    assert "2 repeated keys (timestamp, asset_id)" in failure.detail
    assert failure.examples[0] == "timestamp=2024-01-01 00:00:00+00:00 asset_id=A0002 rows=2"


def test_high_below_low_names_column_rows_and_example(tmp_path: Path) -> None:
    prices = make_prices()
    prices = set_cell(prices, asset="A0001", day=2, open=10.0, close=10.0, high=9.5, low=10.0)
    report = report_for(prices, tmp_path)
    failure = only(report, Rule.HIGH_BELOW_LOW)
    assert (failure.column, failure.severity, failure.n_rows) == ("high", Severity.ERROR, 1)
    assert failure.message() == (
        f"{tmp_path / 'prices.parquet'}: column 'high', rule high_below_low: 1 row, "
        "high is below low, e.g. timestamp=2024-01-03 00:00:00+00:00 asset_id=A0001 "
        "high=9.5 low=10.0"
    )
    assert only(report, Rule.HIGH_BELOW_MAX_OPEN_CLOSE).n_rows == 1


def test_nan_price_is_non_finite(tmp_path: Path) -> None:
    prices = set_cell(make_prices(), asset="A0003", day=4, close=float("nan"))
    prices = set_cell(prices, asset="A0003", day=5, close=None)
    report = report_for(prices, tmp_path)
    failure = only(report, Rule.NON_FINITE_PRICE)
    assert (failure.column, failure.n_rows) == ("close", 2)
    assert "asset_id=A0003 close=NaN" in failure.examples[0]
    assert "asset_id=A0003 close=null" in failure.examples[1]
    assert [f.rule for f in report.failures] == [Rule.NON_FINITE_PRICE]


def test_negative_price_is_non_positive(tmp_path: Path) -> None:
    prices = set_cell(make_prices(), asset="A0002", day=7, low=-1.0)
    report = report_for(prices, tmp_path)
    failure = only(report, Rule.NON_POSITIVE_PRICE)
    assert (failure.column, failure.n_rows) == ("low", 1)
    assert failure.examples == ("timestamp=2024-01-08 00:00:00+00:00 asset_id=A0002 low=-1.0",)
    assert [f.rule for f in report.failures] == [Rule.NON_POSITIVE_PRICE]


def test_negative_volume(tmp_path: Path) -> None:
    report = report_for(set_cell(make_prices(), asset="A0001", day=0, volume=-5), tmp_path)
    failure = only(report, Rule.NEGATIVE_VOLUME)
    assert (failure.column, failure.n_rows) == ("volume", 1)
    assert failure.examples[0].endswith("volume=-5")


def test_missing_column(tmp_path: Path) -> None:
    report = report_for(make_prices().drop("volume"), tmp_path)
    failure = only(report, Rule.MISSING_COLUMN)
    assert (failure.column, failure.n_rows) == ("volume", 0)
    assert "columns present: timestamp, asset_id, open, high, low, close" in failure.detail
    assert "column 'volume', rule missing_column" in failure.message()


def test_close_stored_as_text_is_wrong_dtype(tmp_path: Path) -> None:
    prices = make_prices().with_columns(pl.col("close").round(2).cast(pl.String))
    report = report_for(prices, tmp_path)
    failure = only(report, Rule.WRONG_DTYPE)
    assert (failure.column, failure.n_rows) == ("close", 30)
    assert failure.detail == "expected an integer or float, got String"
    assert failure.examples[0].startswith("timestamp=")
    assert "close=" in failure.examples[0]
    # Value rules that read close are not run on text; nothing else is reported.
    assert [f.rule for f in report.failures] == [Rule.WRONG_DTYPE]


def test_null_key(tmp_path: Path) -> None:
    prices = make_prices().with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(None)
        .otherwise(pl.col("asset_id"))
        .alias("asset_id")
    )
    failure = only(report_for(prices, tmp_path), Rule.NULL_KEY)
    assert (failure.column, failure.n_rows) == ("asset_id", 1)
    assert "asset_id=null" in failure.examples[0]


def test_empty_table(tmp_path: Path) -> None:
    report = report_for(make_prices().clear(), tmp_path)
    assert [f.rule for f in report.failures] == [Rule.EMPTY_TABLE]


def test_frame_that_skipped_read_input_is_not_utc() -> None:
    naive = make_prices().with_columns(pl.col("timestamp").dt.replace_time_zone(None))
    report = validate_prices(naive, file="prices.parquet")
    failure = only(report, Rule.NON_UTC_TIMESTAMP)
    assert failure.column == "timestamp"
    assert "got Datetime(time_unit='us', time_zone=None)" in failure.detail


def test_every_row_is_checked_even_when_pandera_is_switched_off(tmp_path: Path) -> None:
    prices = make_prices(assets=20, days=200)
    bad_days = range(0, 200, 20)
    for day in bad_days:
        prices = set_cell(prices, asset="A0017", day=day, open=-3.0)
    path = tmp_path / "prices.parquet"
    prices.write_parquet(path)
    frame = read_input(path, role="prices")
    assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
    with config_context(validation_enabled=False):
        report = validate_prices(frame, file="prices.parquet")
    assert only(report, Rule.NON_POSITIVE_PRICE).n_rows == len(bad_days)
    assert len(only(report, Rule.NON_POSITIVE_PRICE).examples) == 5


def test_gap_inside_an_assets_life_is_a_large_gap(tmp_path: Path) -> None:
    prices = make_prices(assets=3, days=20)
    hole = (pl.col("asset_id") == "A0002") & pl.col("timestamp").is_between(
        START + timedelta(days=5), START + timedelta(days=11)
    )
    late_listing = (pl.col("asset_id") == "A0003") & (pl.col("timestamp") < START + timedelta(10))
    prices = prices.filter(~hole & ~late_listing)

    warned = report_for(prices, tmp_path)
    failure = only(warned, Rule.LARGE_GAP)
    assert warned.ok
    assert (failure.severity, failure.n_rows) == (Severity.WARNING, 7)
    assert failure.examples == (
        "asset_id=A0002 from=2024-01-06 00:00:00+00:00 to=2024-01-12 00:00:00+00:00 bars=7",
    )
    strict = report_for(prices, tmp_path, policy=CoveragePolicy(large_gap=Severity.ERROR))
    assert not strict.ok
    assert only(strict, Rule.LARGE_GAP).severity is Severity.ERROR
    tolerant = report_for(prices, tmp_path, policy=CoveragePolicy(max_gap_bars=7))
    assert tolerant.failures == ()


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_grid_and_group_by_counting_agree(seed: int) -> None:
    rng = np.random.default_rng(seed)
    prices = make_prices(assets=12, days=60, seed=seed)
    keep = rng.random(prices.height) > 0.15
    prices = pl.concat([prices.filter(keep), prices.sample(25, seed=seed)])
    if seed == 5:
        prices = prices.with_columns(pl.col("asset_id").str.slice(1).cast(pl.Int64))
    policy = CoveragePolicy(max_gap_bars=1)
    on_grid = panel_failures(prices, file="p", policy=policy)
    grouped = panel_failures(prices, file="p", policy=policy, max_grid_cells=0)
    ends = prices.group_by("asset_id").agg(pl.col("timestamp").max()).get_column("timestamp")
    expected = {Rule.DUPLICATE_KEY, Rule.LARGE_GAP}
    if (ends < prices.get_column("timestamp").max()).any():
        expected.add(Rule.DATA_ENDS)  # rows dropped at random: some assets end early
    assert {f.rule for f in on_grid} == expected
    assert on_grid == grouped
    repeated = prices.group_by("timestamp", "asset_id").len().filter(pl.col("len") > 1)
    duplicate = next(f for f in on_grid if f.rule is Rule.DUPLICATE_KEY)
    assert duplicate.n_rows == repeated.get_column("len").sum()


def test_tz_aware_frame_in_another_zone_is_reported() -> None:
    prices = make_prices().with_columns(
        pl.col("timestamp").dt.convert_time_zone("America/New_York")
    )
    failure = only(validate_prices(prices, file="p"), Rule.NON_UTC_TIMESTAMP)
    assert "America/New_York" in failure.detail
