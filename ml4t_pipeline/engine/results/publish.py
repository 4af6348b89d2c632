"""Publish a directory of result files as a whole: crash-safe and safe for concurrent writers.

`publish_dir(out, members)` writes every member file into a fresh sibling staging directory
``.<name>.pub-<hex>``, fsyncs each file and the directory, then swaps it with `out` in one
atomic step and removes the old content. Guarantees (Linux; Windows is not a target):

- **Whole old or whole new.** `out` is an ordinary directory at every moment: the swap is
  ``renameat2(RENAME_EXCHANGE)`` (a rename when `out` does not exist yet), so a reader that
  lists or opens ``out/*`` and a crash at any point see the complete previous set or the complete
  new set, never a mix. A reader holding a file open keeps reading the old version after the
  swap; a reader that opens files one by one across a swap can get files of both versions.
  On a filesystem without RENAME_EXCHANGE (e.g. NFS) the swap is two renames; a crash between
  them leaves `out` missing and the old set under ``.<name>.old-<hex>``, which the next
  publish puts back first.
- **Durable.** Every file and the staging directory are fsynced before the swap, the parent
  directory after it.
- **One writer at a time.** Writers of one `out` take an exclusive ``flock`` on the sibling
  ``.<name>.lock``; a second writer waits for the first to finish (the later result wins) and
  gives up with `OutputError` after `lock_timeout_s`. The lock file is removed when done.
- **Debris is cleaned.** Staging and old directories and the lock file a killed writer left
  beside `out` are removed by the next publish (under the lock). Only directories with our name
  pattern whose files are all member names are touched.
- **Nothing foreign is deleted.** An existing `out` is replaced only when it is empty or holds
  only member files (and ``.tmp-*`` folders of them, left by the earlier file-by-file writer);
  anything else raises `OutputError` and changes nothing.
- **Permissions honour the umask**: directories are created 0777 and files 0666, less the umask.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ml4t_pipeline.errors import Ml4tError

#: How long a writer waits for another writer of the same `out` before giving up.
LOCK_TIMEOUT_S = 600.0
_LOCK_POLL_S = 0.05
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_LEGACY_TMP = ".tmp-"  # the earlier writer's staging folders inside `out`


class OutputError(Ml4tError):
    """The output directory cannot be written: foreign content, or another writer holds it."""


def publish_dir(
    out: str | Path,
    members: Mapping[str, Callable[[Path], None]],
    *,
    optional: Iterable[str] = (),
    folders: Iterable[str] = (),
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> Path:
    """Write each member (file name -> writer of that path) and publish them as `out`.

    `optional` names result files this publish does not write but an earlier one may have
    (a report): an `out` holding them is still a result, and they go with the old set.
    `folders` names the members (written or optional) that are folders, not files: their
    writer creates the folder (e.g. a nested result); an `out` may hold them as folders."""
    target = Path(os.path.realpath(out))
    names = frozenset(members) | frozenset(optional)
    dirs = frozenset(folders)
    for name in names | dirs:
        if not name or name.startswith(".") or os.sep in name:
            msg = f"member name {name!r} is not a plain file name"
            raise ValueError(msg)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    with _locked(target, lock_timeout_s):
        _clean_debris(target, names, dirs)
        _check_replaceable(target, names, dirs)
        staging = _sibling(target, "pub")
        os.mkdir(staging)
        published = False
        try:
            for name, write in members.items():
                write(staging / name)
                _fsync(staging / name)
            _fsync(staging)
            old = _swap(staging, target)
            published = True
            _fsync(parent)
        finally:
            if not published:
                shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old)
    return target


def replace_member(
    out: str | Path,
    name: str,
    write: Callable[[Path], None],
    *,
    names: Iterable[str],
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> Path:
    """Write one file of an existing result directory `out` and rename it into place, under
    the writers' lock; the other files stay as they are. `names` are the files a result may
    hold (`out` must hold nothing else). The file is written in a staging folder beside
    `out`, so a crash leaves the old file and debris the next publish removes."""
    target = Path(os.path.realpath(out))
    known = frozenset(names) | {name}
    with _locked(target, lock_timeout_s):
        _clean_debris(target, known)
        if not target.is_dir() or not _holds_only(target, known):
            msg = f"{target} is not a backtest result (a result holds only {', '.join(sorted(known))})"
            raise OutputError(msg)
        staging = _sibling(target, "pub")
        os.mkdir(staging)
        try:
            write(staging / name)
            _fsync(staging / name)
            os.replace(staging / name, target / name)
            _fsync(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target / name


def _swap(staging: Path, target: Path) -> Path | None:
    """Make `staging` the new `target`; return where the old content now is (None: nothing)."""
    if not os.path.lexists(target):
        os.rename(staging, target)
        return None
    if _exchange(staging, target):
        return staging
    old = _sibling(target, "old")
    os.rename(target, old)
    os.rename(staging, target)
    return old


def _sibling(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}.{kind}-{secrets.token_hex(8)}")


def _debris_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(target.name)}\.(pub|old)-[0-9a-f]{{16}}$")


def _holds_only(
    folder: Path, names: frozenset[str], dirs: frozenset[str] = frozenset(), *, legacy: bool = True
) -> bool:
    """Whether `folder` holds nothing but member files, member folders (`dirs`) and legacy
    ``.tmp-*`` folders of member files."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and entry.name in names:
                continue
            if entry.is_dir(follow_symlinks=False) and entry.name in dirs:
                continue
            if (
                legacy
                and entry.name.startswith(_LEGACY_TMP)
                and entry.is_dir(follow_symlinks=False)
                and _holds_only(Path(entry.path), names, legacy=False)
            ):
                continue
            return False
    return True


