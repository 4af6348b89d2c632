"""Summary statistics of a run: returns, risk, drawdown, turnover and trade counts.

The definitions (docs/METRICS.md) are the field's, as empyrical-reloaded computes them, so a
number here can be checked against that library (tests/engine/test_metrics_empyrical.py):
simple per-bar returns of equity; volatility and Sharpe with the sample deviation (ddof 1);
Sortino over empyrical's downside risk (the root mean square of the returns clipped at 0,
over all bars); drawdowns against the running peak, the starting equity included. The
primitives below take a returns array and the periods per year, so the summary, the tear
sheet's rolling windows and the benchmark's figures share one definition.

A value the data do not define (a ratio over one bar, a Sharpe ratio of a flat curve) is
NaN; a ratio over a dispersion of exactly zero is +-inf, as in empyrical. Both are written
as JSON null (`output.json_ready`).
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


def _sample_std(returns: np.ndarray) -> float:
    """Sample standard deviation (ddof 1), exactly 0 when every value is equal (the mean of
    identical values can differ from them in the last bit; empyrical's rule too)."""
    if float(returns.max()) == float(returns.min()):
        return 0.0
    return float(np.std(returns, ddof=1))


def annual_volatility(returns: np.ndarray, periods: float) -> float:
    """Sample standard deviation (ddof 1) of the returns, annualized; NaN under two bars."""
    if returns.shape[0] < 2:
        return math.nan
    return _sample_std(returns) * math.sqrt(periods)


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator with IEEE semantics: +-inf over 0, NaN for 0 / 0."""
    if denominator == 0.0:
        return (
            math.nan
            if numerator == 0.0 or math.isnan(numerator)
            else math.copysign(math.inf, numerator)
        )
    return numerator / denominator


def sharpe_ratio(returns: np.ndarray, periods: float) -> float:
    """mean / std (ddof 1) x sqrt(periods per year); NaN under two bars or for a flat curve."""
    if returns.shape[0] < 2:
        return math.nan
    return _ratio(float(np.mean(returns)), _sample_std(returns)) * math.sqrt(periods)


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
    return _ratio(float(np.mean(returns)) * periods, downside_risk(returns, periods))


def drawdowns(values: np.ndarray, start: float) -> np.ndarray:
    """Per bar, the curve's fall from its running peak (the start included), as a fraction <= 0."""
    peak = np.maximum.accumulate(np.r_[start, values])[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return values / peak - 1.0


def max_drawdown(values: np.ndarray, start: float) -> float:
    """The deepest drawdown of the curve (a fraction <= 0); NaN without bars."""
    if values.shape[0] == 0:
        return math.nan
    return float(drawdowns(values, start).min())


def cagr(values: np.ndarray, start: float, periods: float) -> float:
    """Compound annual growth: (end / start) ** (periods per year / bars) - 1; -1 for a curve
    that ends at 0, NaN for one that ends below 0 (no real root) or without bars."""
    if values.shape[0] == 0 or not start > 0:
        return math.nan
    growth = float(values[-1]) / start
    if growth < 0 or math.isnan(growth):
        return math.nan
    return float(growth ** (periods / values.shape[0]) - 1.0)


def beta(returns: np.ndarray, factor: np.ndarray) -> float:
    """Cov(returns, factor) / Var(factor), both with the population mean (empyrical's beta);
    NaN under two bars or when the factor does not vary (variance below 1e-30)."""
    if returns.shape[0] < 2:
        return math.nan
    residual = factor - float(np.mean(factor))
    variance = float(np.mean(residual * residual))
    if variance < 1e-30:
        return math.nan
    return float(np.mean(residual * returns)) / variance


def alpha(returns: np.ndarray, factor: np.ndarray, periods: float) -> float:
    """Annualized alpha (risk free 0): (1 + mean(returns - beta x factor)) ** periods - 1."""
    if returns.shape[0] < 2:
        return math.nan
    b = beta(returns, factor)
    return float((float(np.mean(returns - b * factor)) + 1.0) ** periods - 1.0)


def tracking_error(returns: np.ndarray, factor: np.ndarray, periods: float) -> float:
    """The annualized sample deviation (ddof 1) of the active returns (returns - factor)."""
    return annual_volatility(returns - factor, periods)


def information_ratio(returns: np.ndarray, factor: np.ndarray, periods: float) -> float:
    """Annualized mean active return over the tracking error: empyrical's excess_sharpe
    x sqrt(periods per year); NaN under two bars."""
    if returns.shape[0] < 2:
        return math.nan
    active = returns - factor
    return _ratio(float(np.mean(active)) * periods, tracking_error(returns, factor, periods))


def correlation(returns: np.ndarray, factor: np.ndarray) -> float:
    """Pearson correlation of the two return series; NaN under two bars or if one is flat."""
    if returns.shape[0] < 2:
        return math.nan
    a, b = returns - float(np.mean(returns)), factor - float(np.mean(factor))
    scale = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b)) / scale if scale > 0 else math.nan


