"""Deterministic synthetic market data in the input layout of shared/WORKLOADS.md.

`generate(SampleSpec(...))` returns three polars frames; `write_sample_data` writes them as
`prices.parquet`, `signals.parquet` and `context.parquet` (plus `sample.json` with the spec).
Rows are ordered by (timestamp, asset_id); timestamps are business days (Mon-Fri, holidays
ignored) at UTC midnight, starting at ``start`` rolled forward to a weekday.

The model, per bar t and asset i (arrays are bars x assets; nothing loops over assets):

- A market factor: log return ``m_t = drift_t + sigma_t * z_t``. Its volatility follows the
  scenario's regime (smoothed across regime switches) times ``exp(h_t)``, an AR(1) in log
  volatility that rises after down days (leverage effect). The factor's shocks are centred
  over the sample, so the realised market drift is exactly the scenario's drift.
- Asset log returns: ``beta_i * m_t`` plus idiosyncratic noise with a per-asset volatility
  (dispersed across assets, scaled with the regime). Each bar's move is split into an
  overnight gap (close[t-1] -> open[t], with occasional jumps) and an intraday part
  (open[t] -> close[t]), so gap-aware stops matter.
- Scenario dynamics turn those innovations into log closes: a random walk; a momentum AR(1)
  on returns plus a persistent drift per asset (``trending``); or an Ornstein-Uhlenbeck pull of
  the log price toward its starting level (``mean_reverting``).
- high/low extend max/min(open, close) by exponential draws; volume grows with |return|.
- vix: 100 x (floor + premium x the market volatility expected for the next bar), times a fear
  term that spikes after large down days. It follows the regime in ``mixed``.
- ml_score: a noisy function of the realised forward ``horizon``-bar return. Its side is that
  return's sign, flipped with probability ``1 - skill``, so `measured_skill` is close to
  ``skill``; its distance from 0.5 (a logistic squash into (0, 1)) grows with the size of the
  standardised forward return plus exponential noise. The last ``horizon`` bars have no
  forward return and get a pure-noise score. The score looks ahead on purpose: that is how
  the skill is planted.
- atr: Wilder's average true range over ``atr_window`` bars, point-in-time (`wilder_atr`).

Every random draw comes from a `numpy.random.Generator(PCG64)` stream spawned from ``seed``,
one stream per model part, so the prices do not depend on ``skill`` or ``horizon`` and the
parts can run on two threads without changing the result. Element-wise work runs in blocks
of rows to keep temporaries small: memory is the output plus a few megabytes.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import polars as pl
from numpy.typing import NDArray

from ml4t_pipeline.errors import ConfigError, DataError

SCENARIOS: tuple[str, ...] = (
    "bull",
    "bear",
    "high_volatility",
    "low_volatility",
    "trending",
    "mean_reverting",
    "mixed",
)

FloatArray = NDArray[np.float64]

BARS_PER_YEAR: Final = 252
FILE_NAMES: Final = {
    "prices": "prices.parquet",
    "signals": "signals.parquet",
    "context": "context.parquet",
    "spec": "sample.json",
}
PARQUET_COMPRESSION: Final = "lz4"
PARQUET_ROW_GROUP_SIZE: Final = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleSpec:
    """What to generate. Every field is validated on construction (`ConfigError`)."""

    assets: int = 50
    days: int = 252
    scenario: str = "mixed"
    seed: int = 2
    skill: float = 0.55  # target hit rate of the score's side over the next `horizon` bars
    horizon: int = 5
    start: datetime.date = datetime.date(2020, 1, 1)
    atr_window: int = 14

    def __post_init__(self) -> None:
        _check_int("assets", self.assets, minimum=1)
        _check_int("days", self.days, minimum=2)
        _check_int("seed", self.seed, minimum=0)
        _check_int("horizon", self.horizon, minimum=1)
        _check_int("atr_window", self.atr_window, minimum=1)
        if self.scenario not in SCENARIOS:
            msg = f"SampleSpec.scenario must be one of {SCENARIOS}, got {self.scenario!r}"
            raise ConfigError(msg)
        is_number = isinstance(self.skill, int | float) and not isinstance(self.skill, bool)
        if not is_number or not 0.0 <= self.skill <= 1.0:
            msg = f"SampleSpec.skill must be a number in [0, 1], got {self.skill!r}"
            raise ConfigError(msg)
        if not isinstance(self.start, datetime.date) or isinstance(self.start, datetime.datetime):
            msg = f"SampleSpec.start must be a datetime.date, got {self.start!r}"
            raise ConfigError(msg)

    def to_dict(self) -> dict[str, object]:
        """The fields, JSON-ready (``start`` as an ISO date)."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        fields["start"] = self.start.isoformat()
        return fields


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        msg = f"SampleSpec.{name} must be an integer >= {minimum}, got {value!r}"
        raise ConfigError(msg)


