"""The loop: the one place that advances time. Read the bar loop in `Engine._run_panel` as
the spec.

At each bar t, in the order the market imposes:
1. fill what was queued at t-1 at open[t] (sells before buys) -> ledger
2. protective stops / take-profits, gap-aware, on positions entered before t
3. the strategy decides at close[t]
4. risk rules update stops and add exits at close[t]
5. every new order passes the risk rules (reject / resize) on its way to the broker
6. queue for t+1 (or fill at close[t] with fill_at: same_close)
7. mark equity at close[t]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from ml4t_pipeline.engine.config import RunConfig
from ml4t_pipeline.engine.enums import ExitReason, FillAt
from ml4t_pipeline.engine.execution.broker import Broker, BrokerSettings
from ml4t_pipeline.engine.execution.ledger import Ledger
from ml4t_pipeline.engine.execution.orders import Order, Orders
from ml4t_pipeline.engine.feed import MarketData, Panel, asset_list
from ml4t_pipeline.engine.feed.features import CallableFeatures, FeatureProvider
from ml4t_pipeline.engine.results import BacktestResult, build_result
from ml4t_pipeline.engine.risk.context import RiskContext, RiskRule
from ml4t_pipeline.engine.risk.manager import RiskManager, RiskState
from ml4t_pipeline.engine.state import EngineState
from ml4t_pipeline.engine.strategy.base import Strategy
from ml4t_pipeline.engine.strategy.views import (
    Batch,
    MarketEvent,
    RowView,
    SignalsRow,
    utc_datetimes,
)

ProgressFn = Callable[[int, int], None]
_NO_ASSETS = np.empty(0, np.int64)


class Engine:
    def __init__(
        self,
        config: RunConfig,
        data: MarketData,
        *,
        strategy: Strategy | None = None,
        initial_state: EngineState | None = None,
        features: Sequence[FeatureProvider] = (),
        rules: Sequence[RiskRule] | None = None,
    ) -> None:
        self.config = config
        self.features = list(features)
        self._callables = [f for f in self.features if isinstance(f, CallableFeatures)]
        self._first_bar = 0
        self.data = data
        self.strategy = strategy if strategy is not None else config.strategy.build()
        self.assets = data.calendar.assets
        n = data.calendar.n_assets
        signal_names = list(data.signal_columns)
        rules = list(rules) if rules is not None else config.build_rules()
        if initial_state is None:
            ledger = Ledger.empty(n, config.execution.initial_cash, signal_names)
            risk_state = RiskState.empty(n)
            pending: list[Order] = []
            next_id = 0
            last_close = np.zeros(n)
            self.bars_done = 0
            self.peak_equity = config.execution.initial_cash
            self.prev_equity = config.execution.initial_cash
            self.start_equity = config.execution.initial_cash
        else:
            restored = initial_state.restore(self.assets, signal_names, config)
            ledger, risk_state, resting, next_id, last_close, last_signals = restored
            pending = resting.rows()
            self.bars_done = initial_state.bars_done
            self.peak_equity = initial_state.peak_equity
            self.prev_equity = initial_state.prev_equity
            self.start_equity = initial_state.prev_equity
            self.strategy.set_state(initial_state.strategy_state)
            rules_state = initial_state.rule_state
            index = {a: k for k, a in enumerate(initial_state.rule_state_assets)}
            for rule in rules:
                if hasattr(rule, "_last") and rule.name in rules_state:
                    saved = rules_state[rule.name]
                    values = np.full(n, np.nan)
                    for k, asset in enumerate(asset_list(self.assets)):
                        if asset in index:
                            values[k] = saved[index[asset]]
                    rule._last = values
        self.ledger = ledger
        self.risk = RiskManager(rules, n, risk_state)
        ex = config.execution
        self.broker = Broker(
            settings=BrokerSettings(
                commission=ex.commission_model(),
                slippage=ex.slippage_model(),
                same_close=ex.fill_at is FillAt.SAME_CLOSE,
                allow_short=ex.allow_short,
                allow_negative_cash=ex.allow_negative_cash,
            ),
            ledger=ledger,
            risk=self.risk,
            assets=self.assets,
            pending=pending,
            next_order_id=next_id,
            last_close=last_close,
        )
        if initial_state is not None and last_signals:
            self.broker.decision_row = ({k: v[np.newaxis, :] for k, v in last_signals.items()}, 0)
        self.strategy._broker = self.broker
        self._events = self.strategy.uses_events()
        self._batches = self.strategy.uses_batches()
        self._asset_ids = asset_list(self.assets)
        self._all_assets = list(range(n))
        self.equity_cash: list[np.ndarray] = []
        self.equity_positions: list[np.ndarray] = []
        self.timestamps: list[np.ndarray] = []

    # -- the run ------------------------------------------------------------------------------
    def run(self, progress: ProgressFn | None = None) -> BacktestResult:
        started = time.perf_counter()
        if self.bars_done == 0:
            self.strategy.on_start()
        total = self.data.calendar.timestamps.shape[0]
        done = 0
        for panel in self.data.chunks():
            self._run_panel(panel)
            done += panel.n_bars
            if progress is not None:
                progress(done, total)
        wall = time.perf_counter() - started
        return build_result(self, wall_s=wall)

    def _run_panel(self, panel: Panel) -> None:
        """Every bar of one chunk. The body of the bar loop is the spec (module docstring)."""
        for provider in self.features:
            provider.attach(panel, self.data.calendar, self._first_bar)
        self._first_bar += panel.n_bars
        self.broker.panel = panel
        context = RowView(panel.context)  # the per-bar views, moved along by the loop
        event = MarketEvent(panel, context, self._asset_ids) if self._events else None
        batch = Batch(panel, self.assets) if self._batches else None
        n = panel.n_bars
        stamps = utc_datetimes(panel.timestamps) if batch is not None else [None] * n
        complete: list[bool] = np.all(panel.has_bar, axis=1).tolist()  # every asset has a bar
        # what every bar reads, looked up once
        broker, ledger, strategy = self.broker, self.ledger, self.strategy
        on_event, callables = strategy.on_market_event, self._callables
        risk, risk_context = self.risk.active, self._risk_context
        has_bar, signals = panel.has_bar, panel.signals
        start = self.bars_done  # global index of the chunk's first bar
        cash: list[float] = []
        positions: list[float] = []
        for i, stamp, whole, row_close in zip(range(n), stamps, complete, panel.close, strict=True):
            bar = start + i
            broker.i = i
            broker.bar = bar
            context._i = i

            if broker.pending:  # 1. queued orders at open[t]
                broker.fill_pending(risk_context)
            if risk:  # 2. stops, gap-aware
                broker.protective_exits(risk_context)
            # the last known close of every asset (a view of the row when all have a bar)
            last_close = row_close if whole else np.where(has_bar[i], row_close, broker.last_close)
            broker.last_close = last_close
            broker.decision_row = (signals, i)

            for provider in callables:  # features computed from history up to close[t]
                provider.update(i)
            if batch is not None:  # 3. strategy at close[t]
                assert stamp is not None
                batch._point(i, bar, stamp)
                strategy.on_timestamp_batch(stamp, batch, context)
            if event is not None:
                for a in self._all_assets if whole else np.flatnonzero(has_bar[i]).tolist():
                    event._point(i, a)
                    on_event(event, context)

            if risk:  # 4. risk at close[t]
                exit_assets, reasons, rules = self.risk.on_close(
                    risk_context, ledger.qty, has_bar[i], panel.high[i], panel.low[i]
                )
                self._submit_exits(exit_assets, reasons, rules)
            if broker.new_orders:  # 5 + 6. validate, queue / fill
                broker.accept_new_orders(risk_context)

            value = ledger.positions_value(last_close) if ledger.open_assets else 0.0  # 7. mark
            positions.append(value)
            cash.append(ledger.cash)
            if risk:  # the risk context reads the running peak and the last close's equity
                equity = ledger.cash + value
                self.prev_equity = equity
                if equity > self.peak_equity:
                    self.peak_equity = equity
        self.bars_done = start + n
        cash_, positions_ = np.array(cash), np.array(positions)
        self.equity_cash.append(cash_)
        self.equity_positions.append(positions_)
        self.timestamps.append(panel.timestamps)
        if n and not risk:  # (with risk rules, the loop keeps these bar by bar)
            equity = cash_ + positions_
            self.prev_equity = float(equity[-1])
            known = equity[~np.isnan(equity)]
            if known.shape[0]:
                self.peak_equity = max(self.peak_equity, float(known.max()))

    def _submit_exits(self, assets: np.ndarray, reasons: np.ndarray, rules: np.ndarray) -> None:
        if assets.shape[0] == 0:
            return
        # an exit replaces the strategy's own orders for that asset at this bar
        self.broker.drop_new_orders(assets)
        for reason in np.unique(reasons).tolist():
            pick = reasons == reason
            a = assets[pick]
            self.broker.submit_many(a, -self.ledger.qty[a], ExitReason(reason), rules[pick])

    def _risk_context(self) -> RiskContext:
        b = self.broker
        p = b.panel
        assert p is not None
        i = b.i
        return RiskContext(
            bar=b.bar,
            qty=self.ledger.qty,
            avg_price=self.ledger.avg_price,
            entry_bar=self.ledger.entry_bar,
            open=p.open[i],
            high=p.high[i],
            low=p.low[i],
            close=b.last_close,
            has_bar=p.has_bar[i],
            features=SignalsRow(p.signals, i),
            market=RowView(p.context, i),
            valuation=b.equity,
            peak_before=self.peak_equity,
            day_start_equity=self.prev_equity,
            high_water=self.risk.state.high_water,
            low_water=self.risk.state.low_water,
            working_entries=self._working_entries(),
        )

    def _working_entries(self) -> np.ndarray:
        """Assets without a position that have a working strategy order (a reserved slot)."""
        if not self.broker.pending:
            return _NO_ASSETS
        qty = self.ledger.qty
        waiting = {
            o.asset
            for o in self.broker.pending
            if o.reason == ExitReason.SIGNAL and qty.item(o.asset) == 0
        }
        return np.array(sorted(waiting), dtype=np.int64)

    def final_state(self) -> EngineState:
        rule_state = {
            r.name: r._last.tolist()  # type: ignore[attr-defined]
            for r in self.risk.rules
            if getattr(r, "_last", None) is not None
        }
        row = self.broker.decision_row
        last_signals = {n: np.asarray(v[row[1]]) for n, v in row[0].items()} if row else {}
        return EngineState.capture(
            last_signals=last_signals,
            assets=self.assets,
            ledger=self.ledger,
            risk=self.risk.state,
            pending=Orders.from_rows(self.broker.pending),
            next_order_id=self.broker.next_order_id,
            last_close=self.broker.last_close,
            bars_done=self.bars_done,
            peak_equity=self.peak_equity,
            prev_equity=self.prev_equity,
            strategy_state=self.strategy.get_state(),
            rule_state=rule_state,
        )
