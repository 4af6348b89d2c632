"""The price process: asset parameters, session returns, scenario dynamics, OHLC and volume.

Each bar's move is split into an overnight gap (close[t-1] -> open[t], with occasional jumps)
and an intraday part (open[t] -> close[t]); the scenario's dynamics turn the daily moves into
log closes. Arrays are bars x assets and are filled in blocks of rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from ml4t_pipeline.sample_data.arrays import BARS_PER_YEAR, FloatArray, row_blocks
from ml4t_pipeline.sample_data.market import REFERENCE_VOL, Market
from ml4t_pipeline.sample_data.scenarios import Scenario

# Assets.
_BETA_RANGE: Final = (0.6, 1.4)
_IDIO_VOL_MEDIAN: Final = 0.25  # annual
_IDIO_VOL_DISPERSION: Final = 0.35  # sd of log idiosyncratic vol across assets
_IDIO_VOL_RANGE: Final = (0.08, 0.90)
_START_PRICE_RANGE: Final = (10.0, 300.0)  # log-uniform
_BASE_VOLUME_RANGE: Final = (2e5, 5e6)  # shares, log-uniform


@dataclass(frozen=True, slots=True)
class Session:
    variance_share: float  # of the idiosyncratic variance
    market_share: float  # of the market factor's move
    jump_probability: float  # per asset-bar


GAP_SESSION: Final = Session(variance_share=0.25, market_share=0.3, jump_probability=0.004)
INTRADAY_SESSION: Final = Session(variance_share=0.75, market_share=0.7, jump_probability=0.0)
_JUMP_SIZE: Final = 4.0  # jump sd, in daily idiosyncratic sds
_RANGE_SIZE: Final = 0.5  # mean extension of high/low beyond the body, in intraday sds
_VOLUME_NOISE: Final = 0.35  # sd of log volume
_VOLUME_MOVE_SENSITIVITY: Final = 0.5  # log volume per |return| in the asset's daily sds


@dataclass(frozen=True, slots=True)
class Assets:
    beta: FloatArray
    idio_vol: FloatArray  # daily
    total_vol: FloatArray  # daily, at the reference market vol: the asset's usual move
    log_start: FloatArray  # log price before the first bar
    drift: FloatArray  # daily, persistent (trending only)
    base_volume: FloatArray


def draw_assets(scenario: Scenario, assets: int, rng: np.random.Generator) -> Assets:
    """Per-asset beta, volatility, starting price, drift and typical volume."""
    beta = rng.uniform(_BETA_RANGE[0], _BETA_RANGE[1], size=assets)
    log_idio = rng.normal(math.log(_IDIO_VOL_MEDIAN), _IDIO_VOL_DISPERSION, size=assets)
    idio_vol = np.clip(np.exp(log_idio), *_IDIO_VOL_RANGE) / math.sqrt(BARS_PER_YEAR)
    log_start = _log_uniform(rng, _START_PRICE_RANGE, assets)
    base_volume = np.exp(_log_uniform(rng, _BASE_VOLUME_RANGE, assets))
    drift = rng.standard_normal(assets) * scenario.trend_dispersion / BARS_PER_YEAR
    market_vol = REFERENCE_VOL / math.sqrt(BARS_PER_YEAR)
    return Assets(
        beta=beta,
        idio_vol=idio_vol,
        total_vol=np.sqrt((beta * market_vol) ** 2 + idio_vol**2),
        log_start=log_start,
        drift=drift,
        base_volume=base_volume,
    )


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], size: int) -> FloatArray:
    """Logs of draws spread evenly on a log scale between ``bounds``."""
    low, high = bounds
    return rng.uniform(math.log(low), math.log(high), size=size)


def session_returns(
    market: Market, assets: Assets, session: Session, rng: np.random.Generator
) -> FloatArray:
    """Log return of one session (overnight gap or intraday), bars x assets."""
    bars, n = market.log_return.size, assets.beta.size
    out = np.empty((bars, n))
    # beta * (idio / beta * noise * scale + share * market): no bars x assets temporary.
    noise_sd = math.sqrt(session.variance_share) * assets.idio_vol / assets.beta
    market_part = session.market_share * market.log_return
    for rows in row_blocks(bars, n):
        block = out[rows]
        rng.standard_normal(out=block)
        block *= noise_sd
        block *= market.idio_vol_scale[rows, None]
        block += market_part[rows, None]
        block *= assets.beta
    if session.jump_probability > 0.0:
        count = int(rng.binomial(out.size, session.jump_probability))
        where = rng.integers(0, out.size, size=count)
        size = rng.standard_normal(count) * _JUMP_SIZE
        size *= assets.idio_vol[where % n] * market.idio_vol_scale[where // n]
        out.reshape(-1)[where] += size
    return out


def log_prices(
    scenario: Scenario, assets: Assets, *, gap: FloatArray, move: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Log close and log open, built in place in the buffers of ``move`` and ``gap``."""
    move += gap
    move += assets.drift
    log_close = _apply_dynamics(scenario, move, assets.log_start)
    log_open = gap
    log_open[0] += assets.log_start
    log_open[1:] += log_close[:-1]
    return log_close, log_open


