"""The data feed: Parquet / Polars inputs -> dense (bars x assets) arrays, chunk by chunk.

Prices, signals and context are read column-projected (only what the run uses) and scattered
into arrays indexed by (bar, asset). Rows may arrive in any order; a missing row means the asset
has no bar at that timestamp (not listed yet, or delisted) and cannot trade on it.

Memory stays bounded on long histories: when the panel is larger than `max_chunk_cells`, the
calendar is cut into runs of whole months and each run is materialized on its own while the
engine state carries over (the same mechanism the monthly Dagster partitions use).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ml4t_pipeline.errors import DataError

Source: TypeAlias = str | Path | pl.DataFrame | pl.LazyFrame | pa.Table
KEY_COLUMNS = ("timestamp", "asset_id")
_BATCH_ROWS = 1 << 20
DEFAULT_MAX_CHUNK_CELLS = 60_000_000


@dataclass(slots=True)
class Panel:
    """One chunk of consecutive bars: every array is indexed [local bar, asset]."""

    timestamps: np.ndarray  # int64 microseconds since epoch, UTC, shape (T,)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    has_bar: np.ndarray  # bool (T, N)
    signals: dict[str, np.ndarray]  # name -> float64 (T, N), NaN where unknown
    context: dict[str, np.ndarray]  # name -> float64 (T,), NaN where unknown

    @property
    def n_bars(self) -> int:
        return int(self.timestamps.shape[0])


@dataclass(frozen=True, slots=True)
class Calendar:
    """Sorted unique bar timestamps and sorted unique asset ids of a run."""

    timestamps: np.ndarray  # int64 us UTC
    assets: np.ndarray  # asset ids, sorted ascending (object for strings)

    @property
    def n_assets(self) -> int:
        return int(self.assets.shape[0])


def to_datetime(us: int) -> dt.datetime:
    """Microseconds since the epoch -> tz-aware UTC datetime."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(us))


