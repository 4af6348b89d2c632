"""The panel's key columns: business-day timestamps at UTC midnight and asset ids."""

from __future__ import annotations

import datetime

import numpy as np
import polars as pl


def business_days(start: datetime.date, days: int) -> pl.Series:
    """``days`` Mon-Fri dates from ``start`` (rolled forward to a weekday) at UTC midnight."""
    first = np.datetime64(start.isoformat(), "D")
    dates = np.busday_offset(first, np.arange(days), roll="forward")
    micros = dates.astype("datetime64[us]").astype(np.int64)
    return pl.Series("timestamp", micros).cast(pl.Datetime("us", "UTC"))


def asset_ids(assets: int) -> list[str]:
    """``A0000``, ``A0001``, ...: zero-padded so string order is numeric order."""
    width = max(4, len(str(assets - 1)))
    return [f"A{i:0{width}d}" for i in range(assets)]


def panel_keys(timestamps: pl.Series, assets: int) -> tuple[pl.Series, pl.Series]:
    """The timestamp and asset_id columns of the (timestamp, asset_id)-ordered panel."""
    bars = timestamps.len()
    micros = timestamps.dt.epoch("us").to_numpy()
    bar_time = pl.Series("timestamp", np.repeat(micros, assets)).cast(timestamps.dtype)
    # Gathering with a polars index is about ten times faster than with a numpy one.
    asset_index = pl.Series(np.tile(np.arange(assets, dtype=np.uint32), bars))
    bar_asset = pl.Series("asset_id", asset_ids(assets)).gather(asset_index)
    return bar_time, bar_asset