def _apply_dynamics(scenario: Scenario, innovation: FloatArray, level: FloatArray) -> FloatArray:
    """Turn daily log innovations into log closes, in place; ``level`` is the start."""
    if scenario.dynamics == "revert":
        pull = scenario.reversion
        innovation[0] += level
        for t in range(1, innovation.shape[0]):
            row = innovation[t]
            row += (1.0 - pull) * innovation[t - 1]
            row += pull * level
        return innovation
    if scenario.dynamics == "momentum":
        for t in range(1, innovation.shape[0]):
            innovation[t] += scenario.momentum * innovation[t - 1]
    np.cumsum(innovation, axis=0, out=innovation)
    innovation += level
    return innovation


def bar_bound(
    open_: FloatArray,
    close: FloatArray,
    side: float,
    market: Market,
    assets: Assets,
    rng: np.random.Generator,
) -> FloatArray:
    """High (side +1) or low (side -1): the body's edge moved out by an exponential draw."""
    out = np.empty_like(open_)
    body: Callable[[FloatArray, FloatArray], FloatArray] = np.maximum if side > 0 else np.minimum
    scale = side * _RANGE_SIZE * math.sqrt(INTRADAY_SESSION.variance_share) * assets.idio_vol
    for rows in row_blocks(*out.shape):
        block = out[rows]
        rng.standard_exponential(out=block)
        block *= scale
        block *= market.idio_vol_scale[rows, None]
        np.exp(block, out=block)
        block *= body(open_[rows], close[rows])
    return out


def bar_volume(log_close: FloatArray, assets: Assets, rng: np.random.Generator) -> FloatArray:
    """Whole shares; larger on bars whose move is large for the asset, and in volatile regimes."""
    out = np.empty_like(log_close)
    sensitivity = _VOLUME_MOVE_SENSITIVITY / assets.total_vol
    for rows in row_blocks(*out.shape):
        block = out[rows]
        rng.standard_normal(out=block)
        block *= _VOLUME_NOISE
        move = _log_moves(log_close, rows, assets.log_start)
        np.abs(move, out=move)
        move *= sensitivity
        block += move
        np.exp(block, out=block)
        block *= assets.base_volume
        np.rint(block, out=block)
    return out


def _log_moves(log_close: FloatArray, rows: slice, log_start: FloatArray) -> FloatArray:
    """Close-to-close log returns of ``rows``; the first bar moves from ``log_start``."""
    if rows.start > 0:
        return np.subtract(log_close[rows], log_close[rows.start - 1 : rows.stop - 1])
    moves = np.empty_like(log_close[rows])
    moves[0] = log_close[0] - log_start
    np.subtract(log_close[1 : rows.stop], log_close[: rows.stop - 1], out=moves[1:])
    return moves
