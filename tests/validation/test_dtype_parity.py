"""Every dtype a prices file may carry is treated the same by `validate` and by the engine.

Each variant of one small panel is written to Parquet; validation (`validate_inputs`) and the
engine's feed (`MarketData`, what `backtest` reads) must both accept it with the same bars
(timestamp in UTC microseconds, asset id, OHLCV as float64), or both refuse it naming the
column.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml4t_pipeline.engine.feed import MarketData
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.validation import read_input, validate_inputs

DAYS = [dt.datetime(2024, 3, d, tzinfo=dt.UTC) for d in (4, 5, 6, 7, 8)]
PRICES = ("open", "high", "low", "close")
COLUMNS = ("timestamp", "asset_id", *PRICES, "volume")


def base() -> pl.DataFrame:
    rows = []
    for a, asset in enumerate(("A", "B", "C")):
        for d, day in enumerate(DAYS):
            close = 10.0 + a + 0.25 * d
            rows.append((day, asset, close - 0.125, close + 0.5, close - 0.5, close, 1000.0 + d))
    return pl.DataFrame(rows, schema=list(COLUMNS), orient="row")


def arrow(frame: pl.DataFrame, column: str, kind: pa.DataType) -> pa.Table:
    table = frame.to_arrow()
    at = table.schema.get_field_index(column)
    return table.set_column(at, column, table.column(column).cast(kind))


def int_prices(frame: pl.DataFrame) -> pl.DataFrame:
    whole = pl.col("close").round(0).cast(pl.Int64)
    return frame.with_columns(open=whole, high=whole + 1, low=whole - 1, close=whole)


Variant = Callable[[pl.DataFrame], pl.DataFrame | pa.Table]

ACCEPTED: dict[str, Variant] = {
    "utc_us": lambda f: f,
    "naive_us": lambda f: f.with_columns(pl.col("timestamp").dt.replace_time_zone(None)),
    "new_york": lambda f: f.with_columns(
        pl.col("timestamp").dt.convert_time_zone("America/New_York")
    ),
    "naive_ms": lambda f: f.with_columns(
        pl.col("timestamp").dt.replace_time_zone(None).dt.cast_time_unit("ms")
    ),
    "utc_ns": lambda f: f.with_columns(pl.col("timestamp").dt.cast_time_unit("ns")),
    "tokyo_seconds": lambda f: arrow(f, "timestamp", pa.timestamp("s", tz="Asia/Tokyo")),
    "date": lambda f: f.with_columns(pl.col("timestamp").dt.date()),
    "categorical_ids": lambda f: f.with_columns(pl.col("asset_id").cast(pl.Categorical)),
    "enum_ids": lambda f: f.with_columns(pl.col("asset_id").cast(pl.Enum(["C", "B", "A"]))),
    "small_string_ids": lambda f: arrow(f, "asset_id", pa.string()),
    "large_string_ids": lambda f: arrow(f, "asset_id", pa.large_string()),
    "dictionary_ids": lambda f: arrow(f, "asset_id", pa.dictionary(pa.int8(), pa.string())),
    "int32_ids": lambda f: f.with_columns(
        pl.col("asset_id").replace_strict({"A": 1, "B": 2, "C": 3}, return_dtype=pl.Int32)
    ),
    "uint16_ids": lambda f: f.with_columns(
        pl.col("asset_id").replace_strict({"A": 7, "B": 8, "C": 9}, return_dtype=pl.UInt16)
    ),
    "float32_prices": lambda f: f.with_columns(pl.col(*PRICES).cast(pl.Float32)),
    "int_prices": lambda f: int_prices(f),
    "decimal_prices": lambda f: f.with_columns(pl.col(*PRICES).cast(pl.Decimal(12, 3))),
    "int_volume": lambda f: f.with_columns(pl.col("volume").cast(pl.UInt32)),
    "float32_volume": lambda f: f.with_columns(pl.col("volume").cast(pl.Float32)),
}

REFUSED: dict[str, tuple[Variant, str]] = {
    "int_timestamps": (lambda f: f.with_columns(pl.col("timestamp").dt.epoch("us")), "timestamp"),
    "text_timestamps": (lambda f: f.with_columns(pl.col("timestamp").cast(pl.String)), "timestamp"),
    "sub_microsecond": (
        lambda f: f.with_columns(
            pl.col("timestamp").dt.cast_time_unit("ns") + pl.duration(nanoseconds=1)
        ),
        "timestamp",
    ),
    "float_ids": (
        lambda f: f.with_columns(pl.col("asset_id").replace_strict({"A": 1.0, "B": 2.0, "C": 3.0})),
        "asset_id",
    ),
    "binary_ids": (lambda f: f.with_columns(pl.col("asset_id").cast(pl.Binary)), "asset_id"),
    "text_prices": (lambda f: f.with_columns(pl.col("close").cast(pl.String)), "close"),
    "null_dtype_prices": (lambda f: f.with_columns(pl.lit(None).alias("close")), "close"),
    "null_prices": (
        lambda f: f.with_columns(
            pl.when(pl.int_range(pl.len()) == 3)
            .then(None)
            .otherwise(pl.col("close"))
            .alias("close")
        ),
        "close",
    ),
    "null_dtype_volume": (lambda f: f.with_columns(pl.lit(None).alias("volume")), "volume"),
    "null_ids": (
        lambda f: f.with_columns(
            pl.when(pl.int_range(pl.len()) == 2)
            .then(None)
            .otherwise(pl.col("asset_id"))
            .alias("asset_id")
        ),
        "asset_id",
    ),
}


def write(tmp_path: Path, variant: Variant) -> Path:
    path = tmp_path / "prices.parquet"
    data = variant(base())
    if isinstance(data, pl.DataFrame):
        data.write_parquet(path)
    else:
        pq.write_table(data, path)
    return path


def validated_bars(path: Path) -> pl.DataFrame:
    """The bars validation accepted (DataError when it refuses the file or finds errors)."""
    report = validate_inputs(prices=path)
    if not report.ok:
        report.raise_if_failed()
    frame = read_input(path, role="prices")
    return _canonical(
        frame.get_column("timestamp").dt.epoch("us").to_numpy(),
        frame.get_column("asset_id").cast(pl.String).to_list(),
        {c: frame.get_column(c).cast(pl.Float64).to_numpy() for c in (*PRICES, "volume")},
    )


def engine_bars(path: Path) -> pl.DataFrame:
    """The bars the engine's feed reads (DataError when it refuses them)."""
    data = MarketData(path)
    frames = []
    offset = 0
    for panel in data.chunks():
        t, a = np.nonzero(panel.has_bar)
        arrays = {
            "open": panel.open,
            "high": panel.high,
            "low": panel.low,
            "close": panel.close,
            "volume": panel.volume,
        }
        frames.append(
            _canonical(
                data.calendar.timestamps[offset + t],
                [str(x) for x in data.calendar.assets[a].tolist()],
                {c: v[t, a] for c, v in arrays.items()},
            )
        )
        offset += panel.n_bars
    return pl.concat(frames).sort("timestamp", "asset_id")


