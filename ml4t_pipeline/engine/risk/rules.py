"""The built-in risk rules: each a small dataclass deciding over whole cross-sections.

A rule overrides one or more hooks of `BaseRule` (`on_entry`, `on_close`, `validate`) and returns
`RiskDecision`s; `RiskManager` (`manager.py`) merges them. A rule that remembers values from bar
to bar hands them to a chained run with `get_state` / `set_state`. A user's rule is written the
same way.

A built-in rule checks its parameters on construction (`PARAMS`, see `engine.params`): a
wrong type, a value out of range or a non-finite number is a `ConfigError` naming the
parameter (`StopLoss.pct`, or `risk[1].pct` when the rule comes from a config).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ml4t_pipeline.engine.enums import OrderReason, RejectReason
from ml4t_pipeline.engine.execution.orders import Orders
from ml4t_pipeline.engine.params import (
    ANY_NUMBER,
    COUNT,
    FLAG,
    FRACTION,
    NAME,
    NON_NEGATIVE,
    NON_NEGATIVE_COUNT,
    POSITIVE,
    WHOLE,
    Check,
    Checked,
    Number,
    Pairs,
)
from ml4t_pipeline.engine.risk.context import (
    BaseRule,
    DecisionKind,
    RiskContext,
    RiskDecision,
    all_true,
    any_true,
)
from ml4t_pipeline.engine.sums import dot
from ml4t_pipeline.errors import ConfigError

_COMMON: Mapping[str, Check] = {"name": NAME, "priority": WHOLE}


class CheckedRule(Checked, BaseRule):
    """A built-in rule: `PARAMS` and the common `name` and `priority` are checked."""

    @classmethod
    def spec(cls) -> Mapping[str, Check]:
        return {**cls.PARAMS, **_COMMON}


def _scaled_level(ctx: RiskContext, assets: np.ndarray, base: np.ndarray, pct: float) -> np.ndarray:
    """base * (1 - pct) for longs, base * (1 + pct) for shorts."""
    return np.where(ctx.qty[assets] > 0, base * (1.0 - pct), base * (1.0 + pct))


def _signed_level(
    ctx: RiskContext, assets: np.ndarray, base: np.ndarray, distance: np.ndarray
) -> np.ndarray:
    """base - distance for longs, base + distance for shorts."""
    return np.where(ctx.qty[assets] > 0, base - distance, base + distance)


@dataclass(slots=True, kw_only=True)
class StopLoss(CheckedRule):
    """Fixed stop `pct` below (above, for shorts) the entry fill price, or at an absolute price."""

    uses_excursions = False
    PARAMS: ClassVar[Mapping[str, Check]] = {
        "pct": dataclasses.replace(FRACTION, optional=True),
        "price": dataclasses.replace(POSITIVE, optional=True),
    }

    pct: float | None = None
    price: float | None = None
    name: str = "stop_loss"
    priority: int = 0

    @classmethod
    def check_together(cls, where: str, values: Mapping[str, Any]) -> None:
        if (values["pct"] is None) == (values["price"] is None):
            msg = f"{where}: give exactly one of pct (a fraction: 0.05 for 5 %) or price"
            raise ConfigError(msg)

    def on_entry(
        self, ctx: RiskContext, assets: np.ndarray, fill_price: np.ndarray
    ) -> list[RiskDecision]:
        if self.price is not None:
            level = np.full(assets.shape[0], float(self.price))
        else:
            level = _scaled_level(ctx, assets, fill_price, float(self.pct or 0.0))  # pct is set
        return [self.decide(DecisionKind.STOP_UPDATE, assets, OrderReason.STOP_LOSS, level)]


@dataclass(slots=True, kw_only=True)
class TakeProfit(CheckedRule):
    """Take profit `pct` above (below, for shorts) the entry fill price."""

    uses_excursions = False
    PARAMS: ClassVar[Mapping[str, Check]] = {"pct": FRACTION}
    pct: float
    name: str = "take_profit"
    priority: int = 0

    def on_entry(
        self, ctx: RiskContext, assets: np.ndarray, fill_price: np.ndarray
    ) -> list[RiskDecision]:
        level = _scaled_level(ctx, assets, fill_price, -self.pct)
        return [
            self.decide(DecisionKind.TAKE_PROFIT_UPDATE, assets, OrderReason.TAKE_PROFIT, level)
        ]


@dataclass(slots=True, kw_only=True)
class VolatilityStop(CheckedRule):
    """Stop `atr_multiplier` x the named feature (e.g. ATR) away from the entry price.

    The feature is read at the close before the fill (what was known when the entry was
    decided), so the rule keeps the feature's values of the last close; they are its state
    in a chained run. A position whose feature is unknown gets no volatility stop and a
    rejection never happens here; use `require_feature` to reject entries that lack it (a rule
    that cannot decide rejects).
    """

    uses_excursions = False
    PARAMS: ClassVar[Mapping[str, Check]] = {
        "atr_multiplier": POSITIVE,
        "feature": NAME,
        "require_feature": FLAG,
    }

    atr_multiplier: float = 2.0
    feature: str = "atr"
    require_feature: bool = False
    name: str = "volatility_stop"
    priority: int = 0
    _feature_at_last_close: np.ndarray | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def required_signals(self) -> Sequence[str]:
        return (self.feature,)

    def on_close(self, ctx: RiskContext) -> list[RiskDecision]:
        values = ctx.features.get(self.feature)
        if values is not None:
            self._feature_at_last_close = np.array(values, dtype=np.float64)
        return []

    def on_entry(
        self, ctx: RiskContext, assets: np.ndarray, fill_price: np.ndarray
    ) -> list[RiskDecision]:
        if self._feature_at_last_close is None:
            return []
        atr = self._feature_at_last_close[assets]
        known = ~np.isnan(atr)
        level = _signed_level(
            ctx, assets[known], fill_price[known], self.atr_multiplier * atr[known]
        )
        return [
            self.decide(DecisionKind.STOP_UPDATE, assets[known], OrderReason.VOLATILITY_STOP, level)
        ]

    def validate(self, ctx: RiskContext, orders: Orders, opens: np.ndarray) -> list[RiskDecision]:
        if not self.require_feature:
            return []
        values = ctx.features.get(self.feature)
        missing = opens & (np.isnan(values[orders.asset]) if values is not None else True)
        return [
            self.decide(DecisionKind.REJECT, np.flatnonzero(missing), RejectReason.RISK_UNDECIDABLE)
        ]

    def get_state(self) -> np.ndarray | None:
        """The feature's values at the last close (None before the first close)."""
        last = self._feature_at_last_close
        return None if last is None else last.copy()

    def set_state(self, values: np.ndarray) -> None:
        self._feature_at_last_close = np.array(values, dtype=np.float64)