@dataclass(frozen=True, slots=True)
class SampleData:
    """The three input tables, rows ordered by (timestamp, asset_id)."""

    prices: pl.DataFrame
    signals: pl.DataFrame
    context: pl.DataFrame


def generate(spec: SampleSpec) -> SampleData:
    """Generate prices, signals and context for ``spec``; an identical spec gives identical data.

    Independent parts run on two threads (numpy releases the GIL inside its array loops).
    """
    scenario = _SCENARIO_MODELS[spec.scenario]
    streams = _Streams.from_seed(spec.seed)
    market = _market(scenario, spec.days, streams.market)
    assets = _assets(scenario, spec.assets, streams.assets)
    timestamps = business_days(spec.start, spec.days)
    with ThreadPoolExecutor(max_workers=2) as pool:
        keys = pool.submit(_panel_keys, timestamps, spec.assets)
        gap = pool.submit(_innovations, market, assets, _GAP_SESSION, streams.gaps)
        move = _innovations(market, assets, _INTRADAY_SESSION, streams.moves)
        log_close, log_open = _log_prices(scenario, assets, gap=gap.result(), move=move)
        score = pool.submit(_scores, log_close, assets, spec.skill, spec.horizon, streams.score)
        volume = _volume(log_close, assets, streams.volume)
        score.result()  # the last reader of log_close
        close = np.exp(log_close, out=log_close)
        open_ = np.exp(log_open, out=log_open)
        high = pool.submit(_bar_bound, open_, close, +1.0, market, assets, streams.highs)
        low = _bar_bound(open_, close, -1.0, market, assets, streams.lows)
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


