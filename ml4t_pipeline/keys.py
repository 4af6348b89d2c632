"""What the engine's feed and the validation layer agree on, defined once.

- **Columns**: the names of the key, timing and price columns of the input files.
- **Time**: UTC microseconds since the epoch (int64) is the one inner representation of an
  instant; `to_micros` and `to_datetime` / `utc_datetimes` cross the boundary.
- **Keys**: which columns form a table's key (`key_columns`: plus `available_at` when the table
  has one); a (timestamp, asset_id) key becomes integer codes (`codes`: a value's position in
  the sorted distinct values) and then one integer cell; rows per cell are counted once
  (`count_keys`), so "duplicate key" means the same thing everywhere.
- **Versions**: which row is current at a bar when rows are published late or revised
  (`becoming_current`, over `current_rows`), the one rule of the feed's signals, context and
  precomputed features and of the validation layer's `align_point_in_time`; a repeated
  (timestamp, [asset_id,] available_at) over every row of a table (`repeated_versions`).
- **Rules**: every data rule's name (`Rule`), the OHLC bar rules as conditions written with
  comparisons and products only (`OHLC_RULES`, `VOLUME_RULES`: the same function reads numpy
  arrays in the feed's guard and polars expressions in the validation contract, with the
  relative tolerance of the price relations given by the caller), and the one-line failure
  message both layers print (`failure_message`).

numpy only (no polars, pyarrow, pandera or dagster), so any layer may import it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ml4t_pipeline.errors import clipped

# -- columns ----------------------------------------------------------------------------------

TIMESTAMP: Final = "timestamp"
ASSET_ID: Final = "asset_id"
AVAILABLE_AT: Final = "available_at"
"""Knowledge time of a row published after its `timestamp` (event time)."""
OPEN: Final = "open"
HIGH: Final = "high"
LOW: Final = "low"
CLOSE: Final = "close"
VOLUME: Final = "volume"

KEY_COLUMNS: Final = (TIMESTAMP, ASSET_ID)
"""The key of a per-asset table (prices, signals): one row per asset per timestamp."""
OHLC: Final = (OPEN, HIGH, LOW, CLOSE)
"""The four prices of a bar."""
PRICE_FILE_COLUMNS: Final = (*KEY_COLUMNS, *OHLC, VOLUME)
"""Every column of a prices file, in file order."""
UTC: Final = "UTC"

# -- time -------------------------------------------------------------------------------------

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_micros(value: dt.datetime | dt.date | str) -> int:
    """An instant given by a user (naive = UTC; a date is its midnight UTC) -> microseconds."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value.astimezone(dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)


def to_datetime(us: int) -> dt.datetime:
    """Microseconds since the epoch -> timezone-aware UTC datetime."""
    return _EPOCH + dt.timedelta(microseconds=int(us))


def utc_datetimes(timestamps: npt.NDArray[np.int64]) -> list[dt.datetime]:
    """int64 microseconds since the epoch -> timezone-aware UTC datetimes (one pass)."""
    naive = timestamps.astype("datetime64[us]").astype(object).tolist()
    return [t.replace(tzinfo=dt.UTC) for t in naive]


# -- keys -------------------------------------------------------------------------------------

Ints = npt.NDArray[np.int64]


def key_columns(columns: Collection[str], *, per_asset: bool = True) -> tuple[str, ...]:
    """The key of a signals (`per_asset`) or context table with these columns.

    (timestamp, asset_id), or (timestamp,) for a market-wide table, plus available_at when
    the table has one: the revisions of a value are rows with its timestamp and a later
    available_at, so only a repeated (timestamp, [asset_id,] available_at) is a duplicate.
    """
    key = KEY_COLUMNS if per_asset else (TIMESTAMP,)
    return (*key, AVAILABLE_AT) if AVAILABLE_AT in columns else key


