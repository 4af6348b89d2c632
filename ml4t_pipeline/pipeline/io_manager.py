"""Parquet storage for asset values: polars frames and sets of tables, always replaced atomically.

Where each value goes is `layout.StorageLayout` (hive-style, shared with `ResultStore`).
A frame is written to a temporary file beside its target, flushed to disk and renamed over it.
A `TableSet` is written to a fresh version directory under ``.versions/`` and published by
renaming a symlink over the old one, so readers see the complete old set or the complete new
set, never a mix; a crash at any point leaves the previous good version in place (at worst an
unreferenced directory under ``.versions/`` or a temporary link beside the target). A write
does not delete the version it replaces: each TableSet write first removes the asset's
unreferenced versions and temporary files older than `DEBRIS_AGE_S` (retired versions and
crash debris alike). A reader resolves the link ONCE and reads every member from that
version; should the version vanish meanwhile, the whole set is read again from the new one. No pickle: only Parquet and UTF-8 text are written.

A step that materializes several partitions (a single-run backfill) hands the IO manager a
mapping {partition key: value} and gets one back for an input over several partitions.
"""

import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from pydantic import PrivateAttr

from ml4t_pipeline.errors import Ml4tError
from ml4t_pipeline.pipeline.layout import Partition, StorageLayout

STORAGE_ENV = "ML4T_STORAGE_DIR"
DEBRIS_AGE_S = 600.0
"""Unreferenced version directories (retired by a newer write, or left by a crash) and
temporary files older than this are removed by the next write of the asset; younger ones may
be a write in progress or a version a reader is still reading."""
READ_ATTEMPTS = 5
"""How often a reader re-reads a set whose version a concurrent writer retired mid-read."""
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


