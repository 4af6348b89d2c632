"""Corporate actions: splits and cash dividends, read from their own input and placed on bars.

The input (`data.corporate_actions`) has one row per (ex-date, asset): `timestamp` (the
ex-date), `asset_id`, and `split_ratio` (new shares per old share: 2 for a 2:1 split, 0.1 for
a 1:10 reverse split) and/or `dividend` (cash per share held at the previous close). A missing
value means no such action (ratio 1, dividend 0). No other column is read, and any other
column is refused: a misspelt `split_ratio` must not leave every split unapplied.

An action applies at the first bar of the run's calendar at or after its ex-date, before that
bar's open (`ActionBars`). A chained run picks up where the saved state's last bar left off,
so an action between two runs is applied once, by the later one, whatever the split into runs.
Actions of assets that are not in the run are not the run's concern.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ml4t_pipeline.engine.feed.columns import asset_values, float_values, id_kind, timestamps_us
from ml4t_pipeline.engine.feed.coords import universe as sorted_ids
from ml4t_pipeline.engine.feed.tables import Source, Table
from ml4t_pipeline.errors import DataError, shown
from ml4t_pipeline.keys import ASSET_ID, MAX_EXAMPLES, TIMESTAMP, codes, to_datetime

SPLIT_RATIO = "split_ratio"
DIVIDEND = "dividend"
ACTION_COLUMNS = (TIMESTAMP, ASSET_ID, SPLIT_RATIO, DIVIDEND)
ROLE = "corporate_actions"


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRows:
    """Every row of a corporate-actions input, checked, sorted by (timestamp, asset_id)."""

    name: str  # the input, for messages
    timestamp: np.ndarray  # int64 us UTC, the ex-date
    asset_id: np.ndarray  # the ids as written (object for text ids)
    split_ratio: np.ndarray  # float64, 1.0 where none
    dividend: np.ndarray  # float64, 0.0 where none

    @property
    def n_rows(self) -> int:
        return int(self.timestamp.shape[0])

    def frame(self) -> pl.DataFrame:
        """The rows as a Polars frame (timestamp as Datetime us UTC)."""
        ids = self.asset_id.tolist()
        return pl.DataFrame(
            {
                TIMESTAMP: pl.Series(self.timestamp, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
                ASSET_ID: pl.Series(
                    ids, dtype=pl.Int64 if self.asset_id.dtype.kind in "iu" else pl.String
                ),
                SPLIT_RATIO: self.split_ratio,
                DIVIDEND: self.dividend,
            }
        )


def _refuse(name: str, column: str, rows: np.ndarray, what: str, values: np.ndarray) -> None:
    bad = np.flatnonzero(rows)
    if bad.shape[0]:
        examples = ", ".join(repr(float(v)) for v in values[bad[:MAX_EXAMPLES]])
        msg = f"{name}: column '{column}': {bad.shape[0]} row(s) {what}, e.g. {examples}"
        raise DataError(msg)


def load_actions(source: Source, *, name: str | None = None) -> ActionRows:
    """Read and check a corporate-actions input (Parquet path or frame).

    Refused with a `DataError` naming the file, column and rule: a missing key column, no
    action column, an unknown column, a null key, a ratio that is not finite and > 0, a
    dividend that is not finite and >= 0, two rows for one (timestamp, asset_id)."""
    table = Table(source, ROLE)
    label = name or table.name
    unknown = [c for c in table.columns if c not in ACTION_COLUMNS]
    if unknown:
        msg = (
            f"{label}: unknown column(s) {shown(unknown)}; a corporate-actions file has "
            f"{TIMESTAMP}, {ASSET_ID} and {SPLIT_RATIO} and/or {DIVIDEND}"
        )
        raise DataError(msg)
    table.require((TIMESTAMP, ASSET_ID))
    present = [c for c in (SPLIT_RATIO, DIVIDEND) if c in table.columns]
    if not present:
        msg = (
            f"{label}: needs a '{SPLIT_RATIO}' or a '{DIVIDEND}' column (has {list(table.columns)})"
        )
        raise DataError(msg)
    id_kind(table.schema.field(ASSET_ID).type, label)
    stamps: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    values: dict[str, list[np.ndarray]] = {c: [] for c in present}
    for batch in table.batches([TIMESTAMP, ASSET_ID, *present]):
        stamps.append(timestamps_us(batch.column(0), label))
        column = batch.column(1)
        if column.null_count:
            msg = f"{label}: column '{ASSET_ID}' has {column.null_count} null value(s)"
            raise DataError(msg)
        dictionary, indices = asset_values(column, label)
        ids.append(dictionary[indices] if indices is not None else np.asarray(dictionary))
        for i, c in enumerate(present, start=2):
            values[c].append(float_values(batch.column(i), label, c))
    ts = np.concatenate(stamps) if stamps else np.empty(0, np.int64)
    asset = np.concatenate(ids) if ids else np.empty(0, np.int64)
    ratio = np.concatenate(values[SPLIT_RATIO]) if SPLIT_RATIO in values else np.ones(ts.shape[0])
    dividend = np.concatenate(values[DIVIDEND]) if DIVIDEND in values else np.zeros(ts.shape[0])
    ratio = np.where(np.isnan(ratio), 1.0, ratio)  # null: no split
    dividend = np.where(np.isnan(dividend), 0.0, dividend)  # null: no dividend
    # (NaN read as null above; what is left that is not finite is +-inf)
    _refuse(
        label, SPLIT_RATIO, ~((ratio > 0) & np.isfinite(ratio)), "not a finite ratio > 0", ratio
    )
    _refuse(
        label,
        DIVIDEND,
        ~((dividend >= 0) & np.isfinite(dividend)),
        "not a finite amount >= 0",
        dividend,
    )
    ids_sorted = sorted_ids([asset]) if asset.shape[0] else asset
    code = codes(ids_sorted, asset) if asset.shape[0] else np.empty(0, np.int64)
    order = np.lexsort((code, ts))
    ts, asset, code = ts[order], asset[order], code[order]
    repeated = np.flatnonzero((ts[1:] == ts[:-1]) & (code[1:] == code[:-1]))
    if repeated.shape[0]:
        first = repeated[0]
        msg = (
            f"{label}: duplicate_key: {repeated.shape[0]} repeated ({TIMESTAMP}, {ASSET_ID}), "
            f"e.g. {TIMESTAMP}={to_datetime(int(ts[first]))}, {ASSET_ID}={asset[first]!r}; "
            f"write a split and a dividend of one ex-date on one row"
        )
        raise DataError(msg)
    return ActionRows(
        name=label,
        timestamp=ts,
        asset_id=asset,
        split_ratio=np.ascontiguousarray(ratio[order]),
        dividend=np.ascontiguousarray(dividend[order]),
    )


def read_corporate_actions(source: Source, *, name: str | None = None) -> pl.DataFrame:
    """A checked corporate-actions input as a Polars frame: timestamp (Datetime us UTC),
    asset_id, split_ratio (1.0 where none), dividend (0.0 where none); see `load_actions`."""
    return load_actions(source, name=name).frame()


@dataclass(frozen=True, slots=True)
class Action:
    """One action placed on the run: the asset's position in the run and the input row."""

    asset: int  # position in the run's universe
    split_ratio: float
    dividend: float
    where: str  # the input, the row's timestamp and asset_id, for messages

    def check_dividend(self, close: float) -> None:
        """A dividend of at least the previous close is no cash dividend: most often one in
        cents, or a yield."""
        if close > 0 and self.dividend >= close:
            msg = (
                f"{self.where}: column '{DIVIDEND}' = {self.dividend!r} is not below the "
                f"previous close {close!r}; a dividend is cash per share (is it in cents, or "
                "a yield?)"
            )
            raise DataError(msg)


