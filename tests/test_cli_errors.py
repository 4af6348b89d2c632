"""Every user mistake: the CLI exits 2 with exactly one `error:` line (no traceback, values cut
so stderr stays under 1 KB) and writes nothing; the Python API raises ConfigError/DataError.

Each row of `CASES` builds its own bad input in tmp_path from one clean sample market; the
data rows run under `--no-validate`, so the engine's own feed must refuse them.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ml4t_pipeline.cli import main
from ml4t_pipeline.engine import load_run_config, run_backtest
from ml4t_pipeline.errors import ConfigError, DataError, Ml4tError, shown
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data

HUGE_ID = "X" * 2_000_000


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spec = SampleSpec(assets=4, days=20, scenario="bull", seed=9, start=dt.date(2023, 3, 1))
    return write_sample_data(spec, tmp_path_factory.mktemp("clean"))


def _raw(clean: dict[str, Path], **data: Path) -> dict[str, Any]:
    files = {k: str(clean[k]) for k in ("prices", "signals", "context")}
    files |= {k: str(v) for k, v in data.items()}
    return {
        "data": files,
        "execution": {"commission_rate": 0.001},
        "strategy": {
            "name": "top_k_rotation",
            "params": {"top_k": 2, "weight": 0.3, "warmup_bars": 2},
        },
    }


def _config(folder: Path, clean: dict[str, Path], **data: Path) -> Path:
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(_raw(clean, **data)))
    return path


Maker = Callable[[Path, dict[str, Path]], tuple[Path, str]]


@dataclass(frozen=True, slots=True)
class Case:
    """A bad input: `make(tmp_path, clean)` writes it and returns (config, --out); the message
    must contain `words`; the API raises `api` (None: a command-line mistake only)."""

    make: Callable[[Path, dict[str, Path]], tuple[Path, str]]
    words: tuple[str, ...]
    api: type[Ml4tError] | None


# -- configs ----------------------------------------------------------------------------------


def _config_bytes(data: Callable[[bytes], bytes]) -> Maker:
    def make(tmp: Path, clean: dict[str, Path]) -> tuple[Path, str]:
        path = _config(tmp, clean)
        path.write_bytes(data(path.read_bytes()))
        return path, str(tmp / "out")

    return make


def _config_text(text: str) -> Maker:
    return _config_bytes(lambda good: good + text.encode())


def _alias_bomb(good: bytes) -> bytes:
    """Nine aliases per level, eight levels: 9**8 (43 million) strings under a typed key."""
    lines = ['lol: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]" for k in range(1, 9)]
    bomb = "\n".join(f"    {line}" for line in lines)
    text = good.decode().replace("commission_rate: 0.001", "commission_rate:\n" + bomb)
    return text.encode()


def _deep_mapping(good: bytes) -> bytes:
    nested = "".join("  " * (k + 1) + f"k{k}:\n" for k in range(1200)) + "  " * 1201 + "v: 1\n"
    return good + b"deep:\n" + nested.encode()


# -- --out ------------------------------------------------------------------------------------


def _out_is(where: Callable[[Path], str]) -> Maker:
    def make(tmp: Path, clean: dict[str, Path]) -> tuple[Path, str]:
        (tmp / "a_file").write_text("keep me")
        return _config(tmp, clean), where(tmp)

    return make


# -- data under --no-validate -----------------------------------------------------------------


def _prices(change: Callable[[pa.Table], pa.Table], role: str = "prices") -> Maker:
    def make(tmp: Path, clean: dict[str, Path]) -> tuple[Path, str]:
        bad = tmp / f"bad_{role}.parquet"
        pq.write_table(change(pq.read_table(clean[role])), bad)
        return _config(tmp, clean, **{role: bad}), str(tmp / "out")

    return make


def _frame(change: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[pa.Table], pa.Table]:
    return lambda table: change(pl.DataFrame(table)).to_arrow()


def _repeat_close(table: pa.Table) -> pa.Table:
    return table.append_column("close", table.column("close"))


def _nanoseconds(frame: pl.DataFrame) -> pl.DataFrame:
    stamp = pl.col("timestamp").cast(pl.Datetime("ns", "UTC")) + pl.duration(nanoseconds=7)
    return frame.with_columns(stamp)


def _integer_ids(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("asset_id").str.slice(1).cast(pl.Int64))


def _ids_as(kind: pa.DataType, *, dictionary: bool) -> Callable[[pa.Table], pa.Table]:
    def change(table: pa.Table) -> pa.Table:
        ids = table.column("asset_id").cast(kind)
        ids = ids.dictionary_encode() if dictionary else ids
        return table.set_column(table.schema.get_field_index("asset_id"), "asset_id", ids)

    return change


def _new_york_wall_clock(frame: pl.DataFrame) -> pl.DataFrame:
    """The same wall-clock times labelled New York: every row 4-5 hours after its bar."""
    stamp = pl.col("timestamp").dt.replace_time_zone(None).dt.replace_time_zone("America/New_York")
    return frame.with_columns(stamp)


def _huge_repeated_id(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.head(2).with_columns(pl.lit(HUGE_ID).alias("asset_id"))


def _features(change: Callable[[pl.DataFrame], pl.DataFrame]) -> Maker:
    def make(tmp: Path, clean: dict[str, Path]) -> tuple[Path, str]:
        frame = pl.read_parquet(clean["signals"]).select("timestamp", "asset_id", "ml_score")
        path = tmp / "features.parquet"
        change(frame.rename({"ml_score": "feature"})).write_parquet(path)
        return _config(tmp, clean, features=path), str(tmp / "out")

    return make


CASES: dict[str, Case] = {
    "config_utf16": Case(
        _config_bytes(lambda good: codecs.BOM_UTF16_LE + good.decode().encode("utf-16-le")),
        ("run.yaml", "UTF-16"),
        ConfigError,
    ),
    "config_latin1": Case(
        _config_bytes(lambda good: good + "# café\n".encode("latin-1")),
        ("run.yaml", "not UTF-8", "0xe9", "offset"),
        ConfigError,
    ),
    "config_deep_flow": Case(
        _config_text("deep: " + "[" * 5000 + "]" * 5000 + "\n"),
        ("run.yaml", "nesting"),
        ConfigError,
    ),
    "config_deep_block": Case(_config_bytes(_deep_mapping), ("run.yaml", "nesting"), ConfigError),
    "config_alias_bomb": Case(_config_bytes(_alias_bomb), ("run.yaml", "aliases"), ConfigError),
    "config_bad_date": Case(
        _config_text("when: 2023-02-30\n"), ("run.yaml", "day is out of range"), ConfigError
    ),
    "config_bad_yaml": Case(_config_text("data: [\n"), ("run.yaml", "not valid YAML"), ConfigError),
    "out_empty": Case(_out_is(lambda tmp: ""), ("--out", "empty"), None),
    "out_blank": Case(_out_is(lambda tmp: "  "), ("--out", "empty"), None),
    "out_is_a_file": Case(
        _out_is(lambda tmp: str(tmp / "a_file")), ("a_file", "existing file"), None
    ),
    "out_under_a_file": Case(
        _out_is(lambda tmp: str(tmp / "a_file" / "res")), ("a_file", "which is a file"), None
    ),
    "repeated_column_name": Case(
        _prices(_repeat_close), ("bad_prices.parquet", "'close'", "more than once"), DataError
    ),
    "nanosecond_prices": Case(
        _prices(_frame(_nanoseconds)),
        ("bad_prices.parquet", "'timestamp'", "finer than a microsecond", ".000000007"),
        DataError,
    ),
    "nanosecond_signals": Case(
        _prices(_frame(_nanoseconds), "signals"),
        ("bad_signals.parquet", "finer than a microsecond"),
        DataError,
    ),
    "nanosecond_context": Case(
        _prices(_frame(_nanoseconds), "context"),
        ("bad_context.parquet", "finer than a microsecond"),
        DataError,
    ),
    "nanosecond_features": Case(
        _features(_nanoseconds), ("features", "finer than a microsecond"), DataError
    ),
    "integer_prices_text_signals": Case(
        _prices(_frame(_integer_ids)),
        ("signals.parquet", "bad_prices.parquet", "text ids", "integer ids"),
        DataError,
    ),
    "integer_features_text_prices": Case(
        _features(_integer_ids),
        ("features.parquet", "prices.parquet", "integer ids", "text ids"),
        DataError,
    ),
    "binary_ids": Case(
        _prices(_ids_as(pa.binary(), dictionary=False)),
        ("bad_prices.parquet", "asset_id", "binary"),
        DataError,
    ),
    "binary_ids_dictionary": Case(
        _prices(_ids_as(pa.binary(), dictionary=True)),
        ("bad_prices.parquet", "asset_id", "dictionary<values=binary"),
        DataError,
    ),
    "binary_ids_dictionary_signals": Case(
        _prices(_ids_as(pa.binary(), dictionary=True), "signals"),
        ("bad_signals.parquet", "asset_id", "binary"),
        DataError,
    ),
    "signals_in_another_time_zone": Case(
        _prices(_frame(_new_york_wall_clock), "signals"),
        ("bad_signals.parquet", "prices.parquet", "America/New_York", "UTC", "price bar"),
        DataError,
    ),
    "huge_repeated_asset_id": Case(
        _prices(_frame(_huge_repeated_id)),
        ("bad_prices.parquet", "duplicate_key", "2000000 characters"),
        DataError,
    ),
}


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else ""
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory (`--out ""` must not write the results into it)."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _one_error_line(err: str) -> None:
    assert "Traceback" not in err
    assert len(err.encode()) < 1024, err[:2000]
    assert [line.startswith("error:") for line in err.splitlines()].count(True) == 1, err


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_mistake_is_one_error_line_and_writes_nothing(
    tmp_path: Path, clean: dict[str, Path], cwd: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    config, out = CASES[case].make(tmp_path, clean)
    before = _snapshot(tmp_path)
    code = main(["backtest", "--config", str(config), "--out", out, "--no-validate"])
    err = capsys.readouterr().err
    assert code == 2, err
    _one_error_line(err)
    for word in CASES[case].words:
        assert word in err, f"{word!r} not in {err!r}"
    assert _snapshot(tmp_path) == before  # no --out folder, no file in the working directory
    assert not any(cwd.iterdir())


@pytest.mark.parametrize("case", sorted(c for c, v in CASES.items() if v.api is not None))
def test_api_raises_the_project_error(tmp_path: Path, clean: dict[str, Path], case: str) -> None:
    config, _ = CASES[case].make(tmp_path, clean)
    error = CASES[case].api
    assert error is not None
    with pytest.raises(error) as caught:
        run_backtest(load_run_config(config))
    for word in CASES[case].words:
        assert word in str(caught.value)
    assert len(str(caught.value)) < 1024


def test_validated_run_with_a_huge_id_stays_short(
    tmp_path: Path, clean: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The validation pass (warnings, then the error) cuts the 2 MB id as well."""
    config, out = CASES["huge_repeated_asset_id"].make(tmp_path, clean)
    code = main(["backtest", "--config", str(config), "--out", out])
    err = capsys.readouterr().err
    assert code == 2
    _one_error_line(err)
    assert "2000000 characters" in err
    assert not Path(out).exists()


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may create entries in: mode 0500, or immutable when running as root."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    immutable = False
    if os.access(folder, os.W_OK):  # root ignores permission bits
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", str(folder)], check=False).returncode:
            folder.chmod(0o700)
            pytest.skip("cannot make a folder unwritable for this user")
        immutable = True
    yield folder
    if immutable:
        subprocess.run([str(shutil.which("chattr")), "-i", str(folder)], check=True)
    folder.chmod(0o700)


