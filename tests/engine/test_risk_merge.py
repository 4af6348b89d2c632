"""How the RiskManager merges the decisions of several rules, and what it hands them.

Documented (`engine/risk/context.py`): higher priority first; among equal priorities the
tighter level wins (long: the higher stop, short: the lower); stops only ever tighten. What these
tests pin down beyond that, as found:

- a higher-priority level beats a tighter lower-priority one when both are proposed together;
- a level equal to the current one is no update, and among equal-priority proposals of the
  *same* level the earlier rule in the `risk:` list is recorded (reason and rule name);
- several exits on one asset at one close: the highest priority reason is recorded; at equal
  priority the earlier rule in the list wins, so the recorded reason depends on list order;
- several rejections of one order: likewise, highest priority first, then list order.

The manager is driven through its hooks with hand-built `RiskContext`s, then the same rules run
end to end. No rule can write what the manager hands it (water marks, hook arguments, shared
derived arrays).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ml4t_pipeline.engine import OrderReason, OrderType, RejectReason, RiskContext, RiskManager
from ml4t_pipeline.engine.execution.orders import Orders
from ml4t_pipeline.engine.risk.context import (
    REJECT_BY_CODE,
    BaseRule,
    DecisionKind,
    RiskDecision,
    RiskRule,
)
from ml4t_pipeline.engine.risk.rules import (
    MaxGrossExposure,
    MaxPositions,
    RegimeRule,
    StopLoss,
    TakeProfit,
    TimeExit,
    TrailingStop,
    VolatilityStop,
)
from tests.engine.conftest import (
    Order,
    Scripted,
    col,
    config,
    context,
    flat,
    panel,
    rows,
    run,
    signals,
)


def make_ctx(
    qty: Sequence[int],
    *,
    avg_price: Sequence[float] | None = None,
    close: Sequence[float] | None = None,
    bar: int = 5,
    entry_bar: Sequence[int] | None = None,
    features: dict[str, Sequence[float]] | None = None,
    market: dict[str, float] | None = None,
    equity: float = 100_000.0,
    manager: RiskManager | None = None,
) -> RiskContext:
    """A one-bar view of `len(qty)` assets; water marks are the manager's (read-only) views."""
    n = len(qty)
    q = np.asarray(qty, dtype=np.int64)
    px = np.asarray(close if close is not None else [100.0] * n, dtype=np.float64)
    return RiskContext(
        bar=bar,
        qty=q,
        avg_price=np.asarray(avg_price if avg_price is not None else px, dtype=np.float64),
        entry_bar=np.asarray(entry_bar if entry_bar is not None else [0] * n, dtype=np.int64),
        open=px.copy(),
        high=px.copy(),
        low=px.copy(),
        close=px,
        has_bar=np.ones(n, dtype=bool),
        features={k: np.asarray(v, dtype=np.float64) for k, v in (features or {}).items()},
        market=dict(market or {}),
        equity=equity,
        peak_equity=equity,
        prev_close_equity=equity,
        high_water=manager.high_water if manager is not None else np.full(n, np.nan),
        low_water=manager.low_water if manager is not None else np.full(n, np.nan),
    )


def enter(manager: RiskManager, qty: Sequence[int], fill: Sequence[float]) -> None:
    """Book entries of every asset with a non-zero qty at `fill` (what the broker reports)."""
    opened = np.flatnonzero(np.asarray(qty))
    ctx = make_ctx(qty, avg_price=fill, close=fill, manager=manager)
    manager.on_fills(
        lambda: ctx, opened, np.asarray(fill, dtype=np.float64)[opened], np.empty(0, np.int64)
    )


def stop_of(manager: RiskManager, asset: int = 0) -> tuple[float, OrderReason, str]:
    s = manager.state
    return (
        float(s.stop[asset]),
        OrderReason(int(s.stop_reason[asset])),
        manager.names[int(s.stop_rule[asset])],
    )


def stop_update(value: float, *, priority: int, rule: int, reason: OrderReason) -> RiskDecision:
    return RiskDecision(
        kind=DecisionKind.STOP_UPDATE,
        index=np.array([0], dtype=np.int64),
        value=np.array([value]),
        reason=reason,
        priority=priority,
        rule=rule,
    )


