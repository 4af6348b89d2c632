"""`generate`: the model parts run in order, on seeded streams, into the three tables."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from ml4t_pipeline.sample_data.keys import business_days, panel_keys
from ml4t_pipeline.sample_data.market import market_factor
from ml4t_pipeline.sample_data.prices import (
    GAP_SESSION,
    INTRADAY_SESSION,
    bar_bound,
    bar_volume,
    draw_assets,
    log_prices,
    session_returns,
)
from ml4t_pipeline.sample_data.scenarios import SCENARIO_MODELS
from ml4t_pipeline.sample_data.signals import ml_scores, wilder_atr
from ml4t_pipeline.sample_data.spec import SampleSpec


@dataclass(frozen=True, slots=True)
class SampleData:
    """The three input tables, rows ordered by (timestamp, asset_id)."""

    prices: pl.DataFrame
    signals: pl.DataFrame
    context: pl.DataFrame


@dataclass(frozen=True, slots=True)
class _Streams:
    """One independent random stream per model part (the field order fixes the spawn order)."""

    market: np.random.Generator
    assets: np.random.Generator
    gaps: np.random.Generator
    moves: np.random.Generator
    volume: np.random.Generator
    score: np.random.Generator
    highs: np.random.Generator
    lows: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int) -> _Streams:
        children = np.random.SeedSequence(seed).spawn(len(dataclasses.fields(cls)))
        return cls(*(np.random.Generator(np.random.PCG64(child)) for child in children))


def generate(spec: SampleSpec) -> SampleData:
    """Generate prices, signals and context for ``spec``; an identical spec gives identical data.

    Independent parts run on two threads (numpy releases the GIL inside its array loops).
    """
    scenario = SCENARIO_MODELS[spec.scenario]
    streams = _Streams.from_seed(spec.seed)
    market = market_factor(scenario, spec.days, streams.market)
    assets = draw_assets(scenario, spec.assets, streams.assets)
    timestamps = business_days(spec.start, spec.days)
    with ThreadPoolExecutor(max_workers=2) as pool:
        keys = pool.submit(panel_keys, timestamps, spec.assets)
        gap = pool.submit(session_returns, market, assets, GAP_SESSION, streams.gaps)
        move = session_returns(market, assets, INTRADAY_SESSION, streams.moves)
        log_close, log_open = log_prices(scenario, assets, gap=gap.result(), move=move)
        score = pool.submit(ml_scores, log_close, assets, spec.skill, spec.horizon, streams.score)
        volume = bar_volume(log_close, assets, streams.volume)
        score.result()  # the last reader of log_close
        close = np.exp(log_close, out=log_close)
        open_ = np.exp(log_open, out=log_open)
        high = pool.submit(bar_bound, open_, close, +1.0, market, assets, streams.highs)
        low = bar_bound(open_, close, -1.0, market, assets, streams.lows)
        atr = wilder_atr(high.result(), low, close, spec.atr_window)
        bar_time, bar_asset = keys.result()
    prices = pl.DataFrame(
        [
            bar_time,
            bar_asset,
            pl.Series("open", open_.reshape(-1)),
            pl.Series("high", high.result().reshape(-1)),
            pl.Series("low", low.reshape(-1)),
            pl.Series("close", close.reshape(-1)),
            pl.Series("volume", volume.reshape(-1)),
        ]
    )
    signals = pl.DataFrame(
        [
            bar_time,
            bar_asset,
            pl.Series("ml_score", score.result().reshape(-1)),
            pl.Series("atr", atr.reshape(-1), nan_to_null=True),
        ]
    )
    context = pl.DataFrame([timestamps, pl.Series("vix", market.vix)])
    return SampleData(prices=prices, signals=signals, context=context)
