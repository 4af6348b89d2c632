"""`RiskManager`: the rules of a run, the hooks the engine calls, and how decisions merge.

The engine calls the manager, never a rule: `on_fills` after each fill batch, `exits` for the
protective levels inside a bar, `on_close` at each close and `validate` for every new order.
The manager asks the rules (`context.py`, `rules.py`) and merges what they decide
deterministically: higher priority first, then the tighter level (for exits and rejections,
the earlier rule). The levels it settles on go to `ProtectiveLevels` (`levels.py`), their only
writer; the manager itself owns the water marks of `RiskState` (`state.py`), which rules read
through read-only views.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ml4t_pipeline.engine.enums import OrderReason, RejectReason
from ml4t_pipeline.engine.execution.orders import SIGNAL, Orders
from ml4t_pipeline.engine.risk.context import (
    BaseRule,
    DecisionKind,
    RiskContext,
    RiskDecision,
    RiskRule,
    all_true,
)
from ml4t_pipeline.engine.risk.levels import ProtectiveLevels, Triggered
from ml4t_pipeline.engine.risk.state import US_PER_DAY, RiskState

__all__ = ["RiskManager", "RiskState", "Triggered"]

_STOP_UPDATE = DecisionKind.STOP_UPDATE
_TAKE_PROFIT_UPDATE = DecisionKind.TAKE_PROFIT_UPDATE
_REJECT_CODES = {r: i for i, r in enumerate(RejectReason)}


def _read_only(values: np.ndarray) -> np.ndarray:
    """A view of `values` that cannot be written through."""
    view = values.view()
    view.setflags(write=False)
    return view


# (assets, reasons, rules) of a close without exits
_NO_EXITS = (
    _read_only(np.empty(0, np.int64)),
    _read_only(np.empty(0, np.int8)),
    _read_only(np.empty(0, np.int16)),
)


class RiskManager:
    """Holds the rules, asks them at each hook and merges their decisions."""

    def __init__(
        self, rules: Sequence[RiskRule], n_assets: int, state: RiskState | None = None
    ) -> None:
        self.rules = list(rules)
        self.names = [r.name for r in self.rules]
        self.state = state if state is not None else RiskState.empty(n_assets)
        self.active = bool(self.rules)
        self._levels = ProtectiveLevels(self.state)
        # what a RiskContext hands the rules: the water marks, read-only
        self.high_water = _read_only(self.state.high_water)
        self.low_water = _read_only(self.state.low_water)
        # water marks (MFE/MAE, trailing stops) cost a pass per bar: only when a rule reads them
        self.tracks_excursions = any(getattr(r, "uses_excursions", True) for r in self.rules)
        # the equity marks of the UTC date (`DayMarks`): marked at every bar, when a rule reads them
        self.tracks_days = any(getattr(r, "uses_day_marks", False) for r in self.rules)
        # (index, rule) of the rules overriding a hook: the others are not called at all
        self._deciding_at_close = [
            (k, r) for k, r in enumerate(self.rules) if type(r).on_close is not BaseRule.on_close
        ]
        self._validating = [
            (k, r) for k, r in enumerate(self.rules) if type(r).validate is not BaseRule.validate
        ]
        self.validates = bool(self._validating)

    # -- hooks called by the engine -----------------------------------------------------------
    def on_fills(
        self,
        ctx_factory: Callable[[], RiskContext],
        opened: np.ndarray,
        prices: np.ndarray,
        closed: np.ndarray,
    ) -> None:
        """Positions `closed` lose their levels; positions `opened` at `prices` get new ones."""
        levels = self._levels
        if closed.shape[0]:
            levels.clear(closed)
        if opened.shape[0] == 0:
            return
        ctx = ctx_factory()
        levels.open(opened, armed_from=ctx.bar + 1)
        s = self.state
        s.high_water[opened] = prices
        s.low_water[opened] = prices
        assets, fill_price = _read_only(opened), _read_only(prices)
        decisions: list[RiskDecision] = []
        for k, rule in enumerate(self.rules):
            decisions += [_with_rule(d, k) for d in rule.on_entry(ctx, assets, fill_price)]
        self._apply_levels(ctx, decisions)

    def split(self, a: int, ratio: float, qty_after: int) -> None:
        """A split of `a` before the open: levels and water marks are prices of the new shares;
        a split that left no whole share (`qty_after` 0) closed the position: no levels."""
        if qty_after == 0:
            self._levels.clear(np.array([a], dtype=np.int64))
            return
        self._levels.split(a, ratio, long=qty_after > 0)
        s = self.state
        s.high_water[a] = s.high_water.item(a) / ratio
        s.low_water[a] = s.low_water.item(a) / ratio

    def exits(
        self, bar: int, qty: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray
    ) -> Triggered | None:
        """Gap-aware stop and take-profit triggers at this bar (stop wins if both fire)."""
        return self._levels.triggered(bar, qty, open_, high, low)

    def on_close(
        self,
        ctx_factory: Callable[[], RiskContext],
        qty: np.ndarray,
        has_bar: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Refresh water marks, collect stop updates and exits. Returns exit (assets, reasons, rules)."""
        deciding = self._deciding_at_close
        if not (self.tracks_excursions or deciding or self.tracks_days):
            return _NO_EXITS
        # a context at every close when the day is tracked: building it marks the bar
        ctx = ctx_factory() if deciding or self.tracks_days else None
        held = ctx.held if ctx is not None else (qty != 0).nonzero()[0]
        if self.tracks_excursions:  # fmax/fmin skip the NaN of an asset without a bar
            s = self.state
            s.high_water[held] = np.fmax(s.high_water[held], high[held])
            s.low_water[held] = np.fmin(s.low_water[held], low[held])
        if ctx is None or not deciding:
            return _NO_EXITS
        decisions: list[RiskDecision] = []
        for k, rule in deciding:
            decisions += [_with_rule(d, k) for d in rule.on_close(ctx)]
        self._apply_levels(ctx, decisions)
        exits = [d for d in decisions if d.kind is DecisionKind.EXIT and d.index.shape[0]]
        if not exits:
            return _NO_EXITS
        exits.sort(key=lambda d: (-d.priority, d.rule))
        chosen: dict[int, tuple[int, int]] = {}
        for d in exits:
            for a in d.index.tolist():
                chosen.setdefault(a, (int(d.reason), d.rule))
        assets = np.array(sorted(chosen), dtype=np.int64)
        assets = assets[qty[assets] != 0]
        reasons = np.array([chosen[a][0] for a in assets.tolist()], dtype=np.int8)
        rules = np.array([chosen[a][1] for a in assets.tolist()], dtype=np.int16)
        return assets, reasons, rules

    def day_marks(
        self, bar: int, timestamp_us: int, prev_close_equity: float
    ) -> tuple[float, float]:
        """(day_start_equity, day_low_equity) of global bar `bar`, stamped `timestamp_us`
        (see `RiskContext`), the bar marked first; (NaN, NaN) when no rule reads them."""
        if not self.tracks_days:
            return math.nan, math.nan
        marks = self.state.day
        marks.mark(bar, timestamp_us // US_PER_DAY, prev_close_equity)
        return marks.start_equity, marks.low_equity

    def validate(
        self, ctx: RiskContext, orders: Orders
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns (accepted row numbers, every order's qty after resizing, rejected row
        numbers, their reasons, their rule indices)."""
        none = np.empty(0, np.int64)
        if not self.validates or len(orders) == 0:
            return np.arange(len(orders)), orders.qty, none, none, none
        qty_now = ctx.qty[orders.asset]
        after = qty_now + orders.qty
        grows = np.abs(after) > np.abs(qty_now)
        flips = (qty_now != 0) & (np.sign(after) == -np.sign(qty_now))
        # an entry: a strategy order that opens, adds to or flips a position
        opens = (orders.reason == SIGNAL) & (grows | flips)
        opens.setflags(write=False)
        book = Orders(_read_only(orders.rec))
        decisions: list[RiskDecision] = []
        for k, rule in self._validating:
            decisions += [_with_rule(d, k) for d in rule.validate(ctx, book, opens)]
        if not any(d.index.shape[0] for d in decisions):  # every rule lets every order pass
            return np.arange(len(orders)), orders.qty, none, none, none
        decisions.sort(key=lambda d: (-d.priority, d.rule))
        rejected: dict[int, tuple[int, int]] = {}
        resized = orders.qty.copy()
        for d in decisions:
            if d.kind is DecisionKind.REJECT:
                for row in d.index.tolist():
                    rejected.setdefault(row, (_reject_code(d.reason), d.rule))
            elif d.kind is DecisionKind.RESIZE and d.value is not None:
                for row, value in zip(d.index.tolist(), d.value.tolist(), strict=True):
                    if abs(value) < abs(resized[row]):
                        resized[row] = int(value)
        for row in np.flatnonzero(resized == 0).tolist():
            rejected.setdefault(row, (_reject_code(RejectReason.RISK_GROSS_EXPOSURE), -1))
        rows = np.array(sorted(rejected), dtype=np.int64)
        keep = np.ones(len(orders), dtype=bool)
        keep[rows] = False
        reasons = np.array([rejected[r][0] for r in rows.tolist()], dtype=np.int64)
        rules = np.array([rejected[r][1] for r in rows.tolist()], dtype=np.int64)
        return np.flatnonzero(keep), resized, rows, reasons, rules

    # -- merging the proposed levels --------------------------------------------------------
    def _apply_levels(self, ctx: RiskContext, decisions: list[RiskDecision]) -> None:
        """Merge the stop and take-profit proposals among `decisions` per asset, highest
        priority first, then the tighter level; the levels only tighten."""
        stops: list[RiskDecision] = []
        targets: list[RiskDecision] = []
        for d in decisions:
            if d.value is None or not d.index.shape[0]:
                continue
            if d.kind is _STOP_UPDATE:
                stops.append(d)
            elif d.kind is _TAKE_PROFIT_UPDATE:
                targets.append(d)
        qty = ctx.qty
        for proposals, is_stop in ((stops, True), (targets, False)):
            if len(proposals) == 1:  # one rule spoke: nothing to merge
                d = proposals[0]
                value = np.asarray(d.value, dtype=np.float64)
                self._levels.tighten(d.index, value, int(d.reason), d.rule, qty, is_stop=is_stop)
            elif proposals:
                touched, value, why, who = _merge(qty, proposals, is_stop)
                self._levels.tighten(touched, value, why, who, qty, is_stop=is_stop)


def _merge(
    qty: np.ndarray, proposals: list[RiskDecision], is_stop: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per touched asset: the highest-priority proposal, ties going to the tighter level.

    Returns (touched assets, their level, its reason, the index of the rule proposing it).
    """
    touched = np.unique(np.concatenate([d.index for d in proposals]))
    m = touched.shape[0]
    proposed = np.full(m, np.nan)
    priority = np.full(m, np.iinfo(np.int64).min)
    why = np.zeros(m, dtype=np.int8)
    who = np.full(m, -1, dtype=np.int16)
    held = qty[touched]
    for d in sorted(proposals, key=lambda d: (-d.priority, d.rule)):
        k = np.searchsorted(touched, d.index)
        value = np.asarray(d.value, dtype=np.float64)
        better = d.priority > priority[k]
        same = d.priority == priority[k]
        take = ~np.isnan(value) & (better | (same & _tighter(held[k], value, proposed[k], is_stop)))
        proposed[k] = np.where(take, value, proposed[k])
        priority[k] = np.where(take, d.priority, priority[k])
        why[k] = np.where(take, int(d.reason), why[k])
        who[k] = np.where(take, d.rule, who[k])
    return touched, proposed, why, who


def _tighter(qty: np.ndarray, new: np.ndarray, current: np.ndarray, is_stop: bool) -> np.ndarray:
    """True where `new` is the more protective level (or `current` is unset)."""
    long = qty >= 0
    if all_true(long):
        closer = new > current if is_stop else new < current
    elif is_stop:
        closer = np.where(long, new > current, new < current)
    else:
        closer = np.where(long, new < current, new > current)
    return np.isnan(current) | closer


def _with_rule(decision: RiskDecision, rule: int) -> RiskDecision:
    """The decision, stamped with the index of the rule that made it (the manager's record)."""
    if not (isinstance(decision.index, np.ndarray) and decision.index.dtype == np.int64):
        decision.index = np.asarray(decision.index, dtype=np.int64)
    decision.rule = rule
    return decision


def _reject_code(reason: OrderReason | RejectReason) -> int:
    if isinstance(reason, RejectReason):
        return _REJECT_CODES[reason]
    return _REJECT_CODES[RejectReason.INVALID_ORDER]
