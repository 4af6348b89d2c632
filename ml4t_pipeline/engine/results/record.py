"""The run record: what a run produced, as arrays and typed records.

The loop hands it to `build_result`; the result tables are built from it alone, never from the
engine's own fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml4t_pipeline.engine.execution.fills import Rejection
from ml4t_pipeline.engine.execution.ledger import ActionRecord
from ml4t_pipeline.engine.execution.orders import Orders
from ml4t_pipeline.engine.execution.trades import Trades
from ml4t_pipeline.engine.state import EngineState


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """Everything the result tables need. Bars are global indices (counted across chained
    runs); `timestamps[k]` is bar `first_bar + k`."""

    timestamps: np.ndarray  # int64 us UTC, the run's bars
    first_bar: int
    asset_ids: list[Any]  # array position -> asset id
    rule_names: list[str]  # rule index -> name
    n_rows: int  # (timestamp, asset) price rows processed
    start_equity: float  # equity before the first bar (initial cash, or a chained start)
    cash: np.ndarray  # per bar, at the close
    positions_value: np.ndarray  # per bar, at the close
    fills: dict[str, np.ndarray]  # the fill book, FILL_DTYPE columns, in booking order
    # (with the rows of corporate actions: reason SPLIT / DIVIDEND, order_id -1)
    actions: list[ActionRecord] | None  # what corporate actions did; None: no actions input
    orders: Orders  # every order that reached the book or was rejected
    rejections: list[Rejection]
    negative_cash_fills: int  # fills that left cash < 0 though negative cash is not allowed
    trades: Trades
    final_qty: np.ndarray  # shares held at the end
    last_close: np.ndarray  # the last known close of every asset at the end
    final_cash: float
    final_equity: float
    final_state: EngineState
    #: per asset, the entry time (us UTC) of a trade carried in from an earlier run (NO_TIME: none)
    carried_entry_us: np.ndarray | None = None
    benchmark: np.ndarray | None = None  # the benchmark's value per bar (None: kind none)
    benchmark_start: float | None = None  # its value before the first bar
    benchmark_info: dict[str, Any] = field(default_factory=dict)  # `Benchmark.describe`
    periods_per_year: float | None = None  # `metrics.periods_per_year` (None: from spacing)

    @property
    def last_bar(self) -> int:
        return self.first_bar + int(self.timestamps.shape[0]) - 1
