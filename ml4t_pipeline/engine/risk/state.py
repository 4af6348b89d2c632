"""`RiskState`: the per-asset columns the risk manager carries from bar to bar and run to run.

The columns are plain arrays over the run's assets; `engine/state.py` saves and restores them by
these field names (a chained run starts from them). Two writers share the record, each owning
its own columns: `ProtectiveLevels` (`levels.py`) the levels, their reasons and rules and
`armed_from`; `RiskManager` (`manager.py`) the water marks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class RiskState:
    """Per-asset protective levels and water marks of the positions held."""

    stop: np.ndarray  # float64, NaN: no stop
    stop_reason: np.ndarray  # int8 OrderReason of the stop
    stop_rule: np.ndarray  # int16 index of the rule that set the stop, -1: none
    take_profit: np.ndarray  # float64, NaN: no take-profit
    tp_reason: np.ndarray  # int8 OrderReason of the take-profit
    tp_rule: np.ndarray  # int16 index of the rule that set the take-profit, -1: none
    armed_from: np.ndarray  # int64, first global bar on which the levels may trigger
    high_water: np.ndarray  # float64, highest high since entry (the fill price at entry)
    low_water: np.ndarray  # float64, lowest low since entry

    @classmethod
    def empty(cls, n_assets: int) -> RiskState:
        return cls(
            stop=np.full(n_assets, np.nan),
            stop_reason=np.zeros(n_assets, dtype=np.int8),
            stop_rule=np.full(n_assets, -1, dtype=np.int16),
            take_profit=np.full(n_assets, np.nan),
            tp_reason=np.zeros(n_assets, dtype=np.int8),
            tp_rule=np.full(n_assets, -1, dtype=np.int16),
            armed_from=np.zeros(n_assets, dtype=np.int64),
            high_water=np.full(n_assets, np.nan),
            low_water=np.full(n_assets, np.nan),
        )
