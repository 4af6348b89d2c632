"""Feature providers: point-in-time precomputed tables and callables, shared by strategy and risk."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ml4t_pipeline.engine import (
    Batch,
    CallableFeatures,
    PrecomputedFeatures,
    Strategy,
    run_backtest,
    run_config_from_dict,
)
from ml4t_pipeline.engine.strategy.views import ContextView, History
from tests.invariants import assert_result_invariants

DAYS = [dt.datetime(2024, 1, d, tzinfo=dt.UTC) for d in range(1, 9)]


def _prices(assets: tuple[str, ...] = ("A", "B")) -> pl.DataFrame:
    rows = []
    for t, stamp in enumerate(DAYS):
        for k, asset in enumerate(assets):
            close = 10.0 + t + k
            rows.append((stamp, asset, close, close + 0.5, close - 0.5, close, 1_000.0))
    return pl.DataFrame(
        rows,
        schema=["timestamp", "asset_id", "open", "high", "low", "close", "volume"],
        orient="row",
    )


class Recorder(Strategy):
    """Records what it sees at each close; trades nothing unless told to."""

    def __init__(self, names: tuple[str, ...], market: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.names = names
        self.market = market
        self.seen: list[dict[str, Any]] = []

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        row: dict[str, Any] = {"t": batch.bar_index}
        row |= {n: batch.signals[n].copy() for n in self.names}
        row |= {f"market_{n}": float(context[n]) for n in self.market}
        self.seen.append(row)


def _config(tmp_path: Path, **extra: Any) -> Any:
    raw = {
        "data": {"prices": str(tmp_path / "unused.parquet")},
        "strategy": {"name": "signal_threshold"},
    } | extra
    return run_config_from_dict(raw, check_files=False)


def test_precomputed_features_are_point_in_time_and_as_of(tmp_path: Path) -> None:
    features = pl.DataFrame(
        {
            "timestamp": [DAYS[1], DAYS[3] + dt.timedelta(hours=20), DAYS[2], DAYS[0]],
            "asset_id": ["A", "A", "B", None],
            "quality": [1.0, 2.0, 5.0, 20.0],
        }
    )
    strategy = Recorder(("quality",), market=("quality",))
    result = run_backtest(
        _config(tmp_path),
        prices=_prices(),
        signals=None,
        context=None,
        strategy=strategy,
        features=[PrecomputedFeatures(features)],
    )
    a = [row["quality"][0] for row in strategy.seen]
    b = [row["quality"][1] for row in strategy.seen]
    # A: known from bar 1; the value published after bar 3's timestamp is first usable at bar 4
    np.testing.assert_array_equal(a, [np.nan, 1, 1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(b, [np.nan, np.nan, 5, 5, 5, 5, 5, 5])
    # a row with a null asset_id is a market-wide feature, in `context`
    assert [row["market_quality"] for row in strategy.seen] == [20.0] * 8
    assert_result_invariants(result, prices=_prices())


def test_precomputed_feature_from_parquet_serves_the_risk_rules(tmp_path: Path) -> None:
    """A volatility stop reads `band` from the same provider the strategy could read."""
    prices = _prices(("A",)).with_columns(
        pl.when(pl.col("timestamp") == DAYS[4])
        .then(pl.col("low") - 5)
        .otherwise(pl.col("low"))
        .alias("low")
    )
    band = pl.DataFrame({"timestamp": DAYS, "asset_id": ["A"] * 8, "band": [1.0] * 8})
    band.write_parquet(tmp_path / "band.parquet")

    class BuyOnce(Strategy):
        def on_timestamp_batch(
            self, timestamp: dt.datetime, batch: Batch, context: ContextView
        ) -> None:
            if batch.bar_index == 1:
                self.buy("A", 10)

    config = _config(
        tmp_path,
        data={
            "prices": str(tmp_path / "unused.parquet"),
            "features": str(tmp_path / "band.parquet"),
        },
        risk=[{"rule": "volatility_stop", "atr_multiplier": 2.0, "feature": "band"}],
    )
    result = run_backtest(config, prices=prices, signals=None, context=None, strategy=BuyOnce())
    fills = result.fills
    assert fills["reason"].to_list() == ["signal", "volatility_stop"]
    entry = float(fills["price"][0])  # open of bar 2 = 12.0
    assert entry == 12.0
    assert float(fills["price"][1]) == min(float(prices["open"][4]), entry - 2.0 * 1.0)
    assert_result_invariants(result, prices=prices)


def test_callable_features_see_only_the_past(tmp_path: Path) -> None:
    def momentum(history: History) -> np.ndarray:
        close = history.prices("close")
        return close[-1] / close[0] - 1.0

    def breadth(history: History) -> float:
        return float(np.mean(history.prices("close")[-1] > 11.0))

    provider = CallableFeatures({"momentum": momentum, "breadth": breadth}, market=("breadth",))
    prices = _prices()
    strategy = Recorder(("momentum",), market=("breadth",))
    original = run_backtest(
        _config(tmp_path),
        prices=prices,
        signals=None,
        context=None,
        strategy=strategy,
        features=[provider],
    )
    assert_result_invariants(original, prices=prices)
    first = [(row["momentum"].tolist(), row["market_breadth"]) for row in strategy.seen]

    # perturb every bar after bar 3: nothing at or before bar 3 may change
    shocked = prices.with_columns(
        pl.when(pl.col("timestamp") > DAYS[3]).then(pl.col(c) * 3).otherwise(pl.col(c)).alias(c)
        for c in ("open", "high", "low", "close")
    )
    strategy2 = Recorder(("momentum",), market=("breadth",))
    provider2 = CallableFeatures({"momentum": momentum, "breadth": breadth}, market=("breadth",))
    shocked_result = run_backtest(
        _config(tmp_path),
        prices=shocked,
        signals=None,
        context=None,
        strategy=strategy2,
        features=[provider2],
    )
    assert_result_invariants(shocked_result, prices=shocked)
    second = [(row["momentum"].tolist(), row["market_breadth"]) for row in strategy2.seen]
    assert first[:4] == second[:4]
    assert first[4:] != second[4:]
    assert first[2][0] == [12.0 / 10.0 - 1.0, 13.0 / 11.0 - 1.0]


def test_top_k_indices_matches_a_stable_sort() -> None:
    from ml4t_pipeline.engine.strategy.builtin import top_k_indices

    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        scores = rng.integers(0, 6, n).astype(np.float64)  # many ties
        scores[rng.random(n) < 0.2] = np.nan
        k = int(rng.integers(1, 12))
        expected = np.argsort(-scores, kind="stable")
        expected = expected[~np.isnan(scores[expected])][:k]
        np.testing.assert_array_equal(top_k_indices(scores, k), expected)
