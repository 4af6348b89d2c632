"""The market factor: regime path, stochastic volatility with a leverage effect, and vix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from ml4t_pipeline.sample_data.arrays import BARS_PER_YEAR, FloatArray, ar1, ema
from ml4t_pipeline.sample_data.scenarios import Regime, Scenario

REFERENCE_VOL: Final = 0.16  # annual market vol at which idiosyncratic vol is unscaled

_MIN_SEGMENT_BARS: Final = 10

# Market volatility.
_REGIME_VOL_SMOOTHING: Final = 0.15  # EMA weight: vol reaches a new regime's within ~15 bars
_LOG_VOL_PERSISTENCE: Final = 0.97
_LOG_VOL_SHOCK: Final = 0.05
_LEVERAGE: Final = 0.6  # share of a log-vol shock driven by the previous bar's market shock

# vix = 100 * (_VIX_FLOOR + _VIX_PREMIUM * expected annual vol) * exp(fear + noise).
_VIX_FLOOR: Final = 0.04
_VIX_PREMIUM: Final = 1.0
_VIX_FEAR_PERSISTENCE: Final = 0.85
_VIX_FEAR_THRESHOLD: Final = 1.5  # market shocks below minus this many sds add fear
_VIX_FEAR_SIZE: Final = 0.12
_VIX_NOISE: Final = 0.04
_VIX_MIN: Final = 9.0  # a soft floor: vix stays above it


@dataclass(frozen=True, slots=True)
class Market:
    log_return: FloatArray  # (bars,) market factor
    idio_vol_scale: FloatArray  # (bars,) multiplier of every asset's idiosyncratic vol
    vix: FloatArray  # (bars,)


def market_factor(scenario: Scenario, bars: int, rng: np.random.Generator) -> Market:
    """The market's log return, the idiosyncratic vol multiplier and vix, per bar."""
    regime = regime_path(scenario.regimes, bars, rng)
    drift = np.array([r.drift for r in scenario.regimes])[regime] / BARS_PER_YEAR
    annual_vol = ema(np.array([r.vol for r in scenario.regimes])[regime], _REGIME_VOL_SMOOTHING)
    shock = rng.standard_normal(bars)
    log_vol_noise = rng.standard_normal(bars)
    vix_noise = rng.standard_normal(bars)

    # Log vol at t is driven by the market shock of t-1 (leverage) and its own noise.
    leverage_push = _LOG_VOL_SHOCK * _LEVERAGE * shock  # a down day raises the next log vol
    innovation = _LOG_VOL_SHOCK * math.sqrt(1.0 - _LEVERAGE**2) * log_vol_noise
    innovation[1:] -= leverage_push[:-1]
    log_vol = ar1(innovation, _LOG_VOL_PERSISTENCE)
    market_shock = annual_vol * np.exp(log_vol) / math.sqrt(BARS_PER_YEAR) * shock
    market_shock -= market_shock.mean()

    # Known at the close of t: the log vol expected for t+1 and the fear left by recent drops.
    expected_log_vol = _LOG_VOL_PERSISTENCE * log_vol - leverage_push
    fear = ar1(
        _VIX_FEAR_SIZE * np.maximum(-shock - _VIX_FEAR_THRESHOLD, 0.0), _VIX_FEAR_PERSISTENCE
    )
    vix = 100.0 * (_VIX_FLOOR + _VIX_PREMIUM * annual_vol * np.exp(expected_log_vol))
    vix *= np.exp(fear + _VIX_NOISE * vix_noise)
    return Market(
        log_return=drift + market_shock,
        idio_vol_scale=np.sqrt(annual_vol / REFERENCE_VOL) * np.exp(log_vol),
        vix=_VIX_MIN + np.logaddexp(0.0, vix - _VIX_MIN),  # a smooth floor
    )


def regime_path(
    regimes: tuple[Regime, ...], bars: int, rng: np.random.Generator
) -> NDArray[np.intp]:
    """Regime index per bar: one regime, or segments that each switch to another regime."""
    path = np.zeros(bars, dtype=np.intp)
    if len(regimes) == 1:
        return path
    state = int(rng.integers(len(regimes)))
    t = 0
    while t < bars:
        length = max(_MIN_SEGMENT_BARS, int(rng.geometric(1.0 / regimes[state].mean_bars)))
        path[t : t + length] = state
        t += length
        state = (state + int(rng.integers(1, len(regimes)))) % len(regimes)
    return path
