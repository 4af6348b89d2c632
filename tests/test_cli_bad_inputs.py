"""Each kind of bad input: a non-zero exit, a message naming file, column, rule and row count
with an example, no traceback, and nothing lost (earlier results and inputs untouched)."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import yaml

from ml4t_pipeline.cli import main
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spec = SampleSpec(assets=6, days=40, scenario="bull", seed=9, start=dt.date(2023, 3, 1))
    return write_sample_data(spec, tmp_path_factory.mktemp("clean"))


def _dup(df: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([df, df.slice(7, 2)])


def _high_below_low(df: pl.DataFrame) -> pl.DataFrame:
    bad = pl.int_range(pl.len()).is_in([3, 10, 11])
    return df.with_columns(
        pl.when(bad).then(pl.col("low") - 1.0).otherwise(pl.col("high")).alias("high")
    )


def _nan_close(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) == 5)
        .then(float("nan"))
        .otherwise(pl.col("close"))
        .alias("close")
    )


def _negative_open(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) < 4)
        .then(-pl.col("open"))
        .otherwise(pl.col("open"))
        .alias("open")
    )


def _close_as_text(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col("close").cast(pl.String))


def _no_close(df: pl.DataFrame) -> pl.DataFrame:
    return df.drop("close")


CASES: dict[str, tuple[Callable[[pl.DataFrame], pl.DataFrame], tuple[str, ...]]] = {
    "duplicate_rows": (_dup, ("duplicate_key", "2 rows")),
    "high_below_low": (_high_below_low, ("high", "high_below_low", "3 rows")),
    "nan_price": (_nan_close, ("close", "non_finite_price", "1 row")),
    "negative_price": (_negative_open, ("open", "non_positive_price", "4 rows")),
    "close_as_text": (_close_as_text, ("close", "wrong_dtype")),
    "missing_column": (_no_close, ("close", "missing_column")),
}


def _config(folder: Path, prices: Path, clean: dict[str, Path]) -> Path:
    raw = {
        "data": {
            "prices": str(prices),
            "signals": str(clean["signals"]),
            "context": str(clean["context"]),
        },
        "execution": {"commission_rate": 0.001},
        "strategy": {
            "name": "top_k_rotation",
            "params": {"top_k": 2, "weight": 0.3, "warmup_bars": 2},
        },
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _digest(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["validate", "backtest"])
def test_bad_prices_are_explained_and_nothing_is_lost(
    tmp_path: Path,
    clean: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    case: str,
    command: str,
) -> None:
    corrupt, expected = CASES[case]
    bad = tmp_path / "prices.parquet"
    corrupt(pl.read_parquet(clean["prices"])).write_parquet(bad)
    config = _config(tmp_path, bad, clean)
    results = tmp_path / "results"
    # earlier results in the output folder must survive the failed run
    shutil.copytree(clean["prices"].parent, results)
    before = _digest(sorted(results.iterdir())) | _digest([bad])
    argv = [command, "--config", str(config)] + (
        ["--out", str(results)] if command == "backtest" else []
    )
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    assert "prices.parquet" in err
    for word in expected:
        assert word in err, f"{word!r} not in {err!r}"
    assert _digest(sorted(results.iterdir())) | _digest([bad]) == before


@pytest.mark.parametrize("damage", ["truncated", "not_parquet", "missing"])
def test_unreadable_prices_file(
    tmp_path: Path, clean: dict[str, Path], capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    bad = tmp_path / "prices.parquet"
    if damage == "truncated":
        data = clean["prices"].read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "not_parquet":
        pl.read_parquet(clean["prices"]).write_csv(bad)
    config = _config(tmp_path, bad, clean)
    if damage == "missing":
        raw = yaml.safe_load(config.read_text())
        raw["data"]["prices"] = str(tmp_path / "nowhere.parquet")
        config.write_text(yaml.safe_dump(raw))
    for argv in (
        ["validate", "--config", str(config)],
        ["backtest", "--config", str(config), "--out", str(tmp_path / "o")],
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code != 0
        assert "Traceback" not in err
        assert ("nowhere.parquet" if damage == "missing" else "prices.parquet") in err
    assert not (tmp_path / "o").exists()
