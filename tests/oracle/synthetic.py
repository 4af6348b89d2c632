"""Small synthetic markets for the exactness tests: vectorised, seeded, written as Parquet.

Prices are a random walk with overnight gaps (some large, so gap-aware stops matter), bars are
OHLC-consistent and rounded to cents. The score is a smooth series in [0, 1], atr is null during
its warm-up, and vix wanders between 10 and 45 so a VIX filter bites. Rows are shuffled on disk.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

FloatArray = npt.NDArray[np.float64]

ATR_WINDOW = 14


@dataclass(frozen=True, slots=True, kw_only=True)
class Market:
    """The three input tables of a workload, in long (timestamp, asset_id) form."""

    prices: pl.DataFrame
    signals: pl.DataFrame
    context: pl.DataFrame


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketPaths:
    """Where `write_market` put the three Parquet files."""

    prices: Path
    signals: Path
    context: Path

    def files(self) -> tuple[Path, Path, Path]:
        return (self.prices, self.signals, self.context)


def _timestamps(n_bars: int, tz: str | None) -> pl.Series:
    start = datetime(2021, 1, 4, 16, 0) if tz is not None else datetime(2021, 1, 4, 21, 0)  # noqa: DTZ001
    end = start + timedelta(days=n_bars - 1)
    return pl.datetime_range(start, end, "1d", time_zone=tz, eager=True).alias("timestamp")


def _tickers(rng: np.random.Generator, n_assets: int) -> list[str]:
    """Unique random tickers, deliberately not generated in sorted order."""
    letters = np.array(list(string.ascii_uppercase))
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n_assets:
        name = "".join(rng.choice(letters, size=4))
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], window: int) -> FloatArray:
    """Unit-variance noise averaged over a trailing window (autocorrelated, vectorised)."""
    raw = rng.normal(0.0, 1.0, (shape[0] + window, shape[1]))
    csum = np.cumsum(raw, axis=0)
    out: FloatArray = (csum[window:] - csum[:-window]) / np.sqrt(window)
    return out


def _ohlc(
    rng: np.random.Generator, n_bars: int, n_assets: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    shape = (n_bars, n_assets)
    intraday = rng.normal(0.0, 0.015, shape)
    gap = rng.normal(0.0, 0.004, shape)
    jumps = rng.random(shape) < 0.03
    gap[jumps] += rng.normal(0.0, 0.07, int(jumps.sum()))
    start = rng.uniform(20.0, 200.0, n_assets)
    log_close = np.log(start) + np.cumsum(gap + intraday, axis=0)
    close = np.round(np.exp(log_close), 2)
    open_ = np.round(np.exp(log_close - intraday), 2)
    wick_up = np.exp(np.abs(rng.normal(0.0, 0.01, shape)))
    wick_dn = np.exp(-np.abs(rng.normal(0.0, 0.01, shape)))
    high = np.maximum(np.round(np.maximum(open_, close) * wick_up, 2), np.maximum(open_, close))
    low = np.minimum(np.round(np.minimum(open_, close) * wick_dn, 2), np.minimum(open_, close))
    floor = 0.01
    return (
        np.maximum(open_, floor),
        np.maximum(high, floor),
        np.maximum(low, floor),
        np.maximum(close, floor),
    )


def _atr(high: FloatArray, low: FloatArray) -> FloatArray:
    """Mean high-low range over a trailing window, NaN (written as null) during the warm-up."""
    rng_ = high - low
    csum = np.vstack([np.zeros((1, rng_.shape[1])), np.cumsum(rng_, axis=0)])
    out = np.full(rng_.shape, np.nan)
    out[ATR_WINDOW - 1 :] = (csum[ATR_WINDOW:] - csum[:-ATR_WINDOW]) / ATR_WINDOW
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketSpec:
    """The shape of one synthetic market.

    `tz=None` writes naive timestamps (to be read as UTC); `score_decimals` rounds the score so
    that ties occur and the tie-break rule (ascending asset id) is exercised.
    """

    seed: int
    n_assets: int
    n_bars: int
    tz: str | None = None
    score_null_rate: float = 0.0
    score_decimals: int | None = None
    int_ids: bool = False  # integer asset ids, whose numeric and text orders differ
    # signals and context with `available_at`: rows published late, revised, or never
    revisions: bool = False


def make_market(spec: MarketSpec) -> Market:
    """A complete panel of `n_assets` x `n_bars` with the workload columns."""
    seed, n_assets, n_bars = spec.seed, spec.n_assets, spec.n_bars
    rng = np.random.default_rng(seed)
    shape = (n_bars, n_assets)
    open_, high, low, close = _ohlc(rng, n_bars, n_assets)
    score = 1.0 / (1.0 + np.exp(-1.6 * _smooth_noise(rng, shape, 3)))
    if spec.score_decimals is not None:
        score = np.round(score, spec.score_decimals)
    score[rng.random(shape) < spec.score_null_rate] = np.nan
    vix = np.clip(np.round(26.0 + 9.0 * _smooth_noise(rng, (n_bars, 1), 6)[:, 0], 2), 10.0, 45.0)

    ts = _timestamps(n_bars, spec.tz)
    bar_idx = pl.Series(np.repeat(np.arange(n_bars), n_assets))
    names = (
        rng.choice(np.arange(1, 1000), size=n_assets, replace=False)
        if spec.int_ids
        else np.array(_tickers(rng, n_assets))
    )
    assets = np.tile(names, n_bars)
    stamps = ts.gather(bar_idx)
    prices = pl.DataFrame(
        {
            "timestamp": stamps,
            "asset_id": assets,
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": rng.integers(1_000, 100_000, n_bars * n_assets),
        }
    )
    signals = pl.DataFrame(
        {
            "timestamp": stamps,
            "asset_id": assets,
            "ml_score": score.ravel(),
            "atr": _atr(high, low).ravel(),
        }
    ).with_columns(pl.col("ml_score", "atr").fill_nan(None))
    context = pl.DataFrame({"timestamp": ts, "vix": vix})
    if spec.revisions:  # drawn after everything else: the other columns stay as they are
        signals = _publish(rng, signals, "ml_score", spec.score_decimals)
        context = _publish(rng, context, "vix", None)
    return Market(prices=prices, signals=signals, context=context)


def _publish(
    rng: np.random.Generator, table: pl.DataFrame, value: str, decimals: int | None
) -> pl.DataFrame:
    """`table` as a feed with knowledge time: each row gets an `available_at`, some rows are
    revised, some never published.

    Most rows are published at their own bar (up to 5 hours before the stamp, so the
    timestamp is the later of the two); about 45 % are 1-3 bars late (24 x d hours after the
    stamp less up to 20 hours: known at the d-th bar after it), so an older row often arrives
    after a newer one. 4 % are never published. About 15 % get a revision, 1-4 days after
    their first version (a fifth of those a second one, later still), with a new `value`
    (null one time in ten; other columns kept). A revision may be known only after the last
    bar.
    """
    n = table.height
    delay = rng.choice(np.array([0, 1, 2, 3]), size=n, p=[0.55, 0.2, 0.15, 0.1])
    early = rng.integers(0, 6, n)
    slack = rng.integers(0, 21, n)
    hours = np.where(delay == 0, -early, 24 * delay - slack)
    first = table.with_columns(
        (pl.col("timestamp") + pl.duration(hours=pl.lit(pl.Series(hours)))).alias("available_at")
    ).filter(pl.Series(rng.random(n) >= 0.04))
    versions = [first]
    previous = first
    for share in (0.15, 0.2):
        picked = previous.filter(pl.Series(rng.random(previous.height) < share))
        m = picked.height
        fresh = rng.random(m) if value == "ml_score" else 10.0 + 35.0 * rng.random(m)
        if decimals is not None:
            fresh = np.round(fresh, decimals)
        elif value == "vix":
            fresh = np.round(fresh, 2)
        fresh[rng.random(m) < 0.1] = np.nan
        later = rng.integers(24, 97, m) + rng.integers(0, 60, m) / 60.0
        previous = picked.with_columns(
            pl.Series(value, fresh).fill_nan(None),
            (
                pl.col("available_at")
                + pl.duration(minutes=pl.lit(pl.Series((later * 60).astype(int))))
            ).alias("available_at"),
        )
        versions.append(previous)
    return pl.concat(versions)


def write_market(market: Market, directory: Path, *, seed: int) -> MarketPaths:
    """Write the three tables as Parquet, their rows shuffled with `seed`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = MarketPaths(
        prices=directory / "prices.parquet",
        signals=directory / "signals.parquet",
        context=directory / "context.parquet",
    )
    market.prices.sample(fraction=1.0, shuffle=True, seed=seed).write_parquet(paths.prices)
    market.signals.sample(fraction=1.0, shuffle=True, seed=seed + 1).write_parquet(paths.signals)
    market.context.sample(fraction=1.0, shuffle=True, seed=seed + 2).write_parquet(paths.context)
    return paths