# -- levels at entry ---------------------------------------------------------------------------
@pytest.mark.parametrize("reverse", [False, True])
def test_equal_priority_tighter_stop_wins_for_a_long(reverse: bool) -> None:
    rules: list[RiskRule] = [StopLoss(pct=0.05), StopLoss(price=97.0, name="hard_stop")]
    if reverse:
        rules.reverse()
    manager = RiskManager(rules, 1)
    enter(manager, [10], [100.0])
    assert stop_of(manager) == (97.0, OrderReason.STOP_LOSS, "hard_stop")


@pytest.mark.parametrize("reverse", [False, True])
def test_equal_priority_tighter_stop_wins_for_a_short(reverse: bool) -> None:
    rules: list[RiskRule] = [StopLoss(pct=0.05), StopLoss(price=103.0, name="hard_stop")]
    if reverse:
        rules.reverse()
    manager = RiskManager(rules, 1)
    enter(manager, [-10], [100.0])
    assert stop_of(manager) == (103.0, OrderReason.STOP_LOSS, "hard_stop")
    # and the pct stop alone sits above a short's entry
    alone = RiskManager([StopLoss(pct=0.05)], 1)
    enter(alone, [-10], [100.0])
    assert stop_of(alone)[0] == pytest.approx(105.0)


@pytest.mark.parametrize("reverse", [False, True])
def test_higher_priority_wins_over_a_tighter_level(reverse: bool) -> None:
    vol = VolatilityStop(atr_multiplier=2.0, priority=1)
    vol.on_close(make_ctx([0], features={"atr": [5.0]}))  # the ATR known before the fill
    rules: list[RiskRule] = [StopLoss(pct=0.05), vol]
    if reverse:
        rules.reverse()
    manager = RiskManager(rules, 1)
    enter(manager, [10], [100.0])
    assert stop_of(manager) == (90.0, OrderReason.VOLATILITY_STOP, "volatility_stop")


@pytest.mark.parametrize(
    ("first", "expected"),
    [("stop_loss", OrderReason.STOP_LOSS), ("vol", OrderReason.VOLATILITY_STOP)],
)
def test_equal_priority_equal_level_goes_to_the_earlier_rule(
    first: str, expected: OrderReason
) -> None:
    vol = VolatilityStop(atr_multiplier=2.0)
    vol.on_close(make_ctx([0], features={"atr": [2.5]}))  # 100 - 2 * 2.5 = 95 = the pct stop
    stop = StopLoss(pct=0.05)
    rules: list[RiskRule] = [stop, vol] if first == "stop_loss" else [vol, stop]
    manager = RiskManager(rules, 1)
    enter(manager, [10], [100.0])
    level, reason, _ = stop_of(manager)
    assert level == 95.0
    assert reason is expected


@pytest.mark.parametrize("reverse", [False, True])
def test_equal_priority_closer_take_profit_wins(reverse: bool) -> None:
    rules: list[RiskRule] = [TakeProfit(pct=0.10), TakeProfit(pct=0.05, name="near_target")]
    if reverse:
        rules.reverse()
    manager = RiskManager(rules, 2)
    enter(manager, [10, -10], [100.0, 100.0])
    s = manager.state
    assert s.take_profit.tolist() == pytest.approx([105.0, 95.0])
    assert [manager.names[r] for r in s.tp_rule.tolist()] == ["near_target", "near_target"]


# -- levels only tighten -----------------------------------------------------------------------
def test_stop_never_loosens_and_records_who_set_it() -> None:
    manager = RiskManager([StopLoss(pct=0.03), TrailingStop(pct=0.05)], 1)
    enter(manager, [10], [100.0])
    assert stop_of(manager) == (97.0, OrderReason.STOP_LOSS, "stop_loss")

    def close_at(high: float, low: float) -> None:
        manager.on_close(
            lambda: make_ctx([10], avg_price=[100.0], manager=manager),
            np.array([10]),
            np.array([True]),
            np.array([high]),
            np.array([low]),
        )

    close_at(101.0, 99.0)  # trail 101 * 0.95 = 95.95 < 97: no change
    assert stop_of(manager) == (97.0, OrderReason.STOP_LOSS, "stop_loss")
    close_at(110.0, 99.0)  # trail 104.5 > 97: tightens, now owned by the trailing stop
    level, reason, name = stop_of(manager)
    assert (level, reason, name) == (110.0 * 0.95, OrderReason.TRAILING_STOP, "trailing_stop")
    close_at(105.0, 90.0)  # highest high still 110: unchanged
    assert stop_of(manager) == (level, OrderReason.TRAILING_STOP, "trailing_stop")


