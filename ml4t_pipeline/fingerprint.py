"""A file's identity for caches: its content hash and the stat record it was hashed under.

Two caches trust files by it: validations (`validation.cache`) and prepared panels
(`engine.feed.prepared`). `fingerprint_file` hashes the bytes (SHA-256) and records the stat
taken before hashing; `still_valid` accepts an earlier fingerprint of a file without reading the
file when its whole stat record is unchanged and the record was taken while the file was
"settled" (its mtime and ctime more than `SETTLE_NS` before the hash), and otherwise hashes the
file again and compares. `validation.cache` states the guarantee and what could slip through.

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
class FileFingerprint:
    """A file's content hash and the stat record it was taken under."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    sha256: str
    settled: bool  # mtime and ctime were SETTLE_NS or more before the hash was taken

    def same_stat(self, stat: os.stat_result) -> bool:
        return _stat_record(stat) == tuple(getattr(self, f) for f in _STAT_FIELDS)


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
    last_change = max(before.st_mtime_ns, before.st_ctime_ns)
    return FileFingerprint(
        device=before.st_dev,
        inode=before.st_ino,
        size=before.st_size,
        mtime_ns=before.st_mtime_ns,
        ctime_ns=before.st_ctime_ns,
        sha256=digest,
        settled=bool(digest) and started_ns - last_change >= SETTLE_NS,
    )


def still_valid(path: Path, known: FileFingerprint | None) -> FileFingerprint:
    """The fingerprint of `path` now: `known` itself when the file's stat record equals its
    settled record (nothing read), else a new hash. Compare `sha256` with `known`'s to know
    whether the bytes are the same. Raises `OSError` if the file is unreadable."""
    if known is not None and known.settled and known.same_stat(path.stat()):
        return known
    return fingerprint_file(path)
