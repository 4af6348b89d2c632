"""The data feed refuses bad bars before the loop starts, even with validation turned off."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.engine import MarketData
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.validation import Rule, read_input, validate_context, validate_prices

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
    assert "1 row," in message
    assert "2024-02-02" in message
    assert "asset_id=A" in message
    # the guard's line is the data contract's, word for word (one rule definition, one message)
    report = validate_prices(read_input(path, role="prices"), file=str(path))
    assert message.splitlines()[1:] == [f"  {f.message()}" for f in report.errors if f.rule == rule]


def test_bad_values_are_reported_once_by_the_rule_they_break(tmp_path: Path) -> None:
    """A negative open is non-positive; the relations of that bar are not judged on it."""
    path = tmp_path / "prices.parquet"
    bad = _prices().with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(-1.0).otherwise(pl.col("open")).alias("open")
    )
    bad.write_parquet(path)
    with pytest.raises(DataError) as caught:
        MarketData(path)
    assert str(caught.value).startswith("1 data contract error:\n")
    assert "rule non_positive_price" in str(caught.value)


def test_duplicate_keys_are_refused_with_the_contract_message(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    pl.concat([_prices(), _prices().slice(1, 2)]).write_parquet(path)
    with pytest.raises(DataError, match="duplicate_key") as caught:
        MarketData(path)
    report = validate_prices(read_input(path, role="prices"), file=str(path))
    [failure] = [f for f in report.errors if f.rule is Rule.DUPLICATE_KEY]
    assert str(caught.value).splitlines()[1:] == [f"  {failure.message()}"]
    assert "4 rows, 2 repeated keys (timestamp, asset_id)" in failure.message()


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
    with pytest.raises(DataError, match="duplicate_key") as caught:
        next(MarketData(_prices(), context=context).chunks())
    report = validate_context(context, file="<context frame>")
    [failure] = [f for f in report.errors if f.rule is Rule.DUPLICATE_KEY]
    assert str(caught.value).splitlines()[1:] == [f"  {failure.message()}"]


def test_panel_arrays_are_read_only() -> None:
    panel = next(
        MarketData(_prices(), context=pl.DataFrame({"timestamp": DAYS, "vix": 1.0})).chunks()
    )
    arrays = [panel.timestamps, panel.open, panel.high, panel.low, panel.close, panel.volume]
    for array in [*arrays, panel.has_bar, *panel.context.values()]:
        assert not array.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        panel.close[0, 0] = 1.0


def test_chunked_run_reads_revised_signals_from_many_row_groups(tmp_path: Path) -> None:
    """`available_at` is read in batches of its own; they line up with the keys by row."""
    days = [dt.datetime(2024, m, d, tzinfo=dt.UTC) for m in (1, 2, 3) for d in (3, 10, 17)]
    prices = pl.DataFrame(
        {
            "timestamp": days * 2,
            "asset_id": ["A"] * 9 + ["B"] * 9,
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": 10.5,
        }
    )
    signals = prices.select(
        "timestamp",
        "asset_id",
        (pl.col("timestamp") + dt.timedelta(hours=1)).alias("available_at"),
        pl.int_range(pl.len()).cast(pl.Float64).alias("score"),
    )
    path = tmp_path / "signals.parquet"
    signals.write_parquet(path, row_group_size=4)
    panels = [MarketData(prices, path, max_chunk_cells=cells).chunks() for cells in (1_000, 6)]
    whole = np.vstack([p.signals["score"] for p in panels[0]])
    chunked = np.vstack([p.signals["score"] for p in panels[1]])
    np.testing.assert_array_equal(whole, chunked)
    # each score is first usable at the next bar (known an hour after its own bar)
    np.testing.assert_array_equal(whole[1:, 0], np.arange(8.0))
