"""Time at the boundary: UTC normalisation and point-in-time alignment of late data.

A value stamped at bar t is known at the close of t. A source published later carries its
knowledge time in `available_at`; `align_point_in_time` moves each such row to the first bar at
which it was known, so a strategy reading bar t can only ever see values known by t.
"""

from __future__ import annotations

import polars as pl

from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import ASSET_ID, AVAILABLE_AT, TIMESTAMP, UTC

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
    """Re-stamp each row to the first bar at which it is known.

    A row is known at ``max(timestamp, available_at)`` (a value is never known before its own
    stamp) and becomes usable at the first bar timestamp at or after that instant: a prediction
    published after bar t's close is first used at bar t+1. The result has ``timestamp`` = the
    usable bar, ``event_time`` = the original timestamp and ``available_at``. When several rows of
    one asset land on the same bar the latest ``event_time`` wins (then the latest
    ``available_at``, i.e. the latest revision). Rows known only after the last bar, or with a null
    ``available_at``, are never usable and are dropped. Without ``available_at`` the rows are
    returned as they are, with ``event_time`` and ``available_at`` equal to ``timestamp``.
    Naive datetimes are read as UTC. Works with or without an ``asset_id`` column.
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
    known_at = pl.max_horizontal(TIMESTAMP, AVAILABLE_AT).cast(bars.dtype).alias(_KNOWN_AT)
    known = frame.filter(pl.col(TIMESTAMP).is_not_null() & pl.col(AVAILABLE_AT).is_not_null())
    known = known.with_columns(known_at)
    bar_index = bars.search_sorted(known.get_column(_KNOWN_AT), side="left")
    usable = bar_index < bars.len()
    keys = [ASSET_ID, TIMESTAMP] if ASSET_ID in frame.columns else [TIMESTAMP]
    features = [c for c in frame.columns if c not in (TIMESTAMP, ASSET_ID, AVAILABLE_AT)]
    return (
        known.filter(usable)
        .drop(_KNOWN_AT)
        .rename({TIMESTAMP: EVENT_TIME})
        .with_columns(bars.gather(bar_index.filter(usable)).alias(TIMESTAMP))
        .sort([*keys, EVENT_TIME, AVAILABLE_AT])
        .unique(subset=keys, keep="last", maintain_order=True)
        .select([*reversed(keys), *features, EVENT_TIME, AVAILABLE_AT])
        .sort(list(reversed(keys)))
    )
