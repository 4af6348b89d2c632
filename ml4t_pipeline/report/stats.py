"""The numbers of the research report, from a run's tables (numpy and polars; no plotting).

Every return, volatility, Sharpe, Sortino, drawdown and CAGR is one of the metric primitives of
`engine/results/metrics.py`, applied to the equity curve, to its month or year ends, or to a
rolling window of its bar returns; nothing here re-derives them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from ml4t_pipeline.engine.results.metrics import (
    annual_volatility,
    bar_returns,
    cagr,
    drawdowns,
    periods_per_year,
    sharpe_ratio,
    sortino_ratio,
)

TOP_DRAWDOWNS = 5
ROLLING_YEARS = 0.5
"""The rolling window: half a year of bars (126 for daily bars)."""
OPEN = "open"  # the exit_reason of a trade still held at the end


@dataclass(frozen=True, slots=True, kw_only=True)
class Headline:
    """One row of the headline table (fractions; NaN when undefined)."""

    total_return: float
    cagr: float
    volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float


def headline(values: np.ndarray, start: float, periods: float) -> Headline:
    """The headline figures of a curve that starts at `start` (the value before its first bar)."""
    if values.shape[0] == 0:
        nan = math.nan
        return Headline(
            total_return=nan, cagr=nan, volatility=nan, sharpe=nan, sortino=nan, max_drawdown=nan
        )
    returns = bar_returns(values, start)
    return Headline(
        total_return=float(values[-1] / start - 1.0),
        cagr=cagr(values, start, periods),
        volatility=annual_volatility(returns, periods),
        sharpe=sharpe_ratio(returns, periods),
        sortino=sortino_ratio(returns, periods),
        max_drawdown=float(np.min(drawdowns(values, start))),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DrawdownPeriod:
    """A fall below a running peak; bars are positions in the curve (-1: the starting value)."""

    start: int  # the bar of the peak it fell from (-1: the starting value)
    trough: int  # the bar of its lowest value
    recovery: int | None  # the first bar back at the peak; None: not recovered
    depth: float  # the fall at the trough, a fraction <= 0
    length: int  # bars from the peak to the recovery (to the last bar when not recovered)


def drawdown_periods(
    values: np.ndarray, start: float, top: int = TOP_DRAWDOWNS
) -> list[DrawdownPeriod]:
    """The `top` deepest drawdown periods, deepest first (ties: the earlier one first).

    A period starts at a running peak (the starting value counts as one, bar -1), reaches its
    trough, and ends at the first bar whose value is back at or above that peak."""
    dd = drawdowns(values, start)
    periods: list[DrawdownPeriod] = []
    last = values.shape[0] - 1
    underwater = dd < 0
    k = 0
    while k <= last:
        if not underwater[k]:
            k += 1
            continue
        begin = k
        while k <= last and underwater[k]:
            k += 1
        trough = begin + int(np.argmin(dd[begin:k]))
        periods.append(
            DrawdownPeriod(
                start=begin - 1,
                trough=trough,
                recovery=k if k <= last else None,
                depth=float(dd[trough]),
                length=(k if k <= last else last) - (begin - 1),
            )
        )
    periods.sort(key=lambda p: (p.depth, p.start))
    return periods[:top]


def period_returns(
    timestamps: pl.Series, values: np.ndarray, start: float, every: str
) -> pl.DataFrame:
    """Compounded returns per calendar period (`every`: "month" or "year"), in UTC.

    A period's return is its last value over the previous period's last value (the starting
    value for the first), so the periods compound to the total return."""
    fmt = {"month": "%Y-%m", "year": "%Y"}[every]
    frame = pl.DataFrame({"period": timestamps.dt.strftime(fmt), "value": values})
    ends = frame.group_by("period", maintain_order=True).agg(pl.col("value").last())
    return ends.with_columns(
        pl.Series("return", bar_returns(ends["value"].to_numpy(), start))
    ).select("period", "return")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rolling:
    """Rolling figures over `window` bars, for the windows ending at `bars`."""

    window: int
    bars: np.ndarray  # the bar each window ends at (ascending)
    sharpe: np.ndarray
    volatility: np.ndarray  # annualised


def rolling(returns: np.ndarray, periods: float, *, every: int = 1) -> Rolling:
    """Sharpe ratio and annualised volatility of the last half year of bars (126 for daily
    bars), for the windows ending at every `every`-th bar from the first full one, and at the
    last bar. A chart of a long run samples it (`every` > 1): a pixel holds several bars."""
    window = max(round(ROLLING_YEARS * periods), 2)
    n = returns.shape[0]
    ends = list(range(window - 1, n, max(every, 1)))
    if n >= window and ends[-1] != n - 1:
        ends.append(n - 1)
    sharpe = np.array([sharpe_ratio(returns[e + 1 - window : e + 1], periods) for e in ends])
    vol = np.array([annual_volatility(returns[e + 1 - window : e + 1], periods) for e in ends])
    return Rolling(
        window=window,
        bars=np.array(ends, dtype=np.int64),
        sharpe=sharpe.astype(np.float64),
        volatility=vol.astype(np.float64),
    )


def annualization(timestamps: pl.Series) -> float:
    return periods_per_year(timestamps.dt.epoch("us").to_numpy())


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeStats:
    """Closed trades only (a trade still held at the end has no result yet)."""

    closed: int
    open: int
    win_rate: float  # winners / closed trades
    payoff_ratio: float  # mean winning P&L / |mean losing P&L|
    profit_factor: float  # gross winning P&L / |gross losing P&L|
    avg_pnl: float
    avg_bars_held: float
    best_pnl: float
    best_asset: str
    worst_pnl: float
    worst_asset: str


def trade_stats(trades: pl.DataFrame) -> TradeStats:
    """Win rate, payoff ratio, profit factor, mean P&L and holding time, best and worst trade."""
    closed = trades.filter(pl.col("exit_reason") != OPEN)
    pnl = closed["pnl"].to_numpy()
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    nan = math.nan
    best = int(np.argmax(pnl)) if pnl.shape[0] else -1
    worst = int(np.argmin(pnl)) if pnl.shape[0] else -1
    assets = closed["asset_id"].cast(pl.String).to_list()
    return TradeStats(
        closed=closed.height,
        open=trades.height - closed.height,
        win_rate=wins.shape[0] / pnl.shape[0] if pnl.shape[0] else nan,
        payoff_ratio=(
            float(np.mean(wins)) / abs(float(np.mean(losses)))
            if wins.shape[0] and losses.shape[0]
            else nan
        ),
        profit_factor=(
            float(np.sum(wins)) / abs(float(np.sum(losses))) if losses.shape[0] else nan
        ),
        avg_pnl=float(np.mean(pnl)) if pnl.shape[0] else nan,
        avg_bars_held=float(closed["bars_held"].mean()) if closed.height else nan,  # type: ignore[arg-type]
        best_pnl=float(pnl[best]) if best >= 0 else nan,
        best_asset=assets[best] if best >= 0 else "",
        worst_pnl=float(pnl[worst]) if worst >= 0 else nan,
        worst_asset=assets[worst] if worst >= 0 else "",
    )


def exposure(equity: pl.DataFrame) -> np.ndarray:
    """Per bar, |positions value| / equity (gross exposure for a book with one side)."""
    values = equity["equity"].to_numpy()
    held = np.abs(equity["positions_value"].to_numpy())
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values != 0, held / np.abs(values), np.nan)


def monthly_turnover(equity: pl.DataFrame, fills: pl.DataFrame) -> pl.DataFrame:
    """Per calendar month: the notional traded (sum of |qty| x price of the fills; corporate
    actions are not fills) over the month's mean equity."""
    month = pl.col("timestamp").dt.strftime("%Y-%m").alias("period")
    traded = (
        fills.select(
            month, (pl.col("qty").abs().cast(pl.Float64) * pl.col("price")).alias("notional")
        )
        .group_by("period")
        .agg(pl.col("notional").sum())
    )
    mean_equity = equity.group_by(month, maintain_order=True).agg(pl.col("equity").mean())
    return (
        mean_equity.join(traded, on="period", how="left", maintain_order="left")
        .with_columns(pl.col("notional").fill_null(0.0))
        .select("period", (pl.col("notional") / pl.col("equity")).alias("turnover"))
    )


def rejections_by_reason(rejections: pl.DataFrame) -> pl.DataFrame:
    """Per reason: how many rejection rows and how many shares they refused, most first."""
    return (
        rejections.group_by(pl.col("reason").cast(pl.String))
        .agg(pl.len().alias("rows"), pl.col("qty").abs().sum().alias("shares"))
        .sort(["rows", "reason"], descending=[True, False])
    )
