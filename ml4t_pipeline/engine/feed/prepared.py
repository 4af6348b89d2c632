"""Prepared panels: a run's inputs decoded and scattered once, kept on disk, memory-mapped after.

Decoding the Parquet inputs and scattering them into dense (bars x assets) arrays is most of a
single run's feed cost; a sweep of variants, or the same backtest run again, reads the same
arrays. `prepared_data` keeps them in a cache entry (one `.npy` file per array and a manifest,
`feed.panel_files`) and hands out `PreparedData`, which the loop reads like a `MarketData`: one
chunk whose arrays are read-only memory maps, so worker processes on one machine share the
pages of one copy. This module is the cache: which entry, when it may be used, eviction.

An entry is keyed by what decides the arrays: the input files' absolute paths, the columns
read, the run window, whether volume is loaded, the source code of the feed and the versions
of numpy, polars and pyarrow (a change to how the arrays are built is a new key, never a stale
panel). It is used only while every
input file is the one it was built from: the manifest keeps each file's stat record
(`ml4t_pipeline.fingerprint.FileStat`), taken before the build and stored only when the file
was settled then and unchanged after it; any later change to a file (its ctime moves) means a
rebuild. Entries are published whole and durably (`results.publish.publish_dir`), so a crash
or a concurrent run never leaves a half-written panel, and at most `MAX_ENTRIES` are kept (the
least recently used go first). A single run writes its new entry from a thread while it runs
(`background`), which hides most of the cost of the first run.

A sweep's worker processes read one snapshot (`shared_copy`: hard links to the entry's files,
`load_entry` to read them), so every variant sees the same arrays even if an input changes
while the sweep runs.

Runs too long for one chunk (`DEFAULT_MAX_CHUNK_CELLS`) are not cached: they stream month by
month to keep memory bounded, and `prepared_data` returns their `MarketData` as it is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

import ml4t_pipeline
from ml4t_pipeline.engine.feed.market_data import DEFAULT_MAX_CHUNK_CELLS, MarketData
from ml4t_pipeline.engine.feed.panel_files import (
    PANEL_FORMAT,
    entry_files,
    read_entry,
    read_manifest,
)

# the data type lives beside its file format; it is this module's public name too
from ml4t_pipeline.engine.feed.panel_files import PreparedData as PreparedData
from ml4t_pipeline.engine.results.publish import publish_dir
from ml4t_pipeline.fingerprint import FileStat, file_stat
from ml4t_pipeline.keys import to_micros

MAX_ENTRIES = 16
_writers: list[threading.Thread] = []  # background stores started by `prepared_data`


@dataclass(frozen=True, slots=True, kw_only=True)
class Inputs:
    """The files and options a run's feed reads: what decides a prepared panel."""

    prices: Path
    signals: Path | None = None
    context: Path | None = None
    corporate_actions: Path | None = None
    signal_columns: tuple[str, ...] | None = None  # None: every numeric column
    load_volume: bool = True
    start: dt.datetime | dt.date | str | None = None  # the run window [start, end)
    end: dt.datetime | dt.date | str | None = None

    def files(self) -> dict[str, Path]:
        named = {
            "prices": self.prices,
            "signals": self.signals,
            "context": self.context,
            "corporate_actions": self.corporate_actions,
        }
        return {role: path.resolve() for role, path in named.items() if path is not None}

    def key(self) -> str:
        """The entry name: a hash of everything but the files' content (checked per use)."""
        described = {
            "format": PANEL_FORMAT,
            "version": ml4t_pipeline.__version__,
            "code": _feed_code_hash(),
            # the libraries that decode and scatter the files
            "libraries": [np.__version__, pl.__version__, pa.__version__],
            "files": {role: str(path) for role, path in self.files().items()},
            "signal_columns": list(self.signal_columns)
            if self.signal_columns is not None
            else None,
            "load_volume": self.load_volume,
            "start": to_micros(self.start) if self.start is not None else None,
            "end": to_micros(self.end) if self.end is not None else None,
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]

    def market_data(self, max_chunk_cells: int = DEFAULT_MAX_CHUNK_CELLS) -> MarketData:
        return MarketData(
            self.prices,
            self.signals,
            self.context,
            signal_columns=self.signal_columns,
            start=self.start,
            end=self.end,
            max_chunk_cells=max_chunk_cells,
            load_volume=self.load_volume,
            corporate_actions=self.corporate_actions,
        )


