"""The loop: the one place that advances time. `Engine._run_chunk` is the spec.

At each bar t, in the order the market imposes:
0. corporate actions of an ex-date at t, before the open: dividends on the shares held at the
   previous close, then splits (positions, levels, working orders and the last close in the
   new shares) -> ledger
1. orders queued at t-1 are matched against bar t; what fills at open[t] is booked (sells
   before buys) -> ledger
2. protective stops / take-profits, gap-aware, on positions entered before t
3. the queued orders that fill inside bar t (after the stops: the conservative reading of a
   bar where both trigger)
4. the strategy decides at close[t]
5. risk rules update stops and add exits at close[t]
6. every new order passes the risk rules (reject / resize) on its way to the broker
7. queue for t+1 (or fill at close[t] with fill_at: same_close)
8. mark equity at close[t]

The benchmark (`engine.benchmark`) trades nothing and reads no account state: it is marked
once per chunk, vectorized over the chunk's closes, before the bars are stepped through.

Who owns what: the clock (where the run is) belongs to this loop; the broker owns the orders,
the ledger cash and positions, the portfolio the last closes and the equity curve, the risk
manager the protective levels, and each rule and the strategy their own state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ml4t_pipeline.engine.benchmark import Benchmark
from ml4t_pipeline.engine.clock import Clock
from ml4t_pipeline.engine.config import RunConfig
from ml4t_pipeline.engine.enums import (
    BenchmarkKind,
    CashPolicy,
    DelistPolicy,
    FillAt,
    NoBarPolicy,
    VolumePolicy,
)
from ml4t_pipeline.engine.execution.account import AccountView, AssetIndex, Portfolio
from ml4t_pipeline.engine.execution.broker import Broker
from ml4t_pipeline.engine.execution.fills import FillRules
from ml4t_pipeline.engine.execution.order_desk import OrderDesk
from ml4t_pipeline.engine.execution.orders import SIGNAL, Orders
from ml4t_pipeline.engine.feed import Feed, Panel, asset_list
from ml4t_pipeline.engine.feed.actions import Action, ActionBars
from ml4t_pipeline.engine.feed.features import CallableFeatures, FeatureProvider
from ml4t_pipeline.engine.results import BacktestResult, RunRecord, build_result
from ml4t_pipeline.engine.risk.context import RiskContext, RiskRule
from ml4t_pipeline.engine.risk.manager import RiskManager
from ml4t_pipeline.engine.state import NO_TIME, EngineState, RunStart
from ml4t_pipeline.engine.strategy.base import Strategy
from ml4t_pipeline.engine.strategy.history import History, check_history_bars, history_store
from ml4t_pipeline.engine.strategy.views import (
    AtRow,
    Batch,
    ContextView,
    CrossSection,
    MarketEvent,
)
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import utc_datetimes

ProgressFn = Callable[[int, int], None]
_NO_ASSETS = np.empty(0, np.int64)


@dataclass(frozen=True, slots=True, kw_only=True)
class _ChunkViews:
    context: ContextView
    batch: Batch | None
    event: MarketEvent | None
    callables: list[CallableFeatures]  # features computed at each close


class Engine:
    """One backtest: the parts that own the run's state, and the loop that moves them."""

    def __init__(
        self,
        config: RunConfig,
        data: Feed,
        *,
        strategy: Strategy | None = None,
        initial_state: EngineState | None = None,
        features: Sequence[FeatureProvider] = (),
        rules: Sequence[RiskRule] | None = None,
    ) -> None:
        self.config = config
        self.data = data
        self.strategy = strategy if strategy is not None else config.strategy.build()
        self.features = list(features)
        self.assets = data.calendar.assets
        self.asset_ids = asset_list(self.assets)
        rules = list(rules) if rules is not None else config.build_rules()
        ex = config.execution
        self.closes_delisted = ex.on_delist is DelistPolicy.CLOSE
        self.actions = (
            ActionBars(
                data.actions,
                data.calendar.timestamps,
                self.assets,
                after_us=initial_state.last_timestamp_us if initial_state is not None else None,
            )
            if data.actions is not None
            else None
        )
        n, signals = data.calendar.n_assets, list(data.signal_columns)
        start = (
            initial_state.restore(self.assets, signals)
            if initial_state is not None
            else RunStart.fresh(n, ex.initial_cash, signals)
        )
        self.first_bar = start.first_bar
        self.benchmark = (
            Benchmark(
                config.benchmark,
                assets=self.assets,
                start_value=start.start_equity,
                saved=start.benchmark,
            )
            if config.benchmark.kind is not BenchmarkKind.NONE
            else None
        )
        self.carried_entry_us = start.entry_time_us  # of positions carried in (None: none saved)
        self.clock = Clock(bar=start.first_bar)
        if start.decision_signals:  # what the last close's decisions saw ((1, N) arrays)
            self.clock.decision = ({k: v[np.newaxis] for k, v in start.decision_signals.items()}, 0)
        self.ledger = start.ledger
        self.portfolio = Portfolio(
            self.ledger,
            last_close=start.last_close,
            start_equity=start.start_equity,
            peak_equity=start.peak_equity,
        )
        self.risk = RiskManager(rules, n, start.risk)
        self.desk = OrderDesk(
            clock=self.clock,
            ledger=self.ledger,
            asset_ids=self.asset_ids,
            next_order_id=start.next_order_id,
        )
        fill_rules = FillRules(
            commission=ex.commission_model(),
            slippage=ex.slippage_model(),
            allow_short=ex.allow_short,
            allow_negative_cash=ex.allow_negative_cash,
            resize_buys=ex.on_insufficient_cash is CashPolicy.RESIZE,
            max_participation=ex.max_participation,
        )
        if fill_rules.volume_bound and not data.has_volume:
            msg = (
                f"{data.calendar.prices}: column 'volume' is needed (execution.max_participation or "
                "the volume_share slippage model bound fills by the bar's volume)"
            )
            raise DataError(msg)
        self.broker = Broker(
            clock=self.clock,
            rules=fill_rules,
            same_close=ex.fill_at is FillAt.SAME_CLOSE,
            ledger=self.ledger,
            risk=self.risk,
            working=start.working,
            desk=self.desk,
            no_bar_waits=ex.on_no_bar is NoBarPolicy.WAIT,
            rest_waits=ex.on_volume_limit is VolumePolicy.WAIT,
            delisted=data.delistings.before.tolist() if self.closes_delisted else (),
        )
        self.desk.read_working(self.broker.working_orders)
        # user code owns its state: restored through its own set_state
        if start.strategy_state is not None:
            self.strategy.set_state(start.strategy_state)
        for rule in rules:
            if rule.name in start.rule_state:
                rule.set_state(start.rule_state[rule.name])
        index = AssetIndex(self.asset_ids).__getitem__  # a C-level lookup
        self.strategy.bind(AccountView(self.portfolio, index), self.desk)
        # History spans chunks and chained runs: one store keeps what its users declared
        owner = f"{type(self.strategy).__name__}.history_bars"
        bars = check_history_bars(self.strategy.history_bars, owner)
        callables = [f for f in self.features if isinstance(f, CallableFeatures)]
        users = [f.history_bars for f in callables]
        users += [bars] if self.strategy.uses_batches() else []
        self.history = history_store(users, first_bar=start.first_bar, tail=start.history)
        self.strategy_history = History(self.history, self.clock, history_bars=bars, owner=owner)
        for provider in callables:
            provider.bind(self.history)

    # -- the run ------------------------------------------------------------------------------
    def run(self, progress: ProgressFn | None = None) -> BacktestResult:
        started = time.perf_counter()
        if self.first_bar == 0:
            self.strategy.on_start()
        total = self.data.calendar.timestamps.shape[0]
        done = 0
        for panel in self.data.chunks():
            self._run_chunk(panel)
            done += panel.n_bars
            if progress is not None:
                progress(done, total)
        wall_s = time.perf_counter() - started  # the bars (what bars_per_s reports), not the tables
        result = build_result(self.record(), wall_s=wall_s)
        if self.data.widened_bars:  # split-adjusted noise within OHLC_RTOL: said, not hidden
            result.extra["ohlc_widened_bars"] = self.data.widened_bars
        return result

    def _run_chunk(self, panel: Panel) -> None:
        """Every bar of one chunk of the data: the steps of the module docstring."""
        clock, broker, portfolio, risk = self.clock, self.broker, self.portfolio, self.risk
        desk = self.desk
        views = self._views_for(panel)
        context, batch, event, callables = views.context, views.batch, views.event, views.callables
        on_batch, on_event = self.strategy.on_timestamp_batch, self.strategy.on_market_event
        every_asset = list(range(self.data.calendar.n_assets))
        complete: list[bool] = np.all(panel.has_bar, axis=1).tolist()  # every asset has a bar
        has_bar = panel.has_bar
        lo = clock.bar - self.first_bar  # the chunk's first bar in the run's calendar
        delisted = (
            self.data.delistings.in_rows(lo, lo + panel.n_bars) if self.closes_delisted else {}
        )
        actions = self.actions.in_rows(lo, lo + panel.n_bars) if self.actions is not None else {}
        if self.benchmark is not None:  # the benchmark at every close of the chunk
            self.benchmark.mark(panel, actions)
        for row, whole, close in zip(range(panel.n_bars), complete, panel.close, strict=True):
            clock.row = row
            if actions and row in actions:  # 0. the ex-date's corporate actions, before the open
                self._corporate_actions(actions[row])
            if broker.working:  # 1. orders queued at t-1 fill at open[t], sells first
                broker.fill_at_open(self._risk_context)
            if risk.active:  # 2. protective levels crossed inside the bar, gap-aware
                self._protective_exits()
            if broker.intrabar:  # 3. then the queued orders filled inside the bar
                broker.fill_inside_bar(self._risk_context)
            portfolio.mark_close(close, None if whole else has_bar[row])  # close[t] is known:
            clock.decision = (panel.signals, row)  # what decisions see from now on
            for provider in callables:  # 4. the strategy at close[t], after the features
                provider.update(row)
            if batch is not None:  # ... with the whole cross-section
                on_batch(batch.timestamp, batch, context)
            if event is not None:  # ... or per asset with a bar
                for a in every_asset if whole else np.flatnonzero(has_bar[row]).tolist():
                    event.point_at(a)
                    on_event(event, context)
            if desk.cancels:  # ... and the orders it cancelled
                broker.cancel(desk.take_cancels())
            if risk.active:  # 5. risk rules at close[t]: stop updates and exits
                self._risk_at_close()
            if desk.new_orders:  # 6 + 7. risk validation, then queue for t+1
                broker.accept_new_orders(self._risk_context)  # (or fill at close[t])
            if delisted and row in delisted:  # ... and the last bar of assets that delist
                broker.delist(delisted[row], self._risk_context)
            portfolio.record_close()  # 8. equity at close[t]
            clock.bar += 1

    # -- the steps ------------------------------------------------------------------------------
    def _views_for(self, panel: Panel) -> _ChunkViews:
        """The chunk's features attached, and what the strategy is shown of it: views that
        read the bar the clock is at."""
        clock = self.clock
        clock.panel = panel
        if self.history is not None:
            self.history.enter(panel)  # before the features: History reads this chunk now
        for provider in self.features:
            provider.attach(panel, self.data.calendar, clock.bar - self.first_bar)
        strategy = self.strategy
        context = ContextView(panel.context, clock)
        batch = None
        if strategy.uses_batches():
            stamps = utc_datetimes(panel.timestamps)
            batch = Batch(
                panel,
                self.assets,
                clock,
                first_bar=clock.bar,
                timestamps=stamps,
                history=self.strategy_history,
            )
        event = None
        if strategy.uses_events():
            event = MarketEvent(panel, context, self.asset_ids, clock)
        return _ChunkViews(
            context=context,
            batch=batch,
            event=event,
            callables=[f for f in self.features if isinstance(f, CallableFeatures)],
        )

    def _corporate_actions(self, actions: list[Action]) -> None:
        """Step 0: dividends on the shares held at the previous close, then splits. Each owner
        adjusts its own state: the ledger the positions and cash, the portfolio the last
        close, the risk manager the levels, the broker the working orders."""
        ledger, portfolio, bar = self.ledger, self.portfolio, self.clock.bar
        for action in actions:
            if action.dividend:
                a = action.asset
                close = portfolio.last_close.item(a)
                action.check_dividend(close)
                ledger.dividend(a, action.dividend, close, bar)
        for action in actions:
            if action.split_ratio != 1.0:
                a, ratio = action.asset, action.split_ratio
                done = ledger.split(
                    a, ratio, portfolio.last_close.item(a), bar, self.clock.decision
                )
                portfolio.split(a, ratio)
                if done is not None:
                    self.risk.split(a, ratio, done.qty_after)
                self.broker.split(a, ratio)

    def _protective_exits(self) -> None:
        """Step 2: stops and take-profits of positions entered before this bar."""
        p, i = self.clock.panel, self.clock.row
        hits = self.risk.exits(self.clock.bar, self.ledger.qty, p.open[i], p.high[i], p.low[i])
        if hits is not None:
            self.broker.fill_protective_exits(hits, self._risk_context)

    def _risk_at_close(self) -> None:
        """Step 5: the rules update levels; their exits replace the strategy's own orders."""
        p, i = self.clock.panel, self.clock.row
        assets, reasons, rules = self.risk.on_close(
            self._risk_context, self.ledger.qty, p.has_bar[i], p.high[i], p.low[i]
        )
        if assets.shape[0]:
            self.broker.replace_with_exits(assets, reasons, rules)

    def _risk_context(self) -> RiskContext:
        """What the rules see at this bar (read-only arrays)."""
        p, i = self.clock.panel, self.clock.row
        at = AtRow(i)
        held = self.ledger.view
        portfolio = self.portfolio
        prev_equity = portfolio.prev_equity
        day_start, day_low = self.risk.day_marks(self.clock.bar, p.timestamps.item(i), prev_equity)
        return RiskContext(
            bar=self.clock.bar,
            qty=held.qty,
            avg_price=held.avg_price,
            entry_bar=held.entry_bar,
            open=p.open[i],
            high=p.high[i],
            low=p.low[i],
            close=portfolio.last_close,
            has_bar=p.has_bar[i],
            features=CrossSection(p.signals, at),
            market=ContextView(p.context, at),
            valuation=portfolio.equity,
            peak_before=portfolio.peak_equity,
            prev_close_equity=prev_equity,
            day_start_equity=day_start,
            day_low_equity=day_low,
            high_water=self.risk.high_water,
            low_water=self.risk.low_water,
            working_entries=self._working_entries(),
        )

    def _working_entries(self) -> np.ndarray:
        """Assets without a position that have a working strategy order (a reserved slot)."""
        working = self.broker.working
        if not working:
            return _NO_ASSETS
        qty = self.ledger.qty
        waiting = {o.asset for o in working if o.reason == SIGNAL and qty.item(o.asset) == 0}
        return np.array(sorted(waiting), dtype=np.int64)

    # -- what the run produced --------------------------------------------------------------
    def final_state(self) -> EngineState:
        rule_state = {}
        for rule in self.risk.rules:
            values = rule.get_state()
            if values is not None:
                rule_state[rule.name] = values.tolist()
        signals, row = self.clock.decision
        return EngineState.capture(
            last_signals={name: np.asarray(v[row]) for name, v in signals.items()},
            assets=self.assets,
            ledger=self.ledger,
            risk=self.risk.state,
            pending=Orders.from_rows(self.broker.working),
            next_order_id=self.desk.next_order_id,
            last_close=self.portfolio.last_close,
            bars_done=self.clock.bar,
            peak_equity=self.portfolio.peak_equity,
            prev_equity=self.portfolio.prev_equity,
            strategy_state=self.strategy.get_state(),
            rule_state=rule_state,
            history=self.history.tail() if self.history is not None else None,
            entry_time_us=self._entry_times(),
            benchmark=self.benchmark.saved() if self.benchmark is not None else None,
            # where the next run's actions start (written only by runs that read actions)
            last_timestamp_us=int(self.data.calendar.timestamps[-1])
            if self.actions is not None
            else None,
        )

    def _entry_times(self) -> np.ndarray:
        """Per asset, the time (us UTC) the open trade entered: a bar of this run, or the
        time saved with a position carried in (NO_TIME where flat or not known)."""
        entry_bar = self.ledger.entry_bar
        calendar = self.data.calendar.timestamps
        local = entry_bar - self.first_bar
        inside = (entry_bar >= 0) & (local >= 0) & (local < calendar.shape[0])
        carried = (
            self.carried_entry_us
            if self.carried_entry_us is not None
            else np.full(entry_bar.shape[0], NO_TIME, dtype=np.int64)
        )
        return np.where(inside, calendar[np.clip(local, 0, calendar.shape[0] - 1)], carried)

    def record(self) -> RunRecord:
        portfolio, ledger = self.portfolio, self.ledger
        cash, positions_value = portfolio.curve()
        return RunRecord(
            timestamps=self.data.calendar.timestamps,
            first_bar=self.first_bar,
            asset_ids=self.asset_ids,
            rule_names=self.risk.names,
            n_rows=self.data.n_rows,
            start_equity=portfolio.start_equity,
            cash=cash,
            positions_value=positions_value,
            fills=ledger.fill_columns(),
            actions=ledger.actions if self.actions is not None else None,
            orders=Orders.from_rows(self.broker.order_log),
            rejections=self.broker.rejections,
            negative_cash_fills=len(self.broker.negative_cash_fills),
            trades=ledger.trades(),
            final_qty=ledger.view.qty,
            last_close=portfolio.last_close,
            final_cash=ledger.cash,
            final_equity=ledger.cash + ledger.positions_value(portfolio.last_close),
            final_state=self.final_state(),
            carried_entry_us=self.carried_entry_us,
            benchmark=self.benchmark.values() if self.benchmark is not None else None,
            benchmark_start=self.benchmark.start_value if self.benchmark is not None else None,
            benchmark_info=self.benchmark.describe()
            if self.benchmark is not None
            else {"kind": str(BenchmarkKind.NONE)},
            periods_per_year=self.config.metrics.periods_per_year,
        )
