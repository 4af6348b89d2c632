"""The validation cache keys on the files' content, fingerprinted before validation.

Every scenario goes through the CLI's `_validate_files` (the caller of the cache), with the
validator wrapped to count how often it runs.
"""

from __future__ import annotations

import os
import shutil
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

import ml4t_pipeline.validation
from ml4t_pipeline import fingerprint
from ml4t_pipeline.cli import _validate_files
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.validation import cache, validate_inputs

START = datetime(2024, 1, 1, tzinfo=UTC)
MARKED_CLOSE = 10.123456789  # one close, unique in the file, stored as plain float64 bytes


def write_prices(path: Path) -> None:
    """Two assets, six days; uncompressed, no dictionaries or statistics: each value is stored once."""
    rows = [
        (START + timedelta(days=d), asset, 10.0 + d, 11.0 + d, 9.0 + d, 10.5 + d, 1_000)
        for asset in ("A", "B")
        for d in range(6)
    ]
    frame = pl.DataFrame(
        rows,
        schema=["timestamp", "asset_id", "open", "high", "low", "close", "volume"],
        orient="row",
    ).with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(MARKED_CLOSE)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    pq.write_table(
        frame.to_arrow(), path, compression="none", use_dictionary=False, write_statistics=False
    )


def negate_marked_close_in_place(path: Path) -> None:
    """Flip the sign bit of the marked close inside the file: same size, same inode."""
    data = path.read_bytes()
    raw = struct.pack("<d", MARKED_CLOSE)
    assert data.count(raw) == 1
    with path.open("r+b") as handle:
        handle.seek(data.index(raw) + 7)
        handle.write(bytes([raw[7] | 0x80]))


def keep_times(path: Path, saved: os.stat_result) -> None:
    os.utime(path, ns=(saved.st_atime_ns, saved.st_mtime_ns))


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The price files the validator was run on, in order."""
    seen: list[Path] = []

    def counting(**kwargs: Any) -> Any:
        seen.append(Path(kwargs["prices"]))
        return validate_inputs(**kwargs)

    monkeypatch.setattr(ml4t_pipeline.validation, "validate_inputs", counting)
    return seen


def test_unchanged_file_is_a_cache_hit(tmp_path: Path, validations: list[Path]) -> None:
    prices = tmp_path / "prices.parquet"
    write_prices(prices)
    for _ in range(3):
        _validate_files(prices, None, None)
    assert validations == [prices]


def test_in_place_change_keeping_size_and_mtime_is_revalidated(
    tmp_path: Path, validations: list[Path]
) -> None:
    prices = tmp_path / "prices.parquet"
    write_prices(prices)
    _validate_files(prices, None, None)
    saved = prices.stat()
    negate_marked_close_in_place(prices)
    keep_times(prices, saved)
    after = prices.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        saved.st_size,
        saved.st_mtime_ns,
        saved.st_ino,
    )
    with pytest.raises(DataError, match=r"close.*non_positive_price|non_positive_price.*close"):
        _validate_files(prices, None, None)
    assert validations == [prices, prices]


def test_file_replaced_during_validation_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "prices.parquet"
    write_prices(prices)
    bad = tmp_path / "bad.parquet"
    shutil.copy2(prices, bad)
    negate_marked_close_in_place(bad)
    keep_times(bad, prices.stat())
    runs: list[Path] = []

    def swapping(**kwargs: Any) -> Any:
        report = validate_inputs(**kwargs)  # the good file passes ...
        if not runs:
            os.replace(bad, prices)  # ... and is swapped for the bad one before the cache writes
        runs.append(Path(kwargs["prices"]))
        return report

    monkeypatch.setattr(ml4t_pipeline.validation, "validate_inputs", swapping)
    _validate_files(prices, None, None)
    with pytest.raises(DataError, match="non_positive_price"):
        _validate_files(prices, None, None)
    assert runs == [prices, prices]


def test_file_changed_during_validation_is_not_stored_under_its_new_content(
    tmp_path: Path,
) -> None:
    """The stored fingerprint is the pre-validation one, and only if nothing moved since."""
    prices = tmp_path / "prices.parquet"
    write_prices(prices)
    found = cache.lookup([prices])
    assert not found.hit
    saved = prices.stat()
    negate_marked_close_in_place(prices)
    keep_times(prices, saved)
    found.remember()
    assert not cache.lookup([prices]).hit


@pytest.fixture
def settled_at_once(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Treat every file as settled (old enough to trust its stat), and count the hashing."""
    monkeypatch.setattr(fingerprint, "SETTLE_NS", 0)
    hashed: list[Path] = []
    real = cache.fingerprint_file

    def counting(path: Path) -> fingerprint.FileFingerprint:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(cache, "fingerprint_file", counting)
    return hashed


def test_settled_unchanged_file_is_not_read_again(
    tmp_path: Path, validations: list[Path], settled_at_once: list[Path]
) -> None:
    prices = tmp_path / "prices.parquet"
    write_prices(prices)
    _validate_files(prices, None, None)
    _validate_files(prices, None, None)
    _validate_files(prices, None, None)
    assert validations == [prices]
    assert settled_at_once == [prices]  # hashed once, before the validation; then stat only


def test_settled_file_replaced_with_same_size_and_mtime_is_revalidated(
    tmp_path: Path, validations: list[Path], settled_at_once: list[Path]
) -> None:
    prices = tmp_path / "prices.parquet"
    write_prices(prices)
    _validate_files(prices, None, None)
    bad = tmp_path / "bad.parquet"
    shutil.copy2(prices, bad)
    negate_marked_close_in_place(bad)
    keep_times(bad, prices.stat())
    os.replace(bad, prices)  # like `rsync -t`: a new inode with the old size and mtime
    with pytest.raises(DataError, match="non_positive_price"):
        _validate_files(prices, None, None)
    assert validations == [prices, prices]


def test_same_bytes_under_a_new_stat_are_rehashed_once_not_revalidated(
    tmp_path: Path, validations: list[Path], settled_at_once: list[Path]
) -> None:
    prices = tmp_path / "prices.parquet"
    write_prices(prices)
    _validate_files(prices, None, None)
    copy = tmp_path / "copy.parquet"
    shutil.copy2(prices, copy)
    os.replace(copy, prices)  # like a restore from backup: same bytes, new inode and ctime
    _validate_files(prices, None, None)
    _validate_files(prices, None, None)
    assert validations == [prices]
    assert settled_at_once == [prices, prices]  # once before validating, once after the copy
