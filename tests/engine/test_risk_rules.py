"""Each built-in risk rule, end to end, on tiny hand-written markets.

Every expectation (fill bar and price, exit reason, rejection reason) is computed by hand from
the rule's documented semantics in `ml4t_pipeline/engine/risk.py`: decide at close t, market
orders fill at open t+1, protective levels trigger on any bar after the entry bar at a
gap-aware price.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml4t_pipeline.engine import MarketEvent, OrderType, RiskContext, RiskManager, Strategy
from ml4t_pipeline.engine.risk.rules import StopLoss, VolatilityStop
from ml4t_pipeline.engine.strategy.views import ContextView
from ml4t_pipeline.errors import ConfigError
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

Ohlc = tuple[float, float, float, float]


def one_bar_context(
    qty: list[int],
    features: dict[str, list[float]] | None = None,
    manager: RiskManager | None = None,
    bar: int = 1,
) -> RiskContext:
    """A bar at which every asset trades at 100 (water marks: the manager's, read-only)."""
    n = len(qty)
    px = np.full(n, 100.0)
    return RiskContext(
        bar=bar,
        qty=np.array(qty, dtype=np.int64),
        avg_price=px,
        entry_bar=np.zeros(n, dtype=np.int64),
        open=px,
        high=px,
        low=px,
        close=px,
        has_bar=np.ones(n, dtype=bool),
        features={k: np.array(v) for k, v in (features or {}).items()},
        market={},
        equity=1.0,
        peak_equity=1.0,
        prev_close_equity=1.0,
        high_water=manager.high_water if manager is not None else np.full(n, np.nan),
        low_water=manager.low_water if manager is not None else np.full(n, np.nan),
    )


class BuyWhenFlat(Strategy):
    """Per-asset callback: whenever flat at a close, buy `qty` (a W2-style re-entry)."""

    def __init__(self, qty: int) -> None:
        super().__init__()
        self.qty = qty

    def on_market_event(self, event: MarketEvent, context: ContextView) -> None:
        if self.get_position(event.asset_id) == 0:
            self.buy(event.asset_id, self.qty)


# -- stop_loss -------------------------------------------------------------------------------
def test_stop_loss_pct_is_gap_aware_skips_the_entry_bar_and_allows_re_entry(
    tmp_path: Path,
) -> None:
    prices = panel(
        A=[
            flat(100),
            (100, 101, 94, 97),  # entry at 100, stop 95; the low 94 is on the entry bar: no exit
            (97, 98, 96, 96.5),
            (96, 96.5, 94, 95.5),  # low 94 <= 95: exit at min(96, 95) = 95; re-buy at the close
            (93, 94, 88, 93.5),  # re-entry at 93, stop 93 - 4.65 = 88.35; entry bar again
            (87, 88, 85, 86),  # opens below 88.35: exit at the open, 87
            flat(86),  # third entry at 86
            flat(86),
        ]
    )
    cfg = config(tmp_path, risk=[{"rule": "stop_loss", "pct": 0.05}], commission_rate=0.001)
    result = run(cfg, BuyWhenFlat(10), prices, tmp_path / "out")

    assert rows(result.fills, "bar", "side", "qty", "reason", "rule") == [
        (1, "buy", 10, "signal", ""),
        (3, "sell", 10, "stop_loss", "stop_loss"),
        (4, "buy", 10, "signal", ""),
        (5, "sell", 10, "stop_loss", "stop_loss"),
        (6, "buy", 10, "signal", ""),
    ]
    assert col(result.fills, "price") == pytest.approx([100.0, 95.0, 93.0, 87.0, 86.0])
    assert col(result.fills, "commission") == pytest.approx([1.0, 0.95, 0.93, 0.87, 0.86])
    assert rows(result.trades, "entry_bar", "exit_bar", "exit_reason", "exit_rule") == [
        (1, 3, "stop_loss", "stop_loss"),
        (4, 5, "stop_loss", "stop_loss"),
        (6, 7, "open", ""),
    ]
    assert col(result.trades, "exit_price") == pytest.approx([95.0, 87.0, 86.0])
    # the stop exit is an order of its own, typed as a stop at the level it filled
    stops = result.orders.filter(result.orders["reason"] == "stop_loss")
    assert rows(stops, "order_type", "status") == [("stop", "filled"), ("stop", "filled")]


def test_stop_loss_absolute_price(tmp_path: Path) -> None:
    prices = panel(A=[flat(100), flat(101), (100, 100, 95.5, 96), (96, 97, 94.5, 95), flat(95)])
    cfg = config(tmp_path, risk=[{"rule": "stop_loss", "price": 95.0}])
    result = run(cfg, Scripted({0: [Order(asset="A", qty=7)]}), prices, tmp_path / "out")
    assert rows(result.fills, "bar", "side", "price", "reason") == [
        (1, "buy", 101.0, "signal"),
        (3, "sell", 95.0, "stop_loss"),
    ]


def test_stop_loss_pct_on_a_short_is_above_the_entry(tmp_path: Path) -> None:
    prices = panel(
        A=[flat(100), flat(100), (101, 104.9, 100, 104), (104, 106, 103, 105), flat(105)]
    )
    cfg = config(tmp_path, risk=[{"rule": "stop_loss", "pct": 0.05}], allow_short=True)
    result = run(cfg, Scripted({0: [Order(asset="A", qty=-10)]}), prices, tmp_path / "out")
    # short at 100, stop 105: bar 2's high 104.9 does not reach it; bar 3's 106 does
    assert rows(result.fills, "bar", "side", "price", "reason") == [
        (1, "sell", 100.0, "signal"),
        (3, "buy", 105.0, "stop_loss"),
    ]
    assert rows(result.trades, "direction", "exit_reason") == [("short", "stop_loss")]


def test_stop_exit_cancels_the_strategys_working_exit_order(tmp_path: Path) -> None:
    prices = panel(
        A=[flat(100), flat(100), (100, 104, 99, 103), (97, 98, 90, 91), (91, 120, 91, 119)]
    )
    strategy = Scripted(
        {
            0: [Order(asset="A", qty=10)],
            # a GTC take-profit sell limit that the market only reaches after the stop fired
            1: [Order(asset="A", qty=-10, order_type=OrderType.LIMIT, limit_price=110.0)],
        }
    )
    cfg = config(tmp_path, risk=[{"rule": "stop_loss", "pct": 0.05}])
    result = run(cfg, strategy, prices, tmp_path / "out")
    assert rows(result.fills, "bar", "side", "price", "reason") == [
        (1, "buy", 100.0, "signal"),
        (3, "sell", 95.0, "stop_loss"),
    ]
    assert rows(result.rejections, "order_id", "reason") == [(1, "stopped_out")]


def test_a_flip_gets_fresh_levels_for_its_new_side(tmp_path: Path) -> None:
    prices = panel(
        A=[
            flat(100),
            flat(100),  # long at 100: stop 95
            flat(105),
            flat(105),  # flips to a 15 short at 105: stop 110.25 (the long's 95 is gone)
            (106, 109, 104, 108),  # trailing 104 x 1.08 = 112.32 is looser: stays 110.25
            (108, 111, 107, 110),  # high 111 >= 110.25: buy back at max(108, 110.25)
            flat(110),
        ]
    )
    cfg = config(
        tmp_path,
        risk=[{"rule": "stop_loss", "pct": 0.05}, {"rule": "trailing_stop", "pct": 0.08}],
        allow_short=True,
    )
    strategy = Scripted({0: [Order(asset="A", qty=10)], 2: [Order(asset="A", qty=-25)]})
    result = run(cfg, strategy, prices, tmp_path / "out")
    assert rows(result.fills, "bar", "side", "qty", "reason") == [
        (1, "buy", 10, "signal"),
        (3, "sell", 10, "signal"),
        (3, "sell", 15, "signal"),
        (5, "buy", 15, "stop_loss"),
    ]
    assert col(result.fills, "price") == pytest.approx([100.0, 105.0, 105.0, 110.25])


def test_same_close_entries_are_protected_from_the_next_bar(tmp_path: Path) -> None:
    prices = panel(
        A=[flat(100), (100, 101, 99, 100), (99, 100, 95, 96), (96, 97, 90, 91), flat(91)]
    )
    atr = signals(atr={"A": [2.0, 3.0, 5.0, 5.0, 5.0]})
    cfg = config(
        tmp_path, risk=[{"rule": "volatility_stop", "atr_multiplier": 1.0}], fill_at="same_close"
    )
    strategy = Scripted({0: [Order(asset="A", qty=10)], 2: [Order(asset="A", qty=5)]})
    result = run(cfg, strategy, prices, tmp_path / "out", signals=atr)
    # close 0 entry at 100 with that close's atr 2: stop 98, hit inside bar 2 (open 99);
    # re-entry at close 2 (96) with atr 5: stop 91, hit inside bar 3 (open 96)
    assert rows(result.fills, "bar", "side", "qty", "reason") == [
        (0, "buy", 10, "signal"),
        (2, "sell", 10, "volatility_stop"),
        (2, "buy", 5, "signal"),
        (3, "sell", 5, "volatility_stop"),
    ]
    assert col(result.fills, "price") == pytest.approx([100.0, 98.0, 96.0, 91.0])


# -- take_profit -----------------------------------------------------------------------------
def test_take_profit_fills_at_max_open_target(tmp_path: Path) -> None:
    prices = panel(
        A=[flat(100), flat(100), (101, 109, 100, 108), (108, 111, 107, 110.5), flat(110)],
        B=[flat(50), flat(50), (51, 54.9, 50, 54), (56, 57, 55.5, 56), flat(56)],
    )
    strategy = Scripted({0: [Order(asset="A", qty=10), Order(asset="B", qty=20)]})
    cfg = config(tmp_path, risk=[{"rule": "take_profit", "pct": 0.10}])
    result = run(cfg, strategy, prices, tmp_path / "out")
    # A: target 110 reached inside bar 3; B: target 55, bar 3 gaps above it to 56
    assert rows(result.fills, "bar", "asset_id", "side", "reason") == [
        (1, "A", "buy", "signal"),
        (1, "B", "buy", "signal"),
        (3, "A", "sell", "take_profit"),
        (3, "B", "sell", "take_profit"),
    ]
    assert col(result.fills, "price") == pytest.approx([100.0, 50.0, 110.0, 56.0])
    assert col(result.trades, "exit_reason") == ["take_profit", "take_profit"]


def test_take_profit_on_a_short_is_below_the_entry(tmp_path: Path) -> None:
    prices = panel(A=[flat(100), flat(100), (99, 99.5, 90.5, 91), (89, 90, 88, 89), flat(89)])
    cfg = config(tmp_path, risk=[{"rule": "take_profit", "pct": 0.10}], allow_short=True)
    result = run(cfg, Scripted({0: [Order(asset="A", qty=-10)]}), prices, tmp_path / "out")
    assert rows(result.fills, "bar", "side", "price", "reason") == [
        (1, "sell", 100.0, "signal"),
        (3, "buy", 89.0, "take_profit"),  # target 90, bar 3 opens below it at 89
    ]


def test_stop_wins_when_stop_and_target_both_trigger_in_one_bar(tmp_path: Path) -> None:
    prices = panel(A=[flat(100), flat(100), (100, 106, 94, 100), flat(100)])
    cfg = config(
        tmp_path,
        risk=[{"rule": "take_profit", "pct": 0.05}, {"rule": "stop_loss", "pct": 0.05}],
    )
    result = run(cfg, Scripted({0: [Order(asset="A", qty=10)]}), prices, tmp_path / "out")
    assert rows(result.fills, "bar", "side", "price", "reason") == [
        (1, "buy", 100.0, "signal"),
        (2, "sell", 95.0, "stop_loss"),
    ]


# -- trailing_stop ---------------------------------------------------------------------------
TRAIL_PATH = [
    flat(100),
    flat(100),  # entry at 100; level 95 at this close
    (100, 110, 99, 108),  # highest high 110: level 104.5
    (108, 120, 107, 118),  # highest high 120: level 114
    (117, 118, 112, 113),  # low 112 <= 114: exit at min(117, 114) = 114
    (113, 113, 100, 101),
    flat(100),
]


def test_trailing_stop_follows_the_highest_high_since_entry(tmp_path: Path) -> None:
    cfg = config(tmp_path, risk=[{"rule": "trailing_stop", "pct": 0.05}])
    result = run(
        cfg, Scripted({0: [Order(asset="A", qty=10)]}), panel(A=TRAIL_PATH), tmp_path / "out"
    )
    assert rows(result.fills, "bar", "side", "reason", "rule") == [
        (1, "buy", "signal", ""),
        (4, "sell", "trailing_stop", "trailing_stop"),
    ]
    assert col(result.fills, "price") == pytest.approx([100.0, 114.0])
    assert rows(result.trades, "exit_reason", "exit_rule") == [("trailing_stop", "trailing_stop")]


def test_trailing_stop_never_loosens_when_the_price_falls_back(tmp_path: Path) -> None:
    prices = panel(
        A=[
            flat(100),
            flat(100),
            (100, 110, 99, 108),  # level 104.5
            (108, 108, 105, 105.5),  # no new high: the level stays 104.5 (not 108 * 0.95)
            (105, 106, 104, 105),  # low 104 <= 104.5: exit at 104.5
            flat(105),
        ]
    )
    cfg = config(tmp_path, risk=[{"rule": "trailing_stop", "pct": 0.05}])
    result = run(cfg, Scripted({0: [Order(asset="A", qty=10)]}), prices, tmp_path / "out")
    assert col(result.fills, "bar") == [1, 4]
    assert col(result.fills, "price") == pytest.approx([100.0, 104.5])


def test_trailing_stop_schedule_tightens_with_favourable_excursion(tmp_path: Path) -> None:
    # 10 % trail, 3 % once the position has been 15 % in profit (MFE from the highest high):
    # close 1: 90; close 2 (MFE 10 %): 99; close 3 (MFE 20 %): 120 * 0.97 = 116.4
    cfg = config(
        tmp_path, risk=[{"rule": "trailing_stop", "pct": 0.10, "schedule": [[0.15, 0.03]]}]
    )
    result = run(
        cfg, Scripted({0: [Order(asset="A", qty=10)]}), panel(A=TRAIL_PATH), tmp_path / "out"
    )
    assert col(result.fills, "bar") == [1, 4]
    assert col(result.fills, "price") == pytest.approx([100.0, 116.4])


def test_trailing_stop_on_a_short_follows_the_lowest_low(tmp_path: Path) -> None:
    prices = panel(
        A=[flat(100), flat(100), (99, 100, 90, 91), (92, 95, 91, 94), (96, 97, 95, 96), flat(96)]
    )
    cfg = config(tmp_path, risk=[{"rule": "trailing_stop", "pct": 0.05}], allow_short=True)
    result = run(cfg, Scripted({0: [Order(asset="A", qty=-10)]}), prices, tmp_path / "out")
    # lowest low 90: level 94.5; bar 3's high 95 reaches it at max(92, 94.5)
    assert rows(result.fills, "bar", "side", "reason") == [
        (1, "sell", "signal"),
        (3, "buy", "trailing_stop"),
    ]
    assert col(result.fills, "price") == pytest.approx([100.0, 94.5])


# -- volatility_stop -------------------------------------------------------------------------
VOL_PATH = [flat(100), flat(100), (100, 101, 96, 97), (97, 98, 93, 95), flat(95)]


def test_volatility_stop_uses_the_feature_known_at_the_close_before_the_fill(
    tmp_path: Path,
) -> None:
    # decided at close 1 (atr 2), filled at open 2 (100): stop 100 - 2 * 2 = 96. The entry bar's
    # low 96 does not count; bar 3 trades through 96. With bar 2's atr (5) the stop would be 90.
    atr = signals(atr={"A": [1.0, 2.0, 5.0, 5.0, 5.0]})
    cfg = config(tmp_path, risk=[{"rule": "volatility_stop", "atr_multiplier": 2.0}])
    result = run(
        cfg,
        Scripted({1: [Order(asset="A", qty=10)]}),
        panel(A=VOL_PATH),
        tmp_path / "out",
        signals=atr,
    )
    assert rows(result.fills, "bar", "side", "price", "reason", "rule") == [
        (2, "buy", 100.0, "signal", ""),
        (3, "sell", 96.0, "volatility_stop", "volatility_stop"),
    ]


def test_volatility_stop_without_a_known_feature_sets_no_stop(tmp_path: Path) -> None:
    atr = signals(atr={"A": [1.0, None, 5.0, 5.0, 5.0]})
    cfg = config(tmp_path, risk=[{"rule": "volatility_stop", "atr_multiplier": 2.0}])
    result = run(
        cfg,
        Scripted({1: [Order(asset="A", qty=10)]}),
        panel(A=VOL_PATH),
        tmp_path / "out",
        signals=atr,
    )
    assert rows(result.fills, "bar", "reason") == [(2, "signal")]
    assert result.rejections.height == 0


def test_volatility_stop_requiring_the_feature_rejects_undecidable_entries(
    tmp_path: Path,
) -> None:
    atr = signals(atr={"A": [1.0, None, 5.0, 5.0, 5.0]})
    cfg = config(
        tmp_path,
        risk=[{"rule": "volatility_stop", "atr_multiplier": 2.0, "require_feature": True}],
    )
    strategy = Scripted({1: [Order(asset="A", qty=10)], 2: [Order(asset="A", qty=10)]})
    result = run(cfg, strategy, panel(A=VOL_PATH), tmp_path / "out", signals=atr)
    assert rows(result.rejections, "order_id", "reason", "rule") == [
        (0, "risk_undecidable", "volatility_stop")
    ]
    assert rows(result.fills, "bar", "order_id") == [(3, 1)]


def test_volatility_stop_state_is_the_feature_at_the_last_close() -> None:
    rule = VolatilityStop(atr_multiplier=2.0)
    assert rule.get_state() is None  # before its first close it has seen nothing
    assert StopLoss(pct=0.05).get_state() is None  # a rule without state
    rule.on_close(one_bar_context(qty=[0, 0, 0], features={"atr": [1.0, 2.0, np.nan]}))
    state = rule.get_state()
    assert state is not None
    assert state.tolist()[:2] == [1.0, 2.0]
    assert np.isnan(state[2])
    state[0] = 99.0  # the caller's copy: the rule's own values stay
    again = rule.get_state()
    assert again is not None
    assert again[0] == 1.0


def test_volatility_stop_set_state_gives_entries_their_stop() -> None:
    """A chained run hands the last close's values back; an asset it never saw is NaN."""
    rule = VolatilityStop(atr_multiplier=2.0)
    rule.set_state(np.array([3.0, np.nan, 4.0]))
    ctx = one_bar_context(qty=[10, 10, -10])
    assets, fill = np.array([0, 1, 2]), np.array([100.0, 100.0, 100.0])
    (decision,) = rule.on_entry(ctx, assets, fill)
    assert decision.index.tolist() == [0, 2]
    assert decision.value is not None
    assert decision.value.tolist() == [94.0, 108.0]


# -- time_exit -------------------------------------------------------------------------------
TIME_PATH = [flat(100 + k) for k in range(9)]


def test_time_exit_orders_at_the_close_when_held_max_bars_and_fills_next_open(
    tmp_path: Path,
) -> None:
    # entry fills at bar 1; bars held at close t is t - 1, reaching 3 at close 4: the exit
    # order is created at bar 4 and fills at the open of bar 5 (105)
    cfg = config(tmp_path, risk=[{"rule": "time_exit", "max_bars": 3}])
    result = run(
        cfg, Scripted({0: [Order(asset="A", qty=10)]}), panel(A=TIME_PATH), tmp_path / "out"
    )
    assert rows(result.fills, "bar", "side", "price", "reason", "rule") == [
        (1, "buy", 101.0, "signal", ""),
        (5, "sell", 105.0, "time_exit", "time_exit"),
    ]
    assert rows(result.trades, "entry_bar", "exit_bar", "bars_held", "exit_reason") == [
        (1, 5, 4, "time_exit")
    ]
    exit_order = result.orders.filter(result.orders["reason"] == "time_exit")
    assert rows(exit_order, "order_type", "status") == [("market", "filled")]
    assert exit_order["created_at"].dt.day().to_list() == [5]  # bar 4 = 2024-01-05


def test_time_exit_and_the_strategys_own_close_at_the_same_bar_sell_once(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, risk=[{"rule": "time_exit", "max_bars": 2}], allow_short=True)
    # bars held reaches 2 at close 3, the bar the strategy also closes the position
    strategy = Scripted({0: [Order(asset="A", qty=10)], 3: [Order(asset="A", qty=-10)]})
    result = run(cfg, strategy, panel(A=TIME_PATH), tmp_path / "out")
    assert col(result.fills, "side") == ["buy", "sell"]
    assert col(result.trades, "direction") == ["long"]


def test_exit_and_own_close_at_the_same_bar_sell_once_long_only(tmp_path: Path) -> None:
    cfg = config(tmp_path, risk=[{"rule": "time_exit", "max_bars": 2}])
    strategy = Scripted({0: [Order(asset="A", qty=10)], 3: [Order(asset="A", qty=-10)]})
    result = run(cfg, strategy, panel(A=TIME_PATH), tmp_path / "out")
    assert col(result.fills, "side") == ["buy", "sell"]
    assert col(result.fills, "reason") == ["signal", "time_exit"]
    # the strategy's own close is replaced, on the record, never a short_not_allowed
    assert col(result.rejections, "reason") == ["replaced_by_exit"]


def test_an_order_replaced_by_a_risk_exit_is_still_recorded(tmp_path: Path) -> None:
    cfg = config(tmp_path, risk=[{"rule": "time_exit", "max_bars": 2}])
    strategy = Scripted({0: [Order(asset="A", qty=10)], 3: [Order(asset="A", qty=-10)]})
    result = run(cfg, strategy, panel(A=TIME_PATH), tmp_path / "out")
    # ids 0 (entry), 1 (the strategy's close), 2 (the time exit) were all handed out
    assert col(result.orders, "order_id") == [0, 1, 2]
    assert rows(result.orders.filter(result.orders["order_id"] == 1), "status") == [("rejected",)]
    assert col(result.rejections, "order_id") == [1]


# -- regime ----------------------------------------------------------------------------------
def test_regime_blocks_entries_rejects_undecidable_and_exits_all(tmp_path: Path) -> None:
    prices = panel(A=[flat(100)] * 8, B=[flat(50)] * 8)
    vix = context(vix=[20, 35, 20, None, 40, 20, 30, 20])
    strategy = Scripted(
        {
            0: [Order(asset="A", qty=10)],
            1: [Order(asset="B", qty=10)],  # vix 35 > 30: blocked
            2: [Order(asset="B", qty=5)],
            3: [Order(asset="B", qty=7)],  # vix unknown: the rule cannot decide, it rejects
            5: [Order(asset="B", qty=3)],
            6: [Order(asset="A", qty=2)],  # vix 30 is not above the threshold
        }
    )
    cfg = config(tmp_path, risk=[{"rule": "regime", "threshold": 30.0, "exit_all": True}])
    result = run(cfg, strategy, prices, tmp_path / "out", context=vix)
    assert rows(result.fills, "bar", "asset_id", "side", "qty", "reason", "rule") == [
        (1, "A", "buy", 10, "signal", ""),
        (2, "A", "sell", 10, "regime_exit", "regime"),  # vix 35 at close 1: exit all
        (3, "B", "buy", 5, "signal", ""),
        (5, "B", "sell", 5, "regime_exit", "regime"),  # vix 40 at close 4
        (6, "B", "buy", 3, "signal", ""),
        (7, "A", "buy", 2, "signal", ""),
    ]
    assert rows(result.rejections, "asset_id", "qty", "reason", "rule") == [
        ("B", 10, "risk_regime_block", "regime"),
        ("B", 7, "risk_undecidable", "regime"),
    ]
    assert result.rejections["timestamp"].dt.day().to_list() == [2, 4]  # decided at bars 1, 3
    assert rows(result.trades, "asset_id", "exit_reason", "exit_rule") == [
        ("A", "regime_exit", "regime"),
        ("B", "regime_exit", "regime"),
        ("A", "open", ""),
        ("B", "open", ""),
    ]


def test_regime_without_its_context_column_is_a_config_error(tmp_path: Path) -> None:
    prices = panel(A=[flat(100)] * 3)
    cfg = config(tmp_path, risk=[{"rule": "regime", "threshold": 30.0}])
    with pytest.raises(ConfigError, match=r"risk\[0\]\.feature reads the market-wide column 'vix'"):
        run(cfg, Scripted({0: [Order(asset="A", qty=1)]}), prices, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"available: \['spx'\]"):
        run(
            cfg,
            Scripted({}),
            prices,
            tmp_path / "out",
            context=context(spx=[1.0, 2.0, 3.0]),
        )


def test_regime_lets_exits_through_while_blocking_entries(tmp_path: Path) -> None:
    prices = panel(A=[flat(100)] * 4)
    vix = context(vix=[20, 50, 50, 50])
    strategy = Scripted({0: [Order(asset="A", qty=10)], 1: [Order(asset="A", qty=-10)]})
    cfg = config(tmp_path, risk=[{"rule": "regime", "threshold": 30.0}])
    result = run(cfg, strategy, prices, tmp_path / "out", context=vix)
    assert rows(result.fills, "bar", "side") == [(1, "buy"), (2, "sell")]
    assert result.rejections.height == 0


def test_regime_blocks_a_flip_that_opens_a_short(tmp_path: Path) -> None:
    prices = panel(A=[flat(100)] * 5)
    vix = context(vix=[20, 20, 50, 50, 50])
    # long 400, then at vix 50 sell 700: closing 400 is fine, opening a 300 short is an entry
    strategy = Scripted({0: [Order(asset="A", qty=400)], 2: [Order(asset="A", qty=-700)]})
    cfg = config(tmp_path, risk=[{"rule": "regime", "threshold": 30.0}], allow_short=True)
    result = run(cfg, strategy, prices, tmp_path / "out", context=vix)
    assert "short" not in col(result.trades, "direction")
    assert col(result.rejections, "reason") == ["risk_regime_block"]


# -- max_positions ---------------------------------------------------------------------------
def test_max_positions_rejects_the_new_positions_beyond_n_in_order(tmp_path: Path) -> None:
    prices = panel(A=[flat(100)] * 6, B=[flat(50)] * 6, C=[flat(20)] * 6)
    strategy = Scripted(
        {
            0: [Order(asset="C", qty=1), Order(asset="A", qty=1), Order(asset="B", qty=1)],
            # adding to a held position is not a new one
            1: [Order(asset="A", qty=1), Order(asset="B", qty=1)],
            # A is held until its sell fills at the open of bar 3: no room for B at this close
            2: [Order(asset="A", qty=-2), Order(asset="B", qty=1)],
            3: [Order(asset="B", qty=1)],  # A was sold: room for B
        }
    )
    cfg = config(tmp_path, risk=[{"rule": "max_positions", "n": 2}])
    result = run(cfg, strategy, prices, tmp_path / "out")
    assert rows(result.fills, "bar", "asset_id", "side", "qty") == [
        (1, "C", "buy", 1),
        (1, "A", "buy", 1),
        (2, "A", "buy", 1),
        (3, "A", "sell", 2),
        (4, "B", "buy", 1),
    ]
    assert rows(result.rejections, "order_id", "asset_id", "reason", "rule") == [
        (2, "B", "risk_max_positions", "max_positions"),
        (4, "B", "risk_max_positions", "max_positions"),
        (6, "B", "risk_max_positions", "max_positions"),
    ]


def test_max_positions_counts_working_entry_orders(tmp_path: Path) -> None:
    dip = [flat(100), flat(100), flat(100), (100, 100, 95, 96), flat(96)]
    prices = panel(A=dip, B=[(p / 2, h / 2, lo / 2, c / 2) for p, h, lo, c in dip])
    strategy = Scripted(
        {
            0: [Order(asset="A", qty=1, order_type=OrderType.LIMIT, limit_price=97.0)],
            1: [Order(asset="B", qty=1, order_type=OrderType.LIMIT, limit_price=48.5)],
        }
    )
    cfg = config(tmp_path, risk=[{"rule": "max_positions", "n": 1}])
    result = run(cfg, strategy, prices, tmp_path / "out")
    # both limits are reached on bar 3; only one position may be open
    assert result.trades.height <= 1
    assert col(result.rejections, "reason") == ["risk_max_positions"]


# -- max_gross_exposure ----------------------------------------------------------------------
def test_max_gross_exposure_resizes_the_first_crossing_entry_and_rejects_the_rest(
    tmp_path: Path,
) -> None:
    prices = panel(A=[flat(100)] * 4, B=[flat(50)] * 4, C=[flat(10)] * 4)
    strategy = Scripted(
        {0: [Order(asset="A", qty=300), Order(asset="B", qty=500), Order(asset="C", qty=100)]}
    )
    # room = 0.5 * 100,000 = 50,000: A takes 30,000; B is cut to floor(20,000 / 50) = 400
    cfg = config(tmp_path, risk=[{"rule": "max_gross_exposure", "max_ratio": 0.5}])
    result = run(cfg, strategy, prices, tmp_path / "out")
    assert rows(result.fills, "asset_id", "qty") == [("A", 300), ("B", 400)]
    assert rows(result.rejections, "asset_id", "qty", "reason", "rule") == [
        ("C", 100, "risk_gross_exposure", "max_gross_exposure")
    ]
    assert rows(result.orders, "asset_id", "qty", "status") == [
        ("A", 300, "filled"),
        ("B", 400, "filled"),
        ("C", 100, "rejected"),
    ]


def test_a_rejected_order_is_recorded_as_asked_even_if_another_rule_resized_it(
    tmp_path: Path,
) -> None:
    prices = panel(A=[flat(100)] * 4, B=[flat(50)] * 4)
    strategy = Scripted({0: [Order(asset="A", qty=300), Order(asset="B", qty=500)]})
    risk = [{"rule": "max_gross_exposure", "max_ratio": 0.5}, {"rule": "max_positions", "n": 1}]
    result = run(config(tmp_path, risk=risk), strategy, prices, tmp_path / "out")
    assert rows(result.fills, "asset_id", "qty") == [("A", 300)]
    # max_gross_exposure would cut B to 400; max_positions rejects it: the row keeps the 500 asked
    assert rows(result.rejections, "asset_id", "qty", "reason") == [
        ("B", 500, "risk_max_positions")
    ]
    assert rows(result.orders, "asset_id", "qty", "status") == [
        ("A", 300, "filled"),
        ("B", 500, "rejected"),
    ]


def test_max_gross_exposure_counts_existing_positions(tmp_path: Path) -> None:
    prices = panel(A=[flat(100)] * 5, B=[flat(50)] * 5)
    strategy = Scripted({0: [Order(asset="A", qty=400)], 2: [Order(asset="B", qty=300)]})
    cfg = config(tmp_path, risk=[{"rule": "max_gross_exposure", "max_ratio": 0.5}])
    result = run(cfg, strategy, prices, tmp_path / "out")
    # 40,000 held: B gets floor(10,000 / 50) = 200
    assert rows(result.fills, "asset_id", "qty") == [("A", 400), ("B", 200)]


def test_max_gross_exposure_credits_sells_in_the_same_batch(tmp_path: Path) -> None:
    prices = panel(A=[flat(100)] * 5, B=[flat(100)] * 5)
    strategy = Scripted(
        {0: [Order(asset="A", qty=600)], 2: [Order(asset="A", qty=-600), Order(asset="B", qty=800)]}
    )
    # after bar 2's orders the book holds only B: 80,000 <= 1.0 x 100,000
    cfg = config(tmp_path, risk=[{"rule": "max_gross_exposure", "max_ratio": 1.0}])
    result = run(cfg, strategy, prices, tmp_path / "out")
    assert rows(result.fills, "asset_id", "side", "qty") == [
        ("A", "buy", 600),
        ("A", "sell", 600),
        ("B", "buy", 800),
    ]


def test_max_gross_exposure_counts_the_short_a_flip_opens(tmp_path: Path) -> None:
    prices = panel(A=[flat(100)] * 5, B=[flat(100)] * 5)
    strategy = Scripted(
        {0: [Order(asset="A", qty=400)], 2: [Order(asset="A", qty=-800), Order(asset="B", qty=500)]}
    )
    # after bar 2's orders: short 400 A (40,000) + B; room 50,000 leaves 100 B
    cfg = config(
        tmp_path, risk=[{"rule": "max_gross_exposure", "max_ratio": 0.5}], allow_short=True
    )
    result = run(cfg, strategy, prices, tmp_path / "out")
    b_fills = result.fills.filter(result.fills["asset_id"] == "B")
    assert col(b_fills, "qty") == [100]


# -- max_drawdown_halt -----------------------------------------------------------------------
def test_max_drawdown_halt_rejects_entries_and_flattens(tmp_path: Path) -> None:
    # 500 A at 100 on 100,000: equity 95,000 at close 2 (-5 %), 90,000 at close 3 (-10 %)
    prices = panel(
        A=[flat(100), flat(100), flat(90), flat(80), flat(80), flat(80), flat(80)],
        B=[flat(10)] * 7,
    )
    strategy = Scripted(
        {
            0: [Order(asset="A", qty=500)],
            2: [Order(asset="B", qty=10)],  # -5 %: allowed
            3: [Order(asset="B", qty=10)],  # -10 % <= -8 %: halted
            5: [Order(asset="B", qty=10)],  # still below the peak: halted
        }
    )
    cfg = config(
        tmp_path, risk=[{"rule": "max_drawdown_halt", "max_drawdown": 0.08, "flatten": True}]
    )
    result = run(cfg, strategy, prices, tmp_path / "out")
    assert rows(result.fills, "bar", "asset_id", "side", "qty", "price", "reason") == [
        (1, "A", "buy", 500, 100.0, "signal"),
        (3, "B", "buy", 10, 10.0, "signal"),
        (4, "A", "sell", 500, 80.0, "risk_halt"),
        (4, "B", "sell", 10, 10.0, "risk_halt"),
    ]
    assert rows(result.rejections, "order_id", "reason", "rule") == [
        (2, "risk_drawdown_halt", "max_drawdown_halt"),
        (5, "risk_drawdown_halt", "max_drawdown_halt"),
    ]
    assert col(result.trades, "exit_reason") == ["risk_halt", "risk_halt"]


# -- daily_loss_limit ------------------------------------------------------------------------
def test_daily_loss_limit_rejects_entries_on_a_losing_bar_only(tmp_path: Path) -> None:
    # equity by close: 100,000, 100,000, 98,000 (-2 %), 98,000 (0 %), 95,000 (-3.06 %), 95,000
    prices = panel(
        A=[flat(100), flat(100), flat(96), flat(96), flat(90), flat(90), flat(90)],
        B=[flat(10)] * 7,
    )
    strategy = Scripted(
        {
            0: [Order(asset="A", qty=500)],
            2: [Order(asset="B", qty=10)],  # -2 % reaches the limit (inclusive): rejected
            3: [Order(asset="B", qty=10)],
            4: [Order(asset="B", qty=10), Order(asset="A", qty=-100)],  # the sell is not an entry
            5: [Order(asset="B", qty=10)],
        }
    )
    cfg = config(tmp_path, risk=[{"rule": "daily_loss_limit", "max_loss": 0.02}])
    result = run(cfg, strategy, prices, tmp_path / "out")
    assert rows(result.fills, "bar", "asset_id", "side", "qty") == [
        (1, "A", "buy", 500),
        (4, "B", "buy", 10),
        (5, "A", "sell", 100),
        (6, "B", "buy", 10),
    ]
    assert rows(result.rejections, "order_id", "reason", "rule") == [
        (1, "risk_daily_loss", "daily_loss_limit"),
        (3, "risk_daily_loss", "daily_loss_limit"),
    ]


# -- properties of protective stops ------------------------------------------------------------
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)
cents = st.integers(5_000, 15_000).map(lambda c: c / 100.0)


