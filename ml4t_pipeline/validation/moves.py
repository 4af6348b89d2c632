"""Overnight moves: splits the prices show, splits the corporate actions promise, price jumps.

For each asset, each bar after its first is compared with the asset's previous bar: the
overnight ratio open / previous close, the close-to-close ratio close / previous close, and
the volume ratio. A split of s new shares per old share divides the price by s and multiplies
the volume by about s, so a price ratio within `SPLIT_RTOL` of 1/s for a common s
(`SPLIT_RATIOS`) is a POSSIBLE_SPLIT unless the corporate actions file holds a split of that
ratio for that asset at that bar. The volume is reported beside it (`volume_confirms`: it moved
the other way), not required: sources that adjust volume but not prices are common (the
bokeh-sampledata stocks are one: none of their three splits shows a volume rise), and a move
onto a split ratio is worth the warning either way. An action is
matched to the asset's first bar at or after its ex-date (`timestamp`); a split action whose
bar shows no such move is SPLIT_NOT_IN_PRICES: the prices are most likely adjusted already, and
applying the split would adjust them twice. Any other move beyond `policy.jump_threshold`
(in |ln(ratio)|) is a PRICE_JUMP.

Vectorized over the frame's key panel (`grid.KeyPanel`, built once for the coverage rules too):
each row's previous bar of its asset comes from one scatter into the assets x bars grid and a
running maximum along each asset (or, for a grid too large to build, one sort of the cells);
only the few moves that matter become a frame.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import polars as pl

from ml4t_pipeline.engine.tolerances import SPLIT_RTOL
from ml4t_pipeline.keys import ASSET_ID, CLOSE, OPEN, TIMESTAMP, VOLUME
from ml4t_pipeline.validation.grid import Bools, Ints, KeyPanel
from ml4t_pipeline.validation.policy import CoveragePolicy, asset_id_mismatch, common_asset_id_dtype
from ml4t_pipeline.validation.report import (
    MAX_EXAMPLES,
    Failure,
    Rule,
    Severity,
    describe_rows,
    plural,
)

SPLIT_RATIOS: Final = (2.0, 3.0, 1.5, 4.0, 5.0, 10.0, 1 / 2, 1 / 3, 2 / 3, 1 / 4, 1 / 5, 1 / 10)
"""Common split ratios, new shares per old share (below 1: reverse splits)."""
SPLIT_RATIO: Final = "split_ratio"
"""The corporate actions column of a split (new shares per old share, 1.0 where none)."""

_OPEN_RATIO = "open_ratio"
_CLOSE_RATIO = "close_ratio"
_VOLUME_RATIO = "volume_ratio"
_VOLUME_CONFIRMS = "volume_confirms"
_PRICE_RATIO = "price_ratio"
_EX_DATE = "ex_date"
_DIGITS = 4
Floats = np.ndarray


def smallest_split_move() -> float:
    """The smallest |ln(price ratio)| a move matching a split of SPLIT_RATIOS can have."""
    return min(
        abs(math.log(bound / s)) for s in SPLIT_RATIOS for bound in (1 - SPLIT_RTOL, 1 + SPLIT_RTOL)
    )


def _matches(ratio: Floats, split: Floats | float) -> Bools:
    """A price ratio shows a split of `split` new shares per old share (within SPLIT_RTOL)."""
    with np.errstate(invalid="ignore"):
        return np.abs(ratio * split - 1.0) <= SPLIT_RTOL


def _split_of(ratio: Floats) -> Floats:
    """The common split ratio whose price ratio is within SPLIT_RTOL of `ratio`, NaN if none
    (the ratios are far enough apart that at most one matches)."""
    out = np.full(ratio.shape[0], np.nan)
    for s in SPLIT_RATIOS:
        out[_matches(ratio, s)] = s
    return out


def _previous_rows(panel: KeyPanel, valid: Bools, *, max_grid_cells: int) -> np.ndarray:
    """For each row (of the panel's rows), the row of the same asset's previous bar among the
    `valid` rows, -1 for an asset's first bar (and for rows that are not valid)."""
    n_bars, n_assets = panel.calendar.bars.len(), panel.assets.ids.len()
    rows = np.flatnonzero(valid)
    cell = panel.row_asset[rows] * n_bars + panel.row_bar[rows]
    index = np.int32 if valid.shape[0] < np.iinfo(np.int32).max else np.int64  # half the memory
    previous: np.ndarray = np.full(valid.shape[0], -1, dtype=index)
    if n_bars * n_assets <= max_grid_cells:
        row_at: np.ndarray = np.full(n_assets * n_bars, -1, dtype=index)
        row_at[cell] = rows
        if rows.shape[0] == row_at.shape[0]:  # every cell holds a row: the previous is t - 1
            before = cell - 1
        else:  # the latest filled cell of the asset before each cell, by a running maximum
            latest = np.where(row_at >= 0, np.arange(row_at.shape[0]), -1).reshape(n_assets, n_bars)
            np.maximum.accumulate(latest, axis=1, out=latest)
            latest[:, 1:] = latest[:, :-1].copy()
            latest[:, 0] = -1
            before = latest.reshape(-1)[cell]
        first = panel.row_bar[rows] == 0
        if rows.shape[0] != row_at.shape[0]:
            first |= before < 0
        previous[rows[~first]] = row_at[before[~first]]
        return previous
    order = np.argsort(cell, kind="stable")
    ordered_asset = panel.row_asset[rows[order]]
    same = np.r_[False, ordered_asset[1:] == ordered_asset[:-1]]
    previous[rows[order[same]]] = rows[order[np.flatnonzero(same) - 1]]
    return previous


def _values(prices: pl.DataFrame, panel: KeyPanel, name: str) -> Floats:
    column = prices.get_column(name)
    if panel.kept is not None:
        column = column.filter(pl.Series(panel.kept))
    return column.cast(pl.Float64).fill_null(np.nan).to_numpy()


def move_failures(
    prices: pl.DataFrame,
    *,
    file: str,
    policy: CoveragePolicy,
    panel: KeyPanel,
    actions: pl.DataFrame | None = None,
    actions_file: str = "corporate_actions",
    max_grid_cells: int | None = None,
) -> list[Failure]:
    """POSSIBLE_SPLIT, PRICE_JUMP (in the prices) and SPLIT_NOT_IN_PRICES (in the actions).

    `prices` has one row per key (no DUPLICATE_KEY), numeric open, close and volume, and
    `panel` is its `key_panel`; `actions` is what `engine.feed.actions.read_corporate_actions`
    returns (timestamp = the ex-date, asset_id, split_ratio, dividend), or None.
    """
    open_, close, volume = (_values(prices, panel, name) for name in (OPEN, CLOSE, VOLUME))
    with np.errstate(invalid="ignore"):
        valid = (open_ > 0) & (open_ < np.inf) & (close > 0) & (close < np.inf)
    limit = max(4 * valid.shape[0], 1 << 20) if max_grid_cells is None else max_grid_cells
    previous = _previous_rows(panel, valid, max_grid_cells=limit)
    moved = np.flatnonzero(previous >= 0)
    # every move a rule can report is larger than `bound` in |ln|: pick those rows first
    bound = min(policy.jump_threshold, smallest_split_move())
    prev_close = close[previous[moved]]
    big = (np.abs(np.log(open_[moved] / prev_close)) > bound) | (
        np.abs(np.log(close[moved] / prev_close)) > bound
    )
    picked = moved[big]
    moves = _Moves(picked, previous[picked], open_, close, volume)
    is_split = ~np.isnan(moves.split)
    failures: list[Failure] = []
    explained = np.zeros(picked.shape[0], dtype=np.bool_)
    if actions is not None:
        common = common_asset_id_dtype(actions.schema[ASSET_ID], panel.assets.ids.dtype)
        if common is None:
            ids = panel.assets.ids.dtype
            failures.append(asset_id_mismatch(actions, file=actions_file, prices_dtype=ids))
        else:
            at_rows = _split_actions(actions, panel, valid, previous >= 0)
            row = at_rows.get_column("__row").to_numpy()
            acted = _Moves(row, previous[row], open_, close, volume)
            ratio = at_rows.get_column(SPLIT_RATIO).to_numpy()
            shown = _matches(acted.open_ratio, ratio) | _matches(acted.close_ratio, ratio)
            explained = np.isin(picked, row[shown])
            unshown = at_rows.filter(pl.Series(~shown))
            frame = acted.frame(panel, ~shown, (_OPEN_RATIO, _CLOSE_RATIO))
            failures += _report(
                frame.hstack(unshown.select(_EX_DATE, SPLIT_RATIO)),
                file=actions_file,
                rule=Rule.SPLIT_NOT_IN_PRICES,
                severity=policy.split_not_in_prices,
                columns=[_EX_DATE, ASSET_ID, SPLIT_RATIO, TIMESTAMP, _OPEN_RATIO, _CLOSE_RATIO],
                column=SPLIT_RATIO,
                detail=(
                    f"a split the prices ({file}) do not show at the asset's first bar on or "
                    "after the ex-date (timestamp = that bar): the prices look adjusted "
                    "already, and applying the split would adjust them twice; drop the split "
                    "or use unadjusted prices"
                ),
            )
    failures += _report(
        moves.frame(
            panel,
            is_split & ~explained,
            (_PRICE_RATIO, SPLIT_RATIO, _VOLUME_RATIO, _VOLUME_CONFIRMS),
        ),
        file=file,
        rule=Rule.POSSIBLE_SPLIT,
        severity=policy.possible_split,
        columns=[TIMESTAMP, ASSET_ID, _PRICE_RATIO, SPLIT_RATIO, _VOLUME_RATIO, _VOLUME_CONFIRMS],
        detail=(
            f"overnight price ratio within {SPLIT_RTOL:.0%} of a common split (split_ratio = "
            "new shares per old share; volume_confirms: the volume moved the other way) and "
            "no such split in the corporate actions: give the split in "
            "data.corporate_actions or use split-adjusted prices"
        ),
    )
    threshold = policy.jump_threshold
    jump = (np.abs(np.log(moves.open_ratio)) > threshold) | (
        np.abs(np.log(moves.close_ratio)) > threshold
    )
    failures += _report(
        moves.frame(
            panel, jump & ~is_split & ~explained, (_OPEN_RATIO, _CLOSE_RATIO, _VOLUME_RATIO)
        ),
        file=file,
        rule=Rule.PRICE_JUMP,
        severity=policy.price_jump,
        columns=[TIMESTAMP, ASSET_ID, _OPEN_RATIO, _CLOSE_RATIO, _VOLUME_RATIO],
        detail=(
            f"move beyond the jump threshold (|ln(ratio)| > {threshold:g}; ratios to the "
            "previous close) not explained by a corporate action"
        ),
    )
    return failures


class _Moves:
    """The moves of some rows to their asset's previous bar (`previous`)."""

    def __init__(
        self, rows: Ints, previous: Ints, open_: Floats, close: Floats, volume: Floats
    ) -> None:
        self.rows = rows
        prev_close = close[previous]
        with np.errstate(divide="ignore", invalid="ignore"):
            self.open_ratio = open_[rows] / prev_close
            self.close_ratio = close[rows] / prev_close
            volume_ratio = volume[rows] / volume[previous]
        self.volume_ratio = volume_ratio
        open_split, close_split = _split_of(self.open_ratio), _split_of(self.close_ratio)
        self.split = np.where(np.isnan(open_split), close_split, open_split)
        self.price_ratio = np.where(np.isnan(open_split), self.close_ratio, self.open_ratio)
        with np.errstate(invalid="ignore"):  # NaN volume ratios are not "the other way"
            self.other_way = np.where(self.split > 1.0, volume_ratio > 1.0, volume_ratio < 1.0)

    def frame(self, panel: KeyPanel, where: Bools, columns: tuple[str, ...]) -> pl.DataFrame:
        """timestamp, asset_id and `columns` of the moves `where` holds."""
        values = {
            _OPEN_RATIO: self.open_ratio,
            _CLOSE_RATIO: self.close_ratio,
            _VOLUME_RATIO: self.volume_ratio,
            _PRICE_RATIO: self.price_ratio,
            SPLIT_RATIO: self.split,
            _VOLUME_CONFIRMS: self.other_way,
        }
        rows = self.rows[where]
        return pl.DataFrame(
            {
                TIMESTAMP: panel.calendar.bars.gather(panel.row_bar[rows]),
                ASSET_ID: panel.assets.ids.gather(panel.row_asset[rows]),
                **{name: values[name][where] for name in columns},
            }
        )


def _split_actions(
    actions: pl.DataFrame, panel: KeyPanel, valid: Bools, has_previous: Bools
) -> pl.DataFrame:
    """The split actions (split_ratio != 1) at the row of the first valid bar of their asset
    at or after the ex-date: `__row`, ex_date, split_ratio (the product of the actions that
    meet at one row). Actions of assets without prices, after an asset's last bar, or at an
    asset's first bar (no previous close to compare with) cannot be checked and are left out."""
    splits = actions.filter(pl.col(SPLIT_RATIO).is_not_null() & (pl.col(SPLIT_RATIO) != 1.0))
    empty = pl.DataFrame(
        schema={"__row": pl.Int64, _EX_DATE: actions.schema[TIMESTAMP], SPLIT_RATIO: pl.Float64}
    )
    if splits.is_empty():
        return empty
    code = panel.assets.index(splits.get_column(ASSET_ID))
    bars = panel.calendar.bars
    ex_us = splits.get_column(TIMESTAMP).cast(bars.dtype).to_physical().to_numpy()
    first_bar = np.searchsorted(bars.to_physical().to_numpy(), ex_us, side="left")
    n_bars = bars.len()
    candidates = np.flatnonzero(valid & np.isin(panel.row_asset, code[code >= 0]))
    key = panel.row_asset[candidates] * n_bars + panel.row_bar[candidates]
    order = np.argsort(key)
    key, candidates = key[order], candidates[order]
    if not key.shape[0]:
        return empty
    wanted = code * n_bars + first_bar
    pos = np.minimum(np.searchsorted(key, wanted), key.shape[0] - 1)
    found = (code >= 0) & (key[pos] // n_bars == code) & (key[pos] >= wanted)
    row = candidates[pos]
    found &= has_previous[row]
    return (
        pl.DataFrame(
            {
                "__row": row[found],
                _EX_DATE: splits.get_column(TIMESTAMP).filter(pl.Series(found)),
                SPLIT_RATIO: splits.get_column(SPLIT_RATIO).filter(pl.Series(found)),
            }
        )
        .group_by("__row")
        .agg(pl.col(_EX_DATE).min(), pl.col(SPLIT_RATIO).product())
        .sort("__row")
    )


def _report(
    rows: pl.DataFrame,
    *,
    file: str,
    rule: Rule,
    severity: Severity,
    columns: list[str],
    detail: str,
    column: str | None = None,
) -> list[Failure]:
    if rows.is_empty():
        return []
    by = [TIMESTAMP, ASSET_ID]
    shown = rows.bottom_k(MAX_EXAMPLES, by=by).sort(by)
    ratios = [c for c in columns if c.endswith("_ratio") and c != SPLIT_RATIO]
    shown = shown.with_columns(pl.col(ratios).round_sig_figs(_DIGITS))
    n_assets = rows.get_column(ASSET_ID).n_unique()
    return [
        Failure(
            file=file,
            column=column,
            rule=rule,
            severity=severity,
            n_rows=rows.height,
            examples=describe_rows(shown, columns),
            detail=f"{detail} ({plural(n_assets, 'asset')})",
        )
    ]
