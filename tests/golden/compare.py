"""Byte-for-byte comparison of output folders, explained when they differ.

`compare_trees` returns one message per file that is missing, unexpected or different; for a
Parquet file the message shows the schema change, the row-count change, the columns that differ
(with how many rows and the largest numeric change) and the first differing rows side by side;
for a JSON file the paths whose values differ (`per_asset.ledger.qty[2]: expected 8169, actual
8151`); for another text file a unified diff.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any

import polars as pl

#: Rows of context shown before and after the first differing row of a table.
CONTEXT_ROWS = 2
#: Lines of a text diff, or differing JSON values, shown.
DIFF_LINES = 40
#: Characters of one JSON value shown.
VALUE_CHARS = 80
#: Columns shown next to the differing ones, when a table has them: they say which row it is.
KEY_COLUMNS = ("timestamp", "order_id", "asset_id", "side", "month", "exit_reason", "rule")
REGEN_HINT = "run `make golden` (pytest tests/golden --regen-golden) if the change is intended"


def files_under(root: Path) -> list[str]:
    """Paths of the files under `root`, relative and sorted ('' root: none)."""
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def compare_trees(case: str, actual: Path, expected: Path) -> list[str]:
    """One message per file of `case` that differs between the run and the stored golden."""
    produced = files_under(actual)
    stored = files_under(expected)
    problems = [
        f"[{case}] {name}: no expected file {expected / name}; {REGEN_HINT}"
        for name in produced
        if name not in stored
    ]
    problems += [
        f"[{case}] {name}: stored in {expected} but the run no longer writes it; {REGEN_HINT}"
        for name in stored
        if name not in produced
    ]
    for name in produced:
        if name in stored and (actual / name).read_bytes() != (expected / name).read_bytes():
            problems.append(f"[{case}] {name} differs:\n{describe(actual / name, expected / name)}")
    return problems


def describe(actual: Path, expected: Path) -> str:
    """What changed between two files whose bytes differ."""
    if actual.suffix == ".parquet":
        return describe_tables(pl.read_parquet(actual), pl.read_parquet(expected))
    if actual.suffix == ".json":
        lines = list(
            _json_changes(json.loads(expected.read_text()), json.loads(actual.read_text()))
        )
        if not lines:
            lines = ["same values; the bytes differ (formatting or key order)"]
        label = "values differ"
    else:
        diff = difflib.unified_diff(
            expected.read_text().splitlines(),
            actual.read_text().splitlines(),
            fromfile="expected",
            tofile="actual",
            lineterm="",
        )
        lines, label = list(diff), "diff lines"
    more = [f"... {len(lines) - DIFF_LINES} more {label}"] if len(lines) > DIFF_LINES else []
    return "\n".join(lines[:DIFF_LINES] + more)


def _json_changes(expected: Any, actual: Any, path: str = "") -> list[str]:
    """'path: expected X, actual Y' for every leaf that differs (NaN equals NaN)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        changes: list[str] = []
        for key in sorted(set(expected) | set(actual)):
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                changes.append(f"{where}: removed (expected {_short(expected[key])})")
            elif key not in expected:
                changes.append(f"{where}: added (actual {_short(actual[key])})")
            else:
                changes += _json_changes(expected[key], actual[key], where)
        return changes
    if isinstance(expected, list) and isinstance(actual, list):
        changes = []
        if len(expected) != len(actual):
            changes.append(f"{path}: length expected {len(expected)}, actual {len(actual)}")
        for k, (e, a) in enumerate(zip(expected, actual, strict=False)):
            changes += _json_changes(e, a, f"{path}[{k}]")
        return changes
    same = expected == actual or (
        isinstance(expected, float)
        and isinstance(actual, float)
        and math.isnan(expected)
        and math.isnan(actual)
    )
    return [] if same else [f"{path}: expected {_short(expected)}, actual {_short(actual)}"]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 3] + "..."


def describe_tables(actual: pl.DataFrame, expected: pl.DataFrame) -> str:
    """Schema, row count and value differences of two tables (expected first, as in a diff)."""
    notes: list[str] = []
    if actual.schema != expected.schema:
        notes.append(
            f"schema: expected {dict(expected.schema)}\n        actual   {dict(actual.schema)}"
        )
    if actual.height != expected.height:
        notes.append(f"rows: expected {expected.height}, actual {actual.height}")
    common = [
        c
        for c in expected.columns
        if c in actual.columns and actual.schema[c] == expected.schema[c]
    ]
    n = min(actual.height, expected.height)
    a, e = actual.head(n), expected.head(n)
    differs = {c: a[c].ne_missing(e[c]) for c in common}
    changed = {c: mask for c, mask in differs.items() if mask.any()}
    for column, mask in changed.items():
        count = int(mask.sum())
        note = f"column {column!r}: {count} of {n} rows differ"
        if a.schema[column].is_numeric():
            gap = (a[column].cast(pl.Float64) - e[column].cast(pl.Float64)).abs().max()
            note += f" (largest change {gap!r})"
        notes.append(note)
    if changed:
        first = min(int(mask.arg_true()[0]) for mask in changed.values())
        notes.append(f"first differing row: {first}")
        notes.append(_side_by_side(a, e, first, list(changed)))
    elif n < max(actual.height, expected.height):
        longer, label = (actual, "actual") if actual.height > n else (expected, "expected")
        notes.append(f"the first {n} rows agree; extra rows of {label}:\n{longer.slice(n, 5)}")
    if not notes:
        notes.append("same schema and values; the bytes differ (encoding or file metadata)")
    return "\n".join(notes)


def _side_by_side(
    actual: pl.DataFrame, expected: pl.DataFrame, row: int, columns: list[str]
) -> str:
    keys = [c for c in KEY_COLUMNS if c in expected.columns and c not in columns]
    start = max(row - CONTEXT_ROWS, 0)
    length = 2 * CONTEXT_ROWS + 1

    def window(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_row_index("row").slice(start, length).select("row", *keys, *columns)

    with pl.Config(tbl_cols=-1, tbl_rows=-1, tbl_width_chars=200, fmt_float="full"):
        return f"expected:\n{window(expected)}\nactual:\n{window(actual)}"