def test_unwritable_out_is_refused_before_the_run(
    tmp_path: Path, clean: dict[str, Path], locked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, clean)
    code = main(["backtest", "--config", str(config), "--out", str(locked / "res" / "month")])
    err = capsys.readouterr().err
    assert code == 2
    _one_error_line(err)
    assert "cannot write" in err
    assert "locked" in err
    assert not any(locked.iterdir())


# -- what still works -------------------------------------------------------------------------


def _lossless_nanoseconds(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("timestamp").cast(pl.Datetime("ns", "UTC")))


def _same_instants_in_new_york(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("timestamp").dt.convert_time_zone("America/New_York"))


def _reference_equity(tmp: Path, clean: dict[str, Path]) -> pl.DataFrame:
    return run_backtest(load_run_config(_config(tmp, clean))).equity


@pytest.mark.parametrize(
    ("name", "role", "change"),
    [
        ("nanoseconds_whole_microseconds", "prices", _lossless_nanoseconds),
        ("signals_same_instants_new_york", "signals", _same_instants_in_new_york),
    ],
)
def test_exact_conversions_give_the_clean_result(
    tmp_path: Path,
    clean: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    name: str,
    role: str,
    change: Callable[[pl.DataFrame], pl.DataFrame],
) -> None:
    """Whole-microsecond nanoseconds and another zone at the same instants read exactly."""
    expected = _reference_equity(tmp_path, clean)
    _, out = _prices(_frame(change), role)(tmp_path, clean)
    config = tmp_path / "run.yaml"
    code = main(["backtest", "--config", str(config), "--out", out, "--no-validate"])
    assert code == 0, capsys.readouterr().err
    assert pl.read_parquet(Path(out) / "equity.parquet").equals(expected), name


def test_clean_configs_still_load(tmp_path: Path, clean: dict[str, Path]) -> None:
    """A UTF-8 byte-order mark, non-ASCII comments, anchors and aliases are fine."""
    good = _config(tmp_path, clean).read_text()
    text = "# Überblick: two parameters share one value\n" + good.replace(
        "top_k: 2", "top_k: &two 2"
    ).replace("warmup_bars: 2", "warmup_bars: *two")
    assert "*two" in text
    path = tmp_path / "bom.yaml"
    path.write_bytes(codecs.BOM_UTF8 + text.encode())
    assert load_run_config(path) == load_run_config(_config(tmp_path, clean))


def test_out_in_a_new_nested_folder_is_created(
    tmp_path: Path, clean: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results" / "2023" / "march"
    code = main(["backtest", "--config", str(_config(tmp_path, clean)), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert (out / "equity.parquet").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no probe left behind


def test_shown_cuts_long_values() -> None:
    assert shown("abc") == "'abc'"
    long = shown("x" * 5000)
    assert long.startswith("'xxx")
    assert long.endswith("… (5002 characters)")
    assert len(long) < 230
