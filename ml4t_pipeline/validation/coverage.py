"""Coverage rules: duplicate keys, holes in the panel, signals without prices, stale context.

Rows are turned into integer coordinates once: a bar index in the calendar (the sorted distinct
price timestamps) and an asset code, so a (timestamp, asset_id) key becomes one integer cell.
Rows per cell are counted with a bincount over the dense assets x bars grid when that grid is
small (at most `max_grid_cells` cells, by default 4 x rows and at least 2**20), else by sorting
the cells; every rule below then works on arrays, never on a dict per asset or a string join.

Cross-file rules run after each file passed its own structural checks (key columns present,
UTC datetimes, comparable asset ids). Their severity is a policy choice: a research run may
accept a few missing bars, a production run may not. "Bars" always count positions in the
calendar, or, for an asset, in that asset's own price bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.validation.report import (
    MAX_EXAMPLES,
    Failure,
    Rule,
    Severity,
    describe_rows,
    plural,
)
from ml4t_pipeline.validation.timing import (
    ASSET_ID,
    AVAILABLE_AT,
    EVENT_TIME,
    TIMESTAMP,
    align_point_in_time,
    bar_calendar,
)

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

_FROM = "from"
_TO = "to"
_BARS = "bars"
_ROWS = "rows"
_BAR = "__bar"
_ASSET = "__asset"
_HAS = "__has"


@dataclass(frozen=True, slots=True, kw_only=True)
class CoveragePolicy:
    """How much missing coverage is tolerated, and how loudly it is reported.

    `max_gap_bars`: longest tolerated run of consecutive missing bars (a price gap inside an
    asset's life, or price bars without a signal after an asset's first signal).
    `max_context_staleness_bars`: how many bars a context value may be carried forward.
    Severities may be given as strings ("error"/"warning"), e.g. from a YAML config.
    """

    max_gap_bars: int = 5
    max_context_staleness_bars: int = 3
    signal_without_price: Severity = Severity.WARNING
    large_gap: Severity = Severity.WARNING
    stale_context: Severity = Severity.WARNING

    def __post_init__(self) -> None:
        for name in ("max_gap_bars", "max_context_staleness_bars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                msg = f"coverage policy '{name}' must be an integer >= 0, got {value!r}"
                raise ConfigError(msg)
        for name in ("signal_without_price", "large_gap", "stale_context"):
            value = getattr(self, name)
            try:
                severity = Severity(value)
            except ValueError:
                choices = ", ".join(s.value for s in Severity)
                msg = f"coverage policy '{name}' must be one of {choices}, got {value!r}"
                raise ConfigError(msg) from None
            object.__setattr__(self, name, severity)


DEFAULT_POLICY = CoveragePolicy()
"""The policy used when a caller passes none."""


def common_asset_id_dtype(left: pl.DataType, right: pl.DataType) -> pl.DataType | None:
    """The dtype both asset_id columns can be compared in, or None if ids can never match."""
    if left.is_integer() and right.is_integer():
        return pl.Int64()
    text = (pl.String, pl.Categorical, pl.Enum)
    if isinstance(left, text) and isinstance(right, text):
        return pl.String()
    return None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _Calendar:
    """Sorted distinct bar timestamps, and timestamp -> bar index.

    Timestamps are integers on a grid of step gcd(t - first); when that grid is small,
    `slot_to_bar` turns a timestamp into its bar with arithmetic and one table lookup.
    """

    bars: pl.Series
    first: int
    step: int
    slot_to_bar: Ints | None

    def index(self, timestamps: pl.Series) -> Ints:
        """Bar index of each (non-null) timestamp, -1 where it is not a bar."""
        timestamps = timestamps.cast(self.bars.dtype)
        if self.slot_to_bar is None:
            bar_index = pl.int_range(self.bars.len(), dtype=pl.Int64, eager=True)
            return timestamps.replace_strict(self.bars, bar_index, default=-1).to_numpy()
        offsets = timestamps.to_physical().to_numpy() - self.first
        slots = offsets // self.step
        on_grid = (offsets >= 0) & (offsets % self.step == 0) & (slots < self.slot_to_bar.size)
        found = np.full(offsets.size, -1, dtype=np.int64)
        found[on_grid] = self.slot_to_bar[slots[on_grid]]
        return found


def _calendar(timestamps: pl.Series, *, max_slots: int) -> tuple[_Calendar, Ints]:
    """The calendar of non-null `timestamps`, and the bar index of each of them."""
    ticks = timestamps.to_physical().to_numpy()
    first = int(ticks.min())
    offsets = ticks - first
    step = int(np.gcd.reduce(offsets)) or 1
    n_slots = int(offsets.max()) // step + 1
    if n_slots > max_slots:
        bars = timestamps.unique().sort().rename(TIMESTAMP)
        calendar = _Calendar(bars=bars, first=first, step=step, slot_to_bar=None)
        return calendar, calendar.index(timestamps)
    slots = offsets
    slots //= step
    occupied = np.bincount(slots, minlength=n_slots) > 0
    slot_to_bar = np.where(occupied, np.cumsum(occupied) - 1, -1).astype(np.int64)
    bars = pl.Series(TIMESTAMP, first + np.flatnonzero(occupied) * step).cast(timestamps.dtype)
    calendar = _Calendar(bars=bars, first=first, step=step, slot_to_bar=slot_to_bar)
    return calendar, slot_to_bar[slots]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _Assets:
    """Distinct asset ids; an asset's code is its position in `ids`."""

    ids: pl.Series

    def index(self, asset_ids: pl.Series) -> Ints:
        """Code of each (non-null) id, -1 for ids not in `ids` (dtypes must be comparable)."""
        common = common_asset_id_dtype(asset_ids.dtype, self.ids.dtype) or pl.String()
        codes = pl.int_range(self.ids.len(), dtype=pl.Int64, eager=True)
        return (
            asset_ids.cast(common)
            .replace_strict(self.ids.cast(common), codes, default=-1)
            .to_numpy()
        )