def _clean_debris(target: Path, names: frozenset[str], dirs: frozenset[str] = frozenset()) -> None:
    """Put back an old set a killed two-rename swap left aside; remove other leftovers of ours."""
    pattern = _debris_pattern(target)
    ours: list[tuple[Path, str]] = []
    with os.scandir(target.parent) as entries:
        for entry in entries:
            found = pattern.match(entry.name)
            if (
                found
                and entry.is_dir(follow_symlinks=False)
                and _holds_only(Path(entry.path), names, dirs)
            ):
                ours.append((Path(entry.path), found.group(1)))
    olds = sorted((p for p, kind in ours if kind == "old"), key=lambda p: p.stat().st_mtime_ns)
    if olds and not os.path.lexists(target):
        restored = olds.pop()
        os.rename(restored, target)
        ours.remove((restored, "old"))
    for path, _ in ours:
        shutil.rmtree(path)


def _check_replaceable(
    target: Path, names: frozenset[str], dirs: frozenset[str] = frozenset()
) -> None:
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        msg = f"--out {target} exists and is not a directory; give a directory path"
        raise OutputError(msg)
    if not _holds_only(target, names, dirs):
        expected = ", ".join(sorted(names | dirs))
        msg = (
            f"--out {target} is a non-empty directory that is not a backtest result "
            f"(a result holds only {expected}); give an empty or new directory, "
            "or move its files away"
        )
        raise OutputError(msg)


@contextmanager
def _locked(target: Path, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive flock on ``.<name>.lock`` beside `target`; remove the file after.

    The file is unlinked while still locked, so a writer that locked an unlinked file notices
    (its inode is no longer the path's) and locks the new file instead.
    """
    lock = target.with_name(f".{target.name}.lock")
    deadline = time.monotonic() + timeout_s
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            _flock(fd, lock, target, deadline, timeout_s)
            mine = os.fstat(fd)
            try:
                now = os.stat(lock)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        finally:
            os.close(fd)


def _flock(fd: int, lock: Path, target: Path, deadline: float, timeout_s: float) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                msg = (
                    f"--out {target}: another run is writing it (it holds {lock}) and did not "
                    f"finish within {timeout_s:g} s; retry when it has finished"
                )
                raise OutputError(msg) from None
            time.sleep(_LOCK_POLL_S)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _renameat2() -> Any:
    func = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if func is not None:
        func.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint,
        ]
        func.restype = ctypes.c_int
    return func


def _exchange(a: Path, b: Path) -> bool:
    """Swap the two paths atomically; False when the system or filesystem cannot."""
    func = _renameat2()
    if func is None:
        return False
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))