@dataclass(slots=True, kw_only=True)
class TrailingStop(CheckedRule):
    """Stop trailing the best price since entry by `pct`; it only tightens.

    `schedule` optionally tightens the trail with profit: ((mfe_threshold, pct), ...), e.g.
    ((0.10, 0.03),) trails by 3 % once the position has been 10 % in profit. A step's pct must
    be tighter than `pct` (a looser one would never apply).
    """

    PARAMS: ClassVar[Mapping[str, Check]] = {
        "pct": FRACTION,
        "schedule": Pairs(("mfe_threshold", NON_NEGATIVE), ("pct", FRACTION)),
    }

    pct: float = 0.05
    schedule: tuple[tuple[float, float], ...] = ()
    name: str = "trailing_stop"
    priority: int = 0

    @classmethod
    def check_together(cls, where: str, values: Mapping[str, Any]) -> None:
        pct = values["pct"]
        for i, (_, tighter) in enumerate(values["schedule"]):
            if not tighter < pct:
                msg = (
                    f"{where}.schedule[{i}][1] (pct) must be tighter than {where}.pct = {pct!r} "
                    f"(a schedule only tightens the trail), got {tighter!r}"
                )
                raise ConfigError(msg)

    def on_close(self, ctx: RiskContext) -> list[RiskDecision]:
        held = ctx.held
        if held.shape[0] == 0:
            return []
        pct: np.ndarray | float = self.pct
        if self.schedule:
            mfe = ctx.mfe[held]
            pct = np.full(held.shape[0], self.pct)
            for threshold, tighter in sorted(self.schedule):
                pct = np.where(mfe >= threshold, np.minimum(pct, tighter), pct)
        long = ctx.qty[held] > 0
        if all_true(long):
            level = ctx.high_water[held] * (1.0 - pct)
        else:
            level = np.where(
                long, ctx.high_water[held] * (1.0 - pct), ctx.low_water[held] * (1.0 + pct)
            )
        return [self.decide(DecisionKind.STOP_UPDATE, held, OrderReason.TRAILING_STOP, level)]