def explicit_market(
    directory: Path,
    *,
    opens: dict[str, list[float]],
    closes: dict[str, list[float]],
    scores: dict[str, list[float | None]],
    vix: list[float],
    lows: dict[str, list[float]] | None = None,
) -> MarketPaths:
    """Hand-written daily bars (naive timestamps); high/low sit one unit outside open/close
    unless `lows` gives the lows."""
    stamps = [datetime(2022, 3, 1) + timedelta(days=d) for d in range(len(vix))]  # noqa: DTZ001
    frames = []
    for asset, o in opens.items():
        low = lows[asset] if lows is not None and asset in lows else None
        frames.append(
            pl.DataFrame(
                {
                    "timestamp": stamps,
                    "asset_id": asset,
                    "open": o,
                    "close": closes[asset],
                    "low": low if low is not None else [None] * len(stamps),
                    "ml_score": scores[asset],
                },
                schema_overrides={"low": pl.Float64, "ml_score": pl.Float64},
            )
        )
    df = pl.concat(frames)
    prices = df.select(
        "timestamp",
        "asset_id",
        "open",
        (pl.max_horizontal("open", "close") + 1).alias("high"),
        pl.col("low").fill_null(pl.min_horizontal("open", "close") - 1),
        "close",
        pl.lit(1000).alias("volume"),
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = MarketPaths(
        prices=directory / "prices.parquet",
        signals=directory / "signals.parquet",
        context=directory / "context.parquet",
    )
    prices.write_parquet(paths.prices)
    df.select(
        "timestamp", "asset_id", "ml_score", pl.lit(None, pl.Float64).alias("atr")
    ).write_parquet(paths.signals)
    pl.DataFrame({"timestamp": stamps, "vix": vix}).write_parquet(paths.context)
    return paths


def hand_threshold_market(directory: Path, *, null_exit_score: bool = False) -> MarketPaths:
    """Six hand-worked bars of one asset for W1/W2 (answers in test_oracle_selfcheck.py)."""
    scores: list[float | None] = [0.7, 0.5, 0.7, 0.5, 0.3, 0.7]
    if null_exit_score:
        scores[4] = None
    return explicit_market(
        directory,
        opens={"X": [100.0, 100.0, 99.0, 98.0, 90.0, 97.0]},
        closes={"X": [100.0, 100.0, 99.0, 98.0, 91.0, 97.0]},
        lows={"X": [99.0, 90.0, 94.0, 97.0, 89.0, 96.0]},
        scores={"X": scores},
        vix=[20.0] * 6,
    )


def hand_rotation_market(directory: Path) -> MarketPaths:
    """Eight hand-worked bars of three assets for W3: a score tie, a VIX skip, a rotation."""
    n = 8
    opens = {"ZED": [50.0] * n, "ABC": [100.0] * n, "MID": [20.0] * n}
    closes = {"ZED": [50.0] * n, "ABC": [100.0] * n, "MID": [20.0] * n}
    opens["ABC"][3], closes["ABC"][6], opens["ABC"][7] = 101.0, 110.0, 111.0
    opens["ZED"][7], closes["ZED"][7] = 51.0, 52.0
    scores: dict[str, list[float | None]] = {
        "ZED": [0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.8, 0.1],
        "ABC": [0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.2, 0.1],
        "MID": [0.1, 0.1, 0.1, 0.1, 0.95, 0.1, 0.1, 0.1],
    }
    vix = [20.0, 20.0, 20.0, 20.0, 40.0, 20.0, 20.0, 20.0]
    return explicit_market(directory, opens=opens, closes=closes, scores=scores, vix=vix)


def stop_boundary_market(directory: Path, *, low_after_entry: float) -> MarketPaths:
    """Entry fills at 101 on bar 1; bar 2 trades down to `low_after_entry`.

    With a 5% stop the level is 101 * (1 - 0.05) = 95.94999999999999 in float64, one ulp
    below 95.95: a low of exactly 95.95 must not trigger it.
    """
    return explicit_market(
        directory,
        opens={"X": [100.0, 101.0, 100.0, 99.0]},
        closes={"X": [100.0, 101.0, 99.0, 99.0]},
        lows={"X": [99.0, 100.0, low_after_entry, 98.0]},
        scores={"X": [0.7, 0.5, 0.5, 0.5]},
        vix=[20.0] * 4,
    )
