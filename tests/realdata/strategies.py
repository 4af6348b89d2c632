"""Strategies of the real-data tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from ml4t_pipeline.engine import Batch, Strategy
from ml4t_pipeline.engine.strategy.views import ContextView


class FixedShares(Strategy):
    """Buy `qty[asset]` shares of each asset at the close of the run's first bar, then hold."""

    history_bars = 0

    def __init__(self, qty: Mapping[str, int]) -> None:
        super().__init__(qty=dict(qty))
        self.qty = dict(qty)
        self.done = False

    def required_signals(self) -> tuple[str, ...]:
        return ()

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        if self.done:
            return
        self.done = True
        for asset, qty in self.qty.items():
            self.buy(asset, qty)