@st.composite
def ohlc_bars(draw: st.DrawFn, min_size: int = 5, max_size: int = 15) -> list[Ohlc]:
    """Random bars: any open (gaps allowed), any close, a range around both."""
    out: list[Ohlc] = []
    for _ in range(draw(st.integers(min_size, max_size))):
        o, c = draw(cents), draw(cents)
        h = max(o, c) + draw(st.integers(0, 500)) / 100.0
        lo = min(o, c) - draw(st.integers(0, 500)) / 100.0
        out.append((o, h, lo, c))
    return out


@PROPERTY
@given(bar=ohlc_bars(min_size=1, max_size=1), stop=cents, side=st.sampled_from([1, -1]))
def test_protective_stop_price_is_gap_aware(bar: list[Ohlc], stop: float, side: int) -> None:
    (o, h, lo, _), qty = bar[0], 10 * side
    manager = RiskManager([StopLoss(price=stop)], 1)
    ctx = one_bar_context(qty=[qty], manager=manager, bar=0)
    manager.on_fills(lambda: ctx, np.array([0]), np.array([100.0]), np.empty(0, np.int64))
    assert manager.exits(0, ctx.qty, *(np.array([x]) for x in (o, h, lo))) is None  # entry bar
    hit = manager.exits(1, ctx.qty, np.array([o]), np.array([h]), np.array([lo]))
    triggered = lo <= stop if side > 0 else h >= stop
    assert (hit is not None) == triggered
    if hit is None:
        return
    price = float(hit.price[0])
    if side > 0:  # a long exits by selling: never above the open nor the stop
        assert price <= o
        assert price <= stop
        assert price == (o if o < stop else stop)
        assert lo <= price <= o
    else:  # a short exits by buying: never below the open nor the stop
        assert price >= o
        assert price >= stop
        assert price == (o if o > stop else stop)
        assert o <= price <= h


