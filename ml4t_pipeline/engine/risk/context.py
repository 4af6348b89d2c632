"""What a risk rule sees and says: RiskContext, RiskDecision, the RiskRule protocol, BaseRule.

Rules work on whole cross-sections (arrays over assets) so that a rule costs a few numpy
operations per bar, not a Python call per position. A rule never writes engine state: every
array it receives is read-only, and what it wants done it returns as `RiskDecision`s, data that
`RiskManager` (`manager.py`) merges deterministically: higher priority first, and among equal
priorities the tighter (more protective) level wins. Stops only ever tighten. The built-in
rules are in `rules.py`.

The engine calls four hooks of the manager, never a rule:
- `on_fills`   after every fill batch: position state (entry bar, water marks) and entry stops;
- `exits`      at each bar after the open fills: gap-aware stop / take-profit triggers;
- `on_close`   at each close: stop updates and exit decisions (trailing, time, regime);
- `validate`   on every order before it reaches the broker: reject or resize.
A rule that carries values into a chained run (`get_state` / `set_state`) is given them back
before the next run's first bar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from ml4t_pipeline.engine.enums import OrderReason, RejectReason
from ml4t_pipeline.engine.execution.orders import Orders

_NO_ASSETS = np.empty(0, np.int64)


class DecisionKind(StrEnum):
    EXIT = "exit"
    STOP_UPDATE = "stop_update"
    TAKE_PROFIT_UPDATE = "take_profit_update"
    REJECT = "reject"
    RESIZE = "resize"


@dataclass(slots=True, kw_only=True)
class RiskDecision:
    """One rule's decision for a set of assets (or, for REJECT/RESIZE, a set of orders)."""

    kind: DecisionKind
    index: np.ndarray  # asset indices (EXIT/STOP/TP) or order row numbers (REJECT/RESIZE)
    value: np.ndarray | None = None  # stop / take-profit level, or the resized signed qty
    reason: OrderReason | RejectReason = OrderReason.STOP_LOSS
    priority: int = 0
    rule: int = -1  # filled in by the manager


