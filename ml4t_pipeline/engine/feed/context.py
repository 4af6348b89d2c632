"""Market-wide context (e.g. VIX) as of each bar: one (bars,) float64 array per column.

A context row stamped t is known from the first bar at or after t (point in time) and stays
the current value until a newer row; a bar before the first row has NaN. With an
`available_at` column, a row is known from the first bar at or after max(timestamp,
available_at), and at each bar the value is the row with the latest timestamp among those
known, in its latest known version (a revision: the same timestamp, a later available_at).
The key is the raw (timestamp, available_at) (`keys.key_columns`), as in `ml4t-pipeline
validate`: two rows with one timestamp and two available_at values are two versions even when
both were published before that timestamp (both known at it); the later available_at wins.
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
    becoming_current,
    duplicate_keys_message,
    key_columns,
    repeated_versions,
    to_datetime,
)


def context_as_of(table: Table, columns: Sequence[str], bars: np.ndarray) -> dict[str, np.ndarray]:
    """Each column's value as of each bar of `bars` (int64 us, sorted): the current row by
    `keys.becoming_current`, carried until a newer row is known; NaN before the first."""
    timed = AVAILABLE_AT in table.columns
    stamps: list[np.ndarray] = []
    versions: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    read = [TIMESTAMP, *([AVAILABLE_AT] if timed else []), *columns]
    for batch in table.batches(read):
        stamps.append(timestamps_us(batch.column(0), table.name))
        if timed:
            versions.append(timestamps_us(batch.column(1), table.name, AVAILABLE_AT))
        for i, column in enumerate(columns, start=len(read) - len(columns)):
            parts[column].append(float_values(batch.column(i), table.name, column))
    ts = np.concatenate(stamps) if stamps else np.empty(0, np.int64)
    # the raw key (keys.key_columns): without available_at every row is its own first version
    available = np.concatenate(versions) if timed and versions else ts
    group = np.zeros(ts.shape[0], dtype=np.int64)
    first, counts = repeated_versions(ts, available, group)
    if first.shape[0]:
        raise _repeated_stamps(ts, available, first, counts, table, timed=timed)
    usable_at = np.searchsorted(bars, np.maximum(ts, available), side="left")
    kept = becoming_current(ts, available, group, usable_at, int(bars.shape[0]))
    latest = np.full(bars.shape[0], -1, dtype=np.int64)
    latest[usable_at[kept]] = kept
    filled = latest >= 0
    carried = np.where(filled, np.arange(bars.shape[0]), -1)
    np.maximum.accumulate(carried, out=carried)  # the last bar at or before with a new row
    row = np.where(carried >= 0, latest[np.maximum(carried, 0)], -1)
    out = {}
    for column, chunks in parts.items():
        values = np.concatenate(chunks) if chunks else np.empty(0)
        out[column] = (
            np.where(row >= 0, values[np.maximum(row, 0)], np.nan)
            if values.size
            else np.full(bars.shape[0], np.nan)
        )
    return out


def _repeated_stamps(
    ts: np.ndarray,
    available: np.ndarray,
    first: np.ndarray,
    counts: np.ndarray,
    table: Table,
    *,
    timed: bool,
) -> DataError:
    """DUPLICATE_KEY on a market-wide table, whose key is (timestamp[, available_at]).

    `first` is the first row of each repeated key, `counts` its rows (`keys.repeated_versions`)."""
    key = key_columns(table.columns, per_asset=False)
    shown = [
        (
            (TIMESTAMP, to_datetime(ts[r])),
            *(((AVAILABLE_AT, to_datetime(available[r])),) if timed else ()),
        )
        for r in first[:MAX_EXAMPLES].tolist()
    ]
    return DataError(duplicate_keys_message(file=table.name, key=key, shown=shown, rows=counts))