def compute_metrics(
    equity: pl.DataFrame,
    trades: pl.DataFrame,
    fills: pl.DataFrame,
    *,
    start_equity: float,
    periods: float | None = None,
) -> dict[str, float]:
    """Summary statistics of an equity curve that starts at `start_equity`. `periods`: bars
    per year (default: from the bar spacing, `periods_per_year`)."""
    values = equity["equity"].to_numpy()
    out: dict[str, float] = {}
    if values.shape[0] == 0:
        return out
    if periods is None:
        periods = periods_per_year(equity["timestamp"].dt.epoch("us").to_numpy())
    returns = bar_returns(values, start_equity)
    years = values.shape[0] / periods
    exposure = equity["positions_value"].to_numpy()
    closed_pnl = trades["pnl"].to_numpy()[(trades["exit_reason"] != "open").to_numpy()]
    traded = float((fills["qty"].cast(pl.Float64) * fills["price"]).sum()) if fills.height else 0.0
    out["total_return"] = float(values[-1] / start_equity - 1.0)
    out["cagr"] = cagr(values, start_equity, periods)
    out["volatility"] = annual_volatility(returns, periods)
    out["sharpe"] = sharpe_ratio(returns, periods)
    out["sortino"] = sortino_ratio(returns, periods)
    out["max_drawdown"] = max_drawdown(values, start_equity)
    out["periods_per_year"] = periods
    out["turnover"] = traded / float(np.mean(values)) / max(years, 1e-12)
    out["exposure"] = float(
        np.mean(np.abs(exposure) / np.where(values != 0, np.abs(values), np.nan))
    )
    wins = int(np.count_nonzero(closed_pnl > 0))
    n_closed = closed_pnl.shape[0]
    out["win_rate"] = wins / n_closed if n_closed else 0.0
    out["n_trades"] = float(n_closed)
    return out


def relative_metrics(
    values: np.ndarray,
    start: float,
    benchmark: np.ndarray,
    benchmark_start: float,
    periods: float,
) -> dict[str, float]:
    """The benchmark's own figures and the strategy's against it (summary.json `benchmark`):
    both curves as per-bar simple returns from their values before the first bar."""
    returns = bar_returns(values, start)
    factor = bar_returns(benchmark, benchmark_start)
    total = float(benchmark[-1] / benchmark_start - 1.0)
    return {
        "total_return": total,
        "cagr": cagr(benchmark, benchmark_start, periods),
        "volatility": annual_volatility(factor, periods),
        "sharpe": sharpe_ratio(factor, periods),
        "max_drawdown": max_drawdown(benchmark, benchmark_start),
        "excess_return": float(values[-1] / start - 1.0) - total,
        "beta": beta(returns, factor),
        "alpha": alpha(returns, factor, periods),
        "tracking_error": tracking_error(returns, factor, periods),
        "information_ratio": information_ratio(returns, factor, periods),
        "correlation": correlation(returns, factor),
    }
