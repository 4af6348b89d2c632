"""`ProtectiveLevels`: the stop and take-profit levels of open positions, and what they trigger.

It is the only writer of the level columns of `RiskState` (stop and take-profit, their reasons
and rules, `armed_from`); levels only ever tighten, and a closed position loses them. From the
levels it derives what `triggered` reads at every bar: the live assets (those with a level,
ascending) and, per live asset, the level that a low at or below triggers and the level that a
high at or above triggers. These derived arrays follow the levels in one place, `_follow`, so
that a bar without a hit costs one comparison per side on the live assets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml4t_pipeline.engine.risk.context import all_true, any_true
from ml4t_pipeline.engine.risk.state import RiskState


@dataclass(slots=True)
class Triggered:
    """Protective exits triggered inside a bar, to be filled by the broker at `price`."""

    asset: list[int]
    price: list[float]
    reason: list[int]  # OrderReason codes
    rule: list[int]  # index of the rule that set the level


class _TriggerArrays:
    """Derived from the levels (`ProtectiveLevels._follow` keeps them in step)."""

    __slots__ = ("above", "any_above", "below", "live")

    def __init__(
        self, live: np.ndarray, below: np.ndarray, above: np.ndarray, any_above: bool
    ) -> None:
        self.live = live  # assets with a stop or a take-profit, ascending
        self.below = below  # per live asset: a low at or below it triggers (-inf: none)
        self.above = above  # per live asset: a high at or above it triggers (+inf: none)
        self.any_above = any_above  # False when every `above` is +inf: the highs are not read


class ProtectiveLevels:
    """The stop and take-profit levels per asset (columns of `RiskState`) and their triggers."""

    __slots__ = ("_levelled", "_state", "_take_profits", "_triggers")

    def __init__(self, state: RiskState) -> None:
        self._state = state
        has_take_profit = ~np.isnan(state.take_profit)
        self._levelled = ~np.isnan(state.stop) | has_take_profit  # assets with a level
        # no take-profit was ever set: their columns are neither cleared nor read
        self._take_profits = any_true(has_take_profit)
        self._triggers: _TriggerArrays | None = None  # built when `triggered` next reads them

    def open(self, assets: np.ndarray, *, armed_from: int) -> None:
        """Positions `assets` just opened: levels left over from an earlier position go, and
        the levels they get may trigger from bar `armed_from` on."""
        if any_true(self._levelled[assets]):
            self.clear(assets)
        self._state.armed_from[assets] = armed_from

    def clear(self, assets: np.ndarray) -> None:
        """Positions `assets` closed: they lose their levels."""
        s = self._state
        where: np.ndarray | int = int(assets[0]) if assets.shape[0] == 1 else assets
        s.stop[where] = np.nan  # (one asset, e.g. a stop that fired: scalar writes are cheaper)
        s.stop_rule[where] = -1
        if self._take_profits:
            s.take_profit[where] = np.nan
            s.tp_rule[where] = -1
        self._follow(where, None)

    def split(self, a: int, ratio: float, *, long: bool) -> None:
        """A split of `a` (`ratio` new shares per old one; `long`: the position's side): its
        levels are prices of the new shares (level / ratio)."""
        if not self._levelled.item(a):
            return
        s = self._state
        s.stop[a] = s.stop.item(a) / ratio
        s.take_profit[a] = s.take_profit.item(a) / ratio  # (NaN: none, stays NaN)
        self._follow(np.array([a], dtype=np.int64), np.array([long]))

    def tighten(
        self,
        assets: np.ndarray,
        proposed: np.ndarray,
        reason: np.ndarray | int,
        rule: np.ndarray | int,
        qty: np.ndarray,
        *,
        is_stop: bool,
    ) -> None:
        """Set the stops (or take-profits) of `assets` to `proposed` where that is tighter.

        A long's stop only moves up and its take-profit down, the other way round for a short;
        NaN proposals are ignored. `reason` and `rule` (per asset, or one for all) are recorded
        where the level moves; `qty` is every asset's position.
        """
        s = self._state
        level = s.stop if is_stop else s.take_profit
        current = level[assets]
        long = qty[assets] >= 0
        if all_true(long):
            tighter = np.fmax(current, proposed) if is_stop else np.fmin(current, proposed)
        else:
            up = long == is_stop
            tighter = np.where(up, np.fmax(current, proposed), np.fmin(current, proposed))
        update = (tighter != current) & ~np.isnan(tighter)
        if not any_true(update):
            return
        moved = assets[update]
        level[moved] = tighter[update]
        reasons, rules = (s.stop_reason, s.stop_rule) if is_stop else (s.tp_reason, s.tp_rule)
        reasons[moved] = reason if isinstance(reason, int) else reason[update]
        rules[moved] = rule if isinstance(rule, int) else rule[update]
        if not is_stop:
            self._take_profits = True
        self._follow(moved, long[update])

    def triggered(
        self, bar: int, qty: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray
    ) -> Triggered | None:
        """Gap-aware stop and take-profit exits at this bar (the stop wins if both trigger).

        A level triggers on a bar after its position's entry bar: a long's stop when the low
        reaches it, at min(open, stop); a short's stop when the high does, at max(open, stop);
        take-profits the other way round.
        """
        t = self._triggers if self._triggers is not None else self._build(qty)
        live = t.live
        if live.shape[0] == 0:
            return None
        # cheap pre-filter, one comparison per side: most bars trigger nothing
        near = low[live] <= t.below
        if t.any_above:  # a short's stop or a long's take-profit: the high can trigger
            near |= high[live] >= t.above
        if not np.count_nonzero(near):
            return None
        # the few candidates, one at a time: an exit needs a position entered before this bar
        s = self._state
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

    # -- the derived trigger arrays ---------------------------------------------------------
    def _follow(self, assets: np.ndarray | int, long: np.ndarray | None) -> None:
        """The one place the derived arrays follow a change of the levels of `assets`: they
        tightened (`long`: per asset, whether its position is long) or were cleared (None).

        Where the live set stays, the trigger levels move in place; where assets leave it, they
        are dropped; where it grows, it is rebuilt when `triggered` next reads it.
        """
        t = self._triggers
        if long is None:  # they leave the live set
            self._levelled[assets] = False
            if t is not None and t.live.shape[0]:
                keep = self._levelled[t.live]
                t.live, t.below, t.above = t.live[keep], t.below[keep], t.above[keep]
        elif t is not None and all_true(self._levelled[assets]):  # the live set stays
            at = np.searchsorted(t.live, assets)
            below, above = self._trigger_levels(assets, long)
            t.below[at] = below
            if above is not None:
                t.above[at] = above
                t.any_above |= any_true(above < np.inf)
        else:  # the live set grows
            self._levelled[assets] = True
            self._triggers = None

    def _build(self, qty: np.ndarray) -> _TriggerArrays:
        """The derived arrays from the levels (`qty`: every asset's position)."""
        live = self._levelled.nonzero()[0]
        below, above = self._trigger_levels(live, qty[live] >= 0)
        if above is None:
            self._triggers = _TriggerArrays(live, below, np.full(live.shape[0], np.inf), False)
        else:
            self._triggers = _TriggerArrays(live, below, above, any_true(above < np.inf))
        return self._triggers

    def _trigger_levels(
        self, assets: np.ndarray | int, long: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per asset with a level (`long`: its position is long): the level a low at or below
        triggers (a long's stop, a short's take-profit) and the level a high at or above
        triggers (a short's stop, a long's take-profit), -inf / +inf where there is none.

        The second is None when none of them can trigger from above (longs without a
        take-profit: their entries are +inf and stay so while they are live).
        """
        s = self._state
        if not self._take_profits and all_true(long):  # stops of longs: the common case
            return s.stop[assets], None
        stop, target = s.stop[assets], s.take_profit[assets]
        below = np.where(long, stop, target)
        above = np.where(long, target, stop)
        return np.where(np.isnan(below), -np.inf, below), np.where(np.isnan(above), np.inf, above)
