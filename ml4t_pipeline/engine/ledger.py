"""The ledger: the only writer of cash, positions and trade records.

Quantities are int64 shares (signed, + long); money is float64. A trade runs from flat to flat;
the broker splits any fill that would flip a position, so the ledger never sees a flip.
"""

from __future__ import annotations

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
    closed: list[dict[str, Any]] = field(default_factory=list)
    qty_f: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.qty_f = self.qty.astype(np.float64)

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

    def positions_value(self, last_close: np.ndarray) -> float:
        return float(self.qty_f @ last_close)

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
        old = int(self.qty[a])
        new = old + dq
        self.cash -= dq * price + fee
        if abs(new) > abs(old):
            self.avg_price[a] = (float(self.avg_price[a]) * abs(old) + price * abs(dq)) / abs(new)
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
            self.entry_bar[a] = bar
            for name, arr in self.entry_signals.items():
                values = signals.get(name)
                arr[a] = values[row, a] if values is not None else np.nan
            return 1
        if new == 0:
            exit_signals = {f"exit_{n}": float(v[row, a]) for n, v in signals.items()}
            self.closed.append(self._trade_row(a, bar, old > 0, reason, rule) | exit_signals)
            self._reset(a)
            return -1
        return 0

    def _trade_row(
        self, a: int, exit_bar: int, long: bool, reason: int, rule: int
    ) -> dict[str, Any]:
        entry_qty = int(self.buy_qty[a] if long else self.sell_qty[a])
        exit_qty = int(self.sell_qty[a] if long else self.buy_qty[a])
        entry_notional = float(self.buy_notional[a] if long else self.sell_notional[a])
        exit_notional = float(self.sell_notional[a] if long else self.buy_notional[a])
        gross = float(self.sell_notional[a] - self.buy_notional[a])
        commission = float(self.trade_commission[a])
        return {
            "asset": a,
            "direction": "long" if long else "short",
            "entry_bar": int(self.entry_bar[a]),
            "exit_bar": exit_bar,
            "entry_qty": entry_qty,
            "entry_price": entry_notional / entry_qty if entry_qty else float("nan"),
            "exit_price": exit_notional / exit_qty if exit_qty else float("nan"),
            "gross_pnl": gross,
            "commission": commission,
            "slippage": float(self.trade_slippage[a]),
            "pnl": gross - commission,
            "exit_reason": reason,
            "exit_rule": rule,
        } | {f"entry_{n}": float(v[a]) for n, v in self.entry_signals.items()}

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

    def open_trades(self, last_bar: int, last_close: np.ndarray) -> list[dict[str, Any]]:
        """Rows for trades still open, marked at the last close (exit_reason = open)."""
        rows = []
        for a in np.flatnonzero(self.qty != 0).tolist():
            long = bool(self.qty[a] > 0)
            row = self._trade_row(a, last_bar, long, int(ExitReason.OPEN), -1)
            open_qty = float(self.qty[a])
            row["gross_pnl"] += open_qty * float(last_close[a])
            row["pnl"] = row["gross_pnl"] - row["commission"]
            row["exit_price"] = float(last_close[a])
            rows.append(row)
        return rows
