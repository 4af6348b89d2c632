"""The scenarios: each one's market regimes and the dynamics that turn returns into prices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal


@dataclass(frozen=True, slots=True)
class Regime:
    drift: float  # annual log drift of the market factor
    vol: float  # annual volatility of the market factor
    mean_bars: int = 0  # mean length of a segment of this regime (regime-switching only)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    regimes: tuple[Regime, ...]  # more than one: a regime-switching series
    dynamics: Literal["walk", "momentum", "revert"] = "walk"
    trend_dispersion: float = 0.0  # sd across assets of a persistent annual drift
    momentum: float = 0.0  # AR(1) coefficient of daily returns
    reversion: float = 0.0  # daily pull of the log price toward its starting level


SCENARIO_MODELS: Final[dict[str, Scenario]] = {
    "bull": Scenario(regimes=(Regime(drift=0.30, vol=0.14),)),
    "bear": Scenario(regimes=(Regime(drift=-0.30, vol=0.24),)),
    "high_volatility": Scenario(regimes=(Regime(drift=0.0, vol=0.35),)),
    "low_volatility": Scenario(regimes=(Regime(drift=0.05, vol=0.07),)),
    "trending": Scenario(
        regimes=(Regime(drift=0.05, vol=0.16),),
        dynamics="momentum",
        trend_dispersion=0.35,
        momentum=0.15,
    ),
    "mean_reverting": Scenario(
        regimes=(Regime(drift=0.0, vol=0.16),), dynamics="revert", reversion=0.08
    ),
    "mixed": Scenario(
        regimes=(
            Regime(drift=0.25, vol=0.11, mean_bars=80),  # calm bull
            Regime(drift=-0.45, vol=0.36, mean_bars=35),  # volatile bear
            Regime(drift=0.0, vol=0.17, mean_bars=50),  # sideways
        )
    ),
}

SCENARIOS: Final[tuple[str, ...]] = tuple(SCENARIO_MODELS)
