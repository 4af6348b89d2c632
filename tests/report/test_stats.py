"""The report's numbers on hand-built inputs with answers worked out by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.engine.results.metrics import annual_volatility, bar_returns, sharpe_ratio
from ml4t_pipeline.report import stats
from ml4t_pipeline.report.stats import DrawdownPeriod


def _utc(year: int, month: int, day: int) -> dt.datetime:
    return dt.datetime(year, month, day, tzinfo=dt.UTC)


def _bars(periods: list[DrawdownPeriod]) -> list[tuple[int, int, int | None, int]]:
    """(peak, trough, recovery, length) of each period."""
    return [(p.start, p.trough, p.recovery, p.length) for p in periods]


def test_drawdown_periods_of_a_hand_built_curve() -> None:
    # peaks at bars 0 (110), 4 (121) and 7 (130); troughs 88, 115, 117; the last not recovered
    values = np.array([110.0, 99.0, 88.0, 110.0, 121.0, 115.0, 121.0, 130.0, 117.0])
    periods = stats.drawdown_periods(values, 100.0)
    assert _bars(periods) == [(0, 2, 3, 3), (7, 8, None, 1), (4, 5, 6, 2)]
    assert [p.depth for p in periods] == pytest.approx([-0.2, -0.1, -6 / 121])
    assert stats.drawdown_periods(values, 100.0, top=1) == periods[:1]


def test_a_drawdown_from_the_starting_value_starts_before_the_first_bar() -> None:
    periods = stats.drawdown_periods(np.array([90.0, 95.0, 100.0, 101.0]), 100.0)
    assert _bars(periods) == [(-1, 0, 2, 3)]
    assert periods[0].depth == pytest.approx(-0.1)
    assert stats.drawdown_periods(np.array([100.0, 101.0, 102.0]), 100.0) == []


def test_monthly_and_annual_returns_compound_month_and_year_ends() -> None:
    times = pl.Series(
        [
            _utc(2024, 1, 30),
            _utc(2024, 1, 31),
            _utc(2024, 2, 1),
            _utc(2024, 2, 29),
            _utc(2025, 1, 2),
        ]
    )
    values = np.array([101.0, 102.0, 103.0, 99.0, 110.0])
    monthly = stats.period_returns(times, values, 100.0, "month")
    assert monthly["period"].to_list() == ["2024-01", "2024-02", "2025-01"]
    assert monthly["return"].to_list() == pytest.approx([0.02, 99 / 102 - 1, 110 / 99 - 1])
    annual = stats.period_returns(times, values, 100.0, "year")
    assert annual["period"].to_list() == ["2024", "2025"]
    assert annual["return"].to_list() == pytest.approx([-0.01, 110 / 99 - 1])


def test_trade_statistics_count_closed_trades_only() -> None:
    trades = pl.DataFrame(
        {
            "asset_id": ["A", "B", "C", "D", "E"],
            "pnl": [100.0, -50.0, 200.0, 50.0, -999.0],
            "bars_held": [2, 4, 6, 8, 1],
            "exit_reason": ["signal", "stop_loss", "signal", "time_exit", "open"],
        }
    )
    s = stats.trade_stats(trades)
    assert (s.closed, s.open) == (4, 1)
    assert s.win_rate == 0.75
    assert s.payoff_ratio == pytest.approx((350.0 / 3) / 50.0)
    assert s.profit_factor == pytest.approx(7.0)
    assert s.avg_pnl == 75.0
    assert s.avg_bars_held == 5.0
    assert (s.best_pnl, s.best_asset, s.worst_pnl, s.worst_asset) == (200.0, "C", -50.0, "B")


def test_trade_statistics_without_trades_are_undefined() -> None:
    empty = pl.DataFrame(
        schema={
            "asset_id": pl.String,
            "pnl": pl.Float64,
            "bars_held": pl.Int64,
            "exit_reason": pl.String,
        }
    )
    s = stats.trade_stats(empty)
    assert s.closed == 0
    assert np.isnan([s.win_rate, s.payoff_ratio, s.profit_factor, s.avg_bars_held]).all()
    assert s.best_asset == ""


def test_the_rolling_window_is_half_a_year_of_bars_and_uses_the_primitives() -> None:
    rng = np.random.default_rng(3)
    returns = rng.normal(0.0005, 0.01, 400)
    every_bar = stats.rolling(returns, 252.0)
    assert every_bar.window == 126
    assert every_bar.bars.tolist() == list(range(125, 400))
    assert every_bar.sharpe[-1] == sharpe_ratio(returns[-126:], 252.0)
    assert every_bar.volatility[75] == annual_volatility(returns[75:201], 252.0)
    sampled = stats.rolling(returns, 252.0, every=100)
    assert sampled.bars.tolist() == [125, 225, 325, 399]  # and the last bar
    assert sampled.sharpe.tolist() == every_bar.sharpe[[0, 100, 200, 274]].tolist()
    assert stats.rolling(returns, 52.0).window == 26
    assert stats.rolling(returns[:100], 252.0).bars.tolist() == []


def test_headline_figures_are_those_of_the_primitives() -> None:
    values = np.array([101.0, 99.0, 104.0, 103.0])
    h = stats.headline(values, 100.0, 252.0)
    assert h.total_return == pytest.approx(0.03)
    assert h.max_drawdown == pytest.approx(99 / 101 - 1)
    assert h.sharpe == sharpe_ratio(bar_returns(values, 100.0), 252.0)


def test_turnover_exposure_and_rejections_by_hand() -> None:
    times = [_utc(2024, 1, 2), _utc(2024, 1, 3), _utc(2024, 2, 1)]
    equity = pl.DataFrame(
        {
            "timestamp": times,
            "equity": [100.0, 300.0, 200.0],
            "positions_value": [50.0, -150.0, 0.0],
        }
    )
    fills = pl.DataFrame({"timestamp": [times[0], times[1]], "qty": [2, -3], "price": [10.0, 20.0]})
    turnover = stats.monthly_turnover(equity, fills)
    assert turnover["period"].to_list() == ["2024-01", "2024-02"]
    assert turnover["turnover"].to_list() == pytest.approx([(20.0 + 60.0) / 200.0, 0.0])
    assert stats.exposure(equity).tolist() == pytest.approx([0.5, 0.5, 0.0])
    rejections = pl.DataFrame(
        {"reason": ["insufficient_cash", "no_bar", "insufficient_cash"], "qty": [10, 5, -7]}
    )
    table = stats.rejections_by_reason(rejections)
    assert table.rows() == [("insufficient_cash", 2, 17), ("no_bar", 1, 5)]