def _assets(asset_ids: pl.Series) -> tuple[_Assets, Ints]:
    """The distinct non-null `asset_ids` and each row's code (its id's position in them)."""
    if isinstance(asset_ids.dtype, pl.String):
        physical = asset_ids.cast(pl.Categorical).to_physical()
    elif isinstance(asset_ids.dtype, pl.Categorical | pl.Enum):
        physical = asset_ids.to_physical()
    else:
        distinct = asset_ids.unique()
        dense = pl.int_range(distinct.len(), dtype=pl.Int64, eager=True)
        codes = asset_ids.replace_strict(distinct, dense).to_numpy()
        return _Assets(ids=distinct), codes
    firsts = physical.arg_unique()
    seen = physical.gather(firsts).to_numpy().astype(np.int64)
    dense_of = np.full(int(seen.max()) + 1, -1, dtype=np.int64)
    dense_of[seen] = np.arange(seen.size)
    return _Assets(ids=asset_ids.gather(firsts)), dense_of[physical.to_numpy()]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _Cells:
    """Occupied (asset code, bar) cells in ascending order, with the rows each one holds.

    `grid` is the dense assets x bars array of row counts when it was small enough to build;
    otherwise `keys` (cell = asset * n_bars + bar, ascending) answers membership.
    """

    n_bars: int
    asset: Ints
    bar: Ints
    rows: Ints
    grid: Ints | None
    keys: Ints | None

    def contains(self, asset: Ints, bar: Ints) -> Bools:
        """Whether each (asset, bar) holds a row (codes must be valid)."""
        if self.grid is not None:
            return self.grid[asset, bar] > 0
        return _in_sorted(self.keys, asset * self.n_bars + bar)


