"""Every summary metric against empyrical-reloaded on the same curve (docs/METRICS.md).

Generated curves (several seeds; daily, weekly and hourly bars; the edge cases where a value
is undefined or infinite), real stocks (bokeh-sampledata's adjusted closes) and whole
backtests (the summary against empyrical over the run's own equity and benchmark columns).
empyrical is the reference: nothing here re-derives a formula of the engine.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import empyrical
import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.engine import compute_metrics, run_backtest, run_config_from_dict
from ml4t_pipeline.engine.results import metrics as m
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data
from ml4t_pipeline.sample_data.real_stocks import load_stocks, write_real_inputs

REL = 1e-12
ABS = 1e-13  # (CAGR near 0: empyrical compounds the returns, the engine divides end by start)
T0 = dt.datetime(2020, 1, 6, tzinfo=dt.UTC)
#: bar spacing -> the periods per year the engine infers for it
SPACINGS = {
    "daily": (dt.timedelta(days=1), 252.0),
    "weekly": (dt.timedelta(weeks=1), 52.0),
    "hourly": (dt.timedelta(hours=1), 252.0 * 24),
}


def same(ours: float, theirs: Any) -> None:
    """Equal within REL / ABS; NaN only where empyrical gives NaN, inf of the same sign."""
    reference = float(theirs)
    if math.isnan(reference):
        assert math.isnan(ours), (ours, reference)
    elif math.isinf(reference):
        assert ours == reference
    else:
        assert ours == pytest.approx(reference, rel=REL, abs=ABS)


def _frame(values: np.ndarray, spacing: dt.timedelta) -> pl.DataFrame:
    n = values.shape[0]
    return pl.DataFrame(
        {
            "timestamp": pl.Series(
                [T0 + k * spacing for k in range(n)], dtype=pl.Datetime("us", "UTC")
            ),
            "cash": np.zeros(n),
            "positions_value": values,
            "equity": values,
        }
    )


_NO_TRADES = pl.DataFrame(schema={"pnl": pl.Float64, "exit_reason": pl.String})
_NO_FILLS = pl.DataFrame(schema={"qty": pl.Int64, "price": pl.Float64})


def _walk(seed: int, n: int, *, drift: float = 2e-4, vol: float = 0.012) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1e6 * np.cumprod(1.0 + rng.normal(drift, vol, n))


def check_against_empyrical(values: np.ndarray, start: float, periods: float) -> dict[str, float]:
    """The summary of `values` (from `start`) matches empyrical metric by metric."""
    spacing = next((s for s, p in SPACINGS.values() if p == periods), dt.timedelta(days=1))
    ours = compute_metrics(
        _frame(values, spacing), _NO_TRADES, _NO_FILLS, start_equity=start, periods=periods
    )
    returns = values / np.r_[start, values[:-1]] - 1.0
    with np.errstate(all="ignore"):
        same(ours["total_return"], empyrical.cum_returns_final(returns))
        same(ours["cagr"], empyrical.cagr(returns, annualization=periods))
        same(ours["volatility"], empyrical.annual_volatility(returns, annualization=periods))
        same(ours["sharpe"], empyrical.sharpe_ratio(returns, annualization=periods))
        same(ours["sortino"], empyrical.sortino_ratio(returns, annualization=periods))
        same(ours["max_drawdown"], empyrical.max_drawdown(returns))
        same(
            m.downside_risk(returns, periods),
            empyrical.downside_risk(returns, annualization=periods),
        )
    return ours


def check_relative(
    values: np.ndarray, start: float, bench: np.ndarray, bench_start: float, periods: float
) -> dict[str, float]:
    """The benchmark figures of `relative_metrics` match empyrical's."""
    ours = m.relative_metrics(values, start, bench, bench_start, periods)
    r = values / np.r_[start, values[:-1]] - 1.0
    f = bench / np.r_[bench_start, bench[:-1]] - 1.0
    with np.errstate(all="ignore"):
        alpha, beta = empyrical.alpha_beta(r, f, risk_free=0.0, annualization=periods)
        same(ours["alpha"], alpha)
        same(ours["beta"], beta)
        same(ours["beta"], empyrical.beta(r, f))
        same(ours["tracking_error"], empyrical.annual_volatility(r - f, annualization=periods))
        same(
            ours["information_ratio"],
            empyrical.excess_sharpe(r, f) * math.sqrt(periods),
        )
        same(ours["total_return"], empyrical.cum_returns_final(f))
        same(ours["cagr"], empyrical.cagr(f, annualization=periods))
        same(ours["volatility"], empyrical.annual_volatility(f, annualization=periods))
        same(ours["sharpe"], empyrical.sharpe_ratio(f, annualization=periods))
        same(ours["max_drawdown"], empyrical.max_drawdown(f))
        same(ours["excess_return"], empyrical.cum_returns_final(r) - empyrical.cum_returns_final(f))
        if r.shape[0] > 1 and np.std(r) > 0 and np.std(f) > 0:
            same(ours["correlation"], np.corrcoef(r, f)[0, 1])
        else:
            assert math.isnan(ours["correlation"])
    return ours


