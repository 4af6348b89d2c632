"""Reading inputs: unreadable files fail fast with the path and the reason; times become UTC."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ml4t_pipeline.errors import ConfigError, DataError
from ml4t_pipeline.validation import Rule, read_input, validate_inputs

START = datetime(2024, 1, 1, tzinfo=UTC)


def make_prices(days: int = 6, assets: tuple[str, ...] = ("A", "B")) -> pl.DataFrame:
    """A valid panel with UTC timestamps."""
    rows = [
        (START + timedelta(days=d), asset, 10.0 + d, 11.0 + d, 9.0 + d, 10.5 + d, 1_000)
        for asset in assets
        for d in range(days)
    ]
    return pl.DataFrame(
        rows,
        schema=["timestamp", "asset_id", "open", "high", "low", "close", "volume"],
        orient="row",
    )


def naive(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("timestamp").dt.replace_time_zone(None))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_truncated_parquet_names_path_and_problem(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    make_prices().write_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as caught:
        read_input(path, role="prices")
    message = str(caught.value)
    assert message.startswith(f"{path}, rule unreadable_file: truncated or corrupt Parquet file")
    assert f"{len(data) // 2:,} bytes" in message


def test_csv_renamed_to_parquet_is_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    naive(make_prices()).write_csv(path)
    with pytest.raises(DataError) as caught:
        validate_inputs(prices=path)
    message = str(caught.value)
    assert str(path) in message
    assert "rule unreadable_file: not a Parquet file (no PAR1 header)" in message
    assert "looks like text, e.g. CSV, starting 'timestamp,asset_id,open" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "prices.parquet"
    with pytest.raises(DataError) as caught:
        read_input(path, role="prices")
    assert str(caught.value) == f"{path}, rule missing_file: no such file ({path})"


def test_missing_signals_file_fails_even_when_prices_are_fine(tmp_path: Path) -> None:
    prices = tmp_path / "prices.parquet"
    naive(make_prices()).write_parquet(prices)
    with pytest.raises(DataError, match=r"signals\.parquet, rule missing_file"):
        validate_inputs(prices=prices, signals=tmp_path / "signals.parquet")


def test_empty_file_and_directory_are_unreadable(tmp_path: Path) -> None:
    empty = tmp_path / "empty.parquet"
    empty.touch()
    with pytest.raises(DataError, match=r"empty.parquet, rule unreadable_file: empty file"):
        read_input(empty, role="context")
    with pytest.raises(DataError, match="rule unreadable_file: not a regular file"):
        read_input(tmp_path, role="context")


def test_corrupt_footer_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    make_prices().write_parquet(path)
    data = bytearray(path.read_bytes())
    data[-8:-4] = (len(data) * 10).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"rule unreadable_file: corrupt Parquet file \("):
        read_input(path, role="prices")


def test_timestamp_stored_as_text_is_a_read_error(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    make_prices().with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%d")).write_parquet(path)
    with pytest.raises(DataError) as caught:
        read_input(path, role="prices")
    message = str(caught.value)
    assert f"{path}: column 'timestamp', rule wrong_dtype: 12 rows" in message
    assert "expected a datetime, got String" in message
    assert "e.g. asset_id=A timestamp=2024-01-01" in message


def test_naive_and_zoned_files_are_normalised_to_utc(tmp_path: Path) -> None:
    prices = make_prices()
    naive(prices).write_parquet(tmp_path / "prices.parquet")
    signals = prices.select(
        pl.col("timestamp").dt.convert_time_zone("America/New_York"),
        "asset_id",
        ml_score=pl.lit(0.5),
    )
    signals.write_parquet(tmp_path / "signals.parquet")
    context = prices.select(
        pl.col("timestamp")
        .dt.convert_time_zone("Asia/Tokyo")
        .cast(pl.Datetime("ns", "Asia/Tokyo")),
        vix=pl.lit(20.0),
    ).unique()
    context.write_parquet(tmp_path / "context.parquet")

    read = {
        role: read_input(tmp_path / f"{role}.parquet", role=role)
        for role in ("prices", "signals", "context")
    }
    for frame in read.values():
        assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert read["prices"].get_column("timestamp").equals(prices.get_column("timestamp"))
    assert read["signals"].get_column("timestamp").equals(prices.get_column("timestamp"))
    assert read["context"].get_column("timestamp").min() == START

    report = validate_inputs(
        prices=tmp_path / "prices.parquet",
        signals=tmp_path / "signals.parquet",
        context=tmp_path / "context.parquet",
    )
    assert report.failures == ()


def test_nanosecond_times_are_rejected_not_rounded(tmp_path: Path) -> None:
    path = tmp_path / "signals.parquet"
    frame = make_prices().select(
        pl.col("timestamp").cast(pl.Datetime("ns", "UTC")) + pl.duration(nanoseconds=1),
        "asset_id",
        "close",
    )
    frame.write_parquet(path)
    with pytest.raises(DataError, match="column 'timestamp', rule wrong_dtype: 12 rows"):
        read_input(path, role="signals")


def test_clean_inputs_are_ok_and_files_are_not_modified(tmp_path: Path) -> None:
    prices = make_prices(days=8, assets=("A", "B", "C"))
    paths = {role: tmp_path / f"{role}.parquet" for role in ("prices", "signals", "context")}
    naive(prices).write_parquet(paths["prices"])
    prices.select(
        "timestamp", "asset_id", ml_score=pl.col("close") / 20, atr=pl.lit(None, pl.Float64)
    ).write_parquet(paths["signals"])
    prices.select("timestamp", vix=pl.col("close")).unique("timestamp").write_parquet(
        paths["context"]
    )
    before = {role: (digest(p), p.stat().st_mtime_ns) for role, p in paths.items()}

    report = validate_inputs(
        prices=paths["prices"], signals=paths["signals"], context=paths["context"]
    )

    assert report.ok
    assert report.failures == ()
    assert report.rows_checked == {
        str(paths["prices"]): 24,
        str(paths["signals"]): 24,
        str(paths["context"]): 8,
    }
    assert {role: (digest(p), p.stat().st_mtime_ns) for role, p in paths.items()} == before


def test_unknown_role_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown input role 'bars'"):
        read_input(tmp_path / "prices.parquet", role="bars")


def test_rule_names_are_stable() -> None:
    assert Rule.HIGH_BELOW_LOW.value == "high_below_low"
    assert Rule("look_ahead") is Rule.LOOK_AHEAD


def test_date_timestamps_read_as_midnight_utc_in_validation_and_in_the_engine(
    tmp_path: Path,
) -> None:
    """A `Date` column is its midnight UTC for `validate` as for the backtest (it used to be
    refused by one and accepted by the other)."""
    from ml4t_pipeline.engine import run_backtest, run_config_from_dict

    prices = make_prices()
    dated = prices.with_columns(pl.col("timestamp").dt.date())
    dated.write_parquet(tmp_path / "dated.parquet")
    prices.write_parquet(tmp_path / "timed.parquet")
    signals = dated.select("timestamp", "asset_id", ml_score=pl.lit(0.7))
    signals.write_parquet(tmp_path / "signals.parquet")

    read = read_input(tmp_path / "dated.parquet", role="prices")
    assert read.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert read.get_column("timestamp").equals(prices.get_column("timestamp"))
    assert (
        read_input(tmp_path / "signals.parquet", role="signals")
        .get_column("timestamp")
        .equals(prices.get_column("timestamp"))
    )
    report = validate_inputs(
        prices=tmp_path / "dated.parquet", signals=tmp_path / "signals.parquet"
    )
    assert report.failures == ()

    def equity(prices_file: str) -> pl.DataFrame:
        cfg = run_config_from_dict(
            {
                "data": {
                    "prices": str(tmp_path / prices_file),
                    "signals": str(tmp_path / "signals.parquet"),
                },
                "strategy": {"name": "signal_threshold", "params": {"qty": 10}},
            }
        )
        return run_backtest(cfg).equity

    dated_equity = equity("dated.parquet")
    assert dated_equity.equals(equity("timed.parquet"))
    assert dated_equity.height == 6