def expected_w2_fills(path: list[Ohlc], qty: int, pct: float) -> list[tuple[int, str, float]]:
    """Buy `qty` whenever flat at a close; exit at min(open, stop) on a later bar whose low
    reaches the stop, before the strategy acts at that close (the W2 rules)."""
    fills: list[tuple[int, str, float]] = []
    held, entry_bar, stop, pending = False, -1, 0.0, False
    for t, (o, _, lo, _) in enumerate(path):
        if pending:
            held, entry_bar, stop, pending = True, t, o - o * pct, False
            fills.append((t, "buy", o))
        if held and t > entry_bar and lo <= stop:
            held = False
            fills.append((t, "sell", min(o, stop)))
        if not held and t < len(path) - 1:
            pending = True
    return fills


@PROPERTY
@given(path=ohlc_bars(), pct=st.sampled_from([0.01, 0.03, 0.05, 0.1]))
def test_stop_loss_backtest_matches_a_hand_oracle(
    tmp_path_factory: pytest.TempPathFactory, path: list[Ohlc], pct: float
) -> None:
    tmp = tmp_path_factory.mktemp("w2")
    prices = panel(A=path)
    cfg = config(tmp, risk=[{"rule": "stop_loss", "pct": pct}])
    result = run(cfg, BuyWhenFlat(10), prices, tmp / "out")
    expected = expected_w2_fills(path, 10, pct)
    assert rows(result.fills, "bar", "side") == [(t, side) for t, side, _ in expected]
    assert col(result.fills, "price") == pytest.approx([p for _, _, p in expected], rel=1e-12)
    for (t, side, price), reason in zip(expected, col(result.fills, "reason"), strict=True):
        o, _, lo, _ = path[t]
        if side == "sell":
            assert reason == "stop_loss"
            assert lo <= price <= o
