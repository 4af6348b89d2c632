"""Trades, derived from the fill book in one pass of array operations.

Per asset the position path says where each trade starts and ends (flat to flat); the
per-trade sums are taken in booking order, so they are the float64 values a running total
would give. Trades already open when a chained run started are rows ahead of every fill,
carrying the sums the saved state left.

Corporate actions are rows of the book too (`Ledger.split`, `Ledger.dividend`). A split that
leaves shares adds them to the trade's entry side at no cost (a 2:1 split of 100 bought at 50
is 200 bought at 25, as on split-adjusted prices), and its cash for fractions is the trade's
`cash_in_lieu`; one that leaves no whole share is the trade's exit at the previous close. A
dividend is cash of the trade (`dividends`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml4t_pipeline.engine.enums import OrderReason

_SPLIT = int(OrderReason.SPLIT)
_DIVIDEND = int(OrderReason.DIVIDEND)

# what a trade has accumulated, as per-asset arrays in saved engine state
TRADE_STATE = (
    "buy_qty",
    "sell_qty",
    "buy_notional",
    "sell_notional",
    "trade_commission",
    "trade_slippage",
    "trade_dividends",
    "trade_cash_in_lieu",
    "trade_splits",
)
#: the sums only corporate actions add (saved state leaves them out while they are all zero)
ACTION_SUMS = ("trade_dividends", "trade_cash_in_lieu", "trade_splits")
_COUNTS = ("buy_qty", "sell_qty", "trade_splits")  # int64 sums
SignalTable = tuple[np.ndarray, np.ndarray, np.ndarray]  # see `Ledger.signal_table`


def _position_path(asset: np.ndarray, qty: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows (carried trades, then fills) grouped by asset in booking order: the order that
    groups them, the position after each grouped row, and where the position before it is
    flat (a trade starts)."""
    order = np.argsort(asset, kind="stable")
    a_sorted, q_sorted = asset[order], qty[order]
    cum = np.cumsum(q_sorted)
    starts = np.flatnonzero(np.r_[True, a_sorted[1:] != a_sorted[:-1]])
    base = np.repeat(np.r_[0, cum[starts[1:] - 1]], np.diff(np.r_[starts, order.shape[0]]))
    after = cum - base
    return order, after, after - q_sorted == 0


def _trade_signals(
    names: list[str],
    table: SignalTable,
    carried: Mapping[str, np.ndarray],
    opened_by: np.ndarray,
    closed_by: np.ndarray,
    assets: np.ndarray,
) -> tuple[dict[str, list[float | None]], dict[str, list[float | None]]]:
    """Per trade, the signal values recorded by the fill that opened it (the saved entry
    values for a carried trade: `opened_by` < 0) and by the fill that closed it (None while
    open: `closed_by` < 0)."""
    entry: dict[str, list[float | None]] = {}
    exit_: dict[str, list[float | None]] = {}
    if not names:
        return entry, exit_
    recorded, values, missing = table
    if recorded.shape[0] == 0:
        values, missing = np.full((1, len(names)), np.nan), np.ones((1, len(names)), bool)
    last = values.shape[0] - 1
    entry_at = np.minimum(np.searchsorted(recorded, np.maximum(opened_by, 0)), last)
    exit_at = np.minimum(np.searchsorted(recorded, np.maximum(closed_by, 0)), last)
    for j, name in enumerate(names):
        at_entry = values[entry_at, j]  # NaN where the decision had no such signal
        saved = carried.get(f"entry_{name}")
        if saved is not None:
            at_entry = np.where(opened_by < 0, saved[assets], at_entry)
        entry[name] = at_entry.tolist()
        at_exit = values[exit_at, j].astype(object)
        at_exit[(closed_by < 0) | missing[exit_at, j]] = None
        exit_[name] = at_exit.tolist()
    return entry, exit_


def _weights(
    fill: Mapping[str, np.ndarray],
    after: np.ndarray,
    order: np.ndarray,
    k: int,
    action_cash: Mapping[int, float],
) -> dict[str, np.ndarray]:
    """What each fill adds to its trade's TRADE_STATE sums (`after`: the position after each
    row in `order`, carried rows first: `_position_path`)."""
    q = fill["qty"]
    buys, sells = q > 0, q < 0
    notional = q * fill["price"]
    zeros = np.zeros(q.shape[0])
    weights = {
        "buy_qty": np.where(buys, q, 0),
        "sell_qty": np.where(sells, -q, 0),
        "buy_notional": np.where(buys, notional, 0.0),
        "sell_notional": np.where(sells, -notional, 0.0),
        "trade_commission": fill["commission"],
        "trade_slippage": fill["slippage"],
        "trade_dividends": zeros,
        "trade_cash_in_lieu": zeros,
        "trade_splits": np.zeros(q.shape[0], np.int64),
    }
    if not action_cash:
        return weights
    position = np.empty_like(after)
    position[order] = after  # back in booking order
    position = position[k:]
    split = fill["reason"] == _SPLIT
    cash = zeros.copy()
    cash[np.fromiter(action_cash, np.int64)] = np.fromiter(action_cash.values(), np.float64)
    # a split that leaves shares: its shares go to the entry side (long: bought, short: sold)
    adjusts = split & (position != 0)
    long = position > 0
    weights["buy_qty"] = np.where(adjusts, np.where(long, q, 0), weights["buy_qty"])
    weights["sell_qty"] = np.where(adjusts, np.where(long, 0, -q), weights["sell_qty"])
    weights["trade_cash_in_lieu"] = np.where(adjusts, cash, 0.0)
    weights["trade_dividends"] = np.where(fill["reason"] == _DIVIDEND, cash, 0.0)
    weights["trade_splits"] = split.astype(np.int64)
    return weights


