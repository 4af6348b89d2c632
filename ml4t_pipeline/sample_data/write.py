"""`write_sample_data`: the generated tables as Parquet plus ``sample.json``, staged then renamed."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Final

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
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"prices": data.prices, "signals": data.signals, "context": data.context}
    staged: dict[str, pathlib.Path] = {}
    try:
        for key, frame in tables.items():
            staged[key] = _temp_path(out_dir, FILE_NAMES[key])
            frame.write_parquet(
                staged[key],
                compression=PARQUET_COMPRESSION,
                statistics=True,
                row_group_size=PARQUET_ROW_GROUP_SIZE,
            )
        staged["spec"] = _temp_path(out_dir, FILE_NAMES["spec"])
        staged["spec"].write_text(_summary_json(spec, data), encoding="utf-8")
    except BaseException:
        for path in staged.values():
            path.unlink(missing_ok=True)
        raise
    written = {key: out_dir / FILE_NAMES[key] for key in staged}
    for key, path in staged.items():
        os.replace(path, written[key])
    return written


def _temp_path(out_dir: pathlib.Path, name: str) -> pathlib.Path:
    handle, path = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
    os.close(handle)
    return pathlib.Path(path)


def _summary_json(spec: SampleSpec, data: SampleData) -> str:
    summary = {
        "generator": _GENERATOR,
        "spec": spec.to_dict(),
        "atr": "wilder",
        "rows": {"prices": data.prices.height, "context": data.context.height},
    }
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"