def write_sample_data(spec: SampleSpec, out_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write the tables of ``generate(spec)`` and ``sample.json`` into ``out_dir``.

    Every file is first written to a temporary file in ``out_dir``; only when all of them are
    complete are they renamed into place, so a failure leaves earlier files untouched.
    An identical spec gives byte-identical files. Returns the paths by key of `FILE_NAMES`.
    """
    data = generate(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"prices": data.prices, "signals": data.signals, "context": data.context}
    staged: dict[str, pathlib.Path] = {}
    try:
        for key, frame in tables.items():
            staged[key] = _temp_path(out_dir, FILE_NAMES[key])
            frame.write_parquet(
                staged[key],
                compression=PARQUET_COMPRESSION,
                statistics=True,
                row_group_size=PARQUET_ROW_GROUP_SIZE,
            )
        staged["spec"] = _temp_path(out_dir, FILE_NAMES["spec"])
        staged["spec"].write_text(_summary_json(spec, data), encoding="utf-8")
    except BaseException:
        for path in staged.values():
            path.unlink(missing_ok=True)
        raise
    written = {key: out_dir / FILE_NAMES[key] for key in staged}
    for key, path in staged.items():
        os.replace(path, written[key])
    return written


def measured_skill(prices: pl.DataFrame, signals: pl.DataFrame, horizon: int) -> float:
    """Hit rate of the score's side over the next ``horizon`` bars of each asset.

    Counts the (timestamp, asset_id) rows that have a close ``horizon`` bars of that asset
    later and a score that is not null and not 0.5; a hit is
    ``sign(score - 0.5) == sign(close[t+horizon] / close[t] - 1)``. Rows may come in any order.
    """
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
        msg = f"measured_skill: horizon must be an integer >= 1, got {horizon!r}"
        raise ConfigError(msg)
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


def wilder_atr(high: FloatArray, low: FloatArray, close: FloatArray, window: int) -> FloatArray:
    """Wilder's average true range along axis 0 (bars); NaN for the first ``window`` bars.

    True range at bar t >= 1 is max(high - low, |high - close[t-1]|, |low - close[t-1]|);
    bar 0 has no previous close, so no true range. ATR at bar ``window`` is the mean of the true
    ranges of bars 1..window, then ``atr[t] = atr[t-1] + (tr[t] - atr[t-1]) / window``.
    Point-in-time: ``atr[t]`` reads bars at or before t only.
    """
    if window < 1:
        msg = f"wilder_atr: window must be >= 1, got {window}"
        raise ConfigError(msg)
    atr = np.empty_like(high)
    bars = atr.shape[0]
    for rows in _row_blocks(bars, high[:1].size, first=1):
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


def business_days(start: datetime.date, days: int) -> pl.Series:
    """``days`` Mon-Fri dates from ``start`` (rolled forward to a weekday) at UTC midnight."""
    first = np.datetime64(start.isoformat(), "D")
    dates = np.busday_offset(first, np.arange(days), roll="forward")
    micros = dates.astype("datetime64[us]").astype(np.int64)
    return pl.Series("timestamp", micros).cast(pl.Datetime("us", "UTC"))


def asset_ids(assets: int) -> list[str]:
    """``A0000``, ``A0001``, ...: zero-padded so string order is numeric order."""
    width = max(4, len(str(assets - 1)))
    return [f"A{i:0{width}d}" for i in range(assets)]


# ---- The model -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Regime:
    drift: float  # annual log drift of the market factor
    vol: float  # annual volatility of the market factor
    mean_bars: int = 0  # mean length of a segment of this regime (regime-switching only)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Scenario:
    regimes: tuple[_Regime, ...]  # more than one: a regime-switching series
    dynamics: Literal["walk", "momentum", "revert"] = "walk"
    trend_dispersion: float = 0.0  # sd across assets of a persistent annual drift
    momentum: float = 0.0  # AR(1) coefficient of daily returns
    reversion: float = 0.0  # daily pull of the log price toward its starting level


_SCENARIO_MODELS: Final[dict[str, _Scenario]] = {
    "bull": _Scenario(regimes=(_Regime(drift=0.30, vol=0.14),)),
    "bear": _Scenario(regimes=(_Regime(drift=-0.30, vol=0.24),)),
    "high_volatility": _Scenario(regimes=(_Regime(drift=0.0, vol=0.35),)),
    "low_volatility": _Scenario(regimes=(_Regime(drift=0.05, vol=0.07),)),
    "trending": _Scenario(
        regimes=(_Regime(drift=0.05, vol=0.16),),
        dynamics="momentum",
        trend_dispersion=0.35,
        momentum=0.15,
    ),
    "mean_reverting": _Scenario(
        regimes=(_Regime(drift=0.0, vol=0.16),), dynamics="revert", reversion=0.08
    ),
    "mixed": _Scenario(
        regimes=(
            _Regime(drift=0.25, vol=0.11, mean_bars=80),  # calm bull
            _Regime(drift=-0.45, vol=0.36, mean_bars=35),  # volatile bear
            _Regime(drift=0.0, vol=0.17, mean_bars=50),  # sideways
        )
    ),
}
_MIN_SEGMENT_BARS: Final = 10

# Market volatility.
_REFERENCE_VOL: Final = 0.16  # annual market vol at which idiosyncratic vol is unscaled
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

# Assets.
_BETA_RANGE: Final = (0.6, 1.4)
_IDIO_VOL_MEDIAN: Final = 0.25  # annual
_IDIO_VOL_DISPERSION: Final = 0.35  # sd of log idiosyncratic vol across assets
_IDIO_VOL_RANGE: Final = (0.08, 0.90)
_START_PRICE_RANGE: Final = (10.0, 300.0)  # log-uniform
_BASE_VOLUME_RANGE: Final = (2e5, 5e6)  # shares, log-uniform


@dataclass(frozen=True, slots=True)
class _Session:
    variance_share: float  # of the idiosyncratic variance
    market_share: float  # of the market factor's move
    jump_probability: float  # per asset-bar


_GAP_SESSION: Final = _Session(variance_share=0.25, market_share=0.3, jump_probability=0.004)
_INTRADAY_SESSION: Final = _Session(variance_share=0.75, market_share=0.7, jump_probability=0.0)
_JUMP_SIZE: Final = 4.0  # jump sd, in daily idiosyncratic sds
_RANGE_SIZE: Final = 0.5  # mean extension of high/low beyond the body, in intraday sds
_VOLUME_NOISE: Final = 0.35  # sd of log volume
_VOLUME_MOVE_SENSITIVITY: Final = 0.5  # log volume per |return| in the asset's daily sds
_SCORE_SIGNAL_WEIGHT: Final = 0.6  # logit per |standardised forward return|
_SCORE_NOISE_WEIGHT: Final = 0.6  # logit per unit of exponential noise

_BLOCK_ELEMENTS: Final = 1 << 18  # elements per block of rows (2 MB of float64)


@dataclass(frozen=True, slots=True)
class _Streams:
    """One independent random stream per model part."""

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


@dataclass(frozen=True, slots=True)
class _Market:
    log_return: FloatArray  # (bars,) market factor
    idio_vol_scale: FloatArray  # (bars,) multiplier of every asset's idiosyncratic vol
    vix: FloatArray  # (bars,)


@dataclass(frozen=True, slots=True)
class _Assets:
    beta: FloatArray
    idio_vol: FloatArray  # daily
    total_vol: FloatArray  # daily, at the reference market vol: the asset's usual move
    log_start: FloatArray  # log price before the first bar
    drift: FloatArray  # daily, persistent (trending only)
    base_volume: FloatArray


def _market(scenario: _Scenario, bars: int, rng: np.random.Generator) -> _Market:
    regime = _regime_path(scenario.regimes, bars, rng)
    drift = np.array([r.drift for r in scenario.regimes])[regime] / BARS_PER_YEAR
    annual_vol = _ema(np.array([r.vol for r in scenario.regimes])[regime], _REGIME_VOL_SMOOTHING)
    shock = rng.standard_normal(bars)
    log_vol_noise = rng.standard_normal(bars)
    vix_noise = rng.standard_normal(bars)

    # Log vol at t is driven by the market shock of t-1 (leverage) and its own noise.
    innovation = _LOG_VOL_SHOCK * math.sqrt(1.0 - _LEVERAGE**2) * log_vol_noise
    innovation[1:] -= _LOG_VOL_SHOCK * _LEVERAGE * shock[:-1]
    log_vol = _ar1(innovation, _LOG_VOL_PERSISTENCE)
    market_shock = annual_vol * np.exp(log_vol) / math.sqrt(BARS_PER_YEAR) * shock
    market_shock -= market_shock.mean()

    # Known at the close of t: the log vol expected for t+1 and the fear left by recent drops.
    expected_log_vol = _LOG_VOL_PERSISTENCE * log_vol - _LOG_VOL_SHOCK * _LEVERAGE * shock
    fear = _ar1(
        _VIX_FEAR_SIZE * np.maximum(-shock - _VIX_FEAR_THRESHOLD, 0.0), _VIX_FEAR_PERSISTENCE
    )
    vix = 100.0 * (_VIX_FLOOR + _VIX_PREMIUM * annual_vol * np.exp(expected_log_vol))
    vix *= np.exp(fear + _VIX_NOISE * vix_noise)
    return _Market(
        log_return=drift + market_shock,
        idio_vol_scale=np.sqrt(annual_vol / _REFERENCE_VOL) * np.exp(log_vol),
        vix=_VIX_MIN + np.logaddexp(0.0, vix - _VIX_MIN),  # a smooth floor
    )


def _regime_path(
    regimes: tuple[_Regime, ...], bars: int, rng: np.random.Generator
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


def _assets(scenario: _Scenario, assets: int, rng: np.random.Generator) -> _Assets:
    beta = rng.uniform(_BETA_RANGE[0], _BETA_RANGE[1], size=assets)
    log_idio = rng.normal(math.log(_IDIO_VOL_MEDIAN), _IDIO_VOL_DISPERSION, size=assets)
    idio_vol = np.clip(np.exp(log_idio), *_IDIO_VOL_RANGE) / math.sqrt(BARS_PER_YEAR)
    log_start = _log_uniform(rng, _START_PRICE_RANGE, assets)
    base_volume = np.exp(_log_uniform(rng, _BASE_VOLUME_RANGE, assets))
    drift = rng.standard_normal(assets) * scenario.trend_dispersion / BARS_PER_YEAR
    market_vol = _REFERENCE_VOL / math.sqrt(BARS_PER_YEAR)
    return _Assets(
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


def _innovations(
    market: _Market, assets: _Assets, session: _Session, rng: np.random.Generator
) -> FloatArray:
    """Log return of one session (overnight gap or intraday), bars x assets."""
    bars, n = market.log_return.size, assets.beta.size
    out = np.empty((bars, n))
    # beta * (idio / beta * noise * scale + share * market): no bars x assets temporary.
    noise_sd = math.sqrt(session.variance_share) * assets.idio_vol / assets.beta
    market_part = session.market_share * market.log_return
    for rows in _row_blocks(bars, n):
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


def _log_prices(
    scenario: _Scenario, assets: _Assets, *, gap: FloatArray, move: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Log close and log open, built in place in the buffers of ``move`` and ``gap``."""
    move += gap
    move += assets.drift
    log_close = _apply_dynamics(scenario, move, assets.log_start)
    log_open = gap
    log_open[0] += assets.log_start
    log_open[1:] += log_close[:-1]
    return log_close, log_open


def _apply_dynamics(scenario: _Scenario, innovation: FloatArray, level: FloatArray) -> FloatArray:
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


def _bar_bound(
    open_: FloatArray,
    close: FloatArray,
    side: float,
    market: _Market,
    assets: _Assets,
    rng: np.random.Generator,
) -> FloatArray:
    """High (side +1) or low (side -1): the body's edge moved out by an exponential draw."""
    out = np.empty_like(open_)
    body: Callable[[FloatArray, FloatArray], FloatArray] = np.maximum if side > 0 else np.minimum
    scale = side * _RANGE_SIZE * math.sqrt(_INTRADAY_SESSION.variance_share) * assets.idio_vol
    for rows in _row_blocks(*out.shape):
        block = out[rows]
        rng.standard_exponential(out=block)
        block *= scale
        block *= market.idio_vol_scale[rows, None]
        np.exp(block, out=block)
        block *= body(open_[rows], close[rows])
    return out


def _volume(log_close: FloatArray, assets: _Assets, rng: np.random.Generator) -> FloatArray:
    """Whole shares; larger on bars whose move is large for the asset, and in volatile regimes."""
    out = np.empty_like(log_close)
    sensitivity = _VOLUME_MOVE_SENSITIVITY / assets.total_vol
    for rows in _row_blocks(*out.shape):
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


def _scores(
    log_close: FloatArray,
    assets: _Assets,
    skill: float,
    horizon: int,
    rng: np.random.Generator,
) -> FloatArray:
    """Logistic score whose side matches the forward return's with probability ``skill``."""
    bars, n = log_close.shape
    last_known = bars - horizon  # bars from here on have no forward return
    unit = assets.total_vol * math.sqrt(horizon)
    out = np.empty_like(log_close)
    for rows in _row_blocks(bars, n):
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


def _panel_keys(timestamps: pl.Series, assets: int) -> tuple[pl.Series, pl.Series]:
    """The timestamp and asset_id columns of the (timestamp, asset_id)-ordered panel."""
    bars = timestamps.len()
    micros = timestamps.dt.epoch("us").to_numpy()
    bar_time = pl.Series("timestamp", np.repeat(micros, assets)).cast(timestamps.dtype)
    # Gathering with a polars index is about ten times faster than with a numpy one.
    asset_index = pl.Series(np.tile(np.arange(assets, dtype=np.uint32), bars))
    bar_asset = pl.Series("asset_id", asset_ids(assets)).gather(asset_index)
    return bar_time, bar_asset


def _row_blocks(bars: int, width: int, *, first: int = 0) -> Iterator[slice]:
    """Slices of about `_BLOCK_ELEMENTS` elements over rows ``first..bars``."""
    step = max(1, _BLOCK_ELEMENTS // max(width, 1))
    for start in range(first, bars, step):
        yield slice(start, min(start + step, bars))


def _ema(values: FloatArray, weight: float) -> FloatArray:
    out = values.copy()
    for t in range(1, out.size):
        out[t] = out[t - 1] + weight * (values[t] - out[t - 1])
    return out


def _ar1(innovation: FloatArray, persistence: float) -> FloatArray:
    out = innovation.copy()
    for t in range(1, out.size):
        out[t] += persistence * out[t - 1]
    return out


def _temp_path(out_dir: pathlib.Path, name: str) -> pathlib.Path:
    handle, path = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
    os.close(handle)
    return pathlib.Path(path)


def _summary_json(spec: SampleSpec, data: SampleData) -> str:
    summary = {
        "generator": __name__,
        "spec": spec.to_dict(),
        "atr": "wilder",
        "rows": {"prices": data.prices.height, "context": data.context.height},
    }
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"