def empty_trade_state(n: int, signal_names: list[str]) -> dict[str, np.ndarray]:
    """TRADE_STATE and `entry_<signal>` arrays of `n` flat assets (zeros / NaN)."""
    out = {
        name: np.zeros(n, dtype=np.int64 if name in _COUNTS else np.float64) for name in TRADE_STATE
    }
    return out | {f"entry_{s}": np.full(n, np.nan) for s in signal_names}


@dataclass(slots=True)
class Trades:
    """Every trade of the run, one entry per trade, as columns.

    Closed trades come first, in the order they closed, then the open ones by asset.
    """

    asset: np.ndarray
    long: np.ndarray
    entry_bar: np.ndarray
    exit_fill: np.ndarray  # row of the fill book that closed the trade, -1 while open
    exit_bar: np.ndarray  # of that fill (-1 while open)
    exit_reason: np.ndarray
    exit_rule: np.ndarray
    sums: dict[str, np.ndarray]  # TRADE_STATE names -> per-trade sums
    entry_signals: dict[str, list[float | None]]
    exit_signals: dict[str, list[float | None]]

    @classmethod
    def derive(
        cls,
        fill: Mapping[str, np.ndarray],
        *,
        carried: Mapping[str, np.ndarray],
        signal_names: list[str],
        signals: SignalTable,
        action_cash: Mapping[int, float] | None = None,
    ) -> Trades:
        """The trades of a fill book (FILL_DTYPE columns) and of the trades carried in from
        saved state (`carried`: TRADE_STATE, `entry_<signal>`, qty and entry_bar per asset;
        empty when none). `signals` holds the decisions' signal values (`Ledger.signal_table`);
        `action_cash` the cash of each corporate-action row of the book (by row).
        """
        names = signal_names
        # trades open at the start of the run are rows ahead of every fill: each opens its
        # asset's first trade and starts its sums where the saved state left them
        held = np.flatnonzero(carried["qty"]) if carried else np.empty(0, np.int64)
        k = held.shape[0]
        asset = np.concatenate([held, fill["asset"]])
        qty = np.concatenate([carried["qty"][held] if k else held, fill["qty"]])
        if asset.shape[0] == 0:
            return cls.none(names)
        order, after, opens = _position_path(asset, qty)
        weights = _weights(fill, after, order, k, action_cash or {})
        if k:
            weights = {n: np.concatenate([carried[n][held], w]) for n, w in weights.items()}
        trade_sorted = np.cumsum(opens) - 1
        m = int(np.count_nonzero(opens))
        # sums in booking order within each trade: the bits a running total gives
        sums = {}
        for name, w in weights.items():
            total = np.bincount(trade_sorted, weights=w[order].astype(np.float64), minlength=m)
            sums[name] = total.astype(np.int64) if name in _COUNTS else total
        open_row = order[opens]  # the row (carried trade or fill) that opened each trade
        closing = after == 0
        exit_fill = np.full(m, -1, dtype=np.int64)
        exit_fill[trade_sorted[closing]] = order[closing] - k
        t_asset = asset[open_row]
        from_fill = open_row >= k
        entry_bar = np.where(
            from_fill,
            np.r_[np.zeros(k, np.int64), fill["bar"]][open_row],
            carried["entry_bar"][t_asset] if k else 0,
        )
        # closed trades in the order they closed, then the open ones by asset
        closed = np.flatnonzero(exit_fill >= 0)
        closed = closed[np.argsort(exit_fill[closed], kind="stable")]
        still = np.flatnonzero(exit_fill < 0)
        pick = np.concatenate([closed, still[np.argsort(t_asset[still], kind="stable")]])
        entry_signals, exit_signals = _trade_signals(
            names, signals, carried, open_row[pick] - k, exit_fill[pick], t_asset[pick]
        )
        exit_at = np.maximum(exit_fill[pick], 0)
        has_exit = exit_fill[pick] >= 0

        def at_exit(column: str) -> np.ndarray:
            values = fill[column][exit_at] if fill[column].shape[0] else np.zeros(pick.shape[0])
            return np.where(has_exit, values, -1).astype(np.int64)

        return cls(
            asset=t_asset[pick],
            long=qty[open_row][pick] > 0,
            entry_bar=entry_bar[pick],
            exit_fill=exit_fill[pick],
            exit_bar=at_exit("bar"),
            exit_reason=at_exit("reason"),
            exit_rule=at_exit("rule"),
            sums={n: v[pick] for n, v in sums.items()},
            entry_signals=entry_signals,
            exit_signals=exit_signals,
        )

    @classmethod
    def none(cls, names: list[str]) -> Trades:
        nothing = np.empty(0, np.int64)
        return cls(
            asset=nothing,
            long=np.empty(0, bool),
            entry_bar=nothing,
            exit_fill=nothing,
            exit_bar=nothing,
            exit_reason=nothing,
            exit_rule=nothing,
            sums=empty_trade_state(0, []),
            entry_signals={n: [] for n in names},
            exit_signals={n: [] for n in names},
        )

    def still_open(self) -> dict[str, Any]:
        """The open trades' asset, TRADE_STATE sums and `entry_<signal>` values."""
        keep = self.exit_fill < 0
        out: dict[str, Any] = {"asset": self.asset[keep]}
        out |= {n: v[keep] for n, v in self.sums.items()}
        for name, values in self.entry_signals.items():
            out[f"entry_{name}"] = np.array(
                [v for v, k in zip(values, keep.tolist(), strict=True) if k], dtype=np.float64
            )
        return out