@pytest.mark.parametrize("spacing", sorted(SPACINGS))
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_generated_curves_match_empyrical(seed: int, spacing: str) -> None:
    step, periods = SPACINGS[spacing]
    n = 40 + 97 * seed
    values = _walk(seed, n)
    ours = check_against_empyrical(values, 1e6, periods)
    # the periods the engine infers from the spacing are the ones checked
    inferred = compute_metrics(_frame(values, step), _NO_TRADES, _NO_FILLS, start_equity=1e6)
    assert inferred["periods_per_year"] == periods
    assert inferred == ours
    bench = _walk(seed + 100, n, drift=1e-4, vol=0.009)
    mixed = 0.6 * values + 0.4 * bench  # correlated with the benchmark
    check_relative(mixed, 1e6, bench, 1e6, periods)


EDGE_CURVES = {
    "one_bar": np.array([1_010_000.0]),
    "two_bars": np.array([1_010_000.0, 990_000.0]),
    "flat": np.full(30, 1e6),
    "never_down": 1e6 * np.cumprod(np.r_[1.01, 1.0, 1.02, 1.0, 1.005]),
    "constant_growth": 1e6 * 1.01 ** np.arange(1, 21),
    "ends_at_zero": np.array([1e6, 5e5, 0.0]),
    # (5 bars: empyrical raises the negative growth to 252 / 5; to a whole power it would
    # give a real number, the engine says NaN for every curve that ends below zero)
    "ends_below_zero": np.array([1e6, 9e5, 5e5, 1e5, -1e5]),
    "loss_only": np.array([990_000.0, 980_000.0, 950_000.0]),
}


@pytest.mark.parametrize("name", sorted(EDGE_CURVES))
def test_edge_curves_match_empyrical(name: str) -> None:
    ours = check_against_empyrical(EDGE_CURVES[name], 1e6, 252.0)
    if name == "flat":
        assert math.isnan(ours["sharpe"])
        assert math.isnan(ours["sortino"])
        assert ours["volatility"] == 0.0
    if name == "one_bar":
        assert math.isnan(ours["sharpe"])
        assert math.isnan(ours["volatility"])


@pytest.mark.parametrize("n", [3, 7, 50])
def test_identical_returns_have_no_dispersion(n: int) -> None:
    # the sample deviation of n equal returns can be a residue of ~1e-17: empyrical takes it
    # for 0 (an infinite Sharpe ratio), and so does the engine
    returns, zero = np.full(n, 0.1), np.zeros(n)
    assert np.std(returns, ddof=1) != 0.0  # (the residue)
    same(m.sharpe_ratio(returns, 252.0), empyrical.sharpe_ratio(returns, annualization=252))
    same(
        m.annual_volatility(returns, 252.0), empyrical.annual_volatility(returns, annualization=252)
    )
    same(
        m.information_ratio(returns, zero, 252.0),
        empyrical.excess_sharpe(returns, zero) * math.sqrt(252.0),
    )
    assert math.isinf(m.sharpe_ratio(returns, 252.0))


#: the edge curves a benchmark can have (it holds no short: it never ends at or below zero)
BENCHMARK_EDGES = sorted(name for name, values in EDGE_CURVES.items() if values[-1] > 0)


@pytest.mark.parametrize("name", BENCHMARK_EDGES)
def test_edge_relative_figures_match_empyrical(name: str) -> None:
    values = EDGE_CURVES[name]
    check_relative(_walk(9, values.shape[0]), 1e6, values, 1e6, 252.0)
    check_relative(values, 1e6, values, 1e6, 252.0)  # itself: beta 1, no tracking error


