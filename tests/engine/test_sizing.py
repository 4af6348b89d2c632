"""Sizing that cannot be represented is a clear error naming the asset, never a wrapped
quantity or a numpy warning (warnings are errors in this suite, so a warning fails too)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from ml4t_pipeline.engine import Batch, Strategy, run_backtest
from ml4t_pipeline.engine.execution.orders import MAX_QTY
from ml4t_pipeline.engine.strategy.views import ContextView
from ml4t_pipeline.errors import ConfigError
from tests.engine.conftest import config, flat, panel


class Weights(Strategy):
    def __init__(self, weights: list[float]) -> None:
        super().__init__()
        self.weights = np.array(weights)

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        self.rebalance_to_weights(self.weights)


class Shares(Strategy):
    def __init__(self, qty: int) -> None:
        super().__init__()
        self.qty = qty

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        self.buy("A", self.qty)


def test_a_nan_weight_is_an_error_naming_the_asset(tmp_path: Path) -> None:
    prices = panel(A=[flat(10.0)] * 2, B=[flat(20.0)] * 2)
    with pytest.raises(ConfigError, match=r"asset_id='B': weight nan"):
        run_backtest(config(tmp_path), strategy=Weights([0.5, np.nan]), prices=prices)


def test_a_size_beyond_int64_safety_is_an_error_not_a_wrapped_short(tmp_path: Path) -> None:
    prices = panel(A=[flat(1e-12)] * 2)  # a tiny price: 1e5 x 1e12 = 1e17 shares
    with pytest.raises(ConfigError, match=r"asset_id='A'.*cannot be sized|cannot be sized.*'A'"):
        run_backtest(config(tmp_path), strategy=Weights([1.0]), prices=prices)


def test_an_order_beyond_the_share_limit_is_an_error(tmp_path: Path) -> None:
    prices = panel(A=[flat(10.0)] * 2)
    with pytest.raises(ConfigError, match=r"asset_id='A': 9007199254740993 shares is beyond"):
        run_backtest(config(tmp_path), strategy=Shares(MAX_QTY + 1), prices=prices)
    result = run_backtest(config(tmp_path), strategy=Shares(5), prices=prices)
    assert result.fills["qty"].to_list() == [5]
