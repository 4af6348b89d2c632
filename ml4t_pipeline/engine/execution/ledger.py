"""The ledger: the only writer of cash and positions, and the book of every fill.

Quantities are int64 shares (signed, + long); money is float64. A trade runs from flat to flat;
the broker splits any fill that would flip a position, so the ledger never sees a flip.

Per fill the ledger does only what the run needs live (cash, position, average entry price,
entry bar) and appends one packed record to its fill book. Trades are derived from that book
once, at the end (`trades`): per asset the position path says where each trade starts and
ends, and the per-trade sums are taken in fill order, so they are the same float64 values a
running total would give.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FILL_COLUMNS = (
    "bar",
    "asset",
    "qty",
    "price",
    "commission",
    "slippage",
    "order_id",
    "reason",
    "rule",
)
_MONEY = ("price", "commission", "slippage")
# one fill as a packed record (vectorbt-style records): the book holds no Python object per
# fill, and becomes columns with one copy
FILL_DTYPE = np.dtype([(n, "<f8" if n in _MONEY else "<i8") for n in FILL_COLUMNS])
_FILL = struct.Struct("<" + "".join("d" if n in _MONEY else "q" for n in FILL_COLUMNS))
_pack_fill = _FILL.pack
assert _FILL.size == FILL_DTYPE.itemsize
# what a trade has accumulated, as per-asset arrays in saved engine state
TRADE_STATE = (
    "buy_qty",
    "sell_qty",
    "buy_notional",
    "sell_notional",
    "trade_commission",
    "trade_slippage",
)


@dataclass(slots=True)
class Ledger:
    cash: float
    qty: np.ndarray  # int64 (N,)
    avg_price: np.ndarray  # float64 (N,), average entry price of the open position
    entry_bar: np.ndarray  # int64, bar the open trade started (-1 when flat)
    signal_names: list[str]  # signal values recorded on trades at entry and exit
    # the fill book: one FILL_DTYPE record per fill, in booking order
    fills: bytearray = field(default_factory=bytearray)
    n_fills: int = 0
    # the signal values the decision saw, for the fills that opened or closed a position:
    # `signal_fills` holds the fill's row in the book. The values are read from the decision's
    # signal arrays in bulk (`signal_table`): per fill, the book notes only where to read them
    # (row * n_assets + asset) in `_signal_at`, against `_signal_source`, the arrays of the
    # decisions since the last switch of source (one per chunk of the data)
    signal_fills: list[int] = field(default_factory=list)
    _signal_at: list[int] = field(default_factory=list)
    _signal_source: Mapping[str, np.ndarray] | None = None
    _signal_blocks: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    # trades already open when this run started (saved state): TRADE_STATE arrays and entry
    # signals per asset, the start of their running sums
    carried: dict[str, np.ndarray] = field(default_factory=dict)
    open_assets: set[int] = field(init=False)  # assets whose position is not flat
    qty_f: np.ndarray = field(init=False)  # qty as float64, for the mark-to-market dot product
    _memo: tuple[np.ndarray | None, int, float] = (None, -1, 0.0)  # (last_close, fills, value)
    _trades: tuple[int, Trades | None] = (-1, None)  # (fills, trades derived from them)
    _fill_columns: tuple[int, dict[str, np.ndarray] | None] = (-1, None)

    def __post_init__(self) -> None:
        self._derive_from_qty()

    def _derive_from_qty(self) -> None:
        """`qty_f` and `open_assets` from `qty` (after `qty` was set other than by `book`)."""
        self.qty_f = self.qty.astype(np.float64)
        self.open_assets = set(np.flatnonzero(self.qty).tolist())

    @classmethod
    def empty(cls, n_assets: int, cash: float, signal_names: list[str]) -> Ledger:
        return cls(
            cash=float(cash),
            qty=np.zeros(n_assets, dtype=np.int64),
            avg_price=np.zeros(n_assets),
            entry_bar=np.full(n_assets, -1, dtype=np.int64),
            signal_names=list(signal_names),
        )

    def positions_value(self, last_close: np.ndarray) -> float:
        """sum(qty * last_close). With one position open the dot product is that one term
        (the others are exact zeros), so it is computed as such, to the same bits."""
        n_open = len(self.open_assets)
        if n_open > 1:  # asked again within a bar (risk context, equity mark): one product
            marked, booked, value = self._memo
            if marked is last_close and booked == self.n_fills:
                return value
            value = float(self.qty_f @ last_close)
            self._memo = (last_close, self.n_fills, value)
            return value
        if n_open == 1:
            for a in self.open_assets:
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
        order_id: int,
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
        self.fills += _pack_fill(bar, a, dq, price, fee, slip, order_id, reason, rule)
        self.n_fills += 1
        if abs(new) > abs(old):
            self.avg_price[a] = (self.avg_price.item(a) * abs(old) + price * abs(dq)) / abs(new)
        if old != 0 and new != 0:
            return 0
        if signals is not self._signal_source:
            self._read_signals(signals)
        self.signal_fills.append(self.n_fills - 1)
        self._signal_at.append(row * qty.shape[0] + a)
        if old == 0:
            self.open_assets.add(a)
            self.entry_bar[a] = bar
            return 1
        self.open_assets.discard(a)
        self.entry_bar[a] = -1
        self.avg_price[a] = 0.0
        return -1

    def _read_signals(self, source: Mapping[str, np.ndarray] | None) -> None:
        """Read the values noted against the current source, then note against `source`."""
        at = np.fromiter(self._signal_at, np.int64, count=len(self._signal_at))
        self._signal_at = []
        values = np.full((at.shape[0], len(self.signal_names)), np.nan)
        missing = np.zeros(values.shape, dtype=bool)
        if at.shape[0]:
            known = self._signal_source or {}
            rows, assets = np.divmod(at, self.qty.shape[0])
            for j, name in enumerate(self.signal_names):
                if name in known:
                    values[:, j] = known[name][rows, assets]
                else:
                    missing[:, j] = True
            self._signal_blocks.append((values, missing))
        self._signal_source = source

    def signal_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every fill that opened or closed a position: its row in the book, the signal
        values its decision saw (fills x signal_names), and where the decision had no such
        signal."""
        if self._signal_at:
            self._read_signals(self._signal_source)
        width = len(self.signal_names)
        blocks = self._signal_blocks or [(np.empty((0, width)), np.empty((0, width), bool))]
        if len(blocks) > 1:
            values = np.concatenate([v for v, _ in blocks])
            missing = np.concatenate([m for _, m in blocks])
            blocks[:] = [(values, missing)]
        fills = np.fromiter(self.signal_fills, np.int64, count=len(self.signal_fills))
        return fills, blocks[0][0], blocks[0][1]

    # -- trades, derived from the fill book ------------------------------------------------------
    def fill_columns(self) -> dict[str, np.ndarray]:
        """The fill book as FILL_COLUMNS arrays (converted once per state of the book)."""
        booked, columns = self._fill_columns
        if columns is None or booked != self.n_fills:
            records = np.frombuffer(bytes(self.fills), dtype=FILL_DTYPE)
            columns = {name: np.ascontiguousarray(records[name]) for name in FILL_COLUMNS}
            self._fill_columns = (self.n_fills, columns)
        return columns

    def trades(self) -> Trades:
        """Every trade so far (derived once per state of the fill book)."""
        booked, trades = self._trades
        if trades is None or booked != self.n_fills:
            trades = Trades.derive(self)
            self._trades = (self.n_fills, trades)
        return trades

    def trade_state(self) -> dict[str, np.ndarray]:
        """TRADE_STATE and `entry_<signal>` as (N,) arrays (zeros / NaN where flat)."""
        n = self.qty.shape[0]
        out = empty_trade_state(n, self.signal_names)
        open_ = self.trades().still_open()
        at = open_["asset"]
        for name in out:
            out[name][at] = open_[name]
        return out

    def carry_trades(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Start the running sums of the trades open at the start of the run (saved state):
        `arrays` holds (N,) TRADE_STATE and `entry_<signal>` values; missing ones are empty."""
        self._derive_from_qty()
        carried = empty_trade_state(self.qty.shape[0], self.signal_names)
        for name, empty in list(carried.items()):
            if name in arrays:
                carried[name] = np.asarray(arrays[name], dtype=empty.dtype)
        self.carried = carried | {"qty": self.qty.copy(), "entry_bar": self.entry_bar.copy()}


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
    ledger: Ledger, opened_by: np.ndarray, closed_by: np.ndarray, assets: np.ndarray
) -> tuple[dict[str, list[float | None]], dict[str, list[float | None]]]:
    """Per trade, the signal values recorded by the fill that opened it (the saved entry
    values for a carried trade: `opened_by` < 0) and by the fill that closed it (None while
    open: `closed_by` < 0)."""
    names = ledger.signal_names
    entry: dict[str, list[float | None]] = {}
    exit_: dict[str, list[float | None]] = {}
    if not names:
        return entry, exit_
    recorded, values, missing = ledger.signal_table()
    if recorded.shape[0] == 0:
        values, missing = np.full((1, len(names)), np.nan), np.ones((1, len(names)), bool)
    last = values.shape[0] - 1
    entry_at = np.minimum(np.searchsorted(recorded, np.maximum(opened_by, 0)), last)
    exit_at = np.minimum(np.searchsorted(recorded, np.maximum(closed_by, 0)), last)
    for j, name in enumerate(names):
        at_entry = values[entry_at, j]  # NaN where the decision had no such signal
        saved = ledger.carried.get(f"entry_{name}")
        if saved is not None:
            at_entry = np.where(opened_by < 0, saved[assets], at_entry)
        entry[name] = at_entry.tolist()
        at_exit = values[exit_at, j].astype(object)
        at_exit[(closed_by < 0) | missing[exit_at, j]] = None
        exit_[name] = at_exit.tolist()
    return entry, exit_


def empty_trade_state(n: int, signal_names: list[str]) -> dict[str, np.ndarray]:
    """TRADE_STATE and `entry_<signal>` arrays of `n` flat assets (zeros / NaN)."""
    out = {
        name: np.zeros(n, dtype=np.int64 if name.endswith("_qty") else np.float64)
        for name in TRADE_STATE
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
    def derive(cls, ledger: Ledger) -> Trades:
        """The trades of the ledger's fill book, and of the trades it carried in from saved
        state, in one pass of array operations."""
        names = ledger.signal_names
        fill = ledger.fill_columns()
        # trades open at the start of the run are rows ahead of every fill: each opens its
        # asset's first trade and starts its sums where the saved state left them
        carried = ledger.carried
        held = np.flatnonzero(carried["qty"]) if carried else np.empty(0, np.int64)
        k = held.shape[0]
        asset = np.concatenate([held, fill["asset"]])
        qty = np.concatenate([carried["qty"][held] if k else held, fill["qty"]])
        buys, sells = fill["qty"] > 0, fill["qty"] < 0
        notional = fill["qty"] * fill["price"]
        weights = {
            "buy_qty": np.where(buys, fill["qty"], 0),
            "sell_qty": np.where(sells, -fill["qty"], 0),
            "buy_notional": np.where(buys, notional, 0.0),
            "sell_notional": np.where(sells, -notional, 0.0),
            "trade_commission": fill["commission"],
            "trade_slippage": fill["slippage"],
        }
        if k:
            weights = {n: np.concatenate([carried[n][held], w]) for n, w in weights.items()}
        if asset.shape[0] == 0:
            return cls.none(names)
        order, after, opens = _position_path(asset, qty)
        trade_sorted = np.cumsum(opens) - 1
        m = int(np.count_nonzero(opens))
        # sums in booking order within each trade: the bits a running total gives
        sums = {}
        for name, w in weights.items():
            total = np.bincount(trade_sorted, weights=w[order].astype(np.float64), minlength=m)
            sums[name] = total.astype(np.int64) if name.endswith("_qty") else total
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
            ledger, open_row[pick] - k, exit_fill[pick], t_asset[pick]
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
