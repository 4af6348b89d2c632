"""`write_sample_data`: the generated tables as Parquet plus ``sample.json``, staged then renamed."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from collections.abc import Callable, Mapping
from typing import Final

import polars as pl

from ml4t_pipeline.sample_data.model import SampleData, generate
from ml4t_pipeline.sample_data.spec import SampleSpec

FILE_NAMES: Final = {
    "prices": "prices.parquet",
    "signals": "signals.parquet",
    "context": "context.parquet",
    "spec": "sample.json",
}
PARQUET_COMPRESSION: Final = "lz4"
PARQUET_ROW_GROUP_SIZE: Final = 1 << 20

# ``sample.json`` names the generator by its public module, whichever module writes the file.
_GENERATOR: Final = "ml4t_pipeline.sample_data"


def write_sample_data(spec: SampleSpec, out_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write the tables of ``generate(spec)`` and ``sample.json`` into ``out_dir``.

    Every file is first written to a temporary file in ``out_dir``; only when all of them are
    complete are they renamed into place, so a failure leaves earlier files untouched.
    An identical spec gives byte-identical files. Returns the paths by key of `FILE_NAMES`.
    """
    data = generate(spec)
    writers = {
        "prices": parquet_writer(data.prices),
        "signals": parquet_writer(data.signals),
        "context": parquet_writer(data.context),
        "spec": text_writer(_summary_json(spec, data)),
    }
    return publish_files(out_dir, writers, FILE_NAMES)


Writer = Callable[[pathlib.Path], None]
"""Writes one file at the path it is given."""


def parquet_writer(frame: pl.DataFrame) -> Writer:
    """`frame` as the sample files are written: lz4, statistics, 1 Mi-row row groups."""

    def write(path: pathlib.Path) -> None:
        frame.write_parquet(
            path,
            compression=PARQUET_COMPRESSION,
            statistics=True,
            row_group_size=PARQUET_ROW_GROUP_SIZE,
        )

    return write


def text_writer(text: str) -> Writer:
    def write(path: pathlib.Path) -> None:
        path.write_text(text, encoding="utf-8")

    return write


def publish_files(
    out_dir: pathlib.Path, writers: Mapping[str, Writer], names: Mapping[str, str]
) -> dict[str, pathlib.Path]:
    """Write each file (`writers[key]` as `out_dir / names[key]`) to a temporary file in
    `out_dir`, then rename them all into place once every one is complete: a failure leaves
    the earlier files untouched. Returns the paths by key."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: dict[str, pathlib.Path] = {}
    try:
        for key, write in writers.items():
            handle, name = tempfile.mkstemp(dir=out_dir, prefix=f".{names[key]}.", suffix=".tmp")
            os.close(handle)
            staged[key] = pathlib.Path(name)
            write(staged[key])
    except BaseException:
        for path in staged.values():
            path.unlink(missing_ok=True)
        raise
    written = {key: out_dir / names[key] for key in staged}
    for key, path in staged.items():
        os.replace(path, written[key])
    return written


def _summary_json(spec: SampleSpec, data: SampleData) -> str:
    summary = {
        "generator": _GENERATOR,
        "spec": spec.to_dict(),
        "atr": "wilder",
        "rows": {"prices": data.prices.height, "context": data.context.height},
    }
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"
