"""Coverage rules: duplicate keys, holes in the panel, signals without prices, stale context.

Each frame's keys become cells of a calendar x assets grid (`grid`); the rules below work on
those integer arrays. Cross-file rules run after each file passed its own structural checks
(key columns present, UTC datetimes, comparable asset ids). Their severity is a policy choice
(`CoveragePolicy`): a research run may accept a few missing bars, a production run may not.
"Bars" always count positions in the calendar, or, for an asset, in that asset's own price bars.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ml4t_pipeline.keys import ASSET_ID, AVAILABLE_AT, KEY_COLUMNS, TIMESTAMP, duplicate_key_detail
from ml4t_pipeline.validation.grid import Bools, Ints, KeyPanel, in_sorted, key_panel
from ml4t_pipeline.validation.policy import (
    DEFAULT_POLICY,
    CoveragePolicy,
    asset_id_mismatch,
    common_asset_id_dtype,
)
from ml4t_pipeline.validation.report import (
    MAX_EXAMPLES,
    Failure,
    Rule,
    Severity,
    describe_rows,
    plural,
)
from ml4t_pipeline.validation.staleness import context_staleness
from ml4t_pipeline.validation.timing import EVENT_TIME, align_point_in_time

__all__ = [
    "DEFAULT_POLICY",
    "CoveragePolicy",
    "common_asset_id_dtype",
    "context_staleness",
    "panel_failures",
    "signal_failures",
]

_FROM = "from"
_TO = "to"
_BARS = "bars"
_ROWS = "rows"
_BAR = "__bar"
_ASSET = "__asset"
_LAST_BAR = "last_bar"


def _gap_failure(
    panel: KeyPanel,
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


def _repeated_keys(panel: KeyPanel, *, file: str) -> list[Failure]:
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
            detail=duplicate_key_detail(int(repeated.size), KEY_COLUMNS),
        )
    ]


def _data_ends(panel: KeyPanel, *, file: str, policy: CoveragePolicy) -> list[Failure]:
    """DATA_ENDS: assets whose last bar comes before the file's last timestamp. The engine
    delists such an asset at its last bar (`engine.feed.listings`; `execution.on_delist`
    says what happens to a position in it), so the user must know."""
    asset, bar = panel.cells.asset, panel.cells.bar
    last_of_asset = np.flatnonzero(np.r_[asset[1:] != asset[:-1], True])
    end = panel.calendar.bars.len() - 1
    ended = last_of_asset[bar[last_of_asset] < end]
    if not ended.size:
        return []
    frame = pl.DataFrame({_BAR: bar[ended]}).with_columns(
        panel.assets.ids.gather(asset[ended]).alias(ASSET_ID)
    )
    shown = frame.bottom_k(MAX_EXAMPLES, by=[_BAR, ASSET_ID]).sort(_BAR, ASSET_ID)
    examples = shown.with_columns(
        panel.calendar.bars.gather(shown.get_column(_BAR)).alias(_LAST_BAR)
    )
    last = panel.calendar.bars.gather([end]).item()
    return [
        Failure(
            file=file,
            column=ASSET_ID,
            rule=Rule.DATA_ENDS,
            severity=policy.data_ends,
            n_rows=0,
            examples=describe_rows(examples, [ASSET_ID, _LAST_BAR]),
            detail=(
                f"delisted or data ends: {plural(int(ended.size), 'asset')} with a last bar "
                f"before the file's last timestamp {last}; the engine delists each at its "
                "last bar (execution.on_delist)"
            ),
        )
    ]


def panel_failures(
    prices: pl.DataFrame,
    *,
    file: str,
    policy: CoveragePolicy,
    max_grid_cells: int | None = None,
    panel: KeyPanel | None = None,
) -> list[Failure]:
    """DUPLICATE_KEY, DATA_ENDS and LARGE_GAP for a prices frame with usable timestamp and
    asset_id.

    A cell holding several rows is a duplicate key. A gap is a run of more than
    `policy.max_gap_bars` calendar bars missing between two bars of one asset; bars before an
    asset's first or after its last row are listing/delisting, not gaps. Null keys are
    NULL_KEY's business and are skipped here.
    """
    if panel is None:  # (`panel`: the frame's `key_panel`, when the caller has it already)
        panel = key_panel(prices, max_grid_cells=max_grid_cells)
    if panel is None:
        return []
    failures = _repeated_keys(panel, file=file) + _data_ends(panel, file=file, policy=policy)
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

    Without `available_at`: DUPLICATE_KEY on (timestamp, asset_id) (with `available_at` the
    key, `keys.key_columns`, has three columns and is the caller's business). With `prices`:
    SIGNAL_WITHOUT_PRICE and LARGE_GAP. Signals with `available_at` are first moved to the bar at which they are usable
    (`align_point_in_time`), so coverage is judged where the engine will read them. A gap is a
    run of more than `policy.max_gap_bars` of an asset's price bars without a signal, after that
    asset's first signal (so a model that stops scoring an asset is caught).
    """
    aligned = AVAILABLE_AT in signals.columns
    failures: list[Failure] = []
    own = None if aligned else key_panel(signals, max_grid_cells=max_grid_cells)
    if own is not None:
        failures += _repeated_keys(own, file=file)
    if prices is None:
        return failures
    if common_asset_id_dtype(signals.schema[ASSET_ID], prices.schema[ASSET_ID]) is None:
        failure = asset_id_mismatch(signals, file=file, prices_dtype=prices.schema[ASSET_ID])
        return [*failures, failure]
    priced_panel = key_panel(prices, max_grid_cells=max_grid_cells)
    if priced_panel is None:
        return failures
    used = None
    if aligned:
        keys = signals.select(TIMESTAMP, ASSET_ID, AVAILABLE_AT)
        used = align_point_in_time(keys, priced_panel.calendar.bars)
        own = key_panel(used, max_grid_cells=max_grid_cells)
    if own is None:
        return failures
    return failures + _coverage(own, priced_panel, used=used, file=file, policy=policy)


def _coverage(
    own: KeyPanel,
    prices: KeyPanel,
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
        has_signal = in_sorted(
            signalled, prices.cells.asset * prices.cells.n_bars + prices.cells.bar
        )
    else:
        marked = np.zeros(prices.cells.grid.shape, dtype=np.bool_)
        marked[code, price_bar] = True
        has_signal = marked[prices.cells.asset, prices.cells.bar]
    return failures + _signal_gaps(prices, has_signal=has_signal, file=file, policy=policy)


def _without_price(
    own: KeyPanel,
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
    panel: KeyPanel, *, has_signal: Bools, file: str, policy: CoveragePolicy
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