def _canonical(ts: np.ndarray, ids: list[str], values: dict[str, np.ndarray]) -> pl.DataFrame:
    frame = pl.DataFrame({"timestamp": ts.astype(np.int64), "asset_id": ids, **values})
    return frame.sort("timestamp", "asset_id")


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_both_accept_with_the_same_bars(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, ACCEPTED[name])
    validated = validated_bars(path)
    read = engine_bars(path)
    assert validated.height == 15
    assert validated.equals(read), f"{validated}\n{read}"
    if name in ("utc_us", "naive_us", "new_york", "date", "naive_ms", "utc_ns", "tokyo_seconds"):
        expected = [int(d.timestamp() * 1_000_000) for d in DAYS]
        assert sorted(set(validated.get_column("timestamp").to_list())) == expected


@pytest.mark.parametrize("name", list(REFUSED))
def test_both_refuse_naming_the_column(tmp_path: Path, name: str) -> None:
    variant, column = REFUSED[name]
    path = write(tmp_path, variant)
    with pytest.raises(DataError) as by_validation:
        validated_bars(path)
    with pytest.raises(DataError) as by_engine:
        engine_bars(path)
    for caught in (by_validation, by_engine):
        assert f"'{column}'" in str(caught.value), str(caught.value)


def test_decimal_prices_read_as_their_nearest_float(tmp_path: Path) -> None:
    frame = base().with_columns(pl.col("close").cast(pl.Decimal(12, 3)) + Decimal("0.001"))
    path = tmp_path / "prices.parquet"
    frame.write_parquet(path)
    stored = pq.read_table(path).sort_by([("timestamp", "ascending"), ("asset_id", "ascending")])
    expected = [float(d) for d in stored.column("close").to_pylist()]  # Python's Decimal -> float
    assert read_input(path, role="prices").schema["close"] == pl.Float64
    assert validated_bars(path).get_column("close").to_list() == expected
    assert engine_bars(path).get_column("close").to_list() == expected
