"""`History` spans the run: the same bars whatever the chunking, and across chained runs.

A hand-made market of three assets over four months (daily bars), written to Parquet. The
rolling values a strategy and a `CallableFeatures` read from History are checked against the
same windows computed here from the price file, and runs split into monthly chunks, or
chained month by month through the JSON state, must equal one run bit for bit.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.engine import (
    BacktestResult,
    Batch,
    CallableFeatures,
    EngineState,
    MarketData,
    RunConfig,
    Strategy,
    run_backtest,
    run_config_from_dict,
)
from ml4t_pipeline.engine.feed.features import FeatureFn
from ml4t_pipeline.engine.loop import Engine
from ml4t_pipeline.engine.strategy.history import History
from ml4t_pipeline.engine.strategy.views import ContextView
from ml4t_pipeline.errors import ConfigError, StateError
from tests.invariants import assert_result_invariants

ASSETS = ("A", "B", "C")
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
N_BARS = 121  # January to April 2024, one bar a day
MONTHS = ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01", "2024-05-01"]
MEAN_BARS = 30  # the strategy's rolling mean
MAX_BARS = 45  # the feature's rolling max (longer than February: spans two earlier chunks)
Records = dict[int, dict[str, Any]]


def _closes() -> np.ndarray:
    t = np.arange(N_BARS)[:, None]
    k = np.arange(len(ASSETS))[None, :]
    return 100.0 + 10.0 * np.sin(t / 6.0 + k) + 0.05 * t * (k + 1)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("history")
    close = _closes()
    opens = np.vstack([close[:1], close[:-1]])
    stamps = [T0 + dt.timedelta(days=d) for d in range(N_BARS)]
    frame = pl.DataFrame(
        {
            "timestamp": [s for s in stamps for _ in ASSETS],
            "asset_id": list(ASSETS) * N_BARS,
            "open": opens.ravel(),
            "high": np.maximum(opens, close).ravel() + 1.0,
            "low": np.minimum(opens, close).ravel() - 1.0,
            "close": close.ravel(),
            "volume": [1e6] * (N_BARS * len(ASSETS)),
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )
    score = np.cos(np.arange(N_BARS * len(ASSETS)) / 5.0)
    signals = frame.select("timestamp", "asset_id", pl.Series("score", score))
    context = pl.DataFrame(
        {"timestamp": stamps, "vix": 20.0 + 5.0 * np.sin(np.arange(N_BARS) / 4.0)},
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )
    paths = {"prices": out / "prices.parquet", "signals": out / "signals.parquet"}
    paths["context"] = out / "context.parquet"
    frame.write_parquet(paths["prices"])
    signals.write_parquet(paths["signals"])
    context.write_parquet(paths["context"])
    return paths


def _config(market: dict[str, Path]) -> RunConfig:
    raw = {
        "data": {k: str(v) for k, v in market.items()},
        "execution": {"initial_cash": 100_000.0, "commission_rate": 0.001},
        "strategy": {"name": "signal_threshold", "params": {"score": "score"}},
    }
    return run_config_from_dict(raw)


class Rolling(Strategy):
    """Long while the close is above its 30-bar mean (read from `batch.history`); records the
    mean, the last 3 scores and vix values, and the feature's history when there is one."""

    def __init__(self, records: Records, *, history_bars: int | None, feature: bool) -> None:
        super().__init__()
        self.history_bars = history_bars
        self.records = records
        self.feature = feature

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        history = batch.history
        close = history.prices("close")[-MEAN_BARS:]
        seen: dict[str, Any] = {
            "score": history.signal("score")[-3:].tolist(),
            "vix": history.context("vix")[-3:].tolist(),
        }
        if self.feature:
            seen["max"] = history.signal("max")[-2:].tolist()
            seen["breadth"] = history.context("breadth")[-2:].tolist()
        self.records[batch.bar_index] = seen
        if close.shape[0] < MEAN_BARS:
            return
        mean = close.mean(axis=0)
        seen["mean"] = mean.tolist()
        for asset, now, avg in zip(batch.assets.tolist(), batch.close, mean, strict=True):
            held = self.get_position(asset)
            if held == 0 and now > avg:
                self.buy(asset, 10)
            elif held > 0 and now < avg:
                self.close_position(asset)


def _rolling_max(history: History) -> np.ndarray:
    close = history.prices("close")[-MAX_BARS:]
    return close.max(axis=0) if close.shape[0] == MAX_BARS else np.full(close.shape[1], np.nan)


def _breadth(history: History) -> float:
    """Share of assets whose close is above the close 40 bars before (market-wide)."""
    close = history.prices("close")
    return float(np.mean(close[-1] > close[-41])) if close.shape[0] > 40 else math.nan


