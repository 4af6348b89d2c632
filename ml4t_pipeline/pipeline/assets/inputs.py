"""Input assets: the raw Parquet files, registered as they are, and their UTC-normalised frames.

`raw_*` never rewrite a file; they record what the file was (path, size, rows, mtime, SHA-256
as the data version; the mtime is shown, never compared). The hash is the validation cache's
`fingerprint_file`, one content hash for both. `validated_*` read the file with `read_input`
(UTC timestamps) and store the frame; their blocking contract checks in
`ml4t_pipeline.pipeline.checks` run the validators over every row and decide whether anything
downstream may use it.

`corporate_actions.parquet` is optional. `raw_corporate_actions` records it, or that the data
directory has none (`present: false`, data version "absent"); `validated_corporate_actions`
stores the file's rows as they are (no rows, in the engine's layout, when there is no file),
and its blocking check `corporate_actions_contract` reads them with the engine's
`read_corporate_actions`, so the rules and messages are the engine's own.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import ASSET_ID, TIMESTAMP
from ml4t_pipeline.pipeline.resources import DataDirResource
from ml4t_pipeline.pipeline.resources.data_dir import CORPORATE_ACTIONS
from ml4t_pipeline.validation import fingerprint_file, read_input

INPUTS_GROUP = "inputs"
NO_CORPORATE_ACTIONS = pl.DataFrame(
    schema={
        TIMESTAMP: pl.Datetime("us", "UTC"),
        ASSET_ID: pl.String,
        "split_ratio": pl.Float64,
        "dividend": pl.Float64,
    }
)
"""What `validated_corporate_actions` stores when the data directory has no actions file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileFacts:
    path: Path
    size_bytes: int
    rows: int
    modified: dt.datetime
    sha256: str


def describe_file(path: Path) -> FileFacts:
    """Size, row count (from the Parquet footer), mtime and content hash; the file is only read."""
    try:
        fingerprint = fingerprint_file(path)
        rows = pq.read_metadata(path).num_rows
    except FileNotFoundError:
        msg = f"{path}: input file not found (set ML4T_DATA_DIR or the data_dir resource's path)"
        raise DataError(msg) from None
    except (OSError, pa.ArrowException) as exc:
        msg = f"{path}: cannot read as Parquet: {exc}"
        raise DataError(msg) from exc
    if not fingerprint.sha256:
        msg = f"{path}: the file kept changing while it was read; register it once it is written"
        raise DataError(msg)
    return FileFacts(
        path=path,
        size_bytes=fingerprint.size,
        rows=rows,
        modified=dt.datetime.fromtimestamp(fingerprint.mtime_ns / 1e9, tz=dt.UTC),
        sha256=fingerprint.sha256,
    )


def _raw_file_asset(role: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"raw_{role}",
        group_name=INPUTS_GROUP,
        kinds={"parquet"},
        description=f"The user's {role}.parquet in the data directory, registered, never rewritten.",
    )
    def raw_file(data_dir: DataDirResource) -> dg.MaterializeResult[None]:
        return _registered(describe_file(data_dir.file(role)))

    return raw_file


def _registered(facts: FileFacts) -> dg.MaterializeResult[None]:
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(facts.path)),
            "size_bytes": facts.size_bytes,
            "rows": facts.rows,
            "modified": dg.MetadataValue.timestamp(facts.modified),
            "sha256": facts.sha256,
        },
        data_version=dg.DataVersion(facts.sha256),
    )


def _frame_metadata(frame: pl.DataFrame, path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source": dg.MetadataValue.path(str(path)),
        "rows": frame.height,
        "columns": ", ".join(f"{name}: {dtype}" for name, dtype in frame.schema.items()),
    }
    if "timestamp" in frame.columns and frame.height:
        meta["first_timestamp"] = str(frame["timestamp"].min())
        meta["last_timestamp"] = str(frame["timestamp"].max())
    if "asset_id" in frame.columns:
        meta["assets"] = frame["asset_id"].n_unique()
    return meta


def _input_frame_asset(role: str, raw: dg.AssetsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"validated_{role}",
        group_name=INPUTS_GROUP,
        deps=[raw],
        kinds={"polars"},
        description=(
            f"{role}.parquet read with UTC timestamps; usable downstream only after the blocking "
            f"check {role}_contract passes."
        ),
    )
    def input_frame(data_dir: DataDirResource) -> dg.Output[pl.DataFrame]:
        path = data_dir.file(role)
        frame = read_input(path, role=role)
        return dg.Output(frame, metadata=_frame_metadata(frame, path))

    return input_frame


raw_prices = _raw_file_asset("prices")
raw_signals = _raw_file_asset("signals")
raw_context = _raw_file_asset("context")
validated_prices = _input_frame_asset("prices", raw_prices)
validated_signals = _input_frame_asset("signals", raw_signals)
validated_context = _input_frame_asset("context", raw_context)


@dg.asset(
    name=f"raw_{CORPORATE_ACTIONS}",
    group_name=INPUTS_GROUP,
    kinds={"parquet"},
    description=(
        "The optional corporate_actions.parquet in the data directory (ex-date, asset_id, "
        "split_ratio, dividend), registered, never rewritten; `present: false` without one."
    ),
)
def raw_corporate_actions(data_dir: DataDirResource) -> dg.MaterializeResult[None]:
    path = data_dir.file(CORPORATE_ACTIONS)
    if not path.exists():
        return dg.MaterializeResult(
            metadata={"path": dg.MetadataValue.path(str(path)), "present": False},
            data_version=dg.DataVersion("absent"),
        )
    registered = _registered(describe_file(path))
    return dg.MaterializeResult(
        metadata={**(registered.metadata or {}), "present": True},
        data_version=registered.data_version,
    )


@dg.asset(
    name=f"validated_{CORPORATE_ACTIONS}",
    group_name=INPUTS_GROUP,
    deps=[raw_corporate_actions],
    kinds={"polars"},
    description=(
        "corporate_actions.parquet's rows as they are (none without the file); usable "
        "downstream only after the blocking check corporate_actions_contract passes."
    ),
)
def validated_corporate_actions(data_dir: DataDirResource) -> dg.Output[pl.DataFrame]:
    path = data_dir.file(CORPORATE_ACTIONS)
    if not path.exists():
        return dg.Output(
            NO_CORPORATE_ACTIONS,
            metadata={"source": dg.MetadataValue.path(str(path)), "present": False, "rows": 0},
        )
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        msg = f"{path}: cannot read as Parquet: {exc}"
        raise DataError(msg) from exc
    return dg.Output(frame, metadata={**_frame_metadata(frame, path), "present": True})
