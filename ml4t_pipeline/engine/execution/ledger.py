"""The ledger: the only writer of cash and positions, and the book of every fill.

Quantities are int64 shares (signed, + long); money is float64. A trade runs from flat to flat;
`fill_order` splits any fill that would flip a position, so the ledger never sees a flip.

Per fill the ledger does only what the run needs live (cash, position, average entry price,
entry bar) and appends the `Fill` record to its book. Trades are derived from the book once,
at the end (`trades.py`).

Corporate actions change positions and cash without an order: `split` and `dividend` write
them, each as a row of the book (reason SPLIT / DIVIDEND, no order) and an `ActionRecord`
holding the cash it moved, so the trades derived from the book carry them.

Everything else reads the ledger through `ledger.view` (read-only arrays that follow the
ledger's updates) and its methods; nothing outside this module writes its arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ml4t_pipeline.engine.enums import OrderReason
from ml4t_pipeline.engine.execution.fills import Fill, FillBook, new_fill, pack_fill
from ml4t_pipeline.engine.execution.trades import Trades, empty_trade_state
from ml4t_pipeline.engine.sums import dot
from ml4t_pipeline.engine.tolerances import SPLIT_SHARES_RTOL

_SPLIT = int(OrderReason.SPLIT)
_DIVIDEND = int(OrderReason.DIVIDEND)


def read_only(array: np.ndarray) -> np.ndarray:
    """A view of `array` that cannot be written (it still shows the owner's updates)."""
    view = array.view()
    view.flags.writeable = False
    return view


class ActionRecord(NamedTuple):
    """What one corporate action did to the account (a split or a dividend)."""

    bar: int
    asset: int
    book_row: int  # its row in the fill book
    kind: int  # OrderReason.SPLIT or OrderReason.DIVIDEND
    split_ratio: float  # new shares per old share (1.0 for a dividend)
    dividend: float  # cash per share (0.0 for a split)
    qty_before: int
    qty_after: int
    cash: float  # credited (+) or debited (-): the dividend, or the cash paid for fractions
    ref_price: float  # the previous close (a split's fractions are paid at it / ratio)


def whole_shares(shares: float) -> int:
    """The whole shares of `shares` (>= 0) a split leaves: a count within `SPLIT_SHARES_RTOL`
    of a whole number is that number (float noise of the ratio), else rounded down."""
    nearest = round(shares)
    if abs(shares - nearest) <= SPLIT_SHARES_RTOL * max(1.0, shares):
        return int(nearest)
    return math.floor(shares)


@dataclass(frozen=True, slots=True)
class LedgerView:
    """Read-only views of the ledger's per-asset arrays."""

    qty: np.ndarray
    avg_price: np.ndarray
    entry_bar: np.ndarray


class Ledger:
    """Cash, positions and the fill book. See the module docstring."""

    __slots__ = (
        "_fill_columns",
        "_memo",
        "_qty_f",
        "_signal_blocks",
        "_signal_rows",
        "_signal_source",
        "_trades",
        "actions",
        "avg_price",
        "carried",
        "cash",
        "entry_bar",
        "fills",
        "n_fills",
        "open_assets",
        "qty",
        "signal_fills",
        "signal_names",
        "view",
    )

    def __init__(
        self,
        *,
        cash: float,
        qty: np.ndarray,
        avg_price: np.ndarray,
        entry_bar: np.ndarray,
        signal_names: list[str],
        carried: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.cash = float(cash)
        self.qty = qty  # int64 (N,)
        self.avg_price = avg_price  # float64 (N,), average entry price of the open position
        self.entry_bar = entry_bar  # int64 (N,), bar the open trade started (-1 when flat)
        self.signal_names = list(signal_names)  # recorded on trades at entry and exit
        self.view = LedgerView(
            qty=read_only(qty), avg_price=read_only(avg_price), entry_bar=read_only(entry_bar)
        )
        self.fills = FillBook()  # every fill, in booking order
        self.actions: list[ActionRecord] = []  # every corporate action that changed the account
        self.n_fills = 0
        self.open_assets: set[int] = set(np.flatnonzero(qty).tolist())  # not flat
        self._qty_f = qty.astype(np.float64)  # for the mark-to-market dot product
        self._memo: tuple[np.ndarray | None, int, float] = (None, -1, 0.0)
        self._trades: tuple[int, Trades | None] = (-1, None)
        self._fill_columns: tuple[int, dict[str, np.ndarray]] = (-1, {})
        # trades already open when this run started (saved state): TRADE_STATE arrays and
        # entry signals per asset, the start of their running sums
        n = qty.shape[0]
        self.carried: dict[str, np.ndarray] = {}
        if carried is not None:
            state = empty_trade_state(n, self.signal_names)
            for name, empty in list(state.items()):
                if name in carried:
                    state[name] = np.asarray(carried[name], dtype=empty.dtype)
            self.carried = state | {"qty": qty.copy(), "entry_bar": entry_bar.copy()}
        # The signal values a decision saw, for the fills that opened or closed a position.
        # Per fill the book notes only where they are (row * n_assets + asset) against the
        # decision's signal arrays; they are read in bulk when the arrays change (one chunk of
        # the data) or when trades are derived.
        self.signal_fills: list[int] = []  # row in the book of each noted fill
        self._signal_rows: list[int] = []
        self._signal_source: Mapping[str, np.ndarray] | None = None
        self._signal_blocks: list[tuple[np.ndarray, np.ndarray]] = []

    @classmethod
    def empty(cls, n_assets: int, cash: float, signal_names: list[str]) -> Ledger:
        return cls(
            cash=float(cash),
            qty=np.zeros(n_assets, dtype=np.int64),
            avg_price=np.zeros(n_assets),
            entry_bar=np.full(n_assets, -1, dtype=np.int64),
            signal_names=signal_names,
        )

    # -- valuation ---------------------------------------------------------------------------------
    def positions_value(self, last_close: np.ndarray) -> float:
        """sum(qty * last_close). With one position open the dot product is that one term
        (the others are exact zeros), so it is computed as such, to the same bits."""
        n_open = len(self.open_assets)
        if n_open > 1:  # asked again within a bar (risk context, equity mark): one product
            marked, booked, value = self._memo
            if marked is last_close and booked == self.n_fills:
                return value
            value = dot(self._qty_f, last_close)  # (not BLAS: see engine.sums)
            self._memo = (last_close, self.n_fills, value)
            return value
        if n_open == 1:
            for a in self.open_assets:
                return self._qty_f.item(a) * last_close.item(a)
        return 0.0

    # -- booking ---------------------------------------------------------------------------------
    def book(self, fill: Fill, decision: tuple[Mapping[str, np.ndarray], int]) -> int:
        """Book one fill (never a flip). Returns +1 if it opened a position, -1 if it closed
        one, 0 otherwise. The decision's signals (`signals[name][row]`) are recorded on the
        trade a fill opens or closes."""
        a, dq, price = fill.asset, fill.qty, fill.price
        qty = self.qty
        old = qty.item(a)
        new = old + dq
        self.cash -= dq * price + fill.commission
        qty[a] = new
        self._qty_f[a] = new
        self.fills.records += pack_fill(*fill)
        self.n_fills += 1
        if abs(new) > abs(old):
            self.avg_price[a] = (self.avg_price.item(a) * abs(old) + price * abs(dq)) / abs(new)
        if old != 0 and new != 0:
            return 0
        signals, row = decision
        if signals is not self._signal_source:
            self._read_signals(signals)
        self.signal_fills.append(self.n_fills - 1)
        self._signal_rows.append(row * qty.shape[0] + a)
        if old == 0:
            self.open_assets.add(a)
            self.entry_bar[a] = fill.bar
            return 1
        self.open_assets.discard(a)
        self.entry_bar[a] = -1
        self.avg_price[a] = 0.0
        return -1

    # -- corporate actions (before a bar's open) ------------------------------------------------
    def split(
        self,
        a: int,
        ratio: float,
        ref_price: float,
        bar: int,
        decision: tuple[Mapping[str, np.ndarray], int],
    ) -> ActionRecord | None:
        """Split the position in `a`: `ratio` new shares per old one. The whole shares stay
        (sign kept), the average price becomes avg / ratio, a fraction is paid in cash at
        `ref_price` / ratio (debited for a short). A split that leaves no whole share closes
        the position: a book row selling it at `ref_price`, the trade's exit (reason `split`).
        None when nothing is held."""
        old = self.qty.item(a)
        if old == 0:
            return None
        exact = abs(old) * ratio
        whole = whole_shares(exact)
        sign = 1 if old > 0 else -1
        row = self.n_fills
        if whole == 0:  # the whole position becomes a fraction: paid out, the trade ends
            fill = new_fill(
                bar=bar,
                asset=a,
                qty=-old,
                price=ref_price,
                commission=0.0,
                slippage=0.0,
                order_id=-1,
                reason=_SPLIT,
                rule=-1,
            )
            self.book(fill, decision)
            cash = old * ref_price
        else:
            new = sign * whole
            cash = sign * max(exact - whole, 0.0) * ref_price / ratio
            self.cash += cash
            self.qty[a] = new
            self._qty_f[a] = new
            self.avg_price[a] = self.avg_price.item(a) / ratio
            self._book_action(bar, a, new - old, _SPLIT)
        record = ActionRecord(
            bar=bar,
            asset=a,
            book_row=row,
            kind=_SPLIT,
            split_ratio=ratio,
            dividend=0.0,
            qty_before=old,
            qty_after=self.qty.item(a),
            cash=cash,
            ref_price=ref_price,
        )
        self.actions.append(record)
        return record

    def dividend(self, a: int, per_share: float, ref_price: float, bar: int) -> ActionRecord | None:
        """Credit (long) or debit (short) `per_share` on the shares of `a` held at the previous
        close. None when nothing is held."""
        held = self.qty.item(a)
        if held == 0:
            return None
        cash = held * per_share
        self.cash += cash
        self._book_action(bar, a, 0, _DIVIDEND)
        record = ActionRecord(
            bar=bar,
            asset=a,
            book_row=self.n_fills - 1,
            kind=_DIVIDEND,
            split_ratio=1.0,
            dividend=per_share,
            qty_before=held,
            qty_after=held,
            cash=cash,
            ref_price=ref_price,
        )
        self.actions.append(record)
        return record

    def _book_action(self, bar: int, a: int, qty: int, reason: int) -> None:
        """The book row of an action that moved shares (`qty`) or only cash: no order, no
        price (its cash is on the `ActionRecord`)."""
        row = new_fill(
            bar=bar,
            asset=a,
            qty=qty,
            price=0.0,
            commission=0.0,
            slippage=0.0,
            order_id=-1,
            reason=reason,
            rule=-1,
        )
        self.fills.records += pack_fill(*row)
        self.n_fills += 1

    def _read_signals(self, source: Mapping[str, np.ndarray] | None) -> None:
        """Read the values noted against the current source, then note against `source`."""
        at = np.fromiter(self._signal_rows, np.int64, count=len(self._signal_rows))
        self._signal_rows = []
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
        if self._signal_rows:
            self._read_signals(self._signal_source)
        width = len(self.signal_names)
        blocks = self._signal_blocks or [(np.empty((0, width)), np.empty((0, width), bool))]
        if len(blocks) > 1:
            values = np.concatenate([v for v, _ in blocks])
            missing = np.concatenate([m for _, m in blocks])
            blocks[:] = [(values, missing)]
        fills = np.fromiter(self.signal_fills, np.int64, count=len(self.signal_fills))
        return fills, blocks[0][0], blocks[0][1]

    # -- the book as columns, and the trades derived from it ---------------------------------
    def fill_columns(self) -> dict[str, np.ndarray]:
        """The fill book as one array per `Fill` field (FILL_DTYPE), converted once per state
        of the book."""
        booked, converted = self._fill_columns
        if booked != self.n_fills:
            converted = self.fills.columns()
            self._fill_columns = (self.n_fills, converted)
        return converted

    def trades(self) -> Trades:
        """Every trade so far (derived once per state of the fill book)."""
        booked, trades = self._trades
        if trades is None or booked != self.n_fills:
            recorded, values, missing = self.signal_table()
            trades = Trades.derive(
                self.fill_columns(),
                carried=self.carried,
                signal_names=self.signal_names,
                signals=(recorded, values, missing),
                action_cash={r.book_row: r.cash for r in self.actions},
            )
            self._trades = (self.n_fills, trades)
        return trades

    def trade_state(self) -> dict[str, np.ndarray]:
        """TRADE_STATE and `entry_<signal>` as (N,) arrays (zeros / NaN where flat)."""
        out = empty_trade_state(self.qty.shape[0], self.signal_names)
        open_ = self.trades().still_open()
        at = open_["asset"]
        for name in out:
            out[name][at] = open_[name]
        return out
