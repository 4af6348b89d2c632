"""Engine state at the end of a run, so the next run continues exactly where it stopped.

Running months one by one, each starting from the previous month's state, gives the same
result, bit for bit, as one run over the whole period. State is keyed by asset id (not array
position) so the next run may see a different universe; JSON keeps float64 values exact.
The last bars the next run's `History` needs (the declared `history_bars`) travel with it; a
state without them writes exactly what it wrote before they existed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml4t_pipeline.engine.execution.ledger import Ledger
from ml4t_pipeline.engine.execution.orders import ENGINE_ORDER, Order, Orders
from ml4t_pipeline.engine.execution.trades import ACTION_SUMS, TRADE_STATE, empty_trade_state
from ml4t_pipeline.engine.feed import asset_list
from ml4t_pipeline.engine.risk.manager import RiskState
from ml4t_pipeline.engine.risk.state import DayMarks
from ml4t_pipeline.engine.strategy.history import CONTEXT, HistoryTail
from ml4t_pipeline.errors import StateError

_LEDGER_ARRAYS = ("qty", "avg_price", "entry_bar")
_RISK_ARRAYS = (
    "stop",
    "stop_reason",
    "stop_rule",
    "take_profit",
    "tp_reason",
    "tp_rule",
    "armed_from",
    "high_water",
    "low_water",
)
FORMAT_VERSION = 1
NO_TIME = np.iinfo(np.int64).min  # an entry time not known (an asset not held)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStart:
    """What a run starts from, laid out on its assets: a fresh account, or saved state."""

    first_bar: int  # global index of the run's first bar
    start_equity: float  # equity before the first bar
    peak_equity: float
    ledger: Ledger
    risk: RiskState
    working: list[Order]  # orders still working when the saved run ended
    next_order_id: int
    last_close: np.ndarray
    decision_signals: dict[str, np.ndarray]  # (N,) signal values of the last decision
    rule_state: dict[str, np.ndarray]  # rule name -> (N,) values (NaN where not saved)
    strategy_state: dict[str, Any] | None  # None: a fresh start (nothing to restore)
    history: HistoryTail | None  # the saved last bars History shows
    #: the entry time (int64 us UTC) of each position held at the start (NO_TIME: not known)
    entry_time_us: np.ndarray | None = None
    #: the benchmark's holdings (`Benchmark.saved`); empty: form it at this run's first bar
    benchmark: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fresh(cls, n_assets: int, cash: float, signal_names: list[str]) -> RunStart:
        return cls(
            first_bar=0,
            start_equity=cash,
            peak_equity=cash,
            ledger=Ledger.empty(n_assets, cash, signal_names),
            risk=RiskState.empty(n_assets),
            working=[],
            next_order_id=0,
            last_close=np.zeros(n_assets),
            decision_signals={},
            rule_state={},
            strategy_state=None,
            history=None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineState:
    cash: float
    bars_done: int
    next_order_id: int
    peak_equity: float
    prev_equity: float
    last_timestamp_us: int | None
    assets: tuple[Any, ...]  # assets with any non-default state
    per_asset: dict[str, list[Any]]  # array name -> values aligned with `assets`
    entry_signals: dict[str, list[float]]
    pending: dict[str, list[Any]]  # order columns; "asset" holds asset ids
    strategy_state: dict[str, Any] = field(default_factory=dict)
    rule_state: dict[str, list[float]] = field(default_factory=dict)
    rule_state_assets: tuple[Any, ...] = ()
    # the UTC date's equity marks (`DayMarks.saved`); empty, and not written, unless tracked
    day_marks: dict[str, float] = field(default_factory=dict)
    history_first_bar: int | None = None  # global bar of the first saved History row
    history: dict[str, list[Any]] = field(default_factory=dict)  # key -> rows, per `assets`
    #: the benchmark's holdings or level (`Benchmark.saved`); empty without a benchmark, and
    #: in states written before benchmarks existed (the next run then starts one afresh)
    benchmark: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def capture(
        cls,
        *,
        assets: np.ndarray,
        ledger: Ledger,
        risk: RiskState,
        pending: Orders,
        next_order_id: int,
        last_close: np.ndarray,
        bars_done: int,
        peak_equity: float,
        prev_equity: float,
        strategy_state: dict[str, Any],
        rule_state: dict[str, list[float]],
        last_signals: dict[str, np.ndarray],
        last_timestamp_us: int | None = None,
        history: HistoryTail | None = None,
        entry_time_us: np.ndarray | None = None,
        benchmark: dict[str, Any] | None = None,
    ) -> EngineState:
        ids = asset_list(assets)
        held = (ledger.qty != 0) | (last_close != 0) | np.isin(np.arange(len(ids)), pending.asset)
        keep = np.flatnonzero(held | _known_in(history, len(ids)))
        per_asset: dict[str, list[Any]] = {"last_close": last_close[keep].tolist()}
        trades = ledger.trade_state()
        for name in _LEDGER_ARRAYS:
            per_asset[f"ledger.{name}"] = getattr(ledger, name)[keep].tolist()
        if entry_time_us is not None and bool(ledger.qty.any()):  # (flat: as before it existed)
            per_asset["ledger.entry_time_us"] = entry_time_us[keep].tolist()
        for name in TRADE_STATE:
            if name in ACTION_SUMS and not trades[name][keep].any():
                continue  # no corporate action in an open trade: written as before they existed
            per_asset[f"ledger.{name}"] = trades[name][keep].tolist()
        for name in _RISK_ARRAYS:
            per_asset[f"risk.{name}"] = getattr(risk, name)[keep].tolist()
        for name, values in last_signals.items():
            per_asset[f"signal.{name}"] = values[keep].tolist()
        pend = pending.to_columns()
        pend["asset"] = [ids[a] for a in pend["asset"]]
        return cls(
            cash=float(ledger.cash),
            bars_done=int(bars_done),
            next_order_id=int(next_order_id),
            peak_equity=float(peak_equity),
            prev_equity=float(prev_equity),
            last_timestamp_us=last_timestamp_us,
            assets=tuple(ids[k] for k in keep.tolist()),
            per_asset=per_asset,
            entry_signals={s: trades[f"entry_{s}"][keep].tolist() for s in ledger.signal_names},
            pending=pend,
            strategy_state=strategy_state,
            rule_state=rule_state,
            rule_state_assets=tuple(ids),
            day_marks=risk.day.saved(),
            history_first_bar=None if history is None else history.first_bar,
            history={} if history is None else _saved_history(history, keep),
            benchmark=benchmark or {},
        )

    def restore(self, assets: np.ndarray, signal_names: list[str]) -> RunStart:
        """This state on the assets of a new run (which must include every saved one)."""
        ids = asset_list(assets)
        index = {a: i for i, a in enumerate(ids)}
        missing = [a for a in self.assets if a not in index]
        if missing:
            msg = f"saved state holds assets absent from this run's data: {missing[:5]}"
            raise StateError(msg)
        pos = np.array([index[a] for a in self.assets], dtype=np.int64)
        n = int(assets.shape[0])

        def per_asset(values: list[Any], fill: float, dtype: Any = np.float64) -> np.ndarray:
            out = np.full(n, fill, dtype=dtype)
            out[pos] = values
            return out

        ledger_arrays = {
            "qty": per_asset(self.per_asset["ledger.qty"], 0, np.int64),
            "avg_price": per_asset(self.per_asset["ledger.avg_price"], 0.0),
            "entry_bar": per_asset(self.per_asset["ledger.entry_bar"], -1, np.int64),
        }
        trades = empty_trade_state(n, signal_names)
        for name in TRADE_STATE:
            saved = self.per_asset.get(f"ledger.{name}")
            if saved is not None or name not in ACTION_SUMS:  # (action sums: zero if unsaved)
                trades[name][pos] = self.per_asset[f"ledger.{name}"]
        for name, entry in self.entry_signals.items():
            if f"entry_{name}" in trades:
                trades[f"entry_{name}"][pos] = entry
        ledger = Ledger(cash=self.cash, signal_names=signal_names, carried=trades, **ledger_arrays)
        risk = RiskState.empty(n)
        for name in _RISK_ARRAYS:
            getattr(risk, name)[pos] = self.per_asset[f"risk.{name}"]
        risk.day = DayMarks.from_saved(self.day_marks)
        decision_signals = {
            key.removeprefix("signal."): per_asset(values, np.nan)
            for key, values in self.per_asset.items()
            if key.startswith("signal.")
        }
        saved_at = {a: k for k, a in enumerate(self.rule_state_assets)}
        rule_state: dict[str, np.ndarray] = {}
        for rule, saved in self.rule_state.items():
            state = np.full(n, np.nan)
            for k, asset in enumerate(ids):
                if asset in saved_at:
                    state[k] = saved[saved_at[asset]]
            rule_state[rule] = state
        columns = dict(self.pending)
        columns["asset"] = [index[a] for a in columns["asset"]]
        for name, value in ENGINE_ORDER.items():  # saved before orders had a time in force
            columns.setdefault(name, [value] * len(columns["order_id"]))
        return RunStart(
            first_bar=self.bars_done,
            start_equity=self.prev_equity,
            peak_equity=self.peak_equity,
            ledger=ledger,
            risk=risk,
            working=Orders.from_columns(columns).rows(),
            next_order_id=self.next_order_id,
            last_close=per_asset(self.per_asset["last_close"], 0.0),
            decision_signals=decision_signals,
            rule_state=rule_state,
            strategy_state=self.strategy_state,
            history=self._history_on(pos, n),
            entry_time_us=per_asset(self.per_asset["ledger.entry_time_us"], NO_TIME, np.int64)
            if "ledger.entry_time_us" in self.per_asset
            else None,
            benchmark=self.benchmark,
        )

    def _history_on(self, pos: np.ndarray, n: int) -> HistoryTail | None:
        """The saved History rows laid out on n assets (NaN / no bar where not saved)."""
        if self.history_first_bar is None:
            return None
        rows = self.bars_done - self.history_first_bar
        arrays: dict[str, np.ndarray] = {}
        for key, values in self.history.items():
            if key.startswith(CONTEXT):
                arrays[key] = np.asarray(values, dtype=np.float64).reshape(rows)
                continue
            unknown, dtype = (False, np.bool_) if key == "has_bar" else (np.nan, np.float64)
            out: np.ndarray = np.full((rows, n), unknown, dtype=dtype)
            out[:, pos] = np.asarray(values, dtype=dtype).reshape(rows, pos.shape[0])
            arrays[key] = out
        return HistoryTail(first_bar=self.history_first_bar, arrays=arrays)

    def to_json(self) -> str:
        # keys a run did not use are left out, so the states of runs without them stay as
        # they were written before the keys existed
        fields = list(self.__dataclass_fields__)
        if not self.day_marks:
            fields.remove("day_marks")
        if self.history_first_bar is None:
            fields = [f for f in fields if f not in ("history_first_bar", "history")]
        if not self.benchmark:
            fields.remove("benchmark")
        payload = {"format": FORMAT_VERSION} | {name: getattr(self, name) for name in fields}
        return json.dumps(payload, sort_keys=True, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> EngineState:
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"engine state is not valid JSON: {exc}"
            raise StateError(msg) from exc
        if payload.pop("format", None) != FORMAT_VERSION:
            msg = "engine state was written by an incompatible version"
            raise StateError(msg)
        for key in ("assets", "rule_state_assets"):
            payload[key] = tuple(payload[key])
        return cls(**payload)


def _known_in(history: HistoryTail | None, n: int) -> np.ndarray:
    """(n,) True where an asset has a bar or a known value in the saved History rows."""
    known = np.zeros(n, dtype=bool)
    for key, values in (history.arrays if history is not None else {}).items():
        if key.startswith(CONTEXT):
            continue
        known |= values.any(axis=0) if key == "has_bar" else ~np.isnan(values).all(axis=0)
    return known


def _saved_history(history: HistoryTail, keep: np.ndarray) -> dict[str, list[Any]]:
    """History rows as JSON lists: per-asset arrays on the saved assets only."""
    return {
        key: (values if key.startswith(CONTEXT) else values[:, keep]).tolist()
        for key, values in history.arrays.items()
    }
