"""The ledger: mark to market, trades derived from the fill book, and the risk context's
lazy valuation.

The mark-to-market product is memoized within a bar and a risk context values the portfolio
only when a rule reads it: these tests pin down that a memo never serves a stale value. Trades
are derived from the fill book at the end of a run: they must match, to the bit, the running
totals a per-fill accumulator would give, and continue the sums of a trade carried over from
saved state.
"""

from __future__ import annotations

import numpy as np
import pytest

from ml4t_pipeline.engine import RiskContext
from ml4t_pipeline.engine.execution.fills import Fill
from ml4t_pipeline.engine.execution.ledger import Ledger

Signals = dict[str, np.ndarray]


def _book(
    ledger: Ledger,
    asset: int,
    qty: int,
    price: float,
    *,
    fee: float = 0.0,
    slippage: float = 0.0,
    bar: int = 0,
    reason: int = 0,
    rule: int = -1,
    signals: Signals | None = None,
    row: int = 0,
) -> int:
    fill = Fill(
        bar=bar,
        asset=asset,
        qty=qty,
        price=price,
        commission=fee,
        slippage=slippage,
        order_id=ledger.n_fills,
        reason=reason,
        rule=rule,
    )
    return ledger.book(fill, (signals or {}, row))


def _fill(
    ledger: Ledger, asset: int, qty: int, price: float, fee: float = 0.0, bar: int = 0
) -> int:
    return _book(ledger, asset, qty, price, fee=fee, bar=bar)


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


def test_trades_follow_each_assets_position_path() -> None:
    ledger = Ledger.empty(2, 0.0, ["score"])
    signals = {"score": np.array([[0.7, 0.1], [0.2, 0.3]])}

    def book(asset: int, qty: int, price: float, bar: int, row: int, reason: int = 0) -> int:
        return _book(
            ledger,
            asset,
            qty,
            price,
            fee=0.5,
            slippage=0.1,
            bar=bar,
            reason=reason,
            rule=1,
            signals=signals,
            row=row,
        )

    assert book(0, 10, 5.0, 1, 0) == 1  # opens A's first trade
    assert book(1, -3, 9.0, 2, 0) == 1  # a short in B, still open at the end
    assert book(0, 5, 6.0, 3, 0) == 0
    assert ledger.avg_price[0] == (5.0 * 10 + 6.0 * 5) / 15
    assert book(0, -15, 7.0, 4, 1, reason=2) == -1  # closes it
    assert book(0, 2, 8.0, 5, 1) == 1  # A's second trade, open
    assert ledger.entry_bar.tolist() == [5, 2]
    t = ledger.trades()
    assert t.asset.tolist() == [0, 0, 1]  # closed first, then open by asset
    assert t.long.tolist() == [True, True, False]
    assert t.entry_bar.tolist() == [1, 5, 2]
    assert t.exit_fill.tolist() == [3, -1, -1]
    assert (t.exit_bar[0], t.exit_reason[0], t.exit_rule[0]) == (4, 2, 1)
    assert t.sums["buy_qty"].tolist() == [15, 2, 0]
    assert t.sums["sell_qty"].tolist() == [15, 0, 3]
    assert t.sums["buy_notional"].tolist() == [80.0, 16.0, 0.0]
    assert t.sums["sell_notional"].tolist() == [105.0, 0.0, 27.0]
    assert t.sums["trade_commission"].tolist() == [1.5, 0.5, 0.5]
    assert t.entry_signals["score"] == [0.7, 0.2, 0.1]
    assert t.exit_signals["score"] == [0.2, None, None]


def test_signal_values_are_read_from_the_chunk_each_decision_saw() -> None:
    """The book notes where a decision's signals are and reads them in bulk; the arrays
    change with each chunk of the data, and trades can be derived mid-run."""
    ledger = Ledger.empty(2, 0.0, ["score", "rank"])
    first = {"score": np.array([[0.1, 0.2], [0.3, 0.4]]), "rank": np.array([[1.0, 2.0]] * 2)}
    second = {"score": np.array([[0.5, 0.6], [0.7, 0.8]])}  # this chunk has no `rank`
    _book(ledger, 0, 5, 10.0, bar=0, signals=first, row=1)  # opens A: score 0.3, rank 1
    _book(ledger, 1, -5, 10.0, bar=1, signals=first, row=0)  # opens a B short: 0.2, 2
    assert ledger.trades().entry_signals == {"score": [0.3, 0.2], "rank": [1.0, 2.0]}
    _book(ledger, 0, -5, 11.0, bar=2, signals=second, row=1)  # closes A: 0.7, no rank
    _book(ledger, 1, 5, 9.0, bar=3, signals=second, row=0)  # closes B: 0.6
    _book(ledger, 0, 3, 12.0, bar=4, signals=first, row=0)  # A again, back to `first`
    t = ledger.trades()
    assert t.entry_signals["score"] == [0.3, 0.2, 0.1]
    assert t.exit_signals["score"] == [0.7, 0.6, None]
    assert t.entry_signals["rank"] == [1.0, 2.0, 1.0]
    assert t.exit_signals["rank"] == [None, None, None]  # the closing decisions had none


def test_trade_sums_are_the_running_totals_to_the_bit() -> None:
    rng = np.random.default_rng(7)
    ledger = Ledger.empty(3, 0.0, [])
    running: dict[int, list[float]] = {}  # asset -> [buy notional, sell notional, commission]
    totals: list[list[float]] = []
    for _ in range(400):
        a = int(rng.integers(3))
        held = int(ledger.qty[a])
        qty = int(rng.integers(1, 50)) * (1 if held >= 0 else -1)
        qty = -held if held and rng.random() < 0.3 else qty  # close now and then
        price, fee = float(rng.uniform(1, 500)), float(rng.uniform(0, 3))
        if held == 0:
            running[a] = [0.0, 0.0, 0.0]
            totals.append(running[a])
        acc = running[a]
        if qty > 0:
            acc[0] += qty * price
        else:
            acc[1] -= qty * price
        acc[2] += fee
        _fill(ledger, a, qty, price, fee)
    t = ledger.trades()
    assert t.asset.shape[0] == len(totals)
    derived = sorted(
        zip(
            t.sums["buy_notional"].tolist(),
            t.sums["sell_notional"].tolist(),
            t.sums["trade_commission"].tolist(),
            strict=True,
        )
    )
    assert derived == sorted(tuple(v) for v in totals)  # exact, not approx


def test_a_carried_trade_continues_its_sums() -> None:
    ledger = Ledger(
        cash=0.0,
        qty=np.array([0, 10]),
        avg_price=np.array([0.0, 10.0]),
        entry_bar=np.array([-1, -5]),
        signal_names=["score"],
        carried={
            "buy_qty": np.array([0, 10]),
            "buy_notional": np.array([0.0, 100.0]),
            "trade_commission": np.array([0.0, 1.0]),
            "entry_score": np.array([np.nan, 0.9]),
        },
    )
    assert _book(ledger, 1, -10, 12.0, fee=0.25, bar=3) == -1
    t = ledger.trades()
    assert t.asset.tolist() == [1]
    assert t.entry_bar.tolist() == [-5]
    assert (t.sums["buy_qty"][0], t.sums["sell_qty"][0]) == (10, 10)
    assert (t.sums["buy_notional"][0], t.sums["sell_notional"][0]) == (100.0, 120.0)
    assert t.sums["trade_commission"][0] == 1.25
    assert t.entry_signals["score"] == [0.9]
    assert t.exit_signals["score"] == [None]  # the decision row had no such signal


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
        prev_close_equity=1_000.0,
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
