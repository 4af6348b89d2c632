"""`RiskState`: what the risk manager carries from bar to bar and run to run.

The per-asset columns are plain arrays over the run's assets; `engine/state.py` saves and
restores them by these field names (a chained run starts from them), and the `DayMarks` of the
UTC date being run with them. Two writers share the per-asset record, each owning its own
columns: `ProtectiveLevels` (`levels.py`) the levels, their reasons and rules and `armed_from`;
`RiskManager` (`manager.py`) the water marks and, as the engine builds each bar's context
(`RiskManager.day_marks`), the day's marks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

US_PER_DAY = 86_400_000_000  # bar timestamps are int64 microseconds since the epoch, UTC
NO_DAY = -(2**62)  # the date before any bar


@dataclass(slots=True)
class DayMarks:
    """The equity marks of the UTC calendar date being run, for limits that count per date.

    Marked once at every bar (a rule of the run needs them: `RiskManager.tracks_days`) with the
    equity recorded at the previous close, so that a chained run goes on from the same marks.
    """

    day: int = NO_DAY  # the UTC date of the last bar marked (days since 1970-01-01)
    start_equity: float = math.nan  # equity at the close of the previous date's last bar
    low_equity: float = math.inf  # the lowest equity recorded at a close earlier on `day`
    bar: int = -1  # the global bar last marked (not saved: a run marks each of its bars)

    def mark(self, bar: int, day: int, prev_close_equity: float) -> None:
        """Bar `bar` of UTC date `day`, after a close whose equity was `prev_close_equity`:
        that close is the date's lowest so far, or, on a new date, the date's start. Marking
        the same bar again changes nothing."""
        if bar == self.bar:
            return
        if day == self.day:
            if prev_close_equity < self.low_equity:
                self.low_equity = prev_close_equity
        else:
            self.day, self.start_equity, self.low_equity = day, prev_close_equity, math.inf
        self.bar = bar

    def saved(self) -> dict[str, float]:
        """What a chained run needs of the marks (JSON values); empty before any bar marked."""
        if self.day == NO_DAY:
            return {}
        return {"day": self.day, "start_equity": self.start_equity, "low_equity": self.low_equity}

    @classmethod
    def from_saved(cls, saved: dict[str, float]) -> DayMarks:
        """The marks `saved` returned (none saved: the date before any bar)."""
        if not saved:
            return cls()
        return cls(
            day=int(saved["day"]),
            start_equity=float(saved["start_equity"]),
            low_equity=float(saved["low_equity"]),
        )


@dataclass(slots=True)
class RiskState:
    """Per-asset protective levels and water marks of the positions held."""

    stop: np.ndarray  # float64, NaN: no stop
    stop_reason: np.ndarray  # int8 OrderReason of the stop
    stop_rule: np.ndarray  # int16 index of the rule that set the stop, -1: none
    take_profit: np.ndarray  # float64, NaN: no take-profit
    tp_reason: np.ndarray  # int8 OrderReason of the take-profit
    tp_rule: np.ndarray  # int16 index of the rule that set the take-profit, -1: none
    armed_from: np.ndarray  # int64, first global bar on which the levels may trigger
    high_water: np.ndarray  # float64, highest high since entry (the fill price at entry)
    low_water: np.ndarray  # float64, lowest low since entry
    day: DayMarks = field(default_factory=DayMarks)  # the UTC date being run

    @classmethod
    def empty(cls, n_assets: int) -> RiskState:
        return cls(
            stop=np.full(n_assets, np.nan),
            stop_reason=np.zeros(n_assets, dtype=np.int8),
            stop_rule=np.full(n_assets, -1, dtype=np.int16),
            take_profit=np.full(n_assets, np.nan),
            tp_reason=np.zeros(n_assets, dtype=np.int8),
            tp_rule=np.full(n_assets, -1, dtype=np.int16),
            armed_from=np.zeros(n_assets, dtype=np.int64),
            high_water=np.full(n_assets, np.nan),
            low_water=np.full(n_assets, np.nan),
        )