def _in_sorted(keys: Ints | None, wanted: Ints) -> Bools:
    """Whether each wanted value is in the ascending array `keys`."""
    if keys is None or not keys.size:
        return np.zeros(wanted.size, dtype=np.bool_)
    at = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
    return keys[at] == wanted


def _count(cells: Ints, *, n_assets: int, n_bars: int, max_grid_cells: int) -> _Cells:
    """Rows per cell, given each row's cell: a bincount over the dense grid when it is small,
    else a sort."""
    if n_assets * n_bars <= max_grid_cells:
        grid = np.bincount(cells, minlength=n_assets * n_bars).reshape(n_assets, n_bars)
        asset, bar = np.nonzero(grid)
        return _Cells(
            n_bars=n_bars, asset=asset, bar=bar, rows=grid[asset, bar], grid=grid, keys=None
        )
    keys, rows = np.unique(cells, return_counts=True)
    asset, bar = np.divmod(keys, n_bars)
    return _Cells(n_bars=n_bars, asset=asset, bar=bar, rows=rows, grid=None, keys=keys)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _Panel:
    """A frame's keys as cells of the calendar x assets grid."""

    calendar: _Calendar
    assets: _Assets
    cells: _Cells


def _panel(frame: pl.DataFrame, *, max_grid_cells: int | None) -> _Panel | None:
    """Integer coordinates of the non-null (timestamp, asset_id) keys, or None if none."""
    keys = frame.select(TIMESTAMP, ASSET_ID)
    if keys.null_count().row(0) != (0, 0):
        keys = keys.drop_nulls()
    if keys.is_empty():
        return None
    limit = max(4 * keys.height, 1 << 20) if max_grid_cells is None else max_grid_cells
    calendar, bars = _calendar(keys.get_column(TIMESTAMP), max_slots=limit)
    assets, codes = _assets(keys.get_column(ASSET_ID))
    n_bars = calendar.bars.len()
    cells = _count(
        codes * n_bars + bars, n_assets=assets.ids.len(), n_bars=n_bars, max_grid_cells=limit
    )
    return _Panel(calendar=calendar, assets=assets, cells=cells)


def _gap_failure(
    panel: _Panel,
    *,
    asset: Ints,
    first: Ints,
    last: Ints,
    length: Ints,
    file: str,
    policy: CoveragePolicy,
    what: str,
) -> list[Failure]:
    """One LARGE_GAP failure for runs of missing bars (bar indices first..last inclusive)."""
    if not length.size:
        return []
    runs = pl.DataFrame({_ASSET: asset, _FROM: first, _TO: last, _BARS: length}).with_columns(
        panel.assets.ids.gather(asset).alias(ASSET_ID)
    )
    shown = runs.bottom_k(MAX_EXAMPLES, by=[ASSET_ID, _FROM]).sort(ASSET_ID, _FROM)
    examples = shown.with_columns(
        panel.calendar.bars.gather(shown.get_column(_FROM)).alias(_FROM),
        panel.calendar.bars.gather(shown.get_column(_TO)).alias(_TO),
    )
    n_assets = int(np.unique(asset).size)
    return [
        Failure(
            file=file,
            column=None,
            rule=Rule.LARGE_GAP,
            severity=policy.large_gap,
            n_rows=int(length.sum()),
            examples=describe_rows(examples, [ASSET_ID, _FROM, _TO, _BARS]),
            detail=(
                f"{plural(int(length.size), 'run')} of more than {policy.max_gap_bars} {what} "
                f"({plural(n_assets, 'asset')})"
            ),
        )
    ]