def write_text_atomic(text: str, path: Path) -> None:
    """Write `text` (UTF-8) to `path` via a temporary sibling and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        tmp.write_text(text, encoding="utf-8")
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
        os.symlink(os.path.relpath(version, path.parent), link)
        os.replace(link, path)
    except BaseException:
        link.unlink(missing_ok=True)
        shutil.rmtree(version, ignore_errors=True)
        raise


def remove_debris(
    asset_dir: Path, versions: Path, *, min_age_s: float = DEBRIS_AGE_S
) -> list[Path]:
    """Delete what crashed writes of one asset left behind, when older than `min_age_s`:
    version directories under `versions` that no link under `asset_dir` points to, and the
    temporary files and links beside the targets. Returns what was removed."""
    if not versions.is_dir():
        return []
    cutoff = time.time() - min_age_s
    referenced = {
        link.resolve() for link in asset_dir.rglob("*") if link.is_symlink() and link.exists()
    }
    removed: list[Path] = []
    for version in versions.iterdir():
        if version.resolve() not in referenced and version.lstat().st_mtime < cutoff:
            shutil.rmtree(version, ignore_errors=True)
            removed.append(version)
    for temp in [*asset_dir.rglob(".*.link"), *asset_dir.rglob(".*.tmp")]:
        if temp.lstat().st_mtime < cutoff:
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def _read_version(version: Path, texts_only: Iterable[str] | None) -> TableSet:
    tables: dict[str, pl.DataFrame] = {}
    texts: dict[str, str] = {}
    if texts_only is not None:
        for name in texts_only:
            texts[name] = (version / name).read_text(encoding="utf-8")
        return TableSet(tables=tables, texts=texts)
    for member in sorted(version.iterdir()):
        if member.suffix == ".parquet":
            tables[member.stem] = pl.read_parquet(member)
        else:
            texts[member.name] = member.read_text(encoding="utf-8")
    return TableSet(tables=tables, texts=texts)


def read_table_set(path: Path, *, texts_only: Iterable[str] | None = None) -> TableSet:
    """The set stored at `path`, every member from the ONE version the link resolved to
    (`texts_only`: just those text members). A version retired by a concurrent writer while
    it was read is read again, whole, from the link's new target."""
    names = tuple(texts_only) if texts_only is not None else None
    for _ in range(READ_ATTEMPTS):
        version = path.resolve()
        if not version.is_dir():
            msg = f"no stored table set at {path}"
            raise StorageError(msg)
        try:
            return _read_version(version, names)
        except FileNotFoundError:
            if version.is_dir() and names is not None:
                missing = [n for n in names if not (version / n).is_file()]
                msg = f"{path}: stored set has no {', '.join(missing)}"
                raise StorageError(msg) from None
            continue  # the version was retired mid-read: read the new one
    msg = f"{path}: the stored set kept changing while it was read ({READ_ATTEMPTS} attempts)"
    raise StorageError(msg)


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

    Inputs annotated `pl.LazyFrame` are scanned (filters and projections push down to the file);
    a stored TableSet is read as a set, a stored frame as a `pl.DataFrame`.
    """

    base_dir: str | None = None

    _root: Path | None = PrivateAttr(default=None)

    def _partition(self, context: dg.InputContext | dg.OutputContext, key: str | None) -> Partition:
        if not context.has_asset_key:
            msg = "ParquetIOManager stores asset outputs only; give op outputs another IO manager"
            raise StorageError(msg)
        return layout_partition(key, context.asset_partitions_def if key else None)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if not context.has_asset_partitions:
            self._write(context, None, obj)
            return
        keys = sorted(context.asset_partition_keys)
        if len(keys) == 1:
            single = obj.get(keys[0]) if isinstance(obj, Mapping) and len(obj) == 1 else obj
            self._write(context, keys[0], single)
            return
        name = context.asset_key.to_user_string()
        if not isinstance(obj, Mapping) or sorted(obj) != keys:
            got = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
            msg = (
                f"{name}: a step over {len(keys)} partitions must return "
                f"{{partition key: value}} with exactly those keys, got {got}"
            )
            raise StorageError(msg)
        for key in keys:
            self._write(context, key, obj[key], record=False)
        root = self.layout.location(context.asset_key.path)
        context.add_output_metadata(
            {"partitions_written": len(keys), "path": dg.MetadataValue.path(str(root))}
        )

    def _write(
        self, context: dg.OutputContext, key: str | None, obj: Any, *, record: bool = True
    ) -> None:
        partition = self._partition(context, key)
        asset = context.asset_key.path
        if isinstance(obj, pl.DataFrame):
            target = self.layout.frame_file(asset, partition)
            write_frame_atomic(obj, target)
            meta: dict[str, Any] = {"rows": obj.height}
        elif isinstance(obj, TableSet):
            target = self.layout.location(asset, partition)
            versions = self.layout.versions_dir(asset)
            remove_debris(self.layout.location(asset), versions)
            write_table_set_atomic(obj, target, versions=versions)
            meta = {f"rows_{name}": frame.height for name, frame in obj.tables.items()}
        else:
            msg = (
                f"ParquetIOManager cannot store a {type(obj).__name__}; "
                "return a polars DataFrame or a TableSet"
            )
            raise StorageError(msg)
        if record:  # one partition: the file and its rows (a range records its root above)
            context.add_output_metadata({"path": dg.MetadataValue.path(str(target)), **meta})

    def load_input(self, context: dg.InputContext) -> Any:
        if context.has_asset_partitions and len(context.asset_partition_keys) != 1:
            return {key: self._read(context, key) for key in sorted(context.asset_partition_keys)}
        key = context.asset_partition_key if context.has_asset_partitions else None
        return self._read(context, key)

    def _read(self, context: dg.InputContext, key: str | None) -> Any:
        partition = self._partition(context, key)
        asset = context.asset_key.path
        wanted = context.dagster_type.typing_type
        location = self.layout.location(asset, partition)
        if wanted is TableSet or (wanted is not pl.LazyFrame and location.is_dir()):
            return read_table_set(location)
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