def panel_cache_dir() -> Path:
    """Where prepared panels live: $ML4T_PANEL_CACHE, else $XDG_CACHE_HOME/ml4t-pipeline/panels
    (default ~/.cache/ml4t-pipeline/panels), never next to the raw inputs."""
    explicit = os.environ.get("ML4T_PANEL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ml4t-pipeline" / "panels"


def prepared_data(
    inputs: Inputs,
    *,
    cache: Path | None = None,
    max_chunk_cells: int = DEFAULT_MAX_CHUNK_CELLS,
    background: bool = False,
) -> PreparedData | MarketData:
    """The run's data from the cache entry of `inputs`, built (and stored) when missing or
    stale. A run longer than one chunk gets its streaming `MarketData`, not cached.

    With `background`, a new entry is written by a thread while the caller runs on the data
    (the process waits for it at exit); else before returning, and the data names its entry.
    """
    root = cache if cache is not None else panel_cache_dir()
    entry = root / inputs.key()
    files = inputs.files()
    found = _load_checked(entry, files, inputs)
    if found is not None:
        _touch(entry)
        return found
    before = {role: file_stat(path) for role, path in files.items()}
    data = inputs.market_data(max_chunk_cells)
    if data.n_chunks != 1:
        return data
    prepared = PreparedData.from_market_data(data)
    if not all(stat.unchanged(files[role]) for role, stat in before.items()):
        return prepared  # changed lately (or during the build): nothing to trust it by later
    if background:
        writer = threading.Thread(
            target=_store, args=(root, entry, prepared, before), name="ml4t-panel-store"
        )
        _writers.append(writer)
        writer.start()
        return prepared
    if _store(root, entry, prepared, before):
        return dataclasses.replace(prepared, entry=entry)
    return prepared


def finish_writing() -> None:
    """Wait for the entries being written in the background (the interpreter also waits for
    them at exit)."""
    while _writers:
        _writers.pop().join()


@contextmanager
def shared_copy(data: PreparedData, cache: Path) -> Iterator[Path]:
    """A folder holding `data` for other processes (`load_entry`), for as long as the context
    lasts: one snapshot every reader shares, whatever happens to the cache entry meanwhile.
    Hard links to the entry's files when it has one on the same filesystem (nothing copied),
    else the arrays written afresh."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=".shared-", dir=cache))
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix="ml4t-shared-panel-"))
    try:
        if not (data.entry is not None and _link_all(data.entry, folder)):
            for name, write in entry_files(data, {}).items():
                write(folder / name)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_entry(folder: Path, corporate_actions: Path | None) -> PreparedData:
    """The data kept in `folder` (a `shared_copy`), read as it is: no input file is checked."""
    manifest = read_manifest(folder)
    found = read_entry(folder, manifest, corporate_actions) if manifest is not None else None
    if found is None:
        msg = f"{folder} holds no prepared panel"
        raise ValueError(msg)
    return found


def _link_all(entry: Path, folder: Path) -> bool:
    try:
        for file in entry.iterdir():
            os.link(file, folder / file.name)
    except OSError:
        for file in folder.iterdir():
            file.unlink()
        return False
    return read_manifest(folder) is not None


# -- the entry on disk ---------------------------------------------------------------------------
def _store(root: Path, entry: Path, data: PreparedData, stats: dict[str, FileStat]) -> bool:
    """Publish the entry as a whole and evict old ones; a cache that cannot be written only
    costs a rebuild next time (False)."""
    try:
        publish_dir(entry, entry_files(data, stats), optional=_old_files(entry))
    except (OSError, ValueError):
        return False
    _evict(root, keep=entry)
    return True


def _load_checked(entry: Path, files: dict[str, Path], inputs: Inputs) -> PreparedData | None:
    """The entry's data if every input file is the one it was built from (settled then, the
    same stat record now)."""
    manifest = read_manifest(entry)
    if manifest is None:
        return None
    try:
        saved = {role: FileStat(**f) for role, f in manifest["files"].items()}
    except (TypeError, KeyError, AttributeError):
        return None
    if set(saved) != set(files) or not all(saved[r].unchanged(p) for r, p in files.items()):
        return None
    found = read_entry(entry, manifest, inputs.corporate_actions)
    return dataclasses.replace(found, entry=entry) if found is not None else None


def _old_files(entry: Path) -> list[str]:
    """The files an existing entry holds (a stale entry is replaced as a whole)."""
    try:
        return [p.name for p in entry.iterdir() if not p.name.startswith(".")]
    except OSError:
        return []


def _touch(entry: Path) -> None:
    """Mark the entry used (its folder's mtime orders the eviction)."""
    try:
        os.utime(entry)
    except OSError:
        return


def _evict(root: Path, *, keep: Path) -> None:
    """Remove the least recently used entries beyond `MAX_ENTRIES` (never `keep`)."""
    try:
        entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        entries.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
    except OSError:
        return
    for old in entries[MAX_ENTRIES:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


@functools.cache
def _feed_code_hash() -> str:
    """A hash of the source of every module that decides a panel's arrays."""
    here = Path(__file__).parent
    package = Path(ml4t_pipeline.__file__).parent
    sources = [*sorted(here.glob("*.py")), here.parent / "tolerances.py", package / "keys.py"]
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()