def test_higher_priority_proposal_cannot_loosen_the_current_level() -> None:
    manager = RiskManager([StopLoss(pct=0.03), TrailingStop(pct=0.05, priority=9)], 1)
    enter(manager, [10], [100.0])
    ctx = make_ctx([10], manager=manager)
    manager._apply_levels(
        ctx, [stop_update(90.0, priority=9, rule=1, reason=OrderReason.TRAILING_STOP)]
    )
    assert stop_of(manager) == (97.0, OrderReason.STOP_LOSS, "stop_loss")


def test_nan_proposals_are_ignored() -> None:
    manager = RiskManager([StopLoss(pct=0.03)], 1)
    enter(manager, [10], [100.0])
    manager._apply_levels(
        make_ctx([10], manager=manager),
        [stop_update(np.nan, priority=5, rule=0, reason=OrderReason.TRAILING_STOP)],
    )
    assert stop_of(manager) == (97.0, OrderReason.STOP_LOSS, "stop_loss")


def test_closing_a_position_clears_its_levels() -> None:
    manager = RiskManager([StopLoss(pct=0.03), TakeProfit(pct=0.1)], 2)
    enter(manager, [10, 5], [100.0, 50.0])
    closing = make_ctx([0, 5], manager=manager)
    manager.on_fills(
        lambda: closing,
        np.empty(0, np.int64),
        np.empty(0),
        np.array([0], dtype=np.int64),
    )
    s = manager.state
    assert np.isnan(s.stop[0])
    assert np.isnan(s.take_profit[0])
    assert s.stop[1] == pytest.approx(48.5)
    # a crash through both old levels only exits the position still held
    crash = np.array([1.0, 1.0])
    hit = manager.exits(9, np.array([0, 5]), crash, crash, crash)
    assert hit is not None
    assert hit.asset == [1]


# -- several exits on one asset ----------------------------------------------------------------
def exits_at_close(rules: list[RiskRule]) -> tuple[list[int], list[OrderReason], list[str]]:
    manager = RiskManager(rules, 2)
    ctx = make_ctx([10, 0], entry_bar=[1, -1], bar=5, market={"vix": 40.0})
    assets, reasons, rule_idx = manager.on_close(
        lambda: ctx, ctx.qty, np.ones(2, dtype=bool), ctx.high, ctx.low
    )
    return (
        assets.tolist(),
        [OrderReason(int(r)) for r in reasons.tolist()],
        [manager.names[r] for r in rule_idx.tolist()],
    )


@pytest.mark.parametrize("reverse", [False, True])
def test_the_highest_priority_exit_reason_is_recorded(reverse: bool) -> None:
    rules: list[RiskRule] = [
        TimeExit(max_bars=2),
        RegimeRule(threshold=30.0, exit_all=True, priority=1),
    ]
    if reverse:
        rules.reverse()
    assert exits_at_close(rules) == ([0], [OrderReason.REGIME_EXIT], ["regime"])


@pytest.mark.parametrize(
    ("reverse", "expected"),
    [(False, (OrderReason.TIME_EXIT, "time_exit")), (True, (OrderReason.REGIME_EXIT, "regime"))],
)
def test_equal_priority_exits_go_to_the_earlier_rule(
    reverse: bool, expected: tuple[OrderReason, str]
) -> None:
    rules: list[RiskRule] = [TimeExit(max_bars=2), RegimeRule(threshold=30.0, exit_all=True)]
    if reverse:
        rules.reverse()
    assets, reasons, names = exits_at_close(rules)
    assert (assets, reasons[0], names[0]) == ([0], *expected)


