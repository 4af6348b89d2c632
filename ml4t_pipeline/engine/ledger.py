"""The ledger: the only writer of cash, positions and trade records.

Quantities are int64 shares (signed, + long); money is float64. A trade runs from flat to flat;
the broker splits any fill that would flip a position, so the ledger never sees a flip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml4t_pipeline.engine.enums import ExitReason

TRADE_COLUMNS = (
    "asset",
    "direction",
    "entry_bar",
    "exit_bar",
    "entry_qty",
    "entry_price",
    "exit_price",
    "gross_pnl",
    "commission",
    "slippage",
    "pnl",
    "exit_reason",
    "exit_rule",
)


@dataclass(slots=True)
class Ledger:
    cash: float
    qty: np.ndarray  # int64 (N,)
    avg_price: np.ndarray  # float64 (N,), average entry price of the open position
    entry_bar: np.ndarray  # int64, bar the open trade started (-1 when flat)
    # open-trade accumulators, per asset: plain lists, touched one fill at a time
    buy_qty: list[int]
    sell_qty: list[int]
    buy_notional: list[float]
    sell_notional: list[float]
    trade_commission: list[float]
    trade_slippage: list[float]
    entry_signals: dict[str, np.ndarray]
    # closed trades: TRADE_COLUMNS values, then entry and exit signal values (`trade_columns`)
    closed: list[tuple[Any, ...]] = field(default_factory=list)
    qty_f: np.ndarray = field(init=False)  # qty as float64, for the mark-to-market dot product
    open_assets: set[int] = field(init=False)  # assets whose position is not flat

    def __post_init__(self) -> None:
        self.sync()

    def sync(self) -> None:
        """Recompute what is derived from `qty` (after `qty` was replaced as a whole)."""
        self.qty_f = self.qty.astype(np.float64)
        self.open_assets = set(np.flatnonzero(self.qty).tolist())

    @classmethod
    def empty(cls, n_assets: int, cash: float, signal_names: list[str]) -> Ledger:
        return cls(
            cash=float(cash),
            qty=np.zeros(n_assets, dtype=np.int64),
            avg_price=np.zeros(n_assets),
            entry_bar=np.full(n_assets, -1, dtype=np.int64),
            buy_qty=[0] * n_assets,
            sell_qty=[0] * n_assets,
            buy_notional=[0.0] * n_assets,
            sell_notional=[0.0] * n_assets,
            trade_commission=[0.0] * n_assets,
            trade_slippage=[0.0] * n_assets,
            entry_signals={s: np.full(n_assets, np.nan) for s in signal_names},
        )

    def trade_columns(self) -> list[str]:
        names = list(self.entry_signals)
        return [*TRADE_COLUMNS, *(f"entry_{n}" for n in names), *(f"exit_{n}" for n in names)]

    def positions_value(self, last_close: np.ndarray) -> float:
        """sum(qty * last_close). With one position open the dot product is that one term
        (the others are exact zeros), so it is computed as such, to the same bits."""
        n_open = len(self.open_assets)
        if n_open > 1:
            return float(self.qty_f @ last_close)
        if n_open == 1:
            (a,) = self.open_assets
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
        old = self.qty.item(a)
        new = old + dq
        self.cash -= dq * price + fee
        if abs(new) > abs(old):
            self.avg_price[a] = (self.avg_price.item(a) * abs(old) + price * abs(dq)) / abs(new)
        if dq > 0:
            self.buy_qty[a] += dq
            self.buy_notional[a] += dq * price
        else:
            self.sell_qty[a] -= dq
            self.sell_notional[a] -= dq * price
        self.trade_commission[a] += fee
        self.trade_slippage[a] += slip
        self.qty[a] = new
        self.qty_f[a] = new
        if old == 0:
            self.open_assets.add(a)
            self.entry_bar[a] = bar
            for name, arr in self.entry_signals.items():
                values = signals.get(name)
                arr[a] = values.item(row, a) if values is not None else math.nan
            return 1
        if new == 0:
            self.open_assets.discard(a)
            exit_signals = tuple(
                signals[n].item(row, a) if n in signals else None for n in self.entry_signals
            )
            self.closed.append(self._trade_row(a, bar, old > 0, reason, rule) + exit_signals)
            self._reset(a)
            return -1
        return 0

    def _trade_row(
        self, a: int, exit_bar: int, long: bool, reason: int, rule: int, mark: float = 0.0
    ) -> tuple[Any, ...]:
        """TRADE_COLUMNS and entry signal values; `mark` values a still-open quantity."""
        entry_qty = self.buy_qty[a] if long else self.sell_qty[a]
        exit_qty = self.sell_qty[a] if long else self.buy_qty[a]
        entry_notional = self.buy_notional[a] if long else self.sell_notional[a]
        exit_notional = self.sell_notional[a] if long else self.buy_notional[a]
        gross = self.sell_notional[a] - self.buy_notional[a]
        open_qty = self.qty.item(a)
        if open_qty:  # still open: marked at `mark`
            gross += open_qty * mark
            exit_price = mark
        else:
            exit_price = exit_notional / exit_qty if exit_qty else math.nan
        commission = self.trade_commission[a]
        return (
            a,
            "long" if long else "short",
            self.entry_bar.item(a),
            exit_bar,
            entry_qty,
            entry_notional / entry_qty if entry_qty else math.nan,
            exit_price,
            gross,
            commission,
            self.trade_slippage[a],
            gross - commission,
            reason,
            rule,
            *(v.item(a) for v in self.entry_signals.values()),
        )

    def _reset(self, a: int) -> None:
        self.entry_bar[a] = -1
        self.buy_qty[a] = 0
        self.sell_qty[a] = 0
        self.buy_notional[a] = 0.0
        self.sell_notional[a] = 0.0
        self.trade_commission[a] = 0.0
        self.trade_slippage[a] = 0.0
        self.avg_price[a] = 0.0
        for arr in self.entry_signals.values():
            arr[a] = np.nan

    def open_trades(self, last_bar: int, last_close: np.ndarray) -> list[tuple[Any, ...]]:
        """Rows for trades still open, marked at the last close (exit_reason = open)."""
        no_exit = (None,) * len(self.entry_signals)
        return [
            self._trade_row(a, last_bar, self.qty.item(a) > 0, int(ExitReason.OPEN), -1, mark)
            + no_exit
            for a, mark in zip(
                np.flatnonzero(self.qty).tolist(),
                last_close[self.qty != 0].tolist(),
                strict=True,
            )
        ]
