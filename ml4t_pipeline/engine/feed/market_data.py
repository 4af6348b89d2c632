"""`MarketData`: everything a run reads, resolved to one calendar, served as `Panel` chunks.

Construction reads only the price keys (timestamp, asset_id) to fix the calendar and the
universe, and every price row's coordinates; values are read when a chunk is built. A run that
fits in `max_chunk_cells` cells is one chunk, built at once, file by file, so only one input is
decoded at a time. A longer one is cut into runs of whole months (`plan_chunks`), each
materialized on its own while the engine state carries over (the mechanism the monthly
Dagster partitions use).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from ml4t_pipeline.engine.feed.actions import ActionRows, load_actions
from ml4t_pipeline.engine.feed.columns import same_id_kind
from ml4t_pipeline.engine.feed.context import context_as_of
from ml4t_pipeline.engine.feed.coords import (
    KnownRows,
    RowCoords,
    bar_calendar,
    coordinates,
    known_rows,
    read_keys,
    universe,
)
from ml4t_pipeline.engine.feed.listings import Delistings, delistings
from ml4t_pipeline.engine.feed.panel import Calendar, Panel, carry_forward, check_bars, scatter
from ml4t_pipeline.engine.feed.tables import Source, Table
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import (
    AVAILABLE_AT,
    KEY_COLUMNS,
    OHLC,
    TIMESTAMP,
    VOLUME,
    to_datetime,
    to_micros,
)

DEFAULT_MAX_CHUNK_CELLS = 60_000_000


def plan_chunks(
    timestamps: np.ndarray, n_assets: int, max_chunk_cells: int
) -> list[tuple[int, int]]:
    """Bar ranges [lo, hi) of whole calendar months, each at most `max_chunk_cells` cells
    (bars x assets) unless one month alone is larger."""
    n_bars = timestamps.shape[0]
    n_assets = max(n_assets, 1)
    if n_bars * n_assets <= max_chunk_cells:
        return [(0, n_bars)]
    months = timestamps.astype("datetime64[us]").astype("datetime64[M]")
    starts = np.flatnonzero(np.r_[True, months[1:] != months[:-1]])
    bounds = [*starts.tolist(), n_bars]
    chunks: list[tuple[int, int]] = []
    lo = 0
    for i in range(1, len(bounds)):
        if (bounds[i] - lo) * n_assets > max_chunk_cells and bounds[i - 1] > lo:
            chunks.append((lo, bounds[i - 1]))
            lo = bounds[i - 1]
    chunks.append((lo, n_bars))
    return chunks


class Feed(Protocol):
    """What the loop reads of a run's data: `MarketData`, or a `prepared.PreparedData` (the
    same arrays, kept from an earlier decode)."""

    @property
    def calendar(self) -> Calendar: ...
    @property
    def actions(self) -> ActionRows | None: ...
    @property
    def delistings(self) -> Delistings: ...
    @property
    def signal_columns(self) -> Sequence[str]: ...
    @property
    def has_volume(self) -> bool: ...
    @property
    def widened_bars(self) -> int: ...
    @property
    def n_rows(self) -> int: ...
    def chunks(self) -> Iterator[Panel]: ...


class MarketData:
    """Everything a run reads, resolved to one calendar; yields `Panel` chunks."""

    def __init__(
        self,
        prices: Source,
        signals: Source | None = None,
        context: Source | None = None,
        *,
        signal_columns: Sequence[str] | None = None,
        context_columns: Sequence[str] | None = None,
        start: dt.datetime | dt.date | str | None = None,
        end: dt.datetime | dt.date | str | None = None,
        max_chunk_cells: int = DEFAULT_MAX_CHUNK_CELLS,
        extra_assets: Sequence[Any] = (),
        load_volume: bool = True,
        corporate_actions: Source | None = None,
    ) -> None:
        # checked first: a small file, and a bad one must not wait for the prices to load
        self.actions = load_actions(corporate_actions) if corporate_actions is not None else None
        self._prices = Table(prices, "prices")
        self._prices.require((*KEY_COLUMNS, *OHLC))
        self._signals = Table(signals, "signals") if signals is not None else None
        self._context = Table(context, "context") if context is not None else None
        if self._signals is not None:
            self._signals.require(KEY_COLUMNS)
        if self._context is not None:
            self._context.require((TIMESTAMP,))
        self.signal_columns = self._pick(
            self._signals, signal_columns, (*KEY_COLUMNS, AVAILABLE_AT)
        )
        self.context_columns = self._pick(self._context, context_columns, (TIMESTAMP,))
        ids = self._prices.id_kind()
        if self._signals is not None:
            same_id_kind(self._signals.id_kind(), self._signals.name, ids, self._prices.name)
        if extra_assets:
            integer = all(isinstance(a, int | np.integer) for a in extra_assets)
            text = all(isinstance(a, str) for a in extra_assets)
            kind = "integer" if integer else "text" if text else "mixed"
            same_id_kind(kind, "the saved state", ids, self._prices.name)

        self._eager = self._prices.num_rows <= max_chunk_cells
        self._price_columns = list(OHLC)
        if load_volume and VOLUME in self._prices.columns:
            self._price_columns.append(VOLUME)
        if self._eager:
            self._prices.preload([*KEY_COLUMNS, *self._price_columns])
        stamps, assets = read_keys(self._prices)
        lo = to_micros(start) if start is not None else None
        hi = to_micros(end) if end is not None else None
        calendar_ts = bar_calendar(stamps, lo, hi)
        if calendar_ts.shape[0] == 0:
            window = f" in [{start}, {end})" if start is not None or end is not None else ""
            msg = f"{self._prices.name}: no price bars{window}"
            raise DataError(msg)
        # a dictionary holds the values of its own row group / batch
        universe_parts = [values for values, _ in assets]
        if extra_assets:
            universe_parts.append(np.asarray(list(extra_assets)))
        self.calendar = Calendar(
            timestamps=calendar_ts, assets=universe(universe_parts), prices=self._prices.name
        )
        self.calendar.timestamps.flags.writeable = False
        self.calendar.assets.flags.writeable = False
        n_rows_read = sum(ts.shape[0] for ts in stamps)
        self._price_coords = self._coordinates(stamps, assets, n_rows_read)
        complete = (  # every asset at every timestamp of the file: nobody delists
            lo is None
            and hi is None
            and n_rows_read == calendar_ts.shape[0] * self.calendar.n_assets
            and not extra_assets
        )
        self.delistings = (
            Delistings()
            if complete
            else delistings(stamps, assets, self.calendar.assets, calendar_ts)
        )
        self._signal_coords: RowCoords | KnownRows | None = None
        del stamps, assets
        self.n_rows = int(np.count_nonzero(self._price_coords.bar >= 0))
        self._chunks = plan_chunks(calendar_ts, self.calendar.n_assets, max_chunk_cells)
        self.widened_bars = 0  # bars whose high/low the tolerance widened (`check_bars`)
        self._ready: Panel | None = None
        self._context_full: dict[str, np.ndarray] | None = None
        if self._eager:
            self._ready = self._panel(0, calendar_ts.shape[0])

    @property
    def has_volume(self) -> bool:
        """The panels carry the prices' volume column (else volume reads +inf)."""
        return VOLUME in self._price_columns

    @staticmethod
    def _pick(
        table: Table | None, wanted: Sequence[str] | None, exclude: Sequence[str]
    ) -> list[str]:
        if table is None:
            return []
        if wanted is None:
            return table.numeric_columns(exclude)
        table.require(wanted)
        return list(wanted)

    def _coordinates(self, stamps: list[np.ndarray], assets: list[Any], n_rows: int) -> RowCoords:
        return coordinates(self.calendar.timestamps, self.calendar.assets, stamps, assets, n_rows)

    def _load_signal_coords(self, signals: Table) -> RowCoords | KnownRows:
        if AVAILABLE_AT in signals.columns:
            return known_rows(signals, self.calendar.timestamps, self.calendar.assets)
        stamps, assets = read_keys(signals)
        coords = self._coordinates(stamps, assets, sum(s.shape[0] for s in stamps))
        if not np.any(coords.bar >= 0):
            self._refuse_unmatched(signals, stamps)
        return coords

    def _refuse_unmatched(self, signals: Table, stamps: list[np.ndarray]) -> None:
        """Signals with rows inside the run's span of which none falls on a price bar of its
        asset: every signal would read NaN. Most often the two files' timestamps were written
        in different time zones (midnight New York is 05:00 UTC)."""
        bars = self.calendar.timestamps
        ts = np.concatenate(stamps) if stamps else np.empty(0, np.int64)
        inside = ts[(ts >= bars[0]) & (ts <= bars[-1])]
        if inside.shape[0] == 0:
            return  # nothing in the run's span (e.g. another month): no signal, as written
        zones = signals.time_zone(), self._prices.time_zone()
        hint = (
            f"; its timestamps are stored in {zones[0] or 'no time zone'}, the prices' in "
            f"{zones[1] or 'no time zone'}: write both at the same instants (e.g. in UTC)"
            if zones[0] != zones[1]
            else "; a signal row is read at the bar of its exact timestamp"
        )
        msg = (
            f"{signals.name}: none of its {inside.shape[0]} row(s) between the first and the "
            f"last bar falls on a price bar of {self._prices.name} for its asset, e.g. "
            f"timestamp={to_datetime(int(inside[0]))} (first bar {to_datetime(int(bars[0]))})"
            f"{hint}"
        )
        raise DataError(msg)

    @property
    def n_chunks(self) -> int:
        return len(self._chunks)

    def chunks(self) -> Iterator[Panel]:
        if self._ready is not None:
            panel, self._ready = self._ready, None
            yield panel
            return
        for lo, hi in self._chunks:
            yield self._panel(lo, hi)

    def _panel(self, lo: int, hi: int) -> Panel:
        prices = self._prices
        dense, has_bar = scatter(
            prices, self._price_coords, self._price_columns, self.calendar, lo, hi
        )
        self.widened_bars += check_bars(dense, has_bar, self.calendar, lo, prices.name)
        if self._eager:
            prices.release()
        volume = dense.pop(VOLUME, None)
        if volume is None:  # not loaded: unlimited, as a read-only view that costs no memory
            volume = np.broadcast_to(np.float64(np.inf), has_bar.shape)
        panel = Panel(
            timestamps=self.calendar.timestamps[lo:hi],
            open=dense["open"],
            high=dense["high"],
            low=dense["low"],
            close=dense["close"],
            volume=volume,
            has_bar=has_bar,
            signals=self._signal_arrays(lo, hi),
            context=self._context_arrays(lo, hi),
        )
        panel.freeze()
        return panel

    def _signal_arrays(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        signals = self._signals
        if signals is None or not self.signal_columns:
            return {}
        if self._eager:
            timing = [AVAILABLE_AT] if AVAILABLE_AT in signals.columns else []
            signals.preload([*KEY_COLUMNS, *timing, *self.signal_columns])
        if self._signal_coords is None:
            self._signal_coords = self._load_signal_coords(signals)
        coords = self._signal_coords
        if isinstance(coords, KnownRows):  # as of each bar: current until a newer row is known
            arrays, filled = scatter(
                signals, coords.from_bar(lo), self.signal_columns, self.calendar, lo, hi
            )
            arrays = carry_forward(arrays, filled)
        else:
            arrays, _ = scatter(signals, coords, self.signal_columns, self.calendar, lo, hi)
        if self._eager:
            signals.release()
            self._signal_coords = None
        return arrays

    def _context_arrays(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Market-wide values as of each bar (`context_as_of`), for bars [lo, hi)."""
        if self._context is None or not self.context_columns:
            return {}
        if self._context_full is None:
            self._context_full = context_as_of(
                self._context, self.context_columns, self.calendar.timestamps
            )
        return {c: v[lo:hi] for c, v in self._context_full.items()}
