"""Parquet storage for asset values: polars frames and sets of tables, always replaced atomically.

Where each value goes is `layout.StorageLayout` (hive-style, shared with `ResultStore`).
A frame is written to a temporary file beside its target, flushed to disk and renamed over it.
A `TableSet` is written to a fresh version directory under ``.versions/`` and published by
renaming a symlink over the old one, so readers see the complete old set or the complete new
set, never a mix; a crash at any point leaves the previous good version in place (at worst an
unreferenced directory under ``.versions/``, safe to delete). No pickle: only Parquet and UTF-8
text are written.
"""

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from pydantic import PrivateAttr

from ml4t_pipeline.errors import Ml4tError
from ml4t_pipeline.pipeline.layout import Partition, StorageLayout

STORAGE_ENV = "ML4T_STORAGE_DIR"
_FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class StorageError(Ml4tError):
    """A stored asset value is missing, or its storage location is unusable."""


@dataclass(frozen=True, slots=True)
class TableSet:
    """Tables (Parquet) and small text documents (e.g. JSON) stored and replaced together."""

    tables: Mapping[str, pl.DataFrame]
    texts: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in [*self.tables, *self.texts]:
            if not _FILE_NAME.match(name) or name.startswith("."):
                msg = f"TableSet member name {name!r} is not a plain file name"
                raise ValueError(msg)
        clash = {f"{n}.parquet" for n in self.tables} & set(self.texts)
        if clash:
            msg = f"TableSet text name(s) {sorted(clash)} clash with table files"
            raise ValueError(msg)


def resolve_storage_root(base_dir: str | None, instance: dg.DagsterInstance | None) -> Path:
    """The storage root: `base_dir`, else $ML4T_STORAGE_DIR, else <instance storage>/ml4t.

    Called when a resource is set up for a run (never at import time).
    """
    chosen = base_dir or os.environ.get(STORAGE_ENV)
    if chosen:
        return Path(chosen).absolute()
    if instance is None:
        msg = f"no storage directory: set base_dir, ${STORAGE_ENV}, or run with a Dagster instance"
        raise StorageError(msg)
    return Path(instance.storage_directory()).absolute() / "ml4t"


def layout_partition(
    partition_key: str | None, partitions_def: dg.PartitionsDefinition | None
) -> Partition:
    """A Dagster partition key as the storage layout names it (dimension -> key when the
    asset has several dimensions; Dagster hands over a plain "2024-01-01|core" from the CLI)."""
    if partition_key is None:
        return None
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        key = (
            partition_key
            if isinstance(partition_key, dg.MultiPartitionKey)
            else partitions_def.get_partition_key_from_str(partition_key)
        )
        return dict(key.keys_by_dimension)
    return str(partition_key)


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def write_frame_atomic(frame: pl.DataFrame, path: Path) -> None:
    """Write `frame` to `path` (Parquet) via a temporary sibling and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        frame.write_parquet(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table_set_atomic(value: TableSet, path: Path, *, versions: Path) -> None:
    """Write every member into a new version directory under `versions`, then swap the `path`
    symlink to it."""
    if path.exists() and not path.is_symlink():
        msg = f"{path} exists and is not a managed symlink; move it away to write here"
        raise StorageError(msg)
    versions.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    version = Path(tempfile.mkdtemp(prefix=f"{path.name}.", dir=versions))
    link = path.parent / f".{path.name}.{uuid.uuid4().hex}.link"
    try:
        for name, frame in value.tables.items():
            frame.write_parquet(version / f"{name}.parquet")
            _fsync_file(version / f"{name}.parquet")
        for name, text in value.texts.items():
            (version / name).write_text(text, encoding="utf-8")
            _fsync_file(version / name)
        old = path.resolve() if path.is_symlink() else None
        os.symlink(os.path.relpath(version, path.parent), link)
        os.replace(link, path)
    except BaseException:
        link.unlink(missing_ok=True)
        shutil.rmtree(version, ignore_errors=True)
        raise
    if old is not None and old != version:
        shutil.rmtree(old, ignore_errors=True)


def read_table_set(path: Path) -> TableSet:
    if not path.is_dir():
        msg = f"no stored table set at {path}"
        raise StorageError(msg)
    tables: dict[str, pl.DataFrame] = {}
    texts: dict[str, str] = {}
    for member in sorted(path.iterdir()):
        if member.suffix == ".parquet":
            tables[member.stem] = pl.read_parquet(member)
        else:
            texts[member.name] = member.read_text(encoding="utf-8")
    return TableSet(tables=tables, texts=texts)


class StorageRoot:
    """The storage root of a resource with a `base_dir` field: resolved when a run sets the
    resource up (with its instance), or on first use outside a run."""

    base_dir: str | None
    _root: Path | None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._root = resolve_storage_root(self.base_dir, context.instance)

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = resolve_storage_root(self.base_dir, None)
        return self._root

    @property
    def layout(self) -> StorageLayout:
        return StorageLayout(self.root)


class ParquetIOManager(StorageRoot, dg.ConfigurableIOManager):
    """Stores `pl.DataFrame` outputs as Parquet files and `TableSet` outputs as directories.

    Inputs annotated `pl.LazyFrame` are scanned (filters and projections push down to the file),
    `TableSet` inputs are read as a set, anything else is read as a `pl.DataFrame`.
    """

    base_dir: str | None = None

    _root: Path | None = PrivateAttr(default=None)

    def _partition(self, context: dg.InputContext | dg.OutputContext, key: str | None) -> Partition:
        if not context.has_asset_key:
            msg = "ParquetIOManager stores asset outputs only; give op outputs another IO manager"
            raise StorageError(msg)
        return layout_partition(key, context.asset_partitions_def if key else None)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        key = context.asset_partition_key if context.has_asset_partitions else None
        partition = self._partition(context, key)
        asset = context.asset_key.path
        if isinstance(obj, pl.DataFrame):
            target = self.layout.frame_file(asset, partition)
            write_frame_atomic(obj, target)
            meta: dict[str, Any] = {"rows": obj.height}
        elif isinstance(obj, TableSet):
            target = self.layout.location(asset, partition)
            write_table_set_atomic(obj, target, versions=self.layout.versions_dir(asset))
            meta = {f"rows_{name}": frame.height for name, frame in obj.tables.items()}
        else:
            msg = (
                f"ParquetIOManager cannot store a {type(obj).__name__}; "
                "return a polars DataFrame or a TableSet"
            )
            raise StorageError(msg)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(target)), **meta})

    def load_input(self, context: dg.InputContext) -> Any:
        if context.has_asset_partitions and len(context.asset_partition_keys) != 1:
            n = len(context.asset_partition_keys)
            msg = f"{context.asset_key.to_user_string()}: load one partition at a time, got {n}"
            raise StorageError(msg)
        key = context.asset_partition_key if context.has_asset_partitions else None
        partition = self._partition(context, key)
        asset = context.asset_key.path
        wanted = context.dagster_type.typing_type
        if wanted is TableSet:
            return read_table_set(self.layout.location(asset, partition))
        target = self.layout.frame_file(asset, partition)
        if not target.is_file():
            where = f" partition {key}" if key else ""
            msg = (
                f"{context.asset_key.to_user_string()}{where} has not been materialized "
                f"(no {target}); materialize it first"
            )
            raise StorageError(msg)
        if wanted is pl.LazyFrame:
            return pl.scan_parquet(target)
        return pl.read_parquet(target)