def _features(history_bars: int | None) -> CallableFeatures:
    functions: dict[str, FeatureFn] = {"max": _rolling_max, "breadth": _breadth}
    return CallableFeatures(functions, market=("breadth",), history_bars=history_bars)


def _run(
    market: dict[str, Path],
    records: Records,
    *,
    history_bars: int | None,
    feature_bars: int | None = None,
    feature: bool = False,
    **kwargs: Any,
) -> BacktestResult:
    strategy = Rolling(records, history_bars=history_bars, feature=feature)
    features = [_features(feature_bars)] if feature else []
    return run_backtest(_config(market), strategy=strategy, features=features, **kwargs)


def _same(a: BacktestResult, b: BacktestResult) -> None:
    assert a.fills.equals(b.fills)
    assert a.orders.equals(b.orders)
    assert a.equity.equals(b.equity)
    assert a.final_equity == b.final_equity


def _same_records(a: Records, b: Records) -> None:
    assert a.keys() == b.keys()
    for bar in a:
        assert a[bar].keys() == b[bar].keys(), bar
        for key in a[bar]:
            np.testing.assert_array_equal(a[bar][key], b[bar][key], err_msg=f"{key} at {bar}")


def _check_against_the_price_file(records: Records, *, feature: bool) -> None:
    close = _closes()
    for t in range(MEAN_BARS - 1, N_BARS):
        expected = close[t - MEAN_BARS + 1 : t + 1].mean(axis=0)
        np.testing.assert_allclose(records[t]["mean"], expected, rtol=1e-14, err_msg=str(t))
    assert all("mean" not in records[t] for t in range(MEAN_BARS - 1))
    if feature:
        for t in range(1, N_BARS):
            expected_max = [
                close[s - MAX_BARS + 1 : s + 1].max(axis=0) if s >= MAX_BARS - 1 else [np.nan] * 3
                for s in (t - 1, t)
            ]
            np.testing.assert_array_equal(records[t]["max"], expected_max, err_msg=str(t))
            breadth = [
                float(np.mean(close[s] > close[s - 40])) if s >= 40 else math.nan
                for s in (t - 1, t)
            ]
            np.testing.assert_array_equal(records[t]["breadth"], breadth, err_msg=str(t))


@pytest.mark.parametrize("history_bars", [40, None], ids=["declared", "whole_run"])
def test_strategy_history_is_the_same_whatever_the_chunking(
    market: dict[str, Path], history_bars: int | None
) -> None:
    whole: Records = {}
    one = _run(market, whole, history_bars=history_bars)
    monthly: Records = {}
    chunked = _run(market, monthly, history_bars=history_bars, max_chunk_cells=1)
    _same(one, chunked)
    _same_records(whole, monthly)
    _check_against_the_price_file(monthly, feature=False)
    assert one.fills.height > 10
    assert_result_invariants(chunked, prices=market["prices"])


@pytest.mark.parametrize("history_bars", [MAX_BARS, None], ids=["declared", "whole_run"])
def test_callable_features_are_the_same_whatever_the_chunking(
    market: dict[str, Path], history_bars: int | None
) -> None:
    whole: Records = {}
    one = _run(market, whole, history_bars=None, feature_bars=history_bars, feature=True)
    monthly: Records = {}
    chunked = _run(
        market,
        monthly,
        history_bars=None,
        feature_bars=history_bars,
        feature=True,
        max_chunk_cells=1,
    )
    _same(one, chunked)
    _same_records(whole, monthly)
    _check_against_the_price_file(monthly, feature=True)


def test_month_by_month_equals_one_run(market: dict[str, Path]) -> None:
    whole: Records = {}
    one = _run(market, whole, history_bars=40, feature_bars=MAX_BARS, feature=True)
    chained: Records = {}
    state: EngineState | None = None
    fills, equity = [], []
    for start, end in itertools.pairwise(MONTHS):
        month = _run(
            market,
            chained,
            history_bars=40,
            feature_bars=MAX_BARS,
            feature=True,
            start=start,
            end=end,
            initial_state=state,
        )
        saved = month.final_state.to_json()
        state = EngineState.from_json(saved)  # through JSON, as the pipeline stores it
        assert state.to_json() == saved
        fills.append(month.fills)
        equity.append(month.equity)
    # the state carries the longest declared window minus the current bar: 44 bars
    assert state is not None
    assert state.history_first_bar == N_BARS - (MAX_BARS - 1)
    assert len(state.history["close"]) == MAX_BARS - 1
    assert pl.concat(fills).equals(one.fills)
    assert pl.concat(equity).equals(one.equity)
    assert month.final_equity == one.final_equity
    _same_records(whole, chained)
    _check_against_the_price_file(chained, feature=True)


