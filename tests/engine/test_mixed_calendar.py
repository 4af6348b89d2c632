"""A mixed calendar: a stock that trades on weekdays beside an asset that trades every day.

The run's calendar is every day (the 7-day asset's bars); the stock has no Saturday or Sunday
bar. With `on_no_bar: wait` (the default) a stock order decided at Friday's close fills at
Monday's open, while the 7-day asset's order fills on Saturday; with `reject` the stock
order is refused at Saturday. Validation sees nothing wrong with such a file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from ml4t_pipeline.validation import validate_inputs
from tests.engine.conftest import Order, Scripted, config, rows, run

FRIDAY = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
DAYS = [FRIDAY + dt.timedelta(days=k) for k in range(11)]  # Fri 1 .. Mon 11 March


def prices(days: list[dt.datetime] = DAYS) -> pl.DataFrame:
    """Each day's bar trades at one price: 100 + day of month (stock) and 1000 + day (coin)."""
    data: dict[str, list[object]] = {c: [] for c in ("timestamp", "asset_id", "price")}
    for day in days:
        for asset, base in (("COIN", 1000.0), ("STOCK", 100.0)):
            if asset == "STOCK" and day.weekday() >= 5:
                continue
            data["timestamp"].append(day)
            data["asset_id"].append(asset)
            data["price"].append(base + day.day)
    frame = pl.DataFrame(data)
    return frame.select(
        "timestamp",
        "asset_id",
        *(pl.col("price").alias(c) for c in ("open", "high", "low", "close")),
        pl.lit(1_000_000.0).alias("volume"),
    )


FRIDAY_ORDERS = {0: [Order(asset="STOCK", qty=5), Order(asset="COIN", qty=1)]}


def test_a_stock_order_decided_on_friday_fills_on_monday(tmp_path: Path) -> None:
    result = run(config(tmp_path), Scripted(FRIDAY_ORDERS), prices(), tmp_path / "out")
    fills = rows(result.fills, "timestamp", "asset_id", "price")
    assert fills == [
        (DAYS[1], "COIN", 1002.0),  # Saturday's open
        (DAYS[3], "STOCK", 104.0),  # Monday 4 March's open, not a rejection on Saturday
    ]
    assert DAYS[3].weekday() == 0
    assert result.rejections.height == 0


def test_with_reject_the_stock_order_is_refused_on_saturday(tmp_path: Path) -> None:
    cfg = config(tmp_path, on_no_bar="reject")
    result = run(cfg, Scripted(FRIDAY_ORDERS), prices(), tmp_path / "out")
    assert rows(result.fills, "asset_id") == [("COIN",)]
    assert rows(result.rejections, "timestamp", "asset_id", "reason") == [
        (DAYS[1], "STOCK", "no_bar")
    ]


def test_validation_finds_nothing_wrong_with_a_mixed_calendar(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    prices().write_parquet(path)
    report = validate_inputs(prices=path)
    assert report.failures == ()


def test_a_file_ending_on_a_sunday_ends_the_stock_on_friday(tmp_path: Path) -> None:
    """The engine delists an asset at its last bar before the file's last timestamp; on a
    mixed calendar that ends on a weekend this hits the stock, and validation says so."""
    weekend_end = prices(DAYS[:-1])
    path = tmp_path / "prices.parquet"
    weekend_end.write_parquet(path)
    (failure,) = validate_inputs(prices=path).failures
    assert failure.rule == "data_ends"
    assert failure.examples == (f"asset_id=STOCK last_bar={DAYS[7]}",)
    result = run(config(tmp_path), Scripted(FRIDAY_ORDERS), weekend_end, tmp_path / "out")
    assert rows(result.fills, "timestamp", "asset_id", "reason")[-1] == (
        DAYS[7],
        "STOCK",
        "delisted",
    )
