"""Market-wide context (e.g. VIX) as of each bar: one (bars,) float64 array per column.

A context row stamped t is known from the first bar at or after t (point in time) and stays
the current value until a newer row; a bar before the first row has NaN. How stale a carried
value may get is the data contract's business (`CoveragePolicy.max_context_staleness_bars`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ml4t_pipeline.engine.feed.columns import float_values, timestamps_us
from ml4t_pipeline.engine.feed.tables import Table
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import (
    MAX_EXAMPLES,
    TIMESTAMP,
    Rule,
    count_keys,
    describe_row,
    duplicate_key_detail,
    errors_message,
    failure_message,
    to_datetime,
)


def context_as_of(table: Table, columns: Sequence[str], bars: np.ndarray) -> dict[str, np.ndarray]:
    """Each column's latest value at or before each bar of `bars` (int64 us, sorted)."""
    stamps: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for batch in table.batches([TIMESTAMP, *columns]):
        stamps.append(timestamps_us(batch.column(0), table.name))
        for i, column in enumerate(columns, start=1):
            parts[column].append(float_values(batch.column(i), table.name, column))
    ts = np.concatenate(stamps) if stamps else np.empty(0, np.int64)
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    if np.any(ts[1:] == ts[:-1]):
        raise _repeated_stamps(ts, table.name)
    usable_at = np.searchsorted(bars, ts, side="left")  # first bar at or after the stamp
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


def _repeated_stamps(ts: np.ndarray, name: str) -> DataError:
    """DUPLICATE_KEY on a market-wide table, whose key is the timestamp alone."""
    repeated, rows = count_keys(ts).repeated()
    examples = [
        describe_row(((TIMESTAMP, to_datetime(stamp)), ("rows", int(n))))
        for stamp, n in zip(repeated[:MAX_EXAMPLES], rows[:MAX_EXAMPLES], strict=True)
    ]
    message = failure_message(
        file=name,
        column=None,
        rule=Rule.DUPLICATE_KEY,
        n_rows=int(rows.sum()),
        detail=duplicate_key_detail(int(repeated.shape[0]), (TIMESTAMP,)),
        examples=examples,
    )
    return DataError(errors_message([message]))
