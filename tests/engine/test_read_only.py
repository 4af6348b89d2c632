"""User code never gets a writable handle on engine state.

A strategy sees the account through `self.account` and the market through views; a risk rule
sees a `RiskContext`. Every array among them is read-only (a write raises), and a strategy has
no handle on the broker or the ledger.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from ml4t_pipeline.engine import (
    Batch,
    MarketData,
    MarketEvent,
    RiskContext,
    RiskDecision,
    Strategy,
)
from ml4t_pipeline.engine.loop import Engine
from ml4t_pipeline.engine.risk.context import BaseRule
from ml4t_pipeline.engine.strategy.views import ContextView
from tests.engine.conftest import config, flat, panel, run, signals


def _refuses_writes(array: np.ndarray) -> bool:
    try:
        array[...] = array
    except ValueError as exc:
        return "read-only" in str(exc)
    return False


class Writer(Strategy):
    """Buys, then tries to write every array it can reach."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: dict[str, bool] = {}

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        if batch.bar_index == 0:
            self.buy("A", 10)
            return
        account = self.account
        arrays = {
            "account.positions": account.positions,
            "account.avg_prices": account.avg_prices,
            "account.last_close": account.last_close,
            "batch.close": batch.close,
            "batch.open": batch.open,
            "batch.has_bar": batch.has_bar,
            "batch.signals": batch.signals["score"],
            "batch.history": batch.history.prices("close"),
        }
        for name, array in arrays.items():
            self.refused[name] = _refuses_writes(array)


class EventWriter(Strategy):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[float] = []

    def on_market_event(self, event: MarketEvent, context: ContextView) -> None:
        self.events.append(event.close)


@dataclass(slots=True, kw_only=True)
class ContextWriter(BaseRule):
    """A rule that tries to write what its context hands it."""

    name: str = "writer"
    refused: dict[str, bool] = field(default_factory=dict)

    def on_close(self, ctx: RiskContext) -> list[RiskDecision]:
        arrays = {
            "qty": ctx.qty,
            "avg_price": ctx.avg_price,
            "entry_bar": ctx.entry_bar,
            "close": ctx.close,
            "high": ctx.high,
            "high_water": ctx.high_water,
            "features": ctx.features["score"],
        }
        for name, array in arrays.items():
            self.refused[name] = _refuses_writes(array)
        return []


def test_strategies_and_rules_get_read_only_arrays(tmp_path: Path) -> None:
    prices = panel(A=[flat(10.0), flat(11.0), flat(12.0)], B=[flat(5.0)] * 3)
    scores = signals(score={"A": [0.1, 0.2, 0.3], "B": [0.5, 0.5, 0.5]})
    strategy, rule = Writer(), ContextWriter()
    data = MarketData(prices, scores)
    result = Engine(config(tmp_path), data, strategy=strategy, rules=[rule]).run()
    assert result.fills.height == 1
    assert set(strategy.refused) == {
        "account.positions",
        "account.avg_prices",
        "account.last_close",
        "batch.close",
        "batch.open",
        "batch.has_bar",
        "batch.signals",
        "batch.history",
    }
    assert all(strategy.refused.values()), strategy.refused
    assert len(rule.refused) == 7
    assert all(rule.refused.values()), rule.refused


def test_a_strategy_has_no_handle_on_the_broker_or_the_ledger(tmp_path: Path) -> None:
    strategy = EventWriter()
    run(config(tmp_path), strategy, panel(A=[flat(10.0)] * 2), tmp_path / "out")
    assert strategy.events == [10.0, 10.0]
    assert not hasattr(strategy, "broker")
    assert not hasattr(strategy.account, "ledger")
    with pytest.raises(AttributeError):
        strategy.account.cash = 0.0  # type: ignore[misc]