@dataclass(slots=True, kw_only=True)
class TimeExit(CheckedRule):
    """Exit at the next fill once a position has been held `max_bars` bars."""

    uses_excursions = False
    PARAMS: ClassVar[Mapping[str, Check]] = {"max_bars": COUNT}

    max_bars: int
    name: str = "time_exit"
    priority: int = 0

    def on_close(self, ctx: RiskContext) -> list[RiskDecision]:
        held = ctx.held
        due = held[ctx.bar - ctx.entry_bar[held] >= self.max_bars]
        return [self.decide(DecisionKind.EXIT, due, OrderReason.TIME_EXIT)]


@dataclass(slots=True, kw_only=True)
class RegimeRule(CheckedRule):
    """Switch behaviour by a market-wide value (e.g. VIX): block entries and/or exit all.

    Above `threshold`: entries are rejected when `block_entries`, and every position exits when
    `exit_all`. A missing context value means the rule cannot decide, so entries are rejected.
    """

    uses_excursions = False
    PARAMS: ClassVar[Mapping[str, Check]] = {
        "feature": NAME,
        "threshold": ANY_NUMBER,
        "block_entries": FLAG,
        "exit_all": FLAG,
    }

    feature: str = "vix"
    threshold: float = 30.0
    block_entries: bool = True
    exit_all: bool = False
    name: str = "regime"
    priority: int = 0

    def required_context(self) -> Sequence[str]:
        return (self.feature,)

    def _value(self, ctx: RiskContext) -> float:
        return float(ctx.market.get(self.feature, np.nan))

    def on_close(self, ctx: RiskContext) -> list[RiskDecision]:
        value = self._value(ctx)
        if self.exit_all and value > self.threshold:
            return [self.decide(DecisionKind.EXIT, ctx.held, OrderReason.REGIME_EXIT)]
        return []

    def validate(self, ctx: RiskContext, orders: Orders, opens: np.ndarray) -> list[RiskDecision]:
        value = self._value(ctx)
        if np.isnan(value):
            return self.reject_entries(opens, RejectReason.RISK_UNDECIDABLE)
        if self.block_entries and value > self.threshold:
            return self.reject_entries(opens, RejectReason.RISK_REGIME_BLOCK)
        return []


@dataclass(slots=True, kw_only=True)
class MaxPositions(CheckedRule):
    """At most `n` positions: orders opening a new one beyond it are rejected, in order.

    A slot is taken by every open position until its exit has filled (an exit decided at this
    close, or still working, frees nothing yet: it may not fill) and by every flat asset with
    a working entry order. A new asset takes one slot, however many of this bar's orders open
    it; they are admitted or rejected together.
    """

    uses_excursions = False
    PARAMS: ClassVar[Mapping[str, Check]] = {"n": NON_NEGATIVE_COUNT}  # 0 admits no new position

    n: int
    name: str = "max_positions"
    priority: int = 0

    def validate(self, ctx: RiskContext, orders: Orders, opens: np.ndarray) -> list[RiskDecision]:
        taken = ctx.qty != 0
        working = ctx.working_entries  # flat assets, so no slot counted twice
        if working.shape[0]:
            taken[working] = True
        new = opens & ~taken[orders.asset]  # orders opening a position in a free asset
        if not any_true(new):
            return []
        rows = np.flatnonzero(new)
        assets, first, slot = np.unique(orders.asset[rows], return_index=True, return_inverse=True)
        rank = np.empty(assets.shape[0], dtype=np.int64)  # 1 + the new assets before, in order
        rank[np.argsort(first)] = np.arange(1, assets.shape[0] + 1)
        room = self.n - int(np.count_nonzero(taken))
        reject = rows[rank[slot] > room]
        return [self.decide(DecisionKind.REJECT, reject, RejectReason.RISK_MAX_POSITIONS)]


