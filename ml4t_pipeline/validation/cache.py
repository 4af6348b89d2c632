"""Remember inputs that passed validation, so repeated backtests on unchanged files skip it.

An entry names a set of files (by absolute path) and, for each, its SHA-256 content hash and the
stat record it was hashed under: device, inode, size, mtime_ns and ctime_ns. Both are taken
*before* validation (`lookup`), and `Lookup.remember` stores exactly that pre-validation record,
only if the file's stat record is still the same after validation; a file changed while it was
being validated is therefore never remembered as valid.

A later lookup trusts a file without reading it when its whole stat record equals the stored
one and the stored record was taken while the file was "settled" (its mtime and ctime more than
`SETTLE_NS` before the moment it was hashed). Otherwise it hashes the bytes again and accepts
the entry only if the hash is the validated one (after `cp -a` or a restore the file is hashed
once, found unchanged and the entry refreshed, with no revalidation).

The guarantee: any change to a file's bytes means validating it again, provided the filesystem
keeps ctime and inode numbers (Linux and macOS local filesystems do). Every way to change a file
from user space updates its ctime to the current time (writes, truncation, `os.utime`,
`touch -r`, `cp -p`, `rsync -t`, which writes a new inode), and ctime cannot be set back. A
change within the same timestamp tick as the hashing cannot be seen in the stat record, which is
why records taken less than `SETTLE_NS` after the file's last change are always re-hashed.
What could still slip through: a change on a filesystem that does not maintain ctime or inode
numbers (some FUSE and network mounts, FAT), one made by setting the system clock back to the
file's recorded ctime, or the bytes changing during validation and changing back to the
pre-validation bytes within one timestamp tick. A SHA-256 collision is not considered.

An entry also keeps the warnings a backtest summary repeats (`ValidationReport.split_warnings`),
so a run that skips validation still reports them without validating again.

Entries live under $XDG_CACHE_HOME/ml4t-pipeline (default ~/.cache/ml4t-pipeline), never next to
the raw inputs, and are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

# re-exported for callers of the first cache (and looked up here, so a test can count hashes)
from ml4t_pipeline.fingerprint import FileFingerprint as FileFingerprint
from ml4t_pipeline.fingerprint import fingerprint_file as fingerprint_file

VALIDATOR_VERSION = "3"  # 3: OHLC tolerance, split/jump/data-ends rules, kept warnings


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ml4t-pipeline" / "validated"


def _entry(names: list[str], policy: str) -> Path:
    """The entry of one set of files validated under one policy (a strict policy must not
    take a pass under a lenient one)."""
    key = "|".join(sorted(names)) + "|" + policy
    return cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _load(entry: Path) -> tuple[dict[str, FileFingerprint], tuple[str, ...]]:
    """The stored fingerprints and kept warnings (nothing for a missing or foreign entry)."""
    try:
        saved = json.loads(entry.read_text())
        if saved.get("version") != VALIDATOR_VERSION:
            return {}, ()
        files = {name: FileFingerprint(**fields) for name, fields in saved["files"].items()}
        warnings = saved.get("warnings", [])
        if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
            return {}, ()
        return files, tuple(warnings)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}, ()


def _store(entry: Path, files: dict[str, FileFingerprint], warnings: tuple[str, ...]) -> None:
    payload = {
        "version": VALIDATOR_VERSION,
        "files": {n: asdict(f) for n, f in files.items()},
        "warnings": list(warnings),
    }
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=entry.parent, delete=False, suffix=".tmp") as tmp:
            tmp.write(json.dumps(payload))
        os.replace(tmp.name, entry)
    except OSError:
        return  # a cache that cannot be written only costs a re-validation next time


@dataclass(frozen=True, slots=True)
class Lookup:
    """The files' fingerprints taken before validation, whether they passed it already, and
    (on a hit) the warnings kept with the entry."""

    hit: bool
    paths: tuple[Path, ...]
    fingerprints: dict[str, FileFingerprint]
    warnings: tuple[str, ...] = ()
    policy: str = ""  # the validation policy the files are checked under (its repr)

    def remember(self, warnings: tuple[str, ...] = ()) -> None:
        """Store the pre-validation fingerprints as valid, with the `warnings` a later run
        repeats, unless a file changed since."""
        for path in self.paths:
            known = self.fingerprints.get(str(path.resolve()))
            try:
                if known is None or not known.sha256 or not known.same_stat(path.stat()):
                    return
            except OSError:
                return
        _store(_entry(list(self.fingerprints), self.policy), self.fingerprints, warnings)


def lookup(paths: list[Path], *, policy: str = "") -> Lookup:
    """Fingerprint `paths` now (before validating them) and check them against the cache of
    validations under `policy` (the policy's repr; "" the default).

    A file whose stat record matches a settled stored record is not read; any other file is
    hashed. On a hit after re-hashing, the entry is refreshed so the next lookup is stat-only.
    """
    names = [str(p.resolve()) for p in paths]
    entry = _entry(names, policy)
    saved, warnings = _load(entry)
    current: dict[str, FileFingerprint] = {}
    rehashed = False
    for path, name in zip(paths, names, strict=True):
        known = saved.get(name)
        try:
            if known is not None and known.settled and known.same_stat(path.stat()):
                current[name] = known
                continue
            current[name] = fingerprint_file(path)
            rehashed = True
        except OSError:
            return Lookup(hit=False, paths=tuple(paths), fingerprints={}, policy=policy)
    hit = set(saved) == set(names) and all(
        current[n].sha256 and saved[n].sha256 == current[n].sha256 for n in names
    )
    found = Lookup(
        hit=hit,
        paths=tuple(paths),
        fingerprints=current,
        warnings=warnings if hit else (),
        policy=policy,
    )
    if hit and rehashed:
        found.remember(found.warnings)
    return found


_pending: dict[tuple[str, ...], Lookup] = {}  # is_validated's fingerprints, for remember_validated


def _key(paths: list[Path]) -> tuple[str, ...]:
    return tuple(sorted(str(p.resolve()) for p in paths))


def is_validated(paths: list[Path]) -> bool:
    """True when this exact set of files, unchanged, passed the current validator.

    Kept for callers written against the first cache: the fingerprints taken here are the
    ones `remember_validated(paths)` stores. New code uses `lookup` and `Lookup.remember`.
    """
    found = lookup(paths)
    _pending[_key(paths)] = found
    return found.hit


def remember_validated(paths: list[Path]) -> None:
    """Remember `paths` as valid under the fingerprints `is_validated(paths)` took before."""
    found = _pending.pop(_key(paths), None)
    if found is not None:
        found.remember()
