"""Market-wide context (e.g. VIX) as of each bar: one (bars,) float64 array per column.

A context row stamped t is known from the first bar at or after t (point in time) and stays
the current value until a newer row; a bar before the first row has NaN. With an
`available_at` column, a row is known from the first bar at or after max(timestamp,
available_at), and at each bar the value is the row with the latest timestamp among those
known, in its latest known version (a revision: the same timestamp, a later available_at).
How stale a carried value may get is the data contract's business
(`CoveragePolicy.max_context_staleness_bars`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ml4t_pipeline.engine.feed.columns import float_values, timestamps_us
from ml4t_pipeline.engine.feed.tables import Table
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import (
    AVAILABLE_AT,
    MAX_EXAMPLES,
    TIMESTAMP,
    count_keys,
    duplicate_keys_message,
    to_datetime,
)


def context_as_of(table: Table, columns: Sequence[str], bars: np.ndarray) -> dict[str, np.ndarray]:
    """Each column's latest value at or before each bar of `bars` (int64 us, sorted)."""
    timed = AVAILABLE_AT in table.columns
    stamps: list[np.ndarray] = []
    known: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    read = [TIMESTAMP, *([AVAILABLE_AT] if timed else []), *columns]
    for batch in table.batches(read):
        stamps.append(timestamps_us(batch.column(0), table.name))
        if timed:
            available = timestamps_us(batch.column(1), table.name, AVAILABLE_AT)
            known.append(np.maximum(available, stamps[-1]))
        for i, column in enumerate(columns, start=len(read) - len(columns)):
            parts[column].append(float_values(batch.column(i), table.name, column))
    ts = np.concatenate(stamps) if stamps else np.empty(0, np.int64)
    known_at = np.concatenate(known) if timed and known else ts
    order = np.lexsort((known_at, ts))  # by timestamp, then version: the newest comes last
    ts, known_at = ts[order], known_at[order]
    if np.any((ts[1:] == ts[:-1]) & (known_at[1:] == known_at[:-1])):
        raise _repeated_stamps(ts, known_at, table.name, timed=timed)
    usable_at = np.searchsorted(bars, known_at, side="left")  # first bar it is known at
    latest = np.full(bars.shape[0], -1, dtype=np.int64)
    keep = usable_at < bars.shape[0]
    np.maximum.at(latest, usable_at[keep], np.flatnonzero(keep))  # rows ascend: newest wins
    np.maximum.accumulate(latest, out=latest)
    out = {}
    for column, chunks in parts.items():
        values = np.concatenate(chunks)[order] if chunks else np.empty(0)
        out[column] = (
            np.where(latest >= 0, values[np.maximum(latest, 0)], np.nan)
            if values.size
            else np.full(bars.shape[0], np.nan)
        )
    return out


def _repeated_stamps(ts: np.ndarray, known_at: np.ndarray, name: str, *, timed: bool) -> DataError:
    """DUPLICATE_KEY on a market-wide table, whose key is the timestamp (and available_at).

    `ts` and `known_at` are sorted by (timestamp, available_at), so equal keys are adjacent."""
    new_key = np.r_[True, (ts[1:] != ts[:-1]) | (known_at[1:] != known_at[:-1])]
    group = np.cumsum(new_key) - 1  # the key of each row, numbered in sorted order
    groups, rows = count_keys(group).repeated()
    repeated = ts[np.flatnonzero(new_key)][groups]  # the timestamp of each repeated key
    key = (TIMESTAMP, AVAILABLE_AT) if timed else (TIMESTAMP,)
    shown = [((TIMESTAMP, to_datetime(stamp)),) for stamp in repeated[:MAX_EXAMPLES]]
    return DataError(duplicate_keys_message(file=name, key=key, shown=shown, rows=rows))