def _repeated_keys(panel: _Panel, *, file: str) -> list[Failure]:
    cells = panel.cells
    repeated = np.flatnonzero(cells.rows > 1)
    if not repeated.size:
        return []
    frame = pl.DataFrame({_BAR: cells.bar[repeated], _ROWS: cells.rows[repeated]}).with_columns(
        panel.assets.ids.gather(cells.asset[repeated]).alias(ASSET_ID)
    )
    shown = frame.bottom_k(MAX_EXAMPLES, by=[_BAR, ASSET_ID]).sort(_BAR, ASSET_ID)
    examples = shown.with_columns(
        panel.calendar.bars.gather(shown.get_column(_BAR)).alias(TIMESTAMP)
    )
    return [
        Failure(
            file=file,
            column=None,
            rule=Rule.DUPLICATE_KEY,
            severity=Severity.ERROR,
            n_rows=int(cells.rows[repeated].sum()),
            examples=describe_rows(examples, [TIMESTAMP, ASSET_ID, _ROWS]),
            detail=f"{plural(int(repeated.size), 'repeated key')} ({TIMESTAMP}, {ASSET_ID})",
        )
    ]


def panel_failures(
    prices: pl.DataFrame,
    *,
    file: str,
    policy: CoveragePolicy,
    max_grid_cells: int | None = None,
) -> list[Failure]:
    """DUPLICATE_KEY and LARGE_GAP for a prices frame with usable timestamp and asset_id.

    A cell holding several rows is a duplicate key. A gap is a run of more than
    `policy.max_gap_bars` calendar bars missing between two bars of one asset; bars before an
    asset's first or after its last row are listing/delisting, not gaps. Null keys are
    NULL_KEY's business and are skipped here.
    """
    panel = _panel(prices, max_grid_cells=max_grid_cells)
    if panel is None:
        return []
    failures = _repeated_keys(panel, file=file)
    asset, bar = panel.cells.asset, panel.cells.bar
    missing = bar[1:] - bar[:-1] - 1
    at = np.flatnonzero((asset[1:] == asset[:-1]) & (missing > policy.max_gap_bars))
    return failures + _gap_failure(
        panel,
        asset=asset[at],
        first=bar[at] + 1,
        last=bar[at + 1] - 1,
        length=missing[at],
        file=file,
        policy=policy,
        what="missing bars inside an asset's life",
    )


def signal_failures(
    signals: pl.DataFrame,
    *,
    file: str,
    prices: pl.DataFrame | None,
    policy: CoveragePolicy,
    max_grid_cells: int | None = None,
) -> list[Failure]:
    """Panel rules for a signals frame with usable timestamp and asset_id.

    Without `available_at`: DUPLICATE_KEY on (timestamp, asset_id) (with `available_at` the key
    has three columns and is the caller's business). With `prices`: SIGNAL_WITHOUT_PRICE and
    LARGE_GAP. Signals with `available_at` are first moved to the bar at which they are usable
    (`align_point_in_time`), so coverage is judged where the engine will read them. A gap is a
    run of more than `policy.max_gap_bars` of an asset's price bars without a signal, after that
    asset's first signal (so a model that stops scoring an asset is caught).
    """
    aligned = AVAILABLE_AT in signals.columns
    failures: list[Failure] = []
    own = None if aligned else _panel(signals, max_grid_cells=max_grid_cells)
    if own is not None:
        failures += _repeated_keys(own, file=file)
    if prices is None:
        return failures
    if common_asset_id_dtype(signals.schema[ASSET_ID], prices.schema[ASSET_ID]) is None:
        failure = Failure(
            file=file,
            column=ASSET_ID,
            rule=Rule.WRONG_DTYPE,
            severity=Severity.ERROR,
            n_rows=signals.height,
            examples=describe_rows(signals.head(3), [TIMESTAMP, ASSET_ID]),
            detail=(
                f"asset_id is {signals.schema[ASSET_ID]} here but "
                f"{prices.schema[ASSET_ID]} in the prices, so no id can match"
            ),
        )
        return [*failures, failure]
    priced_panel = _panel(prices, max_grid_cells=max_grid_cells)
    if priced_panel is None:
        return failures
    used = None
    if aligned:
        keys = signals.select(TIMESTAMP, ASSET_ID, AVAILABLE_AT)
        used = align_point_in_time(keys, priced_panel.calendar.bars)
        own = _panel(used, max_grid_cells=max_grid_cells)
    if own is None:
        return failures
    return failures + _coverage(own, priced_panel, used=used, file=file, policy=policy)


