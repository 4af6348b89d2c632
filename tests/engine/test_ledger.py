"""The ledger's mark to market and the risk context's lazy valuation.

Both are memos on the hot path: the mark-to-market product is computed once per bar however
often it is asked for, and a risk context values the portfolio only when a rule reads it.
These tests pin down that a memo never serves a stale value.
"""

from __future__ import annotations

import numpy as np
import pytest

from ml4t_pipeline.engine import RiskContext
from ml4t_pipeline.engine.ledger import Ledger


def _fill(ledger: Ledger, asset: int, qty: int, price: float) -> None:
    ledger.book(asset, qty, price, 0.0, 0.0, 0, 0, -1, {}, 0)


def test_mark_to_market_follows_every_fill_within_a_bar() -> None:
    ledger = Ledger.empty(3, 1_000.0, [])
    close = np.array([6.0, 3.0, 2.0])
    assert ledger.positions_value(close) == 0.0
    _fill(ledger, 0, 10, 5.0)
    assert ledger.positions_value(close) == 60.0  # one position
    _fill(ledger, 1, 5, 4.0)
    assert ledger.positions_value(close) == 75.0  # two: the product, then its memo
    assert ledger.positions_value(close) == 75.0
    _fill(ledger, 2, 7, 2.0)  # same close array, a new fill: not the memo
    assert ledger.positions_value(close) == 89.0
    _fill(ledger, 0, -10, 6.0)
    assert ledger.positions_value(close) == 29.0
    later = close.copy()
    later[1] = 4.0  # a new bar's closes: a new array
    assert ledger.positions_value(later) == 34.0
    assert ledger.cash == 1_000.0 - 50.0 - 20.0 - 14.0 + 60.0


def test_closed_trade_record_keeps_what_the_fills_said() -> None:
    ledger = Ledger.empty(1, 0.0, ["score"])
    signals = {"score": np.array([[0.7], [0.2]])}
    ledger.book(0, 10, 5.0, 0.5, 0.1, 3, 0, -1, signals, 0)
    ledger.book(0, 5, 6.0, 0.3, 0.0, 4, 0, -1, signals, 0)
    assert ledger.avg_price[0] == pytest.approx((50.0 + 30.0) / 15)
    assert ledger.book(0, -15, 7.0, 1.0, 0.2, 6, 2, 1, signals, 1) == -1
    (record,) = ledger.closed
    names = ledger.trade_columns()
    row = dict(zip(names, record, strict=True))
    assert row["long"] is True
    assert (row["entry_bar"], row["exit_bar"], row["exit_reason"], row["exit_rule"]) == (3, 6, 2, 1)
    assert (row["buy_qty"], row["sell_qty"]) == (15, 15)
    assert (row["buy_notional"], row["sell_notional"]) == (80.0, 105.0)
    assert row["commission"] == pytest.approx(1.8)
    assert (row["entry_score"], row["exit_score"]) == (0.7, 0.2)
    assert ledger.open == {}
    assert ledger.entry_bar[0] == -1
    assert ledger.avg_price[0] == 0.0


def _context(**kwargs: object) -> RiskContext:
    one = np.array([100.0])
    return RiskContext(
        bar=0,
        qty=np.array([10]),
        avg_price=one,
        entry_bar=np.array([0]),
        open=one,
        high=one,
        low=one,
        close=one,
        has_bar=np.array([True]),
        features={},
        market={},
        day_start_equity=1_000.0,
        high_water=one,
        low_water=one,
        **kwargs,  # type: ignore[arg-type]
    )


def test_risk_context_values_the_portfolio_only_when_a_rule_reads_it() -> None:
    calls: list[int] = []

    def valuation() -> float:
        calls.append(1)
        return 900.0

    ctx = _context(valuation=valuation, peak_before=1_200.0)
    assert calls == []
    assert ctx.equity == 900.0
    assert ctx.peak_equity == 1_200.0
    assert ctx.equity == 900.0
    assert calls == [1]
    assert _context(valuation=lambda: 1_300.0, peak_before=1_200.0).peak_equity == 1_300.0
    given = _context(equity=5.0)
    assert (given.equity, given.peak_equity) == (5.0, 5.0)
    with pytest.raises(ValueError, match="equity or a valuation"):
        _context()
