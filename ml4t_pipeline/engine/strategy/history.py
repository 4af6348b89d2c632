"""`History`: the bars of a run up to the current one, whatever the chunking and the chaining.

A run reads its data chunk by chunk and may continue an earlier run (chained months), but a
`History` at global bar t shows the same bars either way: every bar from the first bar of the
data (the first bar of the first run of a chain) through t, or only the last `history_bars`
bars when its user declares that many. The engine keeps what its users need in one
`HistoryStore`: the bars before the current chunk (the last `history_bars - 1` of them, or
every one when a user declared nothing) and the current chunk. A chained run carries the kept
bars in its saved state (`HistoryTail`), so the next run starts with them.

What each user declares (`Strategy.history_bars`, `CallableFeatures(history_bars=...)`):
- an int n >= 1: an array holds the last n bars, the current one included (fewer only at the
  start of the data); the engine keeps n - 1 bars across chunks and in the saved state;
- None: every bar since the first. The engine keeps the whole run in memory (a reference to
  every chunk), and a saved state carries none of it, so a run continuing saved state cannot
  show such a History (reading it is a `StateError` asking for a declaration);
- 0 (a strategy only): no History at all; reading it is a `ConfigError`.
With several users the store keeps what the longest needs; each still sees its own window.

`bars=n` asks for exactly n bars: rows before the first bar of the data are NaN (has_bar
False); n above the declared `history_bars` is a `ConfigError`, never a shorter array.
Every array handed out is read-only: a view of the engine's arrays, or a fresh copy (as long
as what is returned) where the bars asked for span a chunk boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ml4t_pipeline.engine.feed import Panel
from ml4t_pipeline.errors import ConfigError, StateError

PRICE_FIELDS = ("open", "high", "low", "close", "volume", "has_bar")
SIGNAL = "signal:"  # key prefix of a per-asset signal or feature, (bars, assets)
CONTEXT = "context:"  # key prefix of a market-wide value, (bars,)


class RowPointer(Protocol):
    """Where a view reads: the clock while the engine runs, or a fixed row."""

    @property
    def row(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryTail:
    """The last bars of a run that the History of the run continuing it may show."""

    first_bar: int  # global index of the first row
    arrays: dict[str, np.ndarray]  # key (a price field, signal:name, context:name) -> rows


def check_history_bars(value: object, owner: str, *, least: int = 0) -> int | None:
    """A declared `history_bars`: None, or an int >= `least`."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= least):
        return value
    msg = f"{owner} must be None (the whole run) or an int >= {least} (bars), got {value!r}"
    raise ConfigError(msg)


def history_store(
    declared: Sequence[int | None], *, first_bar: int, tail: HistoryTail | None
) -> HistoryStore | None:
    """The store serving History users that declared `declared`; None when nobody reads one."""
    users = [n for n in declared if n != 0]
    if not users:
        return None
    keep = None if None in users else max(n for n in users if n is not None) - 1
    return HistoryStore(keep, first_bar=first_bar, tail=tail)


class HistoryStore:
    """The bars every History of a run reads: the kept bars before the current chunk (the last
    `keep`, or all when `keep` is None), then the current chunk. Only the engine moves it."""

    __slots__ = ("_panel", "_past", "bar0", "keep", "start")

    def __init__(self, keep: int | None, *, first_bar: int, tail: HistoryTail | None) -> None:
        self.keep = keep
        self.start = first_bar  # global index of the first kept bar
        self.bar0 = first_bar  # global index of the current chunk's first bar
        self._past: dict[str, list[np.ndarray]] = {}  # key -> pieces covering [start, bar0)
        self._panel: Panel | None = None
        if tail is not None:
            rows = {v.shape[0] for v in tail.arrays.values()}
            if len(rows) > 1 or tail.first_bar + (rows.pop() if rows else 0) != first_bar:
                msg = f"saved history does not end where this run starts (bar {first_bar})"
                raise StateError(msg)
            if tail.arrays:
                self.start = tail.first_bar
                self._past = {key: [values] for key, values in tail.arrays.items()}

    def enter(self, panel: Panel) -> None:
        """`panel` is the current chunk now; the one before it joins the kept bars."""
        if self._panel is not None:
            self.start, self._past = self._after(self._panel)
            self.bar0 += self._panel.n_bars
        self._panel = panel

    def tail(self) -> HistoryTail | None:
        """What a run continuing this one needs (None: nothing, or the whole run undeclared)."""
        if not self.keep:
            return None
        start, past = (self.start, self._past) if self._panel is None else self._after(self._panel)
        return HistoryTail(first_bar=start, arrays={k: _joined(v) for k, v in past.items()})

    def _after(self, panel: Panel) -> tuple[int, dict[str, list[np.ndarray]]]:
        """The kept bars once `panel` is done: (global index of the first, key -> pieces)."""
        complete = self.bar0 == self.start  # nothing kept yet: every key has its whole past
        end = self.bar0 + panel.n_bars
        past: dict[str, list[np.ndarray]] = {}
        for key, values in fields(panel).items():
            if key in self._past or complete:
                pieces = [*self._past.get(key, []), values]
                past[key] = pieces if self.keep is None else [_last_rows(pieces, self.keep)]
        kept = end - self.start if self.keep is None else min(self.keep, end - self.start)
        return end - kept, past

    def rows(self, key: str, first: int, row: int) -> np.ndarray:
        """Bars [first, current] (global `first`, current chunk `row`) of `key`."""
        current = field_of(self._panel, key)
        if first >= self.bar0:
            return current[first - self.bar0 : row + 1]
        past = self._past.get(key)
        if first < self.start or past is None:
            kept = f"from bar {self.start}" if past is not None else f"none of {key!r}"
            msg = (
                f"History needs {key!r} from bar {first}; bars before {self.bar0} kept: {kept}. "
                "A run continuing saved state has only the bars the previous run declared "
                "(history_bars on the strategy and on CallableFeatures; undeclared, none)"
            )
            raise StateError(msg)
        skip = first - self.start
        pieces = []
        for piece in past:
            if skip < piece.shape[0]:
                pieces.append(piece[skip:])
            skip = max(skip - piece.shape[0], 0)
        return np.concatenate([*pieces, current[: row + 1]])