def test_periods_per_year_by_spacing() -> None:
    day = 86_400_000_000
    assert m.periods_per_year(np.arange(10) * day) == 252.0
    assert m.periods_per_year(np.arange(10) * 7 * day) == 52.0
    assert m.periods_per_year(np.arange(10) * 30 * day) == 12.0
    assert m.periods_per_year(np.arange(10) * (day // 24)) == pytest.approx(252.0 * 24)
    assert m.periods_per_year(np.array([0])) == 252.0


# -- real data ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stocks() -> pl.DataFrame:
    return load_stocks()


@pytest.mark.parametrize("ticker", ["AAPL", "GOOG", "IBM", "MSFT"])
def test_real_stock_curves_match_empyrical(stocks: pl.DataFrame, ticker: str) -> None:
    close = stocks.filter(pl.col("asset_id") == ticker)["adj_close"].to_numpy()
    check_against_empyrical(close[1:], float(close[0]), 252.0)


def test_real_stocks_against_each_other_match_empyrical(stocks: pl.DataFrame) -> None:
    wide = stocks.pivot(on="asset_id", index="timestamp", values="adj_close").drop_nulls(
        ["AAPL", "IBM"]
    )
    aapl, ibm = wide["AAPL"].to_numpy(), wide["IBM"].to_numpy()
    check_relative(aapl[1:], float(aapl[0]), ibm[1:], float(ibm[0]), 252.0)


# -- whole runs -----------------------------------------------------------------------------


def _strict_json(text: str) -> Any:
    """JSON as the standard defines it: NaN / Infinity tokens are an error."""

    def refuse(token: str) -> None:
        msg = f"not JSON: {token}"
        raise AssertionError(msg)

    return json.loads(text, parse_constant=refuse)


def check_run(result: Any, periods: float) -> None:
    """A run's summary against empyrical over its own equity and benchmark columns."""
    equity = result.equity["equity"].to_numpy()
    check_against_empyrical(equity, result.start_equity, periods)
    summary = result.summary()
    for key in ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown"):
        value = result.metrics[key]
        assert summary[key] == (value if math.isfinite(value) else None)
    if "benchmark" in result.equity.columns:
        bench = result.equity["benchmark"].to_numpy()
        section = summary["benchmark"]
        start = section["inception_value"]
        ours = check_relative(equity, result.start_equity, bench, start, periods)
        for key, value in ours.items():
            assert section[key] == (value if math.isfinite(value) else None), key


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spec = SampleSpec(assets=12, days=160, scenario="mixed", seed=5, start=dt.date(2023, 1, 2))
    return write_sample_data(spec, tmp_path_factory.mktemp("metrics"))


ROTATION: dict[str, Any] = {
    "name": "top_k_rotation",
    "params": {"top_k": 4, "weight": 0.2, "rebalance_every": 5, "warmup_bars": 5, "max_vix": 40},
}


@pytest.mark.parametrize(
    ("benchmark", "kind"),
    [
        ({"kind": "equal_weight"}, "equal_weight"),
        ({"asset": "A0003"}, "asset"),
        ({"context": "vix"}, "context"),
    ],
)
def test_a_run_summary_matches_empyrical(
    sample: dict[str, Path], benchmark: dict[str, Any], kind: str, tmp_path: Path
) -> None:
    raw = {
        "data": {k: str(sample[k]) for k in ("prices", "signals", "context")},
        "execution": {"commission_rate": 0.001},
        "strategy": ROTATION,
        "benchmark": benchmark,
    }
    result = run_backtest(run_config_from_dict(raw))
    check_run(result, 252.0)
    written = _strict_json((result.write(tmp_path / "out") / "summary.json").read_text())
    assert written["benchmark"]["kind"] == kind
    assert written["benchmark"]["total_return"] == result.summary()["benchmark"]["total_return"]


def test_metrics_periods_per_year_overrides_the_spacing(sample: dict[str, Path]) -> None:
    raw = {
        "data": {k: str(sample[k]) for k in ("prices", "signals", "context")},
        "strategy": ROTATION,
        "metrics": {"periods_per_year": 365},
    }
    result = run_backtest(run_config_from_dict(raw))
    assert result.metrics["periods_per_year"] == 365.0
    check_run(result, 365.0)


def test_undefined_metrics_are_null_in_summary_json(
    sample: dict[str, Path], tmp_path: Path
) -> None:
    # a strategy that never trades: a flat curve, whose Sharpe and Sortino are undefined
    raw = {
        "data": {k: str(sample[k]) for k in ("prices", "signals", "context")},
        "strategy": {**ROTATION, "params": {**ROTATION["params"], "max_vix": 0.001}},
    }
    result = run_backtest(run_config_from_dict(raw))
    assert result.fills.height == 0
    assert math.isnan(result.metrics["sharpe"])
    written = _strict_json((result.write(tmp_path / "out") / "summary.json").read_text())
    assert written["sharpe"] is None
    assert written["sortino"] is None
    assert written["volatility"] == 0.0
    assert written["benchmark"]["beta"] == 0.0  # a flat curve does not move with the market
    check_run(result, 252.0)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_real_inputs(tmp_path_factory.mktemp("real-metrics"), dividends=True)


def test_a_real_data_run_summary_matches_empyrical(real: dict[str, Path]) -> None:
    raw = {
        "data": {k: str(real[k]) for k in ("prices", "signals", "context", "corporate_actions")},
        "execution": {"commission_rate": 0.001},
        "strategy": {
            "name": "top_k_rotation",
            "params": {
                "score": "momentum_20",
                "top_k": 2,
                "weight": 0.4,
                "rebalance_every": 10,
                "warmup_bars": 25,
            },
        },
    }
    result = run_backtest(run_config_from_dict(raw))
    assert result.fills.height > 100
    check_run(result, 252.0)