# -- several rejections of one order -----------------------------------------------------------
def market_orders(assets: Sequence[int], qty: Sequence[int], reason: int = 0) -> Orders:
    n = len(assets)
    return Orders.from_columns(
        {
            "order_id": list(range(n)),
            "asset": list(assets),
            "qty": list(qty),
            "order_type": [int(OrderType.MARKET)] * n,
            "limit_price": [np.nan] * n,
            "stop_price": [np.nan] * n,
            "trail_pct": [np.nan] * n,
            "trail_ref": [np.nan] * n,
            "created_bar": [5] * n,
            "reason": [reason] * n,
            "rule": [-1] * n,
            "triggered": [False] * n,
            "tif": [0] * n,
            "expires": [-1] * n,
        }
    )


def validate(
    rules: list[RiskRule], orders: Orders, qty: Sequence[int]
) -> tuple[list[int], list[int], list[RejectReason], list[str]]:
    """Validate `orders` at a close with vix 40, every price 100, equity 100,000."""
    manager = RiskManager(rules, len(qty))
    ctx = make_ctx(qty, market={"vix": 40.0})
    accepted, qty_after, rejected, reasons, rule_idx = manager.validate(ctx, orders)
    return (
        qty_after[accepted].tolist(),
        rejected.tolist(),
        [REJECT_BY_CODE[int(c)] for c in reasons.tolist()],
        [manager.names[r] if r >= 0 else "" for r in rule_idx.tolist()],
    )


@pytest.mark.parametrize("reverse", [False, True])
def test_the_highest_priority_rejection_reason_is_recorded(reverse: bool) -> None:
    rules: list[RiskRule] = [RegimeRule(threshold=30.0), MaxPositions(n=0, priority=1)]
    if reverse:
        rules.reverse()
    result = validate(rules, market_orders([0], [10]), [0])
    assert result == ([], [0], [RejectReason.RISK_MAX_POSITIONS], ["max_positions"])


@pytest.mark.parametrize(
    ("reverse", "expected"),
    [
        (False, (RejectReason.RISK_REGIME_BLOCK, "regime")),
        (True, (RejectReason.RISK_MAX_POSITIONS, "max_positions")),
    ],
)
def test_equal_priority_rejections_go_to_the_earlier_rule(
    reverse: bool, expected: tuple[RejectReason, str]
) -> None:
    rules: list[RiskRule] = [RegimeRule(threshold=30.0), MaxPositions(n=0)]
    if reverse:
        rules.reverse()
    _, rejected, reasons, names = validate(rules, market_orders([0], [10]), [0])
    assert (rejected, reasons[0], names[0]) == ([0], *expected)


def test_exits_and_reductions_pass_entry_rules() -> None:
    rules: list[RiskRule] = [RegimeRule(threshold=30.0), MaxPositions(n=0)]
    # a strategy reduction and a risk exit (reason time_exit) of held positions
    orders = market_orders([0, 1], [-4, -5], reason=0)
    orders.reason[1] = int(OrderReason.TIME_EXIT)
    assert validate(rules, orders, [10, 5]) == ([-4, -5], [], [], [])


def test_a_rejection_beats_a_resize_of_the_same_order() -> None:
    rules: list[RiskRule] = [MaxGrossExposure(max_ratio=0.5), RegimeRule(threshold=30.0)]
    accepted, rejected, reasons, _ = validate(rules, market_orders([0], [800]), [0])
    assert (accepted, rejected, reasons) == ([], [0], [RejectReason.RISK_REGIME_BLOCK])


# -- end to end --------------------------------------------------------------------------------
def test_tighter_stop_takes_over_and_the_exit_names_it(tmp_path: Path) -> None:
    prices = panel(
        A=[
            flat(100),
            flat(100),  # entry 100: stop_loss 98 vs trailing 95 -> 98 (stop_loss)
            (100, 110, 99, 108),  # trailing 104.5 > 98 -> trailing_stop owns the level
            (106, 107, 104, 105),  # low 104 <= 104.5: exit at 104.5
            flat(105),
        ]
    )
    cfg = config(
        tmp_path,
        risk=[{"rule": "stop_loss", "pct": 0.02}, {"rule": "trailing_stop", "pct": 0.05}],
    )
    result = run(cfg, Scripted({0: [Order(asset="A", qty=10)]}), prices, tmp_path / "out")
    assert rows(result.trades, "exit_bar", "exit_reason", "exit_rule") == [
        (3, "trailing_stop", "trailing_stop")
    ]
    assert col(result.trades, "exit_price") == pytest.approx([104.5])


