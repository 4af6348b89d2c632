"""Remember inputs that passed validation, so repeated backtests on unchanged files skip it.

An entry is keyed by the file's absolute path and holds its size, modification time (ns) and
the validator version; any change to the file (or to the rules) means validating again, like
`make` does with timestamps. Entries live under $XDG_CACHE_HOME/ml4t-pipeline (default
~/.cache/ml4t-pipeline), never next to the raw inputs, and are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

VALIDATOR_VERSION = "1"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ml4t-pipeline" / "validated"


def _fingerprint(paths: list[Path]) -> dict[str, list[int]]:
    out = {}
    for path in paths:
        stat = path.stat()
        out[str(path.resolve())] = [stat.st_size, stat.st_mtime_ns]
    return out


def _entry(paths: list[Path]) -> Path:
    key = "|".join(sorted(str(p.resolve()) for p in paths))
    return cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def is_validated(paths: list[Path]) -> bool:
    """True when this exact set of files, unchanged, passed the current validator."""
    entry = _entry(paths)
    try:
        saved = json.loads(entry.read_text())
        return bool(saved == {"version": VALIDATOR_VERSION, "files": _fingerprint(paths)})
    except (OSError, ValueError):
        return False


def remember_validated(paths: list[Path]) -> None:
    entry = _entry(paths)
    payload = json.dumps({"version": VALIDATOR_VERSION, "files": _fingerprint(paths)})
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=entry.parent, delete=False, suffix=".tmp") as tmp:
            tmp.write(payload)
        os.replace(tmp.name, entry)
    except OSError:
        return  # a cache that cannot be written only costs a re-validation next time