def codes(lookup: np.ndarray, values: np.ndarray) -> Ints:
    """Position of each value in the sorted distinct `lookup`, -1 where it is absent."""
    if lookup.size == 0:
        return np.full(values.shape[0], -1, dtype=np.int64)
    pos = np.searchsorted(lookup, values)
    pos_clipped = np.minimum(pos, lookup.size - 1)
    found = lookup[pos_clipped] == values
    return np.where(found, pos_clipped, -1).astype(np.int64)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class KeyCounts:
    """Rows per occupied key cell: `cells` ascending, `rows` the count of each.

    `grid` is the dense count of every cell in [0, n_cells) when it was built.
    """

    cells: Ints
    rows: Ints
    grid: Ints | None

    def repeated(self) -> tuple[Ints, Ints]:
        """The cells holding more than one row (a duplicate key) and their row counts."""
        at = np.flatnonzero(self.rows > 1)
        return self.cells[at], self.rows[at]


def count_keys(cells: Ints, *, n_cells: int | None = None, max_grid_cells: int = 0) -> KeyCounts:
    """Rows per key cell, given each row's cell (a non-negative integer).

    With `n_cells` up to `max_grid_cells`, a bincount over the dense grid; else a sort.
    """
    if n_cells is not None and n_cells <= max_grid_cells:
        grid = np.bincount(cells, minlength=n_cells)
        occupied = np.flatnonzero(grid)
        return KeyCounts(cells=occupied, rows=grid[occupied], grid=grid)
    distinct, rows = np.unique(cells, return_counts=True)
    return KeyCounts(cells=distinct.astype(np.int64), rows=rows.astype(np.int64), grid=None)


def ranks(order: Ints) -> Ints:
    """Each row's position in `order` (a permutation of the rows): the inverse permutation."""
    rank = np.empty(order.shape[0], dtype=np.int64)
    rank[order] = np.arange(order.shape[0])
    return rank


def current_rows(rank: Ints, group: Ints, bar: Ints) -> Ints:
    """The rows that become current, in writing order (a later write to a cell wins).

    `rank` orders the rows from oldest to newest (by timestamp, then version; distinct within
    a group), `group` is each row's asset, `bar` the bar it becomes known at. Per group, rows
    are taken by the bar they become known at; a row is written only if it outranks every
    row of its group known at that bar or before: a late-published older row never replaces
    a newer one, and a revision (a later version of the same timestamp) does. The result is
    sorted by (group, bar, rank).
    """
    n = rank.shape[0]
    order = np.lexsort((rank, bar, group))  # by group, then the bar known at, then rank
    g, r = group[order], rank[order]
    # the running highest rank within each group: offset the groups so one pass serves all
    first_of_group = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    offset = np.repeat(np.arange(first_of_group.shape[0]) * n, np.diff(np.r_[first_of_group, n]))
    running = np.maximum.accumulate(r + offset) - offset
    return order[r == running]


def by_group_and_version(group: Ints, event: Ints, available: Ints, n_groups: int) -> Ints:
    """The order of rows by (group, timestamp, available_at), file order breaking ties.

    Rows already in (timestamp, available_at) order (the common layout) need only a stable
    sort by group, a radix sort when the codes fit in 16 bits."""
    step = event[1:] - event[:-1]
    if np.all((step > 0) | ((step == 0) & (available[1:] >= available[:-1]))):
        codes16 = group.astype(np.uint16) if n_groups <= np.iinfo(np.uint16).max else group
        return np.argsort(codes16, kind="stable")
    return np.lexsort((available, event, group))