def test_a_looser_higher_priority_stop_governs_the_exit(tmp_path: Path) -> None:
    prices = panel(A=[flat(100), flat(100), (100, 101, 93, 94), (94, 95, 89, 90), flat(90)])
    atr = signals(atr={"A": [5.0] * 5})
    cfg = config(
        tmp_path,
        risk=[
            {"rule": "stop_loss", "pct": 0.05},
            {"rule": "volatility_stop", "atr_multiplier": 2.0, "priority": 1},
        ],
    )
    result = run(
        cfg, Scripted({0: [Order(asset="A", qty=10)]}), prices, tmp_path / "out", signals=atr
    )
    # the stop is 90 (priority 1), not 95: bar 2's low 93 passes, bar 3 trades through 90
    assert rows(result.fills, "bar", "side", "price", "reason") == [
        (1, "buy", 100.0, "signal"),
        (3, "sell", 90.0, "volatility_stop"),
    ]


@pytest.mark.parametrize(
    ("priorities", "expected"),
    [((0, 1), ("regime_exit", "regime")), ((2, 1), ("time_exit", "time_exit"))],
)
def test_simultaneous_exits_record_the_higher_priority_reason(
    tmp_path: Path, priorities: tuple[int, int], expected: tuple[str, str]
) -> None:
    prices = panel(A=[flat(100 + k) for k in range(6)])
    vix = context(vix=[20, 20, 20, 40, 20, 20])  # regime exit at close 3 ...
    cfg = config(
        tmp_path,
        risk=[
            # ... the same close at which 2 bars have been held (entry at bar 1)
            {"rule": "time_exit", "max_bars": 2, "priority": priorities[0]},
            {"rule": "regime", "threshold": 30.0, "exit_all": True, "priority": priorities[1]},
        ],
    )
    result = run(
        cfg, Scripted({0: [Order(asset="A", qty=10)]}), prices, tmp_path / "out", context=vix
    )
    assert rows(result.fills, "bar", "side", "reason", "rule") == [
        (1, "buy", "signal", ""),
        (4, "sell", *expected),
    ]
    assert rows(result.trades, "exit_reason", "exit_rule") == [expected]


# -- what rules are handed is read-only --------------------------------------------------------
class Meddler(BaseRule):
    """A rule that tries to write everything it is handed; records what refused."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def _try(self, name: str, values: np.ndarray) -> None:
        try:
            values[...] = values
        except ValueError:
            self.refused.append(name)

    def on_entry(
        self, ctx: RiskContext, assets: np.ndarray, fill_price: np.ndarray
    ) -> list[RiskDecision]:
        self._try("assets", assets)
        self._try("fill_price", fill_price)
        return []

    def on_close(self, ctx: RiskContext) -> list[RiskDecision]:
        for name in ("high_water", "low_water", "held", "long", "bars_held", "mfe", "mae"):
            self._try(name, getattr(ctx, name))
        return []

    def validate(self, ctx: RiskContext, orders: Orders, opens: np.ndarray) -> list[RiskDecision]:
        self._try("opens", opens)
        self._try("orders.qty", orders.qty)
        return []


def test_rules_cannot_write_what_the_manager_hands_them() -> None:
    meddler = Meddler()
    manager = RiskManager([meddler], 2)
    enter(manager, [10, 0], [100.0, 50.0])
    manager.on_close(
        lambda: make_ctx([10, 0], manager=manager),
        np.array([10, 0]),
        np.ones(2, dtype=bool),
        np.array([101.0, 50.0]),
        np.array([99.0, 50.0]),
    )
    orders = market_orders([1], [5])
    manager.validate(make_ctx([10, 0], manager=manager), orders)
    assert meddler.refused == [
        "assets",
        "fill_price",
        *("high_water", "low_water", "held", "long", "bars_held", "mfe", "mae"),
        "opens",
        "orders.qty",
    ]
    assert orders.qty.flags.writeable  # the caller's own orders stay as they were
    assert manager.state.high_water.tolist()[0] == 101.0  # the manager still writes its own