def to_micros(value: dt.datetime | dt.date | str) -> int:
    """A boundary given by a user (naive = UTC) -> microseconds since the epoch."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value.astimezone(dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return delta // dt.timedelta(microseconds=1)


class _Table:
    """A column-projected input read in record batches (Parquet file, or in-memory frame)."""

    def __init__(self, source: Source, role: str) -> None:
        self.role = role
        self.name = str(source) if isinstance(source, str | Path) else f"<{role} frame>"
        self._file: pq.ParquetFile | None = None
        self._table: pa.Table | None = None
        if isinstance(source, str | Path):
            path = Path(source)
            if not path.is_file():
                msg = f"{role} file not found: {path}"
                raise DataError(msg)
            try:
                self._file = pq.ParquetFile(path)
                schema = self._file.schema_arrow
                if "asset_id" in schema.names and _is_text(schema.field("asset_id").type):
                    self._file = pq.ParquetFile(  # (the footer already read is reused)
                        path, read_dictionary=["asset_id"], metadata=self._file.metadata
                    )
            except (OSError, pa.ArrowException) as exc:
                msg = f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})"
                raise DataError(msg) from exc
        else:
            if isinstance(source, pl.LazyFrame):
                source = source.collect()
            if isinstance(source, pl.DataFrame):
                source = source.to_arrow()
            self._table = source
            schema = source.schema
        self.schema: pa.Schema = schema
        self.columns: tuple[str, ...] = tuple(schema.names)
        self._preloaded: list[pa.RecordBatch] | None = None

    @property
    def num_rows(self) -> int:
        if self._file is not None:
            return int(self._file.metadata.num_rows)
        assert self._table is not None
        return int(self._table.num_rows)

    def preload(self, columns: Sequence[str]) -> None:
        """Decode the columns once, multi-threaded, and keep them until `release`."""
        if self._file is None:
            self._preloaded = list(self.batches(columns))
            return
        try:
            reader = pq.ParquetFile(
                self.name,
                metadata=self._file.metadata,
                read_dictionary=["asset_id"]
                if "asset_id" in columns and _is_text(self.schema.field("asset_id").type)
                else None,
                # streamed column reads: pre-buffering whole row groups costs ~0.4 GB at W4 scale
                pre_buffer=False,
                buffer_size=1 << 20,
            )
            table = reader.read(columns=list(columns), use_threads=True)
        except (OSError, pa.ArrowException) as exc:
            msg = f"{self.name}: cannot read columns {list(columns)} ({exc})"
            raise DataError(msg) from exc
        self._preloaded = table.to_batches()

    def release(self) -> None:
        self._preloaded = None
        self._table = None if self._file is not None else self._table
        pa.default_memory_pool().release_unused()  # hand decoded buffers back to the OS now

    def require(self, columns: Sequence[str]) -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            msg = f"{self.name}: missing column(s) {missing} (has {list(self.columns)})"
            raise DataError(msg)

    def numeric_columns(self, exclude: Sequence[str]) -> list[str]:
        out = []
        for field in self.schema:
            kind = field.type
            if field.name in exclude:
                continue
            if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
                out.append(field.name)
        return out

    def batches(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        if self._preloaded is not None:
            for batch in self._preloaded:
                yield batch.select(list(columns))
            return
        try:
            if self._file is not None:
                yield from self._file.iter_batches(batch_size=_BATCH_ROWS, columns=list(columns))
            else:
                assert self._table is not None
                yield from self._table.select(list(columns)).to_batches(max_chunksize=_BATCH_ROWS)
        except (OSError, pa.ArrowException) as exc:
            msg = f"{self.name}: cannot read columns {list(columns)} ({exc})"
            raise DataError(msg) from exc


def _run_starts(stamps: np.ndarray) -> np.ndarray | None:
    """Where each run of equal values starts in a sorted batch (the common layout); None when
    the batch is not sorted."""
    if stamps.shape[0] == 0 or not np.all(stamps[1:] >= stamps[:-1]):
        return None
    return np.flatnonzero(np.r_[True, stamps[1:] != stamps[:-1]])


def _distinct(stamps: np.ndarray) -> np.ndarray:
    """The distinct values of one batch of timestamps; sorted when the batch is sorted."""
    starts = _run_starts(stamps)
    if starts is not None:
        return stamps[starts]
    return np.asarray(pc.unique(pa.array(stamps)).to_numpy())


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def _timestamps_us(array: pa.Array, name: str) -> np.ndarray:
    """Timestamp column -> int64 microseconds UTC (naive values are read as UTC)."""
    kind = array.type
    if pa.types.is_timestamp(kind):
        if kind.unit != "us":
            array = pc.cast(array, pa.timestamp("us", tz=kind.tz))
        array = array.cast(pa.timestamp("us"))
    elif pa.types.is_date(kind):
        array = pc.cast(array, pa.timestamp("us"))
    else:
        msg = f"{name}: column 'timestamp' must be a datetime or date, found {kind}"
        raise DataError(msg)
    if array.null_count:
        msg = f"{name}: column 'timestamp' has {array.null_count} null value(s)"
        raise DataError(msg)
    return np.asarray(array.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _float_values(array: pa.Array, name: str, column: str) -> np.ndarray:
    kind = array.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        msg = f"{name}: column '{column}' must be numeric, found {kind}"
        raise DataError(msg)
    values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64)


@dataclass(slots=True)
class _Keys:
    """Per-row (bar index, asset index) of one input, in file order; -1 = outside the run."""

    bar: np.ndarray  # int32
    asset: np.ndarray  # int32


def _asset_values(array: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (values or dictionary, indices or None)."""
    kind = array.type
    if _is_text(kind):
        array = pc.dictionary_encode(array.cast(pa.large_string()))
    if pa.types.is_dictionary(array.type):
        dictionary = array.dictionary.to_numpy(zero_copy_only=False)
        indices = np.asarray(array.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        return dictionary, indices
    return np.asarray(array.to_numpy(zero_copy_only=False)), None


def _read_keys(
    table: _Table,
) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray | None]]]:
    stamps: list[np.ndarray] = []
    assets: list[tuple[np.ndarray, np.ndarray | None]] = []
    for batch in table.batches(KEY_COLUMNS):
        stamps.append(_timestamps_us(batch.column(0), table.name))
        asset_col = batch.column(1)
        if asset_col.null_count:
            msg = f"{table.name}: column 'asset_id' has {asset_col.null_count} null value(s)"
            raise DataError(msg)
        assets.append(_asset_values(asset_col))
    return stamps, assets