class ActionBars:
    """The actions of one run by the calendar bar they apply at (before its open)."""

    __slots__ = ("at_bar",)

    def __init__(
        self,
        rows: ActionRows,
        calendar: np.ndarray,
        universe: np.ndarray,
        *,
        after_us: int | None,
    ) -> None:
        """`calendar` the run's bars (int64 us UTC), `universe` its sorted asset ids,
        `after_us` the last bar of the run this one continues (None: a fresh run, whose
        first bar takes the actions of its own date only: nothing before it was held)."""
        self.at_bar: dict[int, list[Action]] = {}
        if rows.n_rows == 0 or calendar.shape[0] == 0:
            return
        if (universe.dtype.kind in "iu") != (rows.asset_id.dtype.kind in "iu"):
            kinds = (
                ("integer" if universe.dtype.kind in "iu" else "text"),
                ("integer" if rows.asset_id.dtype.kind in "iu" else "text"),
            )
            msg = (
                f"{rows.name}: column '{ASSET_ID}' holds {kinds[1]} ids but the prices hold "
                f"{kinds[0]} ids, so no action could apply; write both with the same type"
            )
            raise DataError(msg)
        ts = rows.timestamp
        lower = int(calendar[0]) - 1 if after_us is None else after_us
        inside = (ts > lower) & (ts <= calendar[-1])
        asset = codes(universe, rows.asset_id)
        inside &= asset >= 0
        bars = np.searchsorted(calendar, ts, side="left")
        for k in np.flatnonzero(inside).tolist():
            action = Action(
                asset=int(asset[k]),
                split_ratio=float(rows.split_ratio[k]),
                dividend=float(rows.dividend[k]),
                where=(
                    f"{rows.name}: row {TIMESTAMP}={to_datetime(int(ts[k]))}, "
                    f"{ASSET_ID}={rows.asset_id[k]!r}"
                ),
            )
            self.at_bar.setdefault(int(bars[k]), []).append(action)

    def in_rows(self, lo: int, hi: int) -> dict[int, list[Action]]:
        """The actions of calendar bars [lo, hi), keyed by row (bar - lo)."""
        return {b - lo: a for b, a in self.at_bar.items() if lo <= b < hi}


def no_actions() -> ActionRows:
    empty = np.empty(0)
    return ActionRows(
        name=ROLE,
        timestamp=np.empty(0, np.int64),
        asset_id=np.empty(0, np.int64),
        split_ratio=empty,
        dividend=empty,
    )


__all__ = [
    "ACTION_COLUMNS",
    "Action",
    "ActionBars",
    "ActionRows",
    "load_actions",
    "no_actions",
    "read_corporate_actions",
]
