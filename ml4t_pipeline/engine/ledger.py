"""The ledger: the only writer of cash, positions and trade records.

Quantities are int64 shares (signed, + long); money is float64. A trade runs from flat to flat;
the broker splits any fill that would flip a position, so the ledger never sees a flip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml4t_pipeline.engine.enums import ExitReason

# one closed-trade record: what the ledger knows when the position returns to flat (or, for
# a trade still open at the end, `open_qty` marked at `mark`); the result table derives prices
# and P&L from these, then appends the entry and exit signal values
TRADE_RECORD = (
    "asset",
    "long",
    "entry_bar",
    "exit_bar",
    "exit_reason",
    "exit_rule",
    "buy_qty",
    "sell_qty",
    "buy_notional",
    "sell_notional",
    "commission",
    "slippage",
    "open_qty",
    "mark",
)
# the open-trade accumulators, as per-asset arrays in saved engine state
TRADE_STATE = (
    "buy_qty",
    "sell_qty",
    "buy_notional",
    "sell_notional",
    "trade_commission",
    "trade_slippage",
)


class OpenTrade:
    """What a trade has accumulated since its position left flat."""

    __slots__ = (
        "buy_notional",
        "buy_qty",
        "commission",
        "entry_bar",
        "entry_signals",
        "sell_notional",
        "sell_qty",
        "slippage",
    )

    def __init__(self, entry_bar: int, entry_signals: tuple[float, ...]) -> None:
        self.entry_bar = entry_bar
        self.buy_qty = 0
        self.sell_qty = 0
        self.buy_notional = 0.0
        self.sell_notional = 0.0
        self.commission = 0.0
        self.slippage = 0.0
        self.entry_signals = entry_signals

    def state(self) -> tuple[int, int, float, float, float, float]:  # TRADE_STATE order
        return (
            self.buy_qty,
            self.sell_qty,
            self.buy_notional,
            self.sell_notional,
            self.commission,
            self.slippage,
        )


@dataclass(slots=True)
class Ledger:
    cash: float
    qty: np.ndarray  # int64 (N,)
    avg_price: np.ndarray  # float64 (N,), average entry price of the open position
    entry_bar: np.ndarray  # int64, bar the open trade started (-1 when flat)
    signal_names: list[str]  # signal values recorded on trades at entry and exit
    open: dict[int, OpenTrade] = field(default_factory=dict)  # asset -> its open trade
    # closed trades: TRADE_RECORD values, then entry and exit signal values (`trade_columns`)
    closed: list[tuple[Any, ...]] = field(default_factory=list)
    qty_f: np.ndarray = field(init=False)  # qty as float64, for the mark-to-market dot product
    fills_booked: int = 0  # a version of the positions, for `positions_value`'s memo
    _memo: tuple[np.ndarray | None, int, float] = (None, -1, 0.0)  # (last_close, version, value)

    def __post_init__(self) -> None:
        self.qty_f = self.qty.astype(np.float64)

    @classmethod
    def empty(cls, n_assets: int, cash: float, signal_names: list[str]) -> Ledger:
        return cls(
            cash=float(cash),
            qty=np.zeros(n_assets, dtype=np.int64),
            avg_price=np.zeros(n_assets),
            entry_bar=np.full(n_assets, -1, dtype=np.int64),
            signal_names=list(signal_names),
        )

    def trade_columns(self) -> list[str]:
        names = self.signal_names
        return [*TRADE_RECORD, *(f"entry_{n}" for n in names), *(f"exit_{n}" for n in names)]

    def positions_value(self, last_close: np.ndarray) -> float:
        """sum(qty * last_close). With one position open the dot product is that one term
        (the others are exact zeros), so it is computed as such, to the same bits."""
        n_open = len(self.open)
        if n_open > 1:  # asked again within a bar (risk context, equity mark): one product
            marked, version, value = self._memo
            if marked is last_close and version == self.fills_booked:
                return value
            value = float(self.qty_f @ last_close)
            self._memo = (last_close, self.fills_booked, value)
            return value
        if n_open == 1:
            for a in self.open:
                return self.qty_f.item(a) * last_close.item(a)
        return 0.0

    def book(
        self,
        a: int,
        dq: int,
        price: float,
        fee: float,
        slip: float,
        bar: int,
        reason: int,
        rule: int,
        signals: Mapping[str, np.ndarray],
        row: int,
    ) -> int:
        """Book one fill that never flips the position. Returns +1 opened, -1 closed, 0 else.

        `signals[name][row]` holds the values the decision saw (recorded on trades).
        """
        qty = self.qty
        old = qty.item(a)
        new = old + dq
        self.cash -= dq * price + fee
        qty[a] = new
        self.qty_f[a] = new
        self.fills_booked += 1
        if old == 0:
            names = self.signal_names
            trade = self.open[a] = OpenTrade(
                bar,
                tuple([signals[n].item(row, a) if n in signals else math.nan for n in names])
                if names
                else (),
            )
            self.entry_bar[a] = bar
        else:
            trade = self.open[a]
        if abs(new) > abs(old):
            self.avg_price[a] = (self.avg_price.item(a) * abs(old) + price * abs(dq)) / abs(new)
        if dq > 0:
            trade.buy_qty += dq
            trade.buy_notional += dq * price
        else:
            trade.sell_qty -= dq
            trade.sell_notional -= dq * price
        trade.commission += fee
        trade.slippage += slip
        if old == 0:
            return 1
        if new == 0:
            del self.open[a]
            exit_signals = [
                signals[n].item(row, a) if n in signals else None for n in self.signal_names
            ]
            self.closed.append(
                self._record(a, trade, bar, old > 0, reason, rule, 0, 0.0, exit_signals)
            )
            self.entry_bar[a] = -1
            self.avg_price[a] = 0.0
            return -1
        return 0

    @staticmethod
    def _record(
        a: int,
        t: OpenTrade,
        exit_bar: int,
        long: bool,
        reason: int,
        rule: int,
        open_qty: int,
        mark: float,
        exit_signals: Sequence[float | None],
    ) -> tuple[Any, ...]:
        """TRADE_RECORD values, then the entry and the exit signal values."""
        return (
            a,
            long,
            t.entry_bar,
            exit_bar,
            reason,
            rule,
            t.buy_qty,
            t.sell_qty,
            t.buy_notional,
            t.sell_notional,
            t.commission,
            t.slippage,
            open_qty,
            mark,
            *t.entry_signals,
            *exit_signals,
        )

    def open_trades(self, last_bar: int, last_close: np.ndarray) -> list[tuple[Any, ...]]:
        """Records of trades still open, marked at the last close (exit_reason = open)."""
        no_exit = (None,) * len(self.signal_names)
        open_reason = int(ExitReason.OPEN)
        qty = self.qty
        return [
            self._record(
                a,
                self.open[a],
                last_bar,
                qty.item(a) > 0,
                open_reason,
                -1,
                qty.item(a),
                last_close.item(a),
                no_exit,
            )
            for a in sorted(self.open)
        ]

    # -- saved state: per-asset arrays ---------------------------------------------------------
    def trade_state(self) -> dict[str, np.ndarray]:
        """TRADE_STATE and `entry_<signal>` as (N,) arrays (zeros / NaN where flat)."""
        n = self.qty.shape[0]
        out = {
            name: np.zeros(n, dtype=np.int64 if "qty" in name else np.float64)
            for name in TRADE_STATE
        }
        out |= {f"entry_{s}": np.full(n, np.nan) for s in self.signal_names}
        for a, trade in self.open.items():
            for name, value in zip(TRADE_STATE, trade.state(), strict=True):
                out[name][a] = value
            for s, value in zip(self.signal_names, trade.entry_signals, strict=True):
                out[f"entry_{s}"][a] = value
        return out

    def restore_trades(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Rebuild the open trades of every non-flat position from `trade_state` arrays."""
        self.qty_f = self.qty.astype(np.float64)
        self.fills_booked += 1
        self.open = {}
        for a in np.flatnonzero(self.qty).tolist():
            trade = OpenTrade(
                int(self.entry_bar[a]),
                tuple(
                    float(arrays[f"entry_{s}"][a]) if f"entry_{s}" in arrays else math.nan
                    for s in self.signal_names
                ),
            )
            trade.buy_qty, trade.sell_qty = int(arrays["buy_qty"][a]), int(arrays["sell_qty"][a])
            trade.buy_notional = float(arrays["buy_notional"][a])
            trade.sell_notional = float(arrays["sell_notional"][a])
            trade.commission = float(arrays["trade_commission"][a])
            trade.slippage = float(arrays["trade_slippage"][a])
            self.open[a] = trade