class RiskContext:
    """What rules see at one bar, over every asset; derived values are computed lazily, once.

    Every array is read-only: the engine hands in read-only views of its ledger, bars and
    water marks, and the derived arrays (`held`, `mfe`, ...) are shared by the rules of a bar.
    `equity` (and `peak_equity`, which depends on it) is either given or, with `valuation`,
    computed on first read: most rules never read it, and marking every position to market
    is the dearest part of a context.

    `prev_close_equity` is the equity at the previous bar's close; `day_start_equity` the
    equity at the close of the last bar of the previous UTC date (the run's start equity on
    its first date) and `day_low_equity` the lowest equity recorded at a close earlier on this
    bar's UTC date (inf on the date's first bar). The engine tracks the day's two only when a
    rule of the run declares `uses_day_marks`; otherwise they are NaN (unknown).
    """

    __slots__ = (
        "_cache",
        "_equity",
        "_held",
        "_peak_before",
        "_peak_equity",
        "_valuation",
        "avg_price",
        "bar",
        "close",
        "day_low_equity",
        "day_start_equity",
        "entry_bar",
        "features",
        "has_bar",
        "high",
        "high_water",
        "low",
        "low_water",
        "market",
        "open",
        "prev_close_equity",
        "qty",
        "working_entries",
    )

    def __init__(
        self,
        *,
        bar: int,
        qty: np.ndarray,  # int64 (N,) read-only view of the ledger
        avg_price: np.ndarray,
        entry_bar: np.ndarray,
        open: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,  # last known close (forward filled)
        has_bar: np.ndarray,
        features: Mapping[str, np.ndarray],  # per-asset feature values at this bar
        market: Mapping[str, float],  # market-wide context at this bar
        prev_close_equity: float,
        high_water: np.ndarray,
        low_water: np.ndarray,
        equity: float | None = None,
        peak_equity: float | None = None,
        valuation: Callable[[], float] | None = None,  # computes `equity` when not given
        peak_before: float = -math.inf,  # peak equity before this bar (with `valuation`)
        working_entries: np.ndarray | None = None,
        day_start_equity: float = math.nan,
        day_low_equity: float = math.nan,
    ) -> None:
        if equity is None and valuation is None:
            msg = "RiskContext needs equity or a valuation"
            raise ValueError(msg)
        self.bar = bar
        self.qty = qty
        self.avg_price = avg_price
        self.entry_bar = entry_bar
        self.open = open
        self.high = high
        self.low = low
        self.close = close
        self.has_bar = has_bar
        self.features = features
        self.market = market
        self.prev_close_equity = prev_close_equity
        self.day_start_equity = day_start_equity
        self.day_low_equity = day_low_equity
        self.high_water = high_water
        self.low_water = low_water
        self.working_entries = working_entries if working_entries is not None else _NO_ASSETS
        self._equity = equity
        self._peak_equity = peak_equity
        self._valuation = valuation
        self._peak_before = peak_before
        self._cache: dict[str, np.ndarray] = {}
        self._held: np.ndarray | None = None  # (read by the manager and most rules: a slot)

    @property
    def equity(self) -> float:
        if self._equity is None:
            assert self._valuation is not None
            self._equity = self._valuation()
        return self._equity

    @property
    def peak_equity(self) -> float:
        if self._peak_equity is None:
            self._peak_equity = max(self._peak_before, self.equity)
        return self._peak_equity

    def _cached(self, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        value = self._cache.get(key)
        if value is None:
            value = compute()
            value.setflags(write=False)  # every rule of the bar reads the same array
            self._cache[key] = value
        return value

    @property
    def held(self) -> np.ndarray:
        """Indices of the assets with an open position, ascending."""
        held = self._held
        if held is None:
            held = self._held = (self.qty != 0).nonzero()[0]
            held.setflags(write=False)
        return held

    @property
    def long(self) -> np.ndarray:
        return self._cached("long", lambda: self.qty > 0)

    @property
    def short(self) -> np.ndarray:
        return self._cached("short", lambda: self.qty < 0)

    @property
    def bars_held(self) -> np.ndarray:
        return self._cached(
            "bars_held", lambda: np.where(self.qty != 0, self.bar - self.entry_bar, 0)
        )

    @property
    def unrealized_pnl_pct(self) -> np.ndarray:
        def compute() -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                pct = np.sign(self.qty) * (self.close / self.avg_price - 1.0)
            return np.where(self.qty != 0, pct, np.nan)

        return self._cached("unrealized_pnl_pct", compute)

    @property
    def mfe(self) -> np.ndarray:
        """Maximum favourable excursion since entry, as a fraction of the entry price."""

        def compute() -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                up = np.where(
                    self.long,
                    self.high_water / self.avg_price - 1.0,
                    1.0 - self.low_water / self.avg_price,
                )
            return np.where(self.qty != 0, up, np.nan)

        return self._cached("mfe", compute)

    @property
    def mae(self) -> np.ndarray:
        """Maximum adverse excursion since entry (a negative fraction, or 0)."""

        def compute() -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                down = np.where(
                    self.long,
                    self.low_water / self.avg_price - 1.0,
                    1.0 - self.high_water / self.avg_price,
                )
            return np.where(self.qty != 0, down, np.nan)

        return self._cached("mae", compute)


class RiskRule(Protocol):
    """A risk rule. Every hook has a do-nothing default in `BaseRule`.

    The arrays a hook receives are read-only; a rule that needs to change one works on a copy.
    """

    name: str
    priority: int

    def on_entry(
        self, ctx: RiskContext, assets: np.ndarray, fill_price: np.ndarray
    ) -> list[RiskDecision]:
        """Positions just opened at `fill_price`: set their initial stops / targets."""
        ...

    def on_close(self, ctx: RiskContext) -> list[RiskDecision]:
        """At the close of each bar: stop updates and exits for open positions."""
        ...

    def validate(self, ctx: RiskContext, orders: Orders, opens: np.ndarray) -> list[RiskDecision]:
        """New orders (`opens` marks those opening or increasing a position): reject or resize."""
        ...

    def required_signals(self) -> Sequence[str]:
        """Per-asset signal columns the rule reads through `RiskContext.features` (the engine
        loads them with the strategy's)."""
        ...

    def required_context(self) -> Sequence[str]:
        """Market-wide context columns the rule reads through `RiskContext.market`."""
        ...

    def get_state(self) -> np.ndarray | None:
        """What the rule carries into a chained run: float64 values aligned with the run's
        assets, or None when it keeps no state. The engine saves them by asset id."""
        ...

    def set_state(self, values: np.ndarray) -> None:
        """The values an earlier run's `get_state` saved, aligned with this run's assets (NaN
        for the assets the earlier run did not have); called before the first bar."""
        ...


class BaseRule:
    name = "rule"
    priority = 0
    uses_excursions = True  # reads high/low water marks (MFE/MAE); built-ins that don't say so
    uses_day_marks = False  # reads `day_start_equity` / `day_low_equity` of the context

    def decide(
        self,
        kind: DecisionKind,
        index: np.ndarray,
        reason: OrderReason | RejectReason,
        value: np.ndarray | None = None,
    ) -> RiskDecision:
        """A decision of this rule, at this rule's priority."""
        return RiskDecision(
            kind=kind, index=index, value=value, reason=reason, priority=self.priority
        )

    def reject_entries(self, opens: np.ndarray, reason: RejectReason) -> list[RiskDecision]:
        """Reject every order marked in `opens` (those opening or adding to a position)."""
        return [self.decide(DecisionKind.REJECT, np.flatnonzero(opens), reason)]

    def on_entry(
        self, ctx: RiskContext, assets: np.ndarray, fill_price: np.ndarray
    ) -> list[RiskDecision]:
        return []

    def on_close(self, ctx: RiskContext) -> list[RiskDecision]:
        return []

    def validate(self, ctx: RiskContext, orders: Orders, opens: np.ndarray) -> list[RiskDecision]:
        return []

    def required_signals(self) -> Sequence[str]:
        return ()

    def required_context(self) -> Sequence[str]:
        return ()

    def get_state(self) -> np.ndarray | None:
        return None

    def set_state(self, values: np.ndarray) -> None:
        return None


def any_true(mask: np.ndarray) -> bool:
    """`mask.any()` for a 1-D bool array, in a third of the time on small arrays (no Python
    reduction wrapper): the risk hooks test a few masks per bar."""
    return bool(np.count_nonzero(mask))


def all_true(mask: np.ndarray) -> bool:
    """`mask.all()` for a 1-D bool array (see `any_true`)."""
    return np.count_nonzero(mask) == mask.shape[0]


REJECT_BY_CODE = list(RejectReason)  # rejection reason codes of the result tables
