"""The strategy helpers, hand-computed on a five-bar market without costs.

A long in A is built and trimmed with every sizing helper (buy_percent, sell_percent,
set_position_percent, size_by_confidence) while a short in B checks the sign of
get_unrealized_pnl_pct; cash, portfolio value and unrealized P&L are read at each close.
Also: helpers outside a run, unknown asset ids, and what a per-event callback's event shows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ml4t_pipeline.engine import Batch, MarketEvent, Strategy
from ml4t_pipeline.engine.strategy.views import ContextView
from ml4t_pipeline.errors import ConfigError
from tests.engine.conftest import col, config, flat, panel, rows, run, signals, stamp

PRICES = panel(
    A=[
        flat(100),
        (100.0, 112.0, 99.0, 110.0),
        (110.0, 121.0, 109.0, 120.0),
        (120.0, 121.0, 119.0, 120.0),
        (125.0, 126.0, 124.0, 125.0),
        flat(125),
    ],
    B=[flat(50), (50.0, 51.0, 44.0, 45.0), flat(45), flat(45), flat(45), flat(45)],
)


class Helpers(Strategy):
    """Calls `script[bar](self)` at each close and keeps what the helpers returned."""

    def __init__(self, script: dict[int, Callable[[Helpers], Any]]) -> None:
        super().__init__()
        self.script = script
        self.seen: dict[int, Any] = {}

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        step = self.script.get(batch.bar_index)
        if step is not None:
            self.seen[batch.bar_index] = step(self)


def _bar0(s: Helpers) -> Any:
    s.sell("B", 10)  # a short of 10 at bar 1's open (50)
    return s.buy_percent("A", 0.10)  # floor(0.10 x 100,000 / 100) = 100 shares


def _bar1(s: Helpers) -> Any:
    seen = (s.get_cash(), s.get_portfolio_value(), s.get_unrealized_pnl_pct("A"))
    s.sell_percent("A", 0.5)  # floor(0.5 x 100) = 50 shares
    return (*seen, s.get_unrealized_pnl_pct("B"))


def _bar2(s: Helpers) -> Any:
    return s.set_position_percent("A", 0.12), s.get_position("A")


def _bar3(s: Helpers) -> Any:
    return s.size_by_confidence("A", 1.7, max_percent=0.05), s.get_portfolio_value()


def _bar4(s: Helpers) -> Any:
    return s.get_unrealized_pnl_pct("A"), s.size_by_confidence("A", -0.3)


def _bar5(s: Helpers) -> Any:
    return s.get_unrealized_pnl_pct("A"), s.get_position("A"), s.close_position("A")


def test_sizing_and_accounting_helpers(tmp_path: Path) -> None:
    strategy = Helpers({0: _bar0, 1: _bar1, 2: _bar2, 3: _bar3, 4: _bar4, 5: _bar5})
    cfg = config(tmp_path, allow_short=True)
    result = run(cfg, strategy, PRICES, tmp_path / "out")
    assert rows(result.fills, "bar", "asset_id", "side", "qty", "price") == [
        (1, "B", "sell", 10, 50.0),
        (1, "A", "buy", 100, 100.0),
        (2, "A", "sell", 50, 110.0),
        (3, "A", "buy", 51, 120.0),  # 0.12 x 101,550 / 120 = 101.55 -> 101 held, 50 had
        (4, "A", "sell", 59, 125.0),  # confidence 1.7 clips to 1: 0.05 x 101,550 / 120 -> 42
        (5, "A", "sell", 42, 125.0),  # confidence -0.3 clips to 0: flat
    ]
    seen = strategy.seen
    # bar 1 close: cash 100,000 + 500 (short) - 10,000; A marked at 110, B at 45
    cash, value, pnl_a, pnl_b = seen[1]
    assert cash == 90_500.0
    assert value == 90_500.0 + 100 * 110.0 - 10 * 45.0
    assert pnl_a == pytest.approx(0.10)
    assert pnl_b == pytest.approx(0.10)  # a short gains when the price falls
    assert seen[2][1] == 50
    # bar 2 close: 96,000 cash + 50 x 120 - 10 x 45 = 101,550; bar 3 close: the same value
    # with 51 more shares bought at 120 (cash 89,880 + 101 x 120 - 450)
    assert seen[3][1] == pytest.approx(101_550.0)
    # bar 4: the long's average entry is (50 x 100 + 51 x 120) / 101
    assert seen[4][0] == pytest.approx(125.0 / ((50 * 100.0 + 51 * 120.0) / 101) - 1.0)
    # bar 5: flat, so no P&L and closing does nothing
    assert seen[5] == (None, 0, None)
    assert col(result.orders, "status") == ["filled"] * 6


def test_helpers_outside_a_run_say_why_they_cannot_work() -> None:
    strategy = Helpers({})
    for call in (
        lambda: strategy.get_position("A"),
        lambda: strategy.buy("A", 1),
        lambda: strategy.close_position("A"),
        lambda: strategy.get_cash(),
    ):
        with pytest.raises(RuntimeError, match="only available while the engine runs"):
            call()


@pytest.mark.parametrize(
    "helper",
    [
        lambda s: s.buy("ZZZ", 1),
        lambda s: s.get_position("ZZZ"),
        lambda s: s.buy_percent("ZZZ", 0.1),
        lambda s: s.rebalance_to_weights({"A": 0.1, "ZZZ": 0.1}),
    ],
)
def test_an_unknown_asset_id_is_a_clear_error(tmp_path: Path, helper: Any) -> None:
    with pytest.raises(ConfigError, match="unknown asset_id 'ZZZ': not in this run's price data"):
        run(config(tmp_path), Helpers({1: helper}), PRICES, tmp_path / "out")


class Recorder(Strategy):
    """Keeps what each market event showed."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[Any, ...]] = []

    def on_market_event(self, event: MarketEvent, context: ContextView) -> None:
        self.seen.append(
            (
                event.timestamp,
                event.asset_id,
                event.open,
                event.high,
                event.low,
                event.close,
                event.volume,
                event.signals["score"],
            )
        )


def test_a_market_event_shows_its_own_bar_and_signals(tmp_path: Path) -> None:
    prices = panel(A=[(10.0, 12.0, 9.0, 11.0), (11.0, 13.0, 10.0, 12.0)], B=[None, flat(50)])
    scores = signals(score={"A": [0.1, 0.2], "B": [0.3, 0.4]})
    strategy = Recorder()
    run(config(tmp_path), strategy, prices, tmp_path / "out", signals=scores)
    volume = 1_000_000.0
    assert strategy.seen == [
        (stamp(0), "A", 10.0, 12.0, 9.0, 11.0, volume, 0.1),
        (stamp(1), "A", 11.0, 13.0, 10.0, 12.0, volume, 0.2),
        (stamp(1), "B", 50.0, 50.0, 50.0, 50.0, volume, 0.4),  # B has no bar 0: no event
    ]