def becoming_current(event: Ints, available: Ints, group: Ints, bar: Ints, n_bars: int) -> Ints:
    """The knowledge-time rule, defined once: the rows that become current, one per
    (group, bar), sorted by (group, bar).

    `event` and `available` are each row's timestamp and available_at (int64 us), `group` its
    asset (-1: outside the run; all zeros for a market-wide table), `bar` the first bar at or
    after max(timestamp, available_at) (`n_bars` when none is: never current). Rows are
    ranked by (timestamp, available_at), file order breaking ties; at each bar a group's
    current row is the highest-ranked row known by then (`current_rows`), and when several
    rows become current at one bar the highest-ranked one is kept. The current row at any bar
    is the last kept row of its group at or before that bar.
    """
    used = np.flatnonzero((group >= 0) & (bar < n_bars))
    n_groups = int(group.max()) + 1 if group.shape[0] else 0
    order = by_group_and_version(group[used], event[used], available[used], n_groups)
    rows = used[order]  # by (group, timestamp, available_at)
    kept_group, kept_bar = group[rows], bar[rows]
    if np.all((kept_group[1:] != kept_group[:-1]) | (kept_bar[1:] >= kept_bar[:-1])):
        kept = rows  # no row is known before an older one of its group: each becomes current
    else:
        kept = used[current_rows(ranks(order), group[used], bar[used])]  # by (group, bar, rank)
        kept_group, kept_bar = group[kept], bar[kept]
    if kept.shape[0]:  # the last row written to each cell wins
        new_cell = (kept_group[1:] != kept_group[:-1]) | (kept_bar[1:] != kept_bar[:-1])
        kept = kept[np.r_[new_cell, True]]
    return kept.astype(np.int64)


def repeated_versions(event: Ints, available: Ints, group: Ints) -> tuple[Ints, Ints]:
    """DUPLICATE_KEY over every row: the same (timestamp, group, available_at) twice.

    Returns the first row (in file order positions) of each repeated key, sorted by key, and
    each repeated key's row count; both empty when no key repeats."""
    n_groups = int(group.max()) + 1 if group.shape[0] else 0
    rows = by_group_and_version(group, event, available, n_groups)
    ts, av, gr = event[rows], available[rows], group[rows]
    same = (ts[1:] == ts[:-1]) & (av[1:] == av[:-1]) & (gr[1:] == gr[:-1])
    if not same.any():
        empty = np.empty(0, np.int64)
        return empty, empty
    new_key = np.r_[True, ~same]
    key = np.cumsum(new_key) - 1  # the key of each row, numbered in sorted order
    repeated, counts = count_keys(key).repeated()
    return rows[np.flatnonzero(new_key)[repeated]].astype(np.int64), counts


def duplicate_key_detail(n_keys: int, key: Sequence[str]) -> str:
    """The detail of a DUPLICATE_KEY failure: how many keys repeat, and the key's columns."""
    return f"{plural(n_keys, 'repeated key')} ({', '.join(key)})"


# -- rules ------------------------------------------------------------------------------------


class Rule(StrEnum):
    """Every data rule the contract layer (and the feed's own guard) checks.

    Rows may arrive in any order, so there is no "sorted" rule: once rows are sorted by
    (asset_id, timestamp), timestamps are strictly increasing per asset exactly when
    `DUPLICATE_KEY` finds nothing. A Parquet column carries exactly one time zone and
    `read_input` converts every file to UTC, so time zones cannot be mixed after reading;
    a frame that skipped `read_input` and is still naive or in another zone breaks
    `NON_UTC_TIMESTAMP`.
    """

    MISSING_FILE = "missing_file"
    UNREADABLE_FILE = "unreadable_file"
    EMPTY_TABLE = "empty_table"
    MISSING_COLUMN = "missing_column"
    WRONG_DTYPE = "wrong_dtype"
    NON_UTC_TIMESTAMP = "non_utc_timestamp"
    NULL_KEY = "null_key"
    DUPLICATE_KEY = "duplicate_key"
    NON_FINITE_PRICE = "non_finite_price"
    NON_POSITIVE_PRICE = "non_positive_price"
    HIGH_BELOW_MAX_OPEN_CLOSE = "high_below_max_open_close"
    LOW_ABOVE_MIN_OPEN_CLOSE = "low_above_min_open_close"
    HIGH_BELOW_LOW = "high_below_low"
    NON_FINITE_VOLUME = "non_finite_volume"
    NEGATIVE_VOLUME = "negative_volume"
    NON_FINITE_VALUE = "non_finite_value"
    LOOK_AHEAD = "look_ahead"
    SIGNAL_WITHOUT_PRICE = "signal_without_price"
    LARGE_GAP = "large_gap"
    DATA_ENDS = "data_ends"
    POSSIBLE_SPLIT = "possible_split"
    SPLIT_NOT_IN_PRICES = "split_not_in_prices"
    PRICE_JUMP = "price_jump"
    STALE_CONTEXT = "stale_context"
    CHECK_ERROR = "check_error"