def _coverage(
    own: _Panel,
    prices: _Panel,
    *,
    used: pl.DataFrame | None,
    file: str,
    policy: CoveragePolicy,
) -> list[Failure]:
    """Map each signal cell onto the price grid (through the few distinct ids and bars)."""
    asset, bar = own.cells.asset, own.cells.bar
    code_of_asset = prices.assets.index(own.assets.ids)
    bar_of_bar = prices.calendar.index(own.calendar.bars)
    code, price_bar = code_of_asset[asset], bar_of_bar[bar]
    known = (code >= 0) & (price_bar >= 0)
    code[~known] = 0
    price_bar[~known] = 0
    priced = known & prices.cells.contains(code, price_bar)
    failures = _without_price(
        own,
        asset=asset[~priced],
        bar=bar[~priced],
        rows=own.cells.rows[~priced],
        n_unknown=int((code_of_asset < 0).sum()),
        used=used,
        file=file,
        policy=policy,
    )
    code, price_bar = code[priced], price_bar[priced]
    if prices.cells.grid is None:
        signalled = np.unique(code * prices.cells.n_bars + price_bar)
        has_signal = _in_sorted(
            signalled, prices.cells.asset * prices.cells.n_bars + prices.cells.bar
        )
    else:
        marked = np.zeros(prices.cells.grid.shape, dtype=np.bool_)
        marked[code, price_bar] = True
        has_signal = marked[prices.cells.asset, prices.cells.bar]
    return failures + _signal_gaps(prices, has_signal=has_signal, file=file, policy=policy)


def _without_price(
    own: _Panel,
    *,
    asset: Ints,
    bar: Ints,
    rows: Ints,
    n_unknown: int,
    used: pl.DataFrame | None,
    file: str,
    policy: CoveragePolicy,
) -> list[Failure]:
    if not rows.size:
        return []
    orphans = pl.DataFrame({_BAR: bar}).with_columns(own.assets.ids.gather(asset).alias(ASSET_ID))
    earliest = orphans.bottom_k(MAX_EXAMPLES, by=[_BAR, ASSET_ID]).sort(_BAR, ASSET_ID)
    examples = earliest.with_columns(
        own.calendar.bars.gather(earliest.get_column(_BAR)).alias(TIMESTAMP)
    )
    shown = [TIMESTAMP, ASSET_ID]
    if used is not None:
        moved = used.select(TIMESTAMP, ASSET_ID, EVENT_TIME)
        examples = examples.join(moved, on=[TIMESTAMP, ASSET_ID], how="left")
        shown.append(EVENT_TIME)
    detail = "no price bar for that asset at that timestamp"
    if n_unknown:
        detail += f"; {plural(n_unknown, 'asset')} with no prices at all"
    return [
        Failure(
            file=file,
            column=ASSET_ID,
            rule=Rule.SIGNAL_WITHOUT_PRICE,
            severity=policy.signal_without_price,
            n_rows=int(rows.sum()),
            examples=describe_rows(examples.sort(_BAR, ASSET_ID), shown),
            detail=detail,
        )
    ]


