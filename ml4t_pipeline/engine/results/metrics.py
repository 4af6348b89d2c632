"""Summary statistics of a run: returns, risk, drawdown, turnover and trade counts.

The definitions (docs/METRICS.md) are the field's, as empyrical-reloaded computes them, so a
number here can be checked against that library (tests/engine/test_metrics_empyrical.py):
simple per-bar returns of equity; volatility and Sharpe with the sample deviation (ddof 1);
Sortino over empyrical's downside risk (the root mean square of the returns clipped at 0,
over all bars); drawdowns against the running peak, the starting equity included. The
primitives below take a returns array and the periods per year, so the summary, the tear
sheet's rolling windows and the benchmark's figures share one definition.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

#: annualization by bar spacing: daily bars and anything coarser than a day up to a week
DAYS_PER_YEAR = 252.0
WEEKS_PER_YEAR = 52.0
MONTHS_PER_YEAR = 12.0
US_PER_DAY = 86_400e6


def bar_returns(values: np.ndarray, start: float) -> np.ndarray:
    """Simple per-bar returns of an equity (or price level) curve that starts at `start`."""
    prev = np.r_[start, values[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        return values / prev - 1.0


def periods_per_year(timestamps_us: np.ndarray) -> float:
    """Bars per year from the median bar spacing: 252 for daily bars, 52 weekly, 12 monthly;
    intraday bars count 252 trading days times the bars of a day."""
    if timestamps_us.shape[0] < 2:
        return DAYS_PER_YEAR
    spacing_days = float(np.median(np.diff(timestamps_us))) / US_PER_DAY
    if spacing_days >= 20.0:
        return MONTHS_PER_YEAR
    if spacing_days >= 5.0:
        return WEEKS_PER_YEAR
    if spacing_days >= 0.5:
        return DAYS_PER_YEAR
    return DAYS_PER_YEAR / max(spacing_days, 1e-9)


def annual_volatility(returns: np.ndarray, periods: float) -> float:
    """Sample standard deviation (ddof 1) of the returns, annualized; NaN under two bars."""
    if returns.shape[0] < 2:
        return math.nan
    return float(np.std(returns, ddof=1) * math.sqrt(periods))


def sharpe_ratio(returns: np.ndarray, periods: float) -> float:
    """mean / std (ddof 1) x sqrt(periods per year); NaN under two bars or without dispersion."""
    if returns.shape[0] < 2:
        return math.nan
    std = float(np.std(returns, ddof=1))
    if std == 0.0:
        return math.nan
    return float(np.mean(returns)) / std * math.sqrt(periods)


def downside_risk(returns: np.ndarray, periods: float) -> float:
    """Root mean square of the returns clipped above at 0 (every bar counts), annualized."""
    if returns.shape[0] == 0:
        return math.nan
    clipped = np.minimum(returns, 0.0)
    return float(math.sqrt(float(np.mean(clipped * clipped))) * math.sqrt(periods))


def sortino_ratio(returns: np.ndarray, periods: float) -> float:
    """Annualized mean return over the downside risk; NaN under two bars, inf without a loss."""
    if returns.shape[0] < 2:
        return math.nan
    risk = downside_risk(returns, periods)
    mean = float(np.mean(returns)) * periods
    if risk == 0.0:
        return math.inf if mean > 0 else math.nan
    return mean / risk


def drawdowns(values: np.ndarray, start: float) -> np.ndarray:
    """Per bar, the curve's fall from its running peak (the start included), as a fraction <= 0."""
    peak = np.maximum.accumulate(np.r_[start, values])[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return values / peak - 1.0


def cagr(values: np.ndarray, start: float, periods: float) -> float:
    """Compound annual growth: (end / start) ** (periods per year / bars) - 1."""
    if values.shape[0] == 0 or start <= 0:
        return math.nan
    growth = float(values[-1]) / start
    if growth <= 0:
        return -1.0
    return float(growth ** (periods / values.shape[0]) - 1.0)


def compute_metrics(
    equity: pl.DataFrame, trades: pl.DataFrame, fills: pl.DataFrame, *, start_equity: float
) -> dict[str, float]:
    """Summary statistics of an equity curve (per-bar returns, annualised by bar spacing)."""
    values = equity["equity"].to_numpy()
    out: dict[str, float] = {}
    if values.shape[0] == 0:
        return out
    prev = np.r_[start_equity, values[:-1]]
    returns = values / prev - 1.0
    stamps = equity["timestamp"].dt.epoch("us").to_numpy()
    spacing_days = float(np.median(np.diff(stamps))) / 86_400e6 if stamps.shape[0] > 1 else 1.0
    periods = 252.0 if spacing_days >= 0.5 else 252.0 / max(spacing_days, 1e-9)
    years = values.shape[0] / periods
    total = float(values[-1] / start_equity - 1.0)
    vol = float(returns.std(ddof=1) * math.sqrt(periods)) if returns.shape[0] > 1 else 0.0
    mean = float(returns.mean() * periods)
    downside = returns[returns < 0]
    down_vol = (
        float(math.sqrt(float(np.mean(downside**2))) * math.sqrt(periods))
        if downside.shape[0]
        else 0.0
    )
    peak = np.maximum.accumulate(np.r_[start_equity, values])[1:]
    drawdown = values / peak - 1.0
    exposure = equity["positions_value"].to_numpy()
    closed_pnl = trades["pnl"].to_numpy()[(trades["exit_reason"] != "open").to_numpy()]
    traded = float((fills["qty"].cast(pl.Float64) * fills["price"]).sum()) if fills.height else 0.0
    out["total_return"] = total
    out["cagr"] = (
        float((values[-1] / start_equity) ** (1.0 / years) - 1.0)
        if years > 0 and values[-1] > 0
        else -1.0
    )
    out["volatility"] = vol
    out["sharpe"] = mean / vol if vol > 0 else 0.0
    out["sortino"] = mean / down_vol if down_vol > 0 else 0.0
    out["max_drawdown"] = float(drawdown.min())
    out["turnover"] = traded / float(np.mean(values)) / max(years, 1e-12)
    out["exposure"] = float(
        np.mean(np.abs(exposure) / np.where(values != 0, np.abs(values), np.nan))
    )
    wins = int(np.count_nonzero(closed_pnl > 0))
    n_closed = closed_pnl.shape[0]
    out["win_rate"] = wins / n_closed if n_closed else 0.0
    out["n_trades"] = float(n_closed)
    return out
