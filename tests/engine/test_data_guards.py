"""The data feed refuses bad bars before the loop starts, even with validation turned off."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.engine import MarketData
from ml4t_pipeline.errors import DataError

DAYS = [dt.datetime(2024, 2, d, tzinfo=dt.UTC) for d in range(1, 5)]


def _prices() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "timestamp": DAYS * 2,
            "asset_id": ["A"] * 4 + ["B"] * 4,
            "open": [10.0, 11, 12, 13, 20, 21, 22, 23],
            "high": [11.0, 12, 13, 14, 21, 22, 23, 24],
            "low": [9.0, 10, 11, 12, 19, 20, 21, 22],
            "close": [10.5, 11.5, 12.5, 13.5, 20.5, 21.5, 22.5, 23.5],
        }
    )


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("close", float("nan"), "non_finite_price"),
        ("open", -1.0, "non_positive_price"),
        ("high", 10.0, "high_below_max_open_close"),
        ("low", 11.2, "low_above_min_open_close"),
    ],
)
def test_bad_bar_is_refused_naming_file_rule_and_row(
    tmp_path: Path, column: str, value: float, rule: str
) -> None:
    path = tmp_path / "prices.parquet"
    prices = _prices()
    prices.with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(value).otherwise(pl.col(column)).alias(column)
    ).write_parquet(path)
    with pytest.raises(DataError, match=rule) as caught:
        MarketData(path)
    message = str(caught.value)
    assert "prices.parquet" in message
    assert "1 rows" in message
    assert "2024-02-02" in message
    assert "asset_id=A" in message


def test_missing_bars_are_not_errors() -> None:
    prices = _prices().filter(~((pl.col("asset_id") == "B") & (pl.col("timestamp") == DAYS[0])))
    data = MarketData(prices)
    panel = next(data.chunks())
    assert not panel.has_bar[0, 1]
    assert panel.has_bar.sum() == 7


def test_context_is_taken_as_of_each_bar() -> None:
    """A market-wide value stamped between bars is usable from the next bar and stays current
    until a newer one; a stamp before the first bar counts for it, an explicit NaN is kept."""
    context = pl.DataFrame(
        {
            "timestamp": [
                dt.datetime(2024, 1, 31, tzinfo=dt.UTC),  # before the first bar
                DAYS[1] + dt.timedelta(hours=6),  # between bars 1 and 2
                DAYS[1] + dt.timedelta(hours=9),  # a newer value for the same bar
                DAYS[3],
            ],
            "vix": [11.0, 12.0, 13.0, float("nan")],
        }
    )
    panel = next(MarketData(_prices(), context=context).chunks())
    np.testing.assert_array_equal(panel.context["vix"], [11.0, 11.0, 13.0, np.nan])


def test_repeated_context_timestamps_are_refused() -> None:
    context = pl.DataFrame({"timestamp": [DAYS[0], DAYS[0]], "vix": [1.0, 2.0]})
    with pytest.raises(DataError, match="unique_key"):
        next(MarketData(_prices(), context=context).chunks())