@dataclass(slots=True, kw_only=True)
class MaxGrossExposure(CheckedRule):
    """Gross exposure (sum |qty| * close) after the orders stays <= `max_ratio` x equity.

    Orders that reduce a position free room first (sells fill before buys); entries are then
    taken in order; the first that would cross the limit is resized down to fit (whole shares),
    the rest are rejected.
    """

    uses_excursions = False
    PARAMS: ClassVar[Mapping[str, Check]] = {
        "max_ratio": Number(low=0, low_open=True, meaning="a multiple of equity: 1.0 for 100 %")
    }

    max_ratio: float = 1.0
    name: str = "max_gross_exposure"
    priority: int = 0

    def validate(self, ctx: RiskContext, orders: Orders, opens: np.ndarray) -> list[RiskDecision]:
        price = ctx.close[orders.asset]
        held = ctx.qty[orders.asset]
        after = held + orders.qty
        flips = (held != 0) & (np.sign(after) == -np.sign(held))
        # exposure an order frees (the reducing part) and adds (the opening part)
        freed = np.minimum(np.abs(orders.qty), np.abs(held)) * (
            np.sign(orders.qty) != np.sign(held)
        )
        added = np.abs(orders.qty) - freed
        add = np.where(opens, added * price, 0.0)
        gross = dot(np.abs(ctx.qty), np.nan_to_num(ctx.close)) - float(np.nansum(freed * price))
        room = self.max_ratio * ctx.equity - gross
        cum = np.cumsum(add)
        over = opens & (cum > room)
        if not any_true(over):
            return []
        first = int(np.flatnonzero(over)[0])
        left = room - (cum[first] - add[first])
        fit = int(np.floor(max(left, 0.0) / price[first])) if price[first] > 0 else 0
        decisions = []
        rest = np.flatnonzero(over)[1:] if fit > 0 else np.flatnonzero(over)
        if fit > 0:
            decisions.append(
                self.decide(
                    DecisionKind.RESIZE,
                    np.array([first]),
                    RejectReason.RISK_GROSS_EXPOSURE,
                    np.array(
                        [np.sign(orders.qty[first]) * (fit + freed[first] * flips[first])],
                        dtype=np.float64,
                    ),
                )
            )
        decisions.append(self.decide(DecisionKind.REJECT, rest, RejectReason.RISK_GROSS_EXPOSURE))
        return decisions


@dataclass(slots=True, kw_only=True)
class MaxDrawdownHalt(CheckedRule):
    """Once equity is `max_drawdown` below its peak, reject entries (and optionally flatten)."""

    uses_excursions = False
    PARAMS: ClassVar[Mapping[str, Check]] = {"max_drawdown": FRACTION, "flatten": FLAG}

    max_drawdown: float = 0.2
    flatten: bool = False
    name: str = "max_drawdown_halt"
    priority: int = 0

    def _halted(self, ctx: RiskContext) -> bool:
        return ctx.equity <= ctx.peak_equity * (1.0 - self.max_drawdown)

    def on_close(self, ctx: RiskContext) -> list[RiskDecision]:
        if self.flatten and self._halted(ctx):
            return [self.decide(DecisionKind.EXIT, ctx.held, OrderReason.RISK_HALT)]
        return []

    def validate(self, ctx: RiskContext, orders: Orders, opens: np.ndarray) -> list[RiskDecision]:
        if self._halted(ctx):
            return self.reject_entries(opens, RejectReason.RISK_DRAWDOWN_HALT)
        return []


@dataclass(slots=True, kw_only=True)
class DailyLossLimit(CheckedRule):
    """Reject entries for the rest of a UTC date once equity fell `max_loss` since it began.

    The loss is measured at each close from the equity at the close of the previous date's
    last bar (`RiskContext.day_start_equity`); once a close of the date reaches it, entries are
    rejected at every later bar of that date even if equity recovers (the date's lowest close,
    `day_low_equity`, stays at or below the limit), and admitted again from the next date on.
    With one bar a date this is the loss since the previous bar's close. Unknown equity
    rejects (`risk_undecidable`).
    """

    uses_excursions = False
    uses_day_marks = True
    PARAMS: ClassVar[Mapping[str, Check]] = {"max_loss": FRACTION}

    max_loss: float = 0.03
    name: str = "daily_loss_limit"
    priority: int = 0

    def validate(self, ctx: RiskContext, orders: Orders, opens: np.ndarray) -> list[RiskDecision]:
        if not any_true(opens):
            return []
        limit = ctx.day_start_equity * (1.0 - self.max_loss)
        equity, low = ctx.equity, ctx.day_low_equity
        if math.isnan(limit) or math.isnan(equity) or math.isnan(low):
            return self.reject_entries(opens, RejectReason.RISK_UNDECIDABLE)
        if min(equity, low) <= limit:
            return self.reject_entries(opens, RejectReason.RISK_DAILY_LOSS)
        return []


RULES: dict[str, type[CheckedRule]] = {
    "stop_loss": StopLoss,
    "take_profit": TakeProfit,
    "volatility_stop": VolatilityStop,
    "trailing_stop": TrailingStop,
    "time_exit": TimeExit,
    "regime": RegimeRule,
    "max_positions": MaxPositions,
    "max_gross_exposure": MaxGrossExposure,
    "max_drawdown_halt": MaxDrawdownHalt,
    "daily_loss_limit": DailyLossLimit,
}
