"""Commission and slippage models: small protocols with one obvious method each.

They price one fill at a time (fills are events, not bars): `qty` is signed int shares,
`price` a float. Python floats are IEEE doubles, so the results are the float64 values a
vectorised formula would give.

Each model checks its parameters on construction (`PARAMS`, see `engine.params`); a config's
`execution.commission` / `execution.slippage` mapping names a model (`model: per_share`) and
that model's parameters, nothing else (`commission_from_spec`, `slippage_from_spec`).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ml4t_pipeline.engine.params import (
    NON_NEGATIVE,
    RATE,
    Check,
    Checked,
    Number,
    Pairs,
    fail,
)


class CommissionModel(Protocol):
    def commission(self, qty: int, price: float) -> float:
        """Cash cost (>= 0) of one fill."""
        ...


class SlippageModel(Protocol):
    def fill_price(self, side: int, price: float, qty: int, volume: float) -> float:
        """Price after slippage; `side` is +1 for buys, -1 for sells (buys pay more)."""
        ...


CASH = Number(low=0, noun="an amount of cash")  # per share, per order, a minimum


@dataclass(frozen=True, slots=True, kw_only=True)
class PercentCommission(Checked):
    """A fraction of fill notional: |qty| * price * rate."""

    PARAMS: ClassVar[Mapping[str, Check]] = {"rate": RATE}
    rate: float = 0.0

    def commission(self, qty: int, price: float) -> float:
        return abs(qty) * price * self.rate


@dataclass(frozen=True, slots=True, kw_only=True)
class PerShareCommission(Checked):
    PARAMS: ClassVar[Mapping[str, Check]] = {"per_share": CASH, "minimum": CASH}
    per_share: float
    minimum: float = 0.0

    def commission(self, qty: int, price: float) -> float:
        return max(abs(qty) * self.per_share, self.minimum)


@dataclass(frozen=True, slots=True, kw_only=True)
class PerOrderCommission(Checked):
    PARAMS: ClassVar[Mapping[str, Check]] = {"per_order": CASH}
    per_order: float

    def commission(self, qty: int, price: float) -> float:
        return self.per_order


@dataclass(frozen=True, slots=True, kw_only=True)
class TieredCommission(Checked):
    """Rate by fill notional: the rate of the highest tier whose threshold is <= notional.

    `tiers` are [notional_threshold, rate] pairs; the thresholds start at 0 and ascend.
    """

    PARAMS: ClassVar[Mapping[str, Check]] = {
        "tiers": Pairs(("notional_threshold", NON_NEGATIVE), ("rate", RATE))
    }
    tiers: tuple[tuple[float, float], ...]
    thresholds: tuple[float, ...] = field(init=False)
    rates: tuple[float, ...] = field(init=False)

    @classmethod
    def check_together(cls, where: str, values: Mapping[str, Any]) -> None:
        thresholds = [t for t, _ in values["tiers"]]
        if not thresholds or thresholds[0] != 0 or thresholds != sorted(thresholds):
            expected = "[notional_threshold, rate] pairs whose thresholds start at 0 and ascend"
            fail(f"{where}.tiers", expected, values["tiers"])

    def __post_init__(self) -> None:
        Checked.__post_init__(self)  # (no super(): a slotted dataclass is a new class)
        thresholds = [t for t, _ in self.tiers]
        object.__setattr__(self, "thresholds", tuple(thresholds))
        object.__setattr__(self, "rates", tuple(r for _, r in self.tiers))

    def commission(self, qty: int, price: float) -> float:
        notional = abs(qty) * price
        return notional * self.rates[bisect.bisect_right(self.thresholds, notional) - 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class NoSlippage:
    def fill_price(self, side: int, price: float, qty: int, volume: float) -> float:
        return price


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedBpsSlippage(Checked):
    PARAMS: ClassVar[Mapping[str, Check]] = {
        "bps": Number(low=0, high=10_000, high_open=True, meaning="basis points: 5 for 0.05 %")
    }
    bps: float

    def fill_price(self, side: int, price: float, qty: int, volume: float) -> float:
        return price * (1.0 + side * self.bps * 1e-4)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpreadSlippage(Checked):
    """Cross half of a quoted spread, given as a fraction of price."""

    PARAMS: ClassVar[Mapping[str, Check]] = {"spread": RATE}
    spread: float

    def fill_price(self, side: int, price: float, qty: int, volume: float) -> float:
        return price * (1.0 + side * 0.5 * self.spread)


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeShareSlippage(Checked):
    """Impact grows with the share of the bar's volume taken: price * impact * (qty/volume).

    It needs the bar's volume (`needs_volume`): the broker fills nothing on a bar whose volume
    is zero or unknown, so no fill is ever priced at zero impact for want of volume.
    """

    needs_volume: ClassVar[bool] = True
    PARAMS: ClassVar[Mapping[str, Check]] = {"impact": RATE}
    impact: float = 0.1

    def fill_price(self, side: int, price: float, qty: int, volume: float) -> float:
        share = abs(qty) / volume  # > 0: the broker fills nothing on a bar without volume
        return price * (1.0 + side * self.impact * min(share, 1.0))


COMMISSION_MODELS: dict[str, type[Checked]] = {
    "percent": PercentCommission,
    "per_share": PerShareCommission,
    "per_order": PerOrderCommission,
    "tiered": TieredCommission,
}
SLIPPAGE_MODELS: dict[str, type[Checked]] = {
    "fixed_bps": FixedBpsSlippage,
    "spread": SpreadSlippage,
    "volume_share": VolumeShareSlippage,
}


def _from_spec(where: str, spec: Any, models: Mapping[str, type[Checked]]) -> Any:
    if not isinstance(spec, Mapping):
        fail(where, "a mapping with a 'model' and its parameters", spec)
    name = spec.get("model")
    cls = models.get(name) if isinstance(name, str) else None
    if cls is None:
        fail(f"{where}.model", f"one of {', '.join(models)}", name)
    params = {k: v for k, v in spec.items() if k != "model"}
    return cls(**cls.checked(where, params))


def commission_from_spec(where: str, spec: Any) -> CommissionModel:
    """The commission model a config mapping names (`where` is its key path)."""
    model: CommissionModel = _from_spec(where, spec, COMMISSION_MODELS)
    return model


def slippage_from_spec(where: str, spec: Any) -> SlippageModel:
    """The slippage model a config mapping names (`where` is its key path)."""
    model: SlippageModel = _from_spec(where, spec, SLIPPAGE_MODELS)
    return model