class History:
    """Read-only arrays of the bars up to and including the current one (no look-ahead);
    see the module docstring for which bars. `n_bars` is how many an array holds now."""

    __slots__ = ("_at", "_owner", "_store", "_window")

    def __init__(
        self,
        store: HistoryStore | None,
        at: RowPointer,
        *,
        history_bars: int | None,
        owner: str,
    ) -> None:
        self._store = store
        self._at = at
        self._window = history_bars
        self._owner = owner  # who declared `history_bars`, for the messages

    def prices(self, field: str, bars: int | None = None) -> np.ndarray:
        """(bars, assets) of open, high, low, close, volume or has_bar."""
        if field not in PRICE_FIELDS:
            msg = f"History.prices: unknown field {field!r} (one of {', '.join(PRICE_FIELDS)})"
            raise ConfigError(msg)
        return self._read(field, bars)

    def signal(self, name: str, bars: int | None = None) -> np.ndarray:
        """(bars, assets) of a signal or per-asset feature."""
        return self._read(SIGNAL + name, bars)

    def context(self, name: str, bars: int | None = None) -> np.ndarray:
        """(bars,) of a market-wide value."""
        return self._read(CONTEXT + name, bars)

    @property
    def n_bars(self) -> int:
        """How many bars an array read without `bars` holds at this bar."""
        return self._where()[2]

    def _where(self) -> tuple[HistoryStore, int, int]:
        """The store, the current global bar, and how many bars an array holds."""
        store = self._store
        if store is None or self._window == 0:
            msg = (
                f"{self._owner} = 0: this History shows no bars (declare the bars it needs, "
                "or None for the whole run)"
            )
            raise ConfigError(msg)
        t = store.bar0 + self._at.row
        return store, t, t + 1 if self._window is None else min(self._window, t + 1)

    def _read(self, key: str, bars: int | None) -> np.ndarray:
        store, t, want = self._where()
        if bars is not None:
            if isinstance(bars, bool) or not isinstance(bars, int) or bars < 1:
                msg = f"History: bars must be an int >= 1, got {bars!r}"
                raise ConfigError(msg)
            if self._window is not None and bars > self._window:
                msg = (
                    f"History: {bars} bars of {key!r} asked, but {self._owner} = "
                    f"{self._window} keeps only the last {self._window} (raise it)"
                )
                raise ConfigError(msg)
            want = bars
        first = t + 1 - want  # negative: bars before the data began
        values = store.rows(key, max(first, 0), self._at.row)
        if first < 0:  # unknown: NaN (has_bar False)
            unknown = False if key == "has_bar" else np.nan
            values = np.concatenate([np.full((-first, *values.shape[1:]), unknown), values])
        return read_only(values)


def fields(panel: Panel) -> dict[str, np.ndarray]:
    """Every array of a chunk a History may read, by key."""
    out = {name: getattr(panel, name) for name in PRICE_FIELDS}
    out |= {SIGNAL + name: values for name, values in panel.signals.items()}
    out |= {CONTEXT + name: values for name, values in panel.context.items()}
    return out


def field_of(panel: Panel | None, key: str) -> np.ndarray:
    if panel is None:
        msg = "History read before the engine entered its first chunk"
        raise RuntimeError(msg)
    if key in PRICE_FIELDS:
        values: np.ndarray = getattr(panel, key)
        return values
    arrays, name = (panel.signals, key[len(SIGNAL) :])
    if key.startswith(CONTEXT):
        arrays, name = (panel.context, key[len(CONTEXT) :])
    if name not in arrays:
        kind = "context" if key.startswith(CONTEXT) else "signal"
        msg = f"History: no {kind} {name!r} (there are {sorted(arrays)})"
        raise KeyError(msg)
    return arrays[name]


def _last_rows(pieces: list[np.ndarray], n: int) -> np.ndarray:
    """A copy of the last n rows of the pieces put end to end (all of them if fewer)."""
    taken: list[np.ndarray] = []
    for piece in reversed(pieces):
        if n <= 0:
            break
        taken.append(piece[-n:] if n < piece.shape[0] else piece)
        n -= taken[-1].shape[0]
    return np.concatenate([pieces[-1][:0], *reversed(taken)])


def _joined(pieces: list[np.ndarray]) -> np.ndarray:
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def read_only(values: np.ndarray) -> np.ndarray:
    """`values` (a view of the engine's arrays) as a view that cannot be written."""
    if values.flags.writeable:
        values = values.view()
        values.flags.writeable = False
    return values
