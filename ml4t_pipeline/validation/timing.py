"""Time at the boundary: UTC normalisation and point-in-time alignment of late data.

A value stamped at bar t is known at the close of t. A source published later carries its
knowledge time in `available_at`; `align_point_in_time` keeps the rows the engine makes current
and moves each to the bar at which it becomes current (the engine's rule, `keys.becoming_current`),
so a strategy reading bar t can only ever see values known by t.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import ASSET_ID, AVAILABLE_AT, TIMESTAMP, UTC, becoming_current

__all__ = [
    "ASSET_ID",
    "AVAILABLE_AT",
    "EVENT_TIME",
    "TIMESTAMP",
    "UTC",
    "align_point_in_time",
    "bar_calendar",
    "to_utc",
    "utc_expr",
]

EVENT_TIME = "event_time"

_KNOWN_AT = "__known_at"


def utc_expr(name: str, dtype: pl.Datetime) -> pl.Expr:
    """Expression reading datetime column `name` as UTC: naive means UTC, aware is converted."""
    column = pl.col(name)
    if dtype.time_zone is None:
        return column.dt.replace_time_zone(UTC)
    if dtype.time_zone != UTC:
        return column.dt.convert_time_zone(UTC)
    return column


def to_utc(df: pl.DataFrame) -> pl.DataFrame:
    """Every datetime column of `df` in UTC (time units are kept)."""
    exprs = [
        utc_expr(name, dtype)
        for name, dtype in df.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone != UTC
    ]
    return df.with_columns(exprs) if exprs else df


def bar_calendar(bar_timestamps: pl.Series) -> pl.Series:
    """Sorted distinct non-null bar timestamps in UTC."""
    dtype = bar_timestamps.dtype
    if not isinstance(dtype, pl.Datetime):
        msg = f"bar timestamps must be datetimes, got {dtype}"
        raise DataError(msg)
    frame = bar_timestamps.rename(TIMESTAMP).to_frame()
    return frame.select(utc_expr(TIMESTAMP, dtype)).to_series().drop_nulls().unique().sort()


def align_point_in_time(signals: pl.DataFrame, bar_timestamps: pl.Series) -> pl.DataFrame:
    """The rows that become current, each re-stamped to the bar at which it does.

    The engine's rule (`keys.becoming_current`, the one definition): a row is known at
    ``max(timestamp, available_at)`` (a value is never known before its own stamp) and usable
    from the first bar timestamp at or after that instant, so a prediction published after
    bar t's close is first used at bar t+1. At each bar an asset's (or, without ``asset_id``,
    the table's) current row is the one with the latest ``timestamp`` among the rows known by
    then, in its latest known version (the latest ``available_at`` of that timestamp): a
    late-published older row never becomes current and is dropped, a revision does. The
    result holds each row at the bar it becomes current at (one per asset and bar), with
    ``timestamp`` = that bar, ``event_time`` = the original timestamp and ``available_at``;
    the row stays current at later bars until the next row of its asset (an as-of join on
    the result gives the value at any bar). Rows known only after the last bar, or with a
    null ``available_at`` or asset_id, are never current and are dropped. Without
    ``available_at`` the rows are returned as they are, with ``event_time`` and
    ``available_at`` equal to ``timestamp``. Naive datetimes are read as UTC.
    """
    if TIMESTAMP not in signals.columns:
        msg = f"cannot align: no '{TIMESTAMP}' column (columns: {', '.join(signals.columns)})"
        raise DataError(msg)
    if EVENT_TIME in signals.columns:
        msg = f"cannot align: input already has an '{EVENT_TIME}' column"
        raise DataError(msg)
    frame = to_utc(signals)
    if AVAILABLE_AT not in frame.columns:
        return frame.with_columns(
            pl.col(TIMESTAMP).alias(EVENT_TIME), pl.col(TIMESTAMP).alias(AVAILABLE_AT)
        )
    for name in (TIMESTAMP, AVAILABLE_AT):
        if not isinstance(frame.schema[name], pl.Datetime):
            msg = f"cannot align: '{name}' must be a datetime, got {frame.schema[name]}"
            raise DataError(msg)

    bars = bar_calendar(bar_timestamps)
    per_asset = ASSET_ID in frame.columns
    known = frame.filter(pl.col(TIMESTAMP).is_not_null() & pl.col(AVAILABLE_AT).is_not_null())
    event = known.get_column(TIMESTAMP).dt.epoch("us").to_numpy()
    available = known.get_column(AVAILABLE_AT).dt.epoch("us").to_numpy()
    bars_us = bars.dt.epoch("us").to_numpy()
    bar = np.searchsorted(bars_us, np.maximum(event, available), side="left")
    group = np.zeros(known.height, dtype=np.int64)
    if per_asset:
        ids = known.get_column(ASSET_ID)
        group = (ids.rank("dense") - 1).fill_null(-1).cast(pl.Int64).to_numpy()
    kept = becoming_current(event, available, group, bar, bars.len())
    keys = [TIMESTAMP, ASSET_ID] if per_asset else [TIMESTAMP]
    features = [c for c in frame.columns if c not in (TIMESTAMP, ASSET_ID, AVAILABLE_AT)]
    return (
        known[kept]
        .rename({TIMESTAMP: EVENT_TIME})
        .with_columns(bars.gather(bar[kept]).alias(TIMESTAMP))
        .select([*keys, *features, EVENT_TIME, AVAILABLE_AT])
        .sort(keys)
    )
