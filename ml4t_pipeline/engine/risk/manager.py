"""The risk manager: holds the rules and the protective levels, and merges decisions.

Rules decide (`risk.py`, `rules.py`); the manager is the only writer of the per-asset levels
(`RiskState`) and merges what the rules propose deterministically: higher priority first, then
the tighter level. It keeps a cache of the trigger levels so that a bar without a hit costs one
comparison per side (`exits`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ml4t_pipeline.engine.enums import ExitReason, RejectReason
from ml4t_pipeline.engine.execution.orders import SIGNAL, Orders
from ml4t_pipeline.engine.risk.context import (
    BaseRule,
    DecisionKind,
    RiskContext,
    RiskDecision,
    RiskRule,
    all_true,
    any_true,
)

_STOP_UPDATE = DecisionKind.STOP_UPDATE
_TAKE_PROFIT_UPDATE = DecisionKind.TAKE_PROFIT_UPDATE
_REJECT_CODES = {r: i for i, r in enumerate(RejectReason)}
_NO_EXITS = (np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.int16))


@dataclass(slots=True)
class Triggered:
    """Protective exits triggered inside a bar, to be filled by the broker at `price`."""

    asset: list[int]
    price: list[float]
    reason: list[int]  # ExitReason
    rule: list[int]


@dataclass(slots=True)
class RiskState:
    """Per-asset protective levels; the manager is their only writer."""

    stop: np.ndarray
    stop_reason: np.ndarray
    stop_rule: np.ndarray
    take_profit: np.ndarray
    tp_reason: np.ndarray
    tp_rule: np.ndarray
    armed_from: np.ndarray  # first global bar on which levels may trigger
    high_water: np.ndarray
    low_water: np.ndarray

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


class RiskManager:
    """Holds the rules and the protective levels; merges decisions deterministically."""

    def __init__(
        self, rules: Sequence[RiskRule], n_assets: int, state: RiskState | None = None
    ) -> None:
        self.rules = list(rules)
        self.names = [r.name for r in self.rules]
        self.state = state if state is not None else RiskState.empty(n_assets)
        self.active = bool(self.rules)
        self._levelled_mask = self._levelled()
        self._any_take_profit = bool(np.any(~np.isnan(self.state.take_profit)))
        self._live: np.ndarray | None = None
        self._levels: tuple[np.ndarray, np.ndarray] | None = None  # see `_trigger_levels`
        self._any_above = True  # some trigger level is reached from above (refreshed with them)
        # water marks (MFE/MAE, trailing stops) cost a pass per bar: only when a rule reads them
        self.tracks_excursions = any(getattr(r, "uses_excursions", True) for r in self.rules)
        # (index, rule) of the rules overriding a hook: the others are not called at all
        self._closing = [
            (k, r) for k, r in enumerate(self.rules) if type(r).on_close is not BaseRule.on_close
        ]
        self._validating = [
            (k, r) for k, r in enumerate(self.rules) if type(r).validate is not BaseRule.validate
        ]
        self.validates = bool(self._validating)

    def _levelled(self) -> np.ndarray:
        s = self.state
        return ~np.isnan(s.stop) | ~np.isnan(s.take_profit)

    @property
    def live(self) -> np.ndarray:
        """Assets with a stop or take-profit level (the only ones `exits` has to look at)."""
        if self._live is None:
            self._live = self._levelled_mask.nonzero()[0]
            self._levels = None
        return self._live

    def _trigger_levels(self, qty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per live asset, the level a low at or below triggers (a long's stop, a short's
        take-profit) and the level a high at or above triggers; +-inf where there is none.
        Rebuilt only when a level or the live set changed."""
        if self._levels is None:
            live, s = self.live, self.state
            long = qty[live] >= 0
            if not self._any_take_profit and all_true(long):  # stops of longs: the common case
                self._levels = (s.stop[live], np.full(live.shape[0], np.inf))
                self._any_above = False
                return self._levels
            stop, target = s.stop[live], s.take_profit[live]
            below = np.where(long, stop, target)
            above = np.where(long, target, stop)
            self._levels = (
                np.where(np.isnan(below), -np.inf, below),
                np.where(np.isnan(above), np.inf, above),
            )
            self._any_above = any_true(above < np.inf)
        return self._levels

    # -- hooks called by the loop -------------------------------------------------------------
    def on_fills(
        self,
        ctx_factory: Callable[[], RiskContext],
        opened: np.ndarray,
        prices: np.ndarray,
        closed: np.ndarray,
    ) -> None:
        """Positions `closed` lose their levels; positions `opened` at `prices` get new ones."""
        s = self.state
        if closed.shape[0]:
            self._forget(closed)
        if opened.shape[0] == 0:
            return
        oa = opened
        op = prices
        if any_true(self._levelled_mask[oa]):  # levels left over from an earlier position
            self._forget(oa)
        ctx = ctx_factory()
        s.armed_from[oa] = ctx.bar + 1
        s.high_water[oa] = op
        s.low_water[oa] = op
        decisions: list[RiskDecision] = []
        for k, rule in enumerate(self.rules):
            decisions += [_with_rule(d, k) for d in rule.on_entry(ctx, oa, op)]
        self._apply_levels(ctx, decisions)

    def _forget(self, assets: np.ndarray) -> None:
        """Clear the levels of `assets`; they leave the live set."""
        s = self.state
        where: np.ndarray | int = int(assets[0]) if assets.shape[0] == 1 else assets
        s.stop[where] = np.nan  # (one asset, e.g. a stop that fired: scalar writes are cheaper)
        s.stop_rule[where] = -1
        if self._any_take_profit:
            s.take_profit[where] = np.nan
            s.tp_rule[where] = -1
        self._levelled_mask[where] = False
        live = self._live
        if live is not None and live.shape[0]:  # keep the rest of the live set and its levels
            keep = self._levelled_mask[live]
            self._live = live[keep]
            if self._levels is not None:
                self._levels = (self._levels[0][keep], self._levels[1][keep])

    def exits(
        self, bar: int, qty: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray
    ) -> Triggered | None:
        """Gap-aware stop and take-profit triggers at this bar (stop wins if both fire)."""
        live = self._live if self._live is not None else self.live
        if live.shape[0] == 0:
            return None
        # cheap pre-filter, one comparison per side: most bars trigger nothing
        below, above = self._levels if self._levels is not None else self._trigger_levels(qty)
        near = low[live] <= below
        if self._any_above:  # a short's stop or a long's take-profit: the high can trigger
            near |= high[live] >= above
        if not np.count_nonzero(near):
            return None
        # the few candidates, one at a time: an exit needs a position entered before this bar
        s = self.state
        found: list[tuple[int, float, int, int]] = []  # (asset, price, reason, rule)
        for a in live[near].tolist():
            q = qty.item(a)
            if q == 0 or s.armed_from.item(a) > bar:
                continue
            op, h, lw = open_.item(a), high.item(a), low.item(a)
            stop, target = s.stop.item(a), s.take_profit.item(a)
            if q > 0 and lw <= stop:
                found.append((a, min(op, stop), s.stop_reason.item(a), s.stop_rule.item(a)))
            elif q < 0 and h >= stop:
                found.append((a, max(op, stop), s.stop_reason.item(a), s.stop_rule.item(a)))
            elif q > 0 and h >= target:
                found.append((a, max(op, target), s.tp_reason.item(a), s.tp_rule.item(a)))
            elif q < 0 and lw <= target:
                found.append((a, min(op, target), s.tp_reason.item(a), s.tp_rule.item(a)))
        if not found:
            return None
        asset, price, reason, rule = (list(c) for c in zip(*found, strict=True))
        return Triggered(asset=asset, price=price, reason=reason, rule=rule)

    def on_close(
        self,
        ctx_factory: Callable[[], RiskContext],
        qty: np.ndarray,
        has_bar: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Refresh water marks, collect stop updates and exits. Returns exit (assets, reasons, rules)."""
        empty = _NO_EXITS
        if not (self.tracks_excursions or self._closing):
            return empty
        s = self.state
        held = (qty != 0).nonzero()[0]
        if self.tracks_excursions:  # fmax/fmin skip the NaN of an asset without a bar
            s.high_water[held] = np.fmax(s.high_water[held], high[held])
            s.low_water[held] = np.fmin(s.low_water[held], low[held])
        if not self._closing:
            return empty
        ctx = ctx_factory()
        ctx._cache["held"] = held
        decisions: list[RiskDecision] = []
        for k, rule in self._closing:
            decisions += [_with_rule(d, k) for d in rule.on_close(ctx)]
        self._apply_levels(ctx, decisions)
        exits = [d for d in decisions if d.kind is DecisionKind.EXIT and d.index.shape[0]]
        if not exits:
            return empty
        exits.sort(key=lambda d: (-d.priority, d.rule))
        chosen: dict[int, tuple[int, int]] = {}
        for d in exits:
            for a in d.index.tolist():
                chosen.setdefault(a, (int(d.reason), d.rule))
        assets = np.array(sorted(chosen), dtype=np.int64)
        held_now = ctx.qty[assets] != 0
        assets = assets[held_now]
        reasons = np.array([chosen[a][0] for a in assets.tolist()], dtype=np.int8)
        rules = np.array([chosen[a][1] for a in assets.tolist()], dtype=np.int16)
        return assets, reasons, rules

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
        decisions: list[RiskDecision] = []
        for k, rule in self._validating:
            decisions += [_with_rule(d, k) for d in rule.validate(ctx, orders, opens)]
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

    # -- merging ----------------------------------------------------------------------------
    def _apply_levels(self, ctx: RiskContext, decisions: list[RiskDecision]) -> None:
        stops: list[RiskDecision] = []
        targets: list[RiskDecision] = []
        for d in decisions:
            if d.value is None or not d.index.shape[0]:
                continue
            if d.kind is _STOP_UPDATE:
                stops.append(d)
            elif d.kind is _TAKE_PROFIT_UPDATE:
                targets.append(d)
        s = self.state
        if stops:
            self._tighten(ctx, stops, s.stop, s.stop_reason, s.stop_rule, is_stop=True)
        if targets:
            self._tighten(ctx, targets, s.take_profit, s.tp_reason, s.tp_rule, is_stop=False)

    def _tighten(
        self,
        ctx: RiskContext,
        mine: list[RiskDecision],
        level: np.ndarray,
        reason: np.ndarray,
        rule: np.ndarray,
        *,
        is_stop: bool,
    ) -> None:
        """Merge the proposed stops (or take-profits) into `level`, which only ever tightens."""
        # merge on the touched assets only: highest priority first, then the tighter level
        why: np.ndarray | int
        who: np.ndarray | int
        if len(mine) == 1:  # one rule spoke: nothing to merge
            d = mine[0]
            touched, proposed = d.index, np.asarray(d.value, dtype=np.float64)
            why, who = int(d.reason), d.rule
            qty = ctx.qty[touched]
        else:
            touched, proposed, why, who, qty = self._merge(ctx, mine, is_stop)
        # a stop of a long moves up, its take-profit down; the other way round for a short
        current = level[touched]
        long = qty >= 0
        if all_true(long):
            tighter = np.fmax(current, proposed) if is_stop else np.fmin(current, proposed)
        else:
            up = long == is_stop
            tighter = np.where(up, np.fmax(current, proposed), np.fmin(current, proposed))
        update = (tighter != current) & ~np.isnan(tighter)
        if not any_true(update):
            return
        assets = touched[update]
        level[assets] = tighter[update]
        reason[assets] = why if isinstance(why, int) else why[update]
        rule[assets] = who if isinstance(who, int) else who[update]
        if not is_stop:
            self._any_take_profit = True
        if not all_true(self._levelled_mask[assets]):  # the live set grows
            self._levelled_mask[assets] = True
            self._live = None
        elif self._levels is not None and self._live is not None:
            self._move_trigger_levels(assets, tighter[update], qty[update], is_stop)

    def _move_trigger_levels(
        self, assets: np.ndarray, level: np.ndarray, qty: np.ndarray, is_stop: bool
    ) -> None:
        """New levels of live assets, written into the cached trigger levels in place."""
        assert self._levels is not None
        assert self._live is not None
        below, above = self._levels
        at = np.searchsorted(self._live, assets)
        long = qty >= 0
        if all_true(long):  # a long's stop triggers from below, its take-profit from above
            (below if is_stop else above)[at] = level
            self._any_above |= not is_stop
            return
        lower = long if is_stop else ~long
        below[at[lower]] = level[lower]
        above[at[~lower]] = level[~lower]
        self._any_above = True

    @staticmethod
    def _merge(
        ctx: RiskContext, mine: list[RiskDecision], is_stop: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per touched asset: the highest-priority proposal, ties going to the tighter level."""
        touched = np.unique(np.concatenate([d.index for d in mine]))
        m = touched.shape[0]
        proposed = np.full(m, np.nan)
        priority = np.full(m, np.iinfo(np.int64).min)
        why = np.zeros(m, dtype=np.int8)
        who = np.full(m, -1, dtype=np.int16)
        qty = ctx.qty[touched]
        for d in sorted(mine, key=lambda d: (-d.priority, d.rule)):
            k = np.searchsorted(touched, d.index)
            value = np.asarray(d.value, dtype=np.float64)
            better = d.priority > priority[k]
            same = d.priority == priority[k]
            take = ~np.isnan(value) & (
                better | (same & _tighter(qty[k], value, proposed[k], is_stop))
            )
            proposed[k] = np.where(take, value, proposed[k])
            priority[k] = np.where(take, d.priority, priority[k])
            why[k] = np.where(take, int(d.reason), why[k])
            who[k] = np.where(take, d.rule, who[k])
        return touched, proposed, why, who, qty


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


def _reject_code(reason: ExitReason | RejectReason) -> int:
    if isinstance(reason, RejectReason):
        return _REJECT_CODES[reason]
    return _REJECT_CODES[RejectReason.INVALID_ORDER]
