"""Summary statistics of a run: returns, risk, drawdown, turnover and trade counts."""

from __future__ import annotations

import math

import numpy as np
import polars as pl


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
