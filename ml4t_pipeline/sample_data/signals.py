"""The signals: the planted-skill ``ml_score``, Wilder's ATR, and the skill a score shows."""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import polars as pl

from ml4t_pipeline.errors import DataError
from ml4t_pipeline.sample_data.arrays import FloatArray, row_blocks
from ml4t_pipeline.sample_data.prices import Assets
from ml4t_pipeline.sample_data.spec import check_int

_SCORE_SIGNAL_WEIGHT: Final = 0.6  # logit per |standardised forward return|
_SCORE_NOISE_WEIGHT: Final = 0.6  # logit per unit of exponential noise


def ml_scores(
    log_close: FloatArray,
    assets: Assets,
    skill: float,
    horizon: int,
    rng: np.random.Generator,
) -> FloatArray:
    """Logistic score whose side matches the forward return's with probability ``skill``."""
    bars, n = log_close.shape
    last_known = bars - horizon  # bars from here on have no forward return
    unit = assets.total_vol * math.sqrt(horizon)
    out = np.empty_like(log_close)
    for rows in row_blocks(bars, n):
        block = out[rows]
        signal = np.empty_like(block)  # standardised forward log return
        known = max(0, min(rows.stop, last_known) - rows.start)
        ahead = slice(rows.start + horizon, rows.start + horizon + known)
        np.subtract(
            log_close[ahead], log_close[rows.start : rows.start + known], out=signal[:known]
        )
        signal[:known] /= unit
        rng.standard_normal(out=signal[known:])

        np.abs(signal, out=block)
        block *= _SCORE_SIGNAL_WEIGHT
        noise = rng.standard_exponential(block.shape)
        noise *= _SCORE_NOISE_WEIGHT
        block += noise
        # Keep the forward return's side where u < skill, flip it where u >= skill.
        keep = np.subtract(skill, rng.random(block.shape, dtype=np.float32))
        signal *= keep
        np.copysign(block, signal, out=block)
        # The logistic squash of the signed logit into (0, 1).
        np.negative(block, out=block)
        np.exp(block, out=block)
        block += 1.0
        np.reciprocal(block, out=block)
    return out


def wilder_atr(high: FloatArray, low: FloatArray, close: FloatArray, window: int) -> FloatArray:
    """Wilder's average true range along axis 0 (bars); NaN for the first ``window`` bars.

    True range at bar t >= 1 is max(high - low, |high - close[t-1]|, |low - close[t-1]|);
    bar 0 has no previous close, so no true range. ATR at bar ``window`` is the mean of the true
    ranges of bars 1..window, then ``atr[t] = atr[t-1] + (tr[t] - atr[t-1]) / window``.
    Point-in-time: ``atr[t]`` reads bars at or before t only.
    """
    check_int("wilder_atr: window", window, minimum=1)
    atr = np.empty_like(high)
    bars = atr.shape[0]
    for rows in row_blocks(bars, high[:1].size, first=1):
        before = slice(rows.start - 1, rows.stop - 1)
        block = np.subtract(high[rows], low[rows], out=atr[rows])
        reach = np.subtract(high[rows], close[before])
        np.maximum(block, np.abs(reach, out=reach), out=block)
        np.subtract(low[rows], close[before], out=reach)
        np.maximum(block, np.abs(reach, out=reach), out=block)
    if bars > window:
        atr[window] = atr[1 : window + 1].mean(axis=0)
        for t in range(window + 1, bars):
            row = atr[t]
            row -= atr[t - 1]
            row /= window
            row += atr[t - 1]
    atr[: min(window, bars)] = np.nan
    return atr


def measured_skill(prices: pl.DataFrame, signals: pl.DataFrame, horizon: int) -> float:
    """Hit rate of the score's side over the next ``horizon`` bars of each asset.

    Counts the (timestamp, asset_id) rows that have a close ``horizon`` bars of that asset
    later and a score that is not null and not 0.5; a hit is
    ``sign(score - 0.5) == sign(close[t+horizon] / close[t] - 1)``. Rows may come in any order.
    """
    check_int("measured_skill: horizon", horizon, minimum=1)
    keys = ["timestamp", "asset_id"]
    closes = prices.select([*keys, "close"])
    if not closes["timestamp"].is_sorted():
        closes = closes.sort("timestamp", maintain_order=True)
    forward_return = pl.col("close").shift(-horizon).over("asset_id") / pl.col("close") - 1.0
    closes = closes.with_columns(forward_return.alias("forward_return"))
    scores = signals.select([*keys, "ml_score"])
    if closes.select(keys).equals(scores.select(keys)):  # same rows in the same order
        rows = closes.with_columns(scores["ml_score"])
    else:
        rows = closes.join(scores, on=keys, how="inner")
    rows = rows.filter(
        pl.col("forward_return").is_not_null()
        & pl.col("ml_score").is_not_null()
        & (pl.col("ml_score") != 0.5)
    )
    if rows.height == 0:
        msg = (
            f"measured_skill: no row has both a score other than 0.5 and a close {horizon} "
            "bars later"
        )
        raise DataError(msg)
    hits = (pl.col("ml_score") - 0.5).sign() == pl.col("forward_return").sign()
    return float(rows.select(hits.mean()).item())