def _signal_gaps(
    panel: _Panel, *, has_signal: Bools, file: str, policy: CoveragePolicy
) -> list[Failure]:
    """Runs of an asset's price bars without a signal, from its first signal on.

    Cells are sorted by asset code, then bar, so each asset's price bars are contiguous.
    """
    if not has_signal.any():
        return []
    asset, bar = panel.cells.asset, panel.cells.bar
    n = asset.size
    signalled_at = np.flatnonzero(has_signal)
    signalled_asset = asset[signalled_at]
    first_of_asset = np.ones(signalled_at.size, dtype=np.bool_)
    first_of_asset[1:] = signalled_asset[1:] != signalled_asset[:-1]
    first_signal = np.full(panel.assets.ids.len(), n, dtype=np.int64)
    first_signal[signalled_asset[first_of_asset]] = signalled_at[first_of_asset]
    missing = ~has_signal & (np.arange(n) >= first_signal[asset])
    new_asset = np.ones(n, dtype=np.bool_)
    new_asset[1:] = asset[1:] != asset[:-1]
    starts_run = missing.copy()
    starts_run[1:] &= ~missing[:-1] | new_asset[1:]
    ends_run = missing.copy()
    ends_run[:-1] &= ~missing[1:] | new_asset[1:]
    start, end = np.flatnonzero(starts_run), np.flatnonzero(ends_run)
    length = end - start + 1
    large = length > policy.max_gap_bars
    return _gap_failure(
        panel,
        asset=asset[start[large]],
        first=bar[start[large]],
        last=bar[end[large]],
        length=length[large].astype(np.int64),
        file=file,
        policy=policy,
        what="price bars without a signal after the asset's first signal",
    )


def context_staleness(
    context: pl.DataFrame,
    *,
    file: str,
    columns: list[str],
    prices: pl.DataFrame,
    policy: CoveragePolicy,
) -> list[Failure]:
    """STALE_CONTEXT: bars at which a context column's latest value is too old (or absent).

    A value observed at ``max(timestamp, available_at)`` serves every later bar; its staleness
    at a bar is the number of calendar bars since the last bar at or before the observation.
    Null and NaN values do not refresh a column.
    """
    price_ts = prices.get_column(TIMESTAMP).drop_nulls()
    if price_ts.is_empty():
        return []
    calendar = bar_calendar(price_ts)
    cal = calendar.to_physical().to_numpy()
    observed = (
        pl.max_horizontal(TIMESTAMP, AVAILABLE_AT)
        if AVAILABLE_AT in context.columns
        else pl.col(TIMESTAMP)
    )
    limit = policy.max_context_staleness_bars
    failures: list[Failure] = []
    for column in columns:
        value = pl.col(column)
        if context.schema[column].is_float():
            value = value.fill_nan(None)
        seen = (
            context.filter(value.is_not_null() & observed.is_not_null())
            .select(observed.cast(calendar.dtype))
            .to_series()
            .unique()
            .sort()
        )
        obs = seen.to_physical().to_numpy()
        latest = np.searchsorted(obs, cal, side="right") - 1
        has_value = latest >= 0
        last_seen = obs[np.maximum(latest, 0)] if obs.size else np.zeros_like(cal)
        last_bar = np.searchsorted(cal, last_seen, side="right") - 1
        age = np.arange(cal.size) - last_bar
        stale = ~has_value | (age > limit)
        n_stale = int(stale.sum())
        if not n_stale:
            continue
        where = np.flatnonzero(stale)[:MAX_EXAMPLES]
        last_seen_name = f"{column}_last_seen"
        examples = pl.DataFrame(
            {
                TIMESTAMP: calendar.gather(where),
                last_seen_name: pl.Series(last_seen[where]).cast(calendar.dtype),
                "bars_stale": pl.Series(age[where]),
                _HAS: pl.Series(has_value[where]),
            }
        ).select(
            TIMESTAMP,
            *(
                pl.when(pl.col(_HAS)).then(pl.col(name)).otherwise(None).alias(name)
                for name in (last_seen_name, "bars_stale")
            ),
        )
        n_empty = int((~has_value).sum())
        detail = f"value older than {limit} bars"
        if n_empty:
            detail += f"; no value yet at {plural(n_empty, 'bar')} before the first value"
        failures.append(
            Failure(
                file=file,
                column=column,
                rule=Rule.STALE_CONTEXT,
                severity=policy.stale_context,
                n_rows=n_stale,
                examples=describe_rows(examples, examples.columns),
                detail=detail,
            )
        )
    return failures