Column = Callable[[str], Any]
"""name -> that column as a numpy array or as a polars expression."""


def is_finite(x: Any) -> Any:
    """Not NaN and not infinite, with comparisons only: NaN fails ``x < inf`` both in numpy
    (NaN compares false) and in polars (NaN sorts above inf); a polars null stays null."""
    return (x > -math.inf) & (x < math.inf)


def is_valid_price(x: Any) -> Any:
    """Finite and positive (see `is_finite`)."""
    return (x > 0) & (x < math.inf)


def _all_valid(col: Column, names: Iterable[str]) -> Any:
    out: Any = None
    for name in names:
        valid = is_valid_price(col(name))
        out = valid if out is None else out & valid
    return out


def _below(x: Any, reference: Any, rtol: float) -> Any:
    """`x` is below `reference` by more than `rtol` of it (``reference - x > rtol * reference``
    for a positive reference, written as one comparison)."""
    return x < reference * (1.0 - rtol)


def _above(x: Any, reference: Any, rtol: float) -> Any:
    """`x` is above `reference` by more than `rtol` of it."""
    return x > reference * (1.0 + rtol)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class BarRule:
    """One rule on a bar's prices or volume, reported under `column`.

    `broken(col, rtol)` is True on the rows that break it, where `col(name)` gives a column as
    a numpy array (the feed) or a polars expression (the validation contract) and `rtol` is the
    relative tolerance of the relations between prices (the caller passes
    `engine.tolerances.OHLC_RTOL`; 0.0 gives the exact relation; rules that are not
    `relation`s ignore it). A row that breaks the exact relation but not the tolerant one is
    *tolerated*: accepted, and counted. Relations between prices are judged only where every
    price they need is finite and positive, so one bad value is reported once, by the rule it
    breaks. `reads` are the columns an example row shows. With `nulls_break` a missing (null)
    value breaks the rule; otherwise nulls are another rule's.
    """

    rule: Rule
    column: str
    reads: tuple[str, ...]
    broken: Callable[[Column, float], Any]
    detail: str
    nulls_break: bool = False
    relation: bool = False

    def tolerated(self, col: Column, rtol: float) -> Any:
        """The rows that break the exact relation but are within `rtol` of it."""
        return self.broken(col, 0.0) & ~self.broken(col, rtol)


def _non_finite(name: str, rule: Rule, detail: str) -> BarRule:
    return BarRule(
        rule=rule,
        column=name,
        reads=(name,),
        broken=lambda col, _rtol: ~is_finite(col(name)),
        detail=detail,
        nulls_break=True,
    )


def _below_zero(name: str, rule: Rule, detail: str, *, zero_ok: bool) -> BarRule:
    def broken(col: Column, _rtol: float) -> Any:
        x = col(name)
        return is_finite(x) & ((x < 0) if zero_ok else (x <= 0))

    return BarRule(rule=rule, column=name, reads=(name,), broken=broken, detail=detail)