def _sorted_unique(values: list[np.ndarray]) -> np.ndarray:
    if not values:
        return np.empty(0, dtype=object)
    merged = pa.chunked_array([pa.array(v) for v in values])
    unique = pc.unique(merged).to_numpy(zero_copy_only=False)
    return np.sort(unique, kind="stable")


def _codes(lookup: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in the sorted `lookup`, -1 when absent."""
    if lookup.size == 0:
        return np.full(values.shape[0], -1, dtype=np.int64)
    pos = np.searchsorted(lookup, values)
    pos_clipped = np.minimum(pos, lookup.size - 1)
    found = lookup[pos_clipped] == values
    return np.where(found, pos_clipped, -1).astype(np.int64)


def _stamp_codes(calendar: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """Bar index of each timestamp (hash lookup), -1 when not a bar of the run."""
    if stamps.shape == calendar.shape and np.array_equal(stamps, calendar):
        return np.arange(stamps.shape[0], dtype=np.int64)  # one row per bar, e.g. one asset
    starts = _run_starts(stamps) if calendar.shape[0] else None
    if starts is not None:  # sorted batch: look up each run of equal stamps once
        lengths = np.diff(np.r_[starts, stamps.shape[0]])
        return np.repeat(_codes(calendar, stamps[starts]), lengths)
    found = pc.index_in(pa.array(stamps), value_set=pa.array(calendar))
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _asset_codes(
    universe: np.ndarray, values: np.ndarray, indices: np.ndarray | None
) -> np.ndarray:
    if indices is None:
        return _codes(universe, values)
    return _codes(universe, values)[indices]


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
    ) -> None:
        self._prices = _Table(prices, "prices")
        self._prices.require((*KEY_COLUMNS, "open", "high", "low", "close"))
        self._signals = _Table(signals, "signals") if signals is not None else None
        self._context = _Table(context, "context") if context is not None else None
        if self._signals is not None:
            self._signals.require(KEY_COLUMNS)
        if self._context is not None:
            self._context.require(("timestamp",))
        self.signal_columns = self._pick(
            self._signals, signal_columns, (*KEY_COLUMNS, "available_at")
        )
        self.context_columns = self._pick(self._context, context_columns, ("timestamp",))

        self._eager = self._prices.num_rows <= max_chunk_cells
        self._price_columns = ["open", "high", "low", "close"]
        if load_volume and "volume" in self._prices.columns:
            self._price_columns.append("volume")
        if self._eager:
            self._prices.preload([*KEY_COLUMNS, *self._price_columns])
        stamps, assets = _read_keys(self._prices)
        lo = to_micros(start) if start is not None else None
        hi = to_micros(end) if end is not None else None
        uniques = []
        for ts in stamps:
            distinct = _distinct(ts)
            if lo is not None:
                distinct = distinct[distinct >= lo]
            if hi is not None:
                distinct = distinct[distinct < hi]
            uniques.append(distinct)
        n_rows_read = sum(ts.shape[0] for ts in stamps)
        if len(uniques) == 1 and bool(np.all(uniques[0][1:] > uniques[0][:-1])):
            calendar_ts = uniques[0]  # one batch of sorted rows: already the calendar
        else:
            calendar_ts = np.unique(np.concatenate(uniques)) if uniques else np.empty(0, np.int64)
        if calendar_ts.shape[0] == 0:
            window = f" in [{start}, {end})" if start is not None or end is not None else ""
            msg = f"{self._prices.name}: no price bars{window}"
            raise DataError(msg)
        # a dictionary holds the values of its own row group / batch
        universe_parts = [values for values, _ in assets]
        if extra_assets:
            universe_parts.append(np.asarray(list(extra_assets)))
        universe = _sorted_unique(universe_parts)
        self.calendar = Calendar(timestamps=calendar_ts.astype(np.int64), assets=universe)
        self._price_keys = self._keys(stamps, assets, n_rows_read)
        self._signal_keys: _Keys | None = None
        del stamps, assets
        self.n_rows = int(np.count_nonzero(self._price_keys.bar >= 0))
        self._chunks = self._plan_chunks(max_chunk_cells)
        self._ready: Panel | None = None
        self._context_full: dict[str, np.ndarray] | None = None
        if self._eager:
            # one chunk: build it now, file by file, so only one input is decoded at a time
            self._ready = self._panel(0, self.calendar.timestamps.shape[0])

    @staticmethod
    def _pick(
        table: _Table | None, wanted: Sequence[str] | None, exclude: Sequence[str]
    ) -> list[str]:
        if table is None:
            return []
        if wanted is None:
            return table.numeric_columns(exclude)
        table.require(wanted)
        return list(wanted)

    def _keys(
        self,
        stamps: list[np.ndarray],
        assets: list[tuple[np.ndarray, np.ndarray | None]],
        n_rows: int,
    ) -> _Keys:
        bar = np.empty(n_rows, dtype=np.int32)
        asset = np.empty(n_rows, dtype=np.int32)
        offset = 0
        for ts, (values, indices) in zip(stamps, assets, strict=True):
            n = ts.shape[0]
            bar[offset : offset + n] = _stamp_codes(self.calendar.timestamps, ts)
            asset[offset : offset + n] = _asset_codes(self.calendar.assets, values, indices)
            offset += n
        asset[bar < 0] = -1
        bar[asset < 0] = -1
        return _Keys(bar=bar, asset=asset)

    def _duplicates_error(self, keys: _Keys, name: str) -> DataError:
        n_assets = self.calendar.n_assets
        valid = keys.bar >= 0
        flat = keys.bar[valid] * n_assets + keys.asset[valid]
        counts = np.bincount(flat)
        dup = np.flatnonzero(counts > 1)
        extra = int((counts[dup] - 1).sum())
        examples = ", ".join(
            f"(timestamp={to_datetime(self.calendar.timestamps[c // n_assets]).isoformat()}, "
            f"asset_id={self.calendar.assets[c % n_assets]})"
            for c in dup[:3].tolist()
        )
        msg = (
            f"{name}: columns (timestamp, asset_id), rule unique_key: {dup.shape[0]} key(s) "
            f"appear more than once ({extra} extra rows), e.g. {examples}"
        )
        return DataError(msg)

    def _load_signal_keys(self) -> _Keys:
        assert self._signals is not None
        stamps, assets = _read_keys(self._signals)
        if "available_at" in self._signals.columns:
            stamps = self._knowledge_bars(stamps)
        total = sum(s.shape[0] for s in stamps)
        return self._keys(stamps, assets, total)

    def _knowledge_bars(self, event_stamps: list[np.ndarray]) -> list[np.ndarray]:
        """With `available_at`, a signal is first usable at the first bar at or after it."""
        assert self._signals is not None
        usable: list[np.ndarray] = []
        calendar = self.calendar.timestamps
        for batch, event in zip(self._signals.batches(["available_at"]), event_stamps, strict=True):
            known = _timestamps_us(batch.column(0), self._signals.name)
            known = np.maximum(known, event)
            pos = np.searchsorted(calendar, known)
            stamp = np.where(
                pos < calendar.shape[0], calendar[np.minimum(pos, calendar.shape[0] - 1)], -1
            )
            usable.append(stamp.astype(np.int64))
        return usable

    def _plan_chunks(self, max_chunk_cells: int) -> list[tuple[int, int]]:
        n_bars = self.calendar.timestamps.shape[0]
        n_assets = max(self.calendar.n_assets, 1)
        if n_bars * n_assets <= max_chunk_cells:
            return [(0, n_bars)]
        months = self.calendar.timestamps.astype("datetime64[us]").astype("datetime64[M]")
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
        dense, has_bar = self._scatter(self._prices, self._price_keys, self._price_columns, lo, hi)
        self._check_bars(dense, has_bar, lo)
        if self._eager:
            self._prices.release()
        volume = dense.pop("volume", None)
        if volume is None:  # not loaded: unlimited, as a read-only view that costs no memory
            volume = np.broadcast_to(np.float64(np.inf), has_bar.shape)
        signals: dict[str, np.ndarray] = {}
        if self._signals is not None and self.signal_columns:
            if self._eager:
                timing = ["available_at"] if "available_at" in self._signals.columns else []
                self._signals.preload([*KEY_COLUMNS, *timing, *self.signal_columns])
            if self._signal_keys is None:
                self._signal_keys = self._load_signal_keys()
            signals, _ = self._scatter(
                self._signals, self._signal_keys, self.signal_columns, lo, hi
            )
            if self._eager:
                self._signals.release()
                self._signal_keys = None
        return Panel(
            timestamps=self.calendar.timestamps[lo:hi],
            open=dense["open"],
            high=dense["high"],
            low=dense["low"],
            close=dense["close"],
            volume=volume,
            has_bar=has_bar,
            signals=signals,
            context=self._context_arrays(lo, hi),
        )

    def _check_bars(self, dense: dict[str, np.ndarray], has_bar: np.ndarray, lo: int) -> None:
        """The loop's own guard: every bar finite, positive, low <= open/close <= high.

        One fused pass over the arrays; only when it fails are the rules told apart. The full
        data contract (Pandera, every rule, every failure) is `ml4t_pipeline.validation`.
        """
        o, h, low, c = dense["open"], dense["high"], dense["low"], dense["close"]
        with np.errstate(invalid="ignore"):
            ok = (low > 0) & (low <= o) & (low <= c) & (h >= o) & (h >= c) & (h < np.inf)
        bad = has_bar & ~ok
        if not bad.any():
            return
        rules = (
            (
                "open/high/low/close",
                "non_finite_price",
                ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(low) & np.isfinite(c)),
            ),
            (
                "open/high/low/close",
                "non_positive_price",
                (o <= 0) | (h <= 0) | (low <= 0) | (c <= 0),
            ),
            ("high", "high_below_max_open_close", h < np.maximum(o, c)),
            ("low", "low_above_min_open_close", low > np.minimum(o, c)),
        )
        lines = []
        for column, rule, broken in rules:
            cells = np.argwhere(has_bar & broken)
            if cells.shape[0] == 0:
                continue
            examples = ", ".join(
                f"(timestamp={to_datetime(self.calendar.timestamps[lo + t]).isoformat()}, "
                f"asset_id={self.calendar.assets[a]})"
                for t, a in cells[:3].tolist()
            )
            lines.append(f"column {column}, rule {rule}: {cells.shape[0]} rows, e.g. {examples}")
        msg = f"{self._prices.name}: " + "; ".join(lines)
        raise DataError(msg)

    def _scatter(
        self, table: _Table, keys: _Keys, columns: Sequence[str], lo: int, hi: int
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Dense (bars, assets) arrays of `columns` for bars [lo, hi), and the filled-cell mask."""
        n_assets = self.calendar.n_assets
        cells = (hi - lo) * n_assets
        rows_in_chunk = int(np.count_nonzero((keys.bar >= lo) & (keys.bar < hi)))
        # a complete panel writes every cell (duplicates are caught below): skip the NaN fill
        make = np.empty if rows_in_chunk == cells else (lambda n: np.full(n, np.nan))
        out = {c: make(cells) for c in columns}
        seen = np.zeros(cells, dtype=bool)
        rows = 0
        offset = 0
        for batch in table.batches(columns):
            n = batch.num_rows
            bar = keys.bar[offset : offset + n]
            asset = keys.asset[offset : offset + n]
            offset += n
            mask = (bar >= lo) & (bar < hi)
            everything = bool(mask.all())
            flat = (
                (bar - lo) * n_assets + asset
                if everything
                else (bar[mask] - lo) * n_assets + asset[mask]
            )
            rows += flat.shape[0]
            if flat.shape[0] == 0:
                continue
            contiguous = flat[-1] - flat[0] == flat.shape[0] - 1 and bool(
                np.all(np.diff(flat) == 1)
            )
            target: slice | np.ndarray = (
                slice(int(flat[0]), int(flat[-1]) + 1) if contiguous else flat
            )
            seen[target] = True
            for i, column in enumerate(columns):
                values = _float_values(batch.column(i), table.name, column)
                out[column][target] = values if everything else values[mask]
        if int(np.count_nonzero(seen)) != rows:
            raise self._duplicates_error(keys, table.name)
        shape = (hi - lo, n_assets)
        return {c: v.reshape(shape) for c, v in out.items()}, seen.reshape(shape)

    def _context_arrays(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Market-wide values as of each bar: the latest context row stamped at or before it.

        A row stamped between two bars is first usable at the next bar (point in time); a bar
        with no newer row keeps the last value (its staleness is the validator's business).
        """
        if self._context is None or not self.context_columns:
            return {}
        if self._context_full is None:
            self._context_full = self._context_as_of()
        return {c: v[lo:hi] for c, v in self._context_full.items()}

    def _context_as_of(self) -> dict[str, np.ndarray]:
        assert self._context is not None
        stamps: list[np.ndarray] = []
        columns: dict[str, list[np.ndarray]] = {c: [] for c in self.context_columns}
        for batch in self._context.batches(["timestamp", *self.context_columns]):
            stamps.append(_timestamps_us(batch.column(0), self._context.name))
            for i, column in enumerate(self.context_columns, start=1):
                columns[column].append(_float_values(batch.column(i), self._context.name, column))
        ts = np.concatenate(stamps) if stamps else np.empty(0, np.int64)
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
        repeated = np.flatnonzero(ts[1:] == ts[:-1])
        if repeated.shape[0]:
            msg = (
                f"{self._context.name}: column 'timestamp', rule unique_key: "
                f"{repeated.shape[0]} timestamp(s) appear more than once, "
                f"e.g. {to_datetime(ts[repeated[0]]).isoformat()}"
            )
            raise DataError(msg)
        bars = self.calendar.timestamps
        usable_at = np.searchsorted(bars, ts, side="left")  # first bar at or after the stamp
        latest = np.full(bars.shape[0], -1, dtype=np.int64)
        keep = usable_at < bars.shape[0]
        np.maximum.at(latest, usable_at[keep], np.flatnonzero(keep))  # rows ascend: newest wins
        np.maximum.accumulate(latest, out=latest)
        out = {}
        for column, parts in columns.items():
            values = np.concatenate(parts)[order] if parts else np.empty(0)
            out[column] = (
                np.where(latest >= 0, values[np.maximum(latest, 0)], np.nan)
                if values.size
                else np.full(bars.shape[0], np.nan)
            )
        return out


def asset_list(assets: np.ndarray) -> list[Any]:
    """Asset ids as plain Python values (str or int) for result tables."""
    return [a.item() if isinstance(a, np.generic) else a for a in assets.tolist()]
