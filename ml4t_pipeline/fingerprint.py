"""A file's identity for caches: its stat record, and its content hash taken under it.

`file_stat` records a file's device, inode, size, mtime and ctime, and whether the record was
taken while the file was "settled" (its mtime and ctime more than `SETTLE_NS` before). A later
stat equal to a settled record means the file has not changed since: every way to change a
file from user space sets its ctime to the current time, and ctime cannot be set back
(`validation.cache` states the guarantee and what could slip through). A record taken sooner
after a change proves nothing: a change within the same timestamp tick leaves it equal.

`fingerprint_file` adds the SHA-256 of the bytes, so a file whose stat changed but whose bytes
did not (`cp -a`, a restore) is still recognized (`validation.cache`, where re-validating costs
far more than hashing). Prepared panels (`engine.feed.prepared`) keep stat records only: a
rebuild costs about what hashing the inputs would.

Standard library only, so the engine may import it.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

SETTLE_NS = 3_000_000_000  # > the coarsest common timestamp granularity (FAT: 2 s)
_STAT_FIELDS = ("device", "inode", "size", "mtime_ns", "ctime_ns")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileStat:
    """A file's stat record, and whether it was taken while the file was settled."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    settled: bool  # mtime and ctime were SETTLE_NS or more before the record (or hash) was taken

    def same_stat(self, stat: os.stat_result) -> bool:
        return _stat_record(stat) == tuple(getattr(self, f) for f in _STAT_FIELDS)

    def unchanged(self, path: Path) -> bool:
        """The file is the one recorded: settled then, the same stat now."""
        try:
            return self.settled and self.same_stat(path.stat())
        except OSError:
            return False


@dataclass(frozen=True, slots=True, kw_only=True)
class FileFingerprint(FileStat):
    """A file's content hash and the stat record it was taken under."""

    sha256: str


def file_stat(path: Path) -> FileStat:
    """The stat record of `path` now (raises `OSError` if it cannot be read)."""
    now_ns = time.time_ns()
    stat = path.stat()
    return FileStat(**_fields(stat), settled=now_ns - _last_change(stat) >= SETTLE_NS)


def _fields(stat: os.stat_result) -> dict[str, int]:
    return dict(zip(_STAT_FIELDS, _stat_record(stat), strict=True))


def _last_change(stat: os.stat_result) -> int:
    return max(stat.st_mtime_ns, stat.st_ctime_ns)


def _stat_record(stat: os.stat_result) -> tuple[int, ...]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def fingerprint_file(path: Path) -> FileFingerprint:
    """Hash the file's bytes (SHA-256) and record the stat it had; reads the whole file.

    The record is the stat taken before hashing. A file whose stat changed while it was hashed
    is hashed again (up to three times); if it never holds still, its `sha256` is empty, which
    matches no entry and `Lookup.remember` does not store. Raises `OSError` if unreadable.
    """
    for _ in range(3):
        started_ns = time.time_ns()
        before = path.stat()
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if _stat_record(path.stat()) == _stat_record(before):
            break
    else:
        digest = ""
    settled = bool(digest) and started_ns - _last_change(before) >= SETTLE_NS
    return FileFingerprint(**_fields(before), sha256=digest, settled=settled)
