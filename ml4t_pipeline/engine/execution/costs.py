"""Commission and slippage models: small protocols with one obvious method each.

They price one fill at a time (fills are events, not bars): `qty` is signed int shares,
`price` a float. Python floats are IEEE doubles, so the results are the float64 values a
vectorised formula would give.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import ClassVar, Protocol

from ml4t_pipeline.errors import ConfigError


class CommissionModel(Protocol):
    def commission(self, qty: int, price: float) -> float:
        """Cash cost (>= 0) of one fill."""
        ...


class SlippageModel(Protocol):
    def fill_price(self, side: int, price: float, qty: int, volume: float) -> float:
        """Price after slippage; `side` is +1 for buys, -1 for sells (buys pay more)."""
        ...


def _check_non_negative(name: str, value: float) -> None:
    if not value >= 0:
        msg = f"{name} must be >= 0, got {value!r}"
        raise ConfigError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class PercentCommission:
    """A fraction of fill notional: |qty| * price * rate."""

    rate: float = 0.0

    def __post_init__(self) -> None:
        _check_non_negative("commission rate", self.rate)

    def commission(self, qty: int, price: float) -> float:
        return abs(qty) * price * self.rate


@dataclass(frozen=True, slots=True, kw_only=True)
class PerShareCommission:
    per_share: float
    minimum: float = 0.0

    def __post_init__(self) -> None:
        _check_non_negative("per_share", self.per_share)
        _check_non_negative("minimum", self.minimum)

    def commission(self, qty: int, price: float) -> float:
        return max(abs(qty) * self.per_share, self.minimum)


@dataclass(frozen=True, slots=True, kw_only=True)
class PerOrderCommission:
    per_order: float

    def __post_init__(self) -> None:
        _check_non_negative("per_order", self.per_order)

    def commission(self, qty: int, price: float) -> float:
        return self.per_order


@dataclass(frozen=True, slots=True, kw_only=True)
class TieredCommission:
    """Rate by fill notional: the rate of the highest tier whose threshold is <= notional."""

    thresholds: tuple[float, ...]  # ascending notional thresholds, first must be 0
    rates: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(self.rates) or not self.thresholds:
            msg = "tiered commission needs as many thresholds as rates (at least one)"
            raise ConfigError(msg)
        if self.thresholds[0] != 0 or list(self.thresholds) != sorted(self.thresholds):
            msg = "tiered commission thresholds must start at 0 and ascend"
            raise ConfigError(msg)
        for rate in self.rates:
            _check_non_negative("tier rate", rate)

    def commission(self, qty: int, price: float) -> float:
        notional = abs(qty) * price
        return notional * self.rates[bisect.bisect_right(self.thresholds, notional) - 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class NoSlippage:
    def fill_price(self, side: int, price: float, qty: int, volume: float) -> float:
        return price


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedBpsSlippage:
    bps: float

    def __post_init__(self) -> None:
        _check_non_negative("slippage bps", self.bps)

    def fill_price(self, side: int, price: float, qty: int, volume: float) -> float:
        return price * (1.0 + side * self.bps * 1e-4)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpreadSlippage:
    """Cross half of a quoted spread, given as a fraction of price."""

    spread: float

    def __post_init__(self) -> None:
        _check_non_negative("spread", self.spread)

    def fill_price(self, side: int, price: float, qty: int, volume: float) -> float:
        return price * (1.0 + side * 0.5 * self.spread)


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeShareSlippage:
    """Impact grows with the share of the bar's volume taken: price * impact * (qty/volume).

    It needs the bar's volume (`needs_volume`): the broker fills nothing on a bar whose volume
    is zero or unknown, so no fill is ever priced at zero impact for want of volume.
    """

    needs_volume: ClassVar[bool] = True
    impact: float = 0.1

    def __post_init__(self) -> None:
        _check_non_negative("impact", self.impact)

    def fill_price(self, side: int, price: float, qty: int, volume: float) -> float:
        share = abs(qty) / volume  # > 0: the broker fills nothing on a bar without volume
        return price * (1.0 + side * self.impact * min(share, 1.0))