class Reader(Strategy):
    """Reads `bars` bars of close at every bar; keeps what it read at bar `keep_at`."""

    def __init__(self, history_bars: int | None, bars: int | None, keep_at: int = -1) -> None:
        super().__init__()
        self.history_bars = history_bars
        self.bars = bars
        self.keep_at = keep_at
        self.kept: dict[str, np.ndarray] = {}

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        close = batch.history.prices("close", self.bars)
        if batch.bar_index == self.keep_at:
            self.kept = {
                "close": close,
                "has_bar": batch.history.prices("has_bar", self.bars),
                "score": batch.history.signal("score", self.bars),
            }


def test_reading_more_bars_than_declared_is_an_error(market: dict[str, Path]) -> None:
    with pytest.raises(
        ConfigError, match=r"31 bars of 'close' asked, but Reader.history_bars = 30"
    ):
        run_backtest(_config(market), strategy=Reader(30, 31))
    with pytest.raises(ConfigError, match=r"Reader.history_bars = 0: this History shows no bars"):
        run_backtest(_config(market), strategy=Reader(0, None))
    with pytest.raises(ConfigError, match="history_bars must be None"):
        run_backtest(_config(market), strategy=Reader(-1, None))
    with pytest.raises(ConfigError, match="history_bars must be None"):
        CallableFeatures({"x": _breadth}, history_bars=0)


def test_bars_before_the_data_began_are_unknown(market: dict[str, Path]) -> None:
    strategy = Reader(None, 5, keep_at=2)
    run_backtest(_config(market), strategy=strategy, max_chunk_cells=1)
    close = strategy.kept["close"]
    assert close.shape == (5, 3)
    assert np.isnan(close[:2]).all()
    np.testing.assert_array_equal(close[2:], _closes()[:3])
    assert strategy.kept["has_bar"].tolist() == [[False] * 3] * 2 + [[True] * 3] * 3
    assert np.isnan(strategy.kept["score"][:2]).all()


def test_arrays_spanning_a_chunk_boundary_are_read_only(market: dict[str, Path]) -> None:
    strategy = Reader(10, 10, keep_at=32)  # February 2: eight January bars, two of February
    run_backtest(_config(market), strategy=strategy, max_chunk_cells=1)
    np.testing.assert_array_equal(strategy.kept["close"], _closes()[23:33])
    for name, values in strategy.kept.items():
        with pytest.raises(ValueError, match="read-only"):
            values[...] = values
        assert not values.flags.writeable, name


def test_a_chained_run_without_the_bars_it_needs_is_an_error(market: dict[str, Path]) -> None:
    config = _config(market)
    # undeclared: History shows the whole run, which no saved state carries
    january = run_backtest(config, strategy=Reader(None, None), end=MONTHS[1])
    assert "history" not in json.loads(january.final_state.to_json())
    with pytest.raises(StateError, match="History needs 'close' from bar 0"):
        run_backtest(
            config,
            strategy=Reader(None, None),
            start=MONTHS[1],
            initial_state=january.final_state,
        )
    # the run that saved the state declared fewer bars than this one needs
    january = run_backtest(config, strategy=Reader(10, None), end=MONTHS[1])
    assert january.final_state.history_first_bar == 31 - 9
    with pytest.raises(StateError, match="from bar 12; bars before 31 kept: from bar 22"):
        run_backtest(
            config,
            strategy=Reader(20, None),
            start=MONTHS[1],
            initial_state=january.final_state,
        )


def test_runs_without_history_users_keep_and_save_nothing(market: dict[str, Path]) -> None:
    for strategy in (None, Reader(1, None)):  # per-event signal_threshold; the current bar only
        result = run_backtest(_config(market), strategy=strategy, end=MONTHS[1])
        payload = json.loads(result.final_state.to_json())
        assert "history" not in payload
        assert "history_first_bar" not in payload


def test_the_rotation_strategy_keeps_no_history(market: dict[str, Path]) -> None:
    """A batch strategy declaring history_bars = 0 (top_k_rotation) gets no store at all."""
    raw = {
        "data": {k: str(v) for k, v in market.items()},
        "strategy": {"name": "top_k_rotation", "params": {"score": "score", "top_k": 1}},
    }
    config = run_config_from_dict(raw)
    engine = Engine(config, MarketData(market["prices"], market["signals"], max_chunk_cells=1))
    assert engine.history is None
    result = engine.run()
    assert result.fills.height > 0
    assert "history" not in json.loads(result.final_state.to_json())