def _ohlc_rules() -> tuple[BarRule, ...]:
    rules: list[BarRule] = []
    for name in OHLC:
        rules += [
            _non_finite(name, Rule.NON_FINITE_PRICE, "price is null, NaN or infinite"),
            _below_zero(name, Rule.NON_POSITIVE_PRICE, "price is zero or negative", zero_ok=False),
        ]
    return (
        *rules,
        BarRule(
            rule=Rule.HIGH_BELOW_MAX_OPEN_CLOSE,
            column=HIGH,
            reads=(OPEN, HIGH, CLOSE),
            broken=lambda col, rtol: (
                _all_valid(col, OHLC)
                & (_below(col(HIGH), col(OPEN), rtol) | _below(col(HIGH), col(CLOSE), rtol))
            ),
            detail="high is below open or close",
            relation=True,
        ),
        BarRule(
            rule=Rule.LOW_ABOVE_MIN_OPEN_CLOSE,
            column=LOW,
            reads=(OPEN, LOW, CLOSE),
            broken=lambda col, rtol: (
                _all_valid(col, OHLC)
                & (_above(col(LOW), col(OPEN), rtol) | _above(col(LOW), col(CLOSE), rtol))
            ),
            detail="low is above open or close",
            relation=True,
        ),
        BarRule(
            rule=Rule.HIGH_BELOW_LOW,
            column=HIGH,
            reads=(HIGH, LOW),
            broken=lambda col, rtol: (
                _all_valid(col, (HIGH, LOW)) & _below(col(HIGH), col(LOW), rtol)
            ),
            detail="high is below low",
            relation=True,
        ),
    )


OHLC_RULES: Final = _ohlc_rules()
"""The price rules of a bar, in report order (per price column, then the relations)."""
VOLUME_RULES: Final = (
    _non_finite(VOLUME, Rule.NON_FINITE_VOLUME, "volume is null, NaN or infinite"),
    _below_zero(VOLUME, Rule.NEGATIVE_VOLUME, "volume is negative", zero_ok=True),
)


def tolerance_detail(rtol: float) -> str:
    """The detail of a tolerated-rows entry, for both layers."""
    return (
        f"within the OHLC tolerance ({rtol:g} of the price): accepted, the engine widens "
        "high and low to cover open and close"
    )


# -- messages ---------------------------------------------------------------------------------

MAX_EXAMPLES: Final = 5
"""How many example rows a failure keeps."""


def plural(n: int, noun: str) -> str:
    """``1 row``, ``3 rows``, ``1,234 rows``."""
    return f"{n:,} {noun if n == 1 else noun + 's'}"


def format_value(value: object) -> str:
    """How a cell reads inside an example string (cut to ~200 characters)."""
    if value is None:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return clipped(str(value))


def describe_row(cells: Iterable[tuple[str, object]]) -> str:
    """``name=value`` pairs of one example row, e.g. ``timestamp=... asset_id=A0001 high=9.5``."""
    return " ".join(f"{name}={format_value(value)}" for name, value in cells)


def failure_message(
    *,
    file: str,
    column: str | None,
    rule: Rule,
    n_rows: int,
    detail: str = "",
    examples: Sequence[str] = (),
) -> str:
    """One line naming file, column, rule, row count, detail and examples."""
    where = f"{file}: column '{column}'" if column else file
    parts: list[str] = []
    if n_rows:
        parts.append(plural(n_rows, "row"))
    if detail:
        parts.append(detail)
    text = f"{where}, rule {rule}"
    if parts:
        text += f": {', '.join(parts)}"
    if examples:
        text += f", e.g. {'; '.join(examples)}"
    return text


def duplicate_keys_message(
    *, file: str, key: Sequence[str], shown: Sequence[Sequence[tuple[str, Any]]], rows: Ints
) -> str:
    """The error text for keys of `key` that repeat: `rows` holds each repeated key's row
    count, `shown` the first of those keys as (column, value) pairs."""
    examples = [
        describe_row((*cells, ("rows", int(n))))
        for cells, n in zip(shown, rows[: len(shown)], strict=True)
    ]
    message = failure_message(
        file=file,
        column=None,
        rule=Rule.DUPLICATE_KEY,
        n_rows=int(rows.sum()),
        detail=duplicate_key_detail(int(rows.shape[0]), key),
        examples=examples,
    )
    return errors_message([message])


def errors_message(messages: Sequence[str]) -> str:
    """The text of an error raised for failure lines: a count, then one indented line each."""
    noun = "error" if len(messages) == 1 else "errors"
    return f"{len(messages)} data contract {noun}:\n" + "\n".join(f"  {m}" for m in messages)
