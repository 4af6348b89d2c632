"""The account around the ledger: prices it is marked at, its equity curve, and the
read-only view a strategy gets.

`Portfolio` owns the last known close of every asset (forward filled over bars without one)
and the equity marked at each close; the ledger owns cash and positions. `AccountView` is all
a strategy can see of either: values and read-only arrays, never a handle to write.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ml4t_pipeline.engine.execution.ledger import Ledger, read_only
from ml4t_pipeline.errors import ConfigError


class AssetIndex(dict[Any, int]):
    """asset id -> array position; an unknown id is a clear error (a C-level lookup:
    strategies call it once per event)."""

    def __init__(self, assets: list[Any]) -> None:
        super().__init__((a, i) for i, a in enumerate(assets))

    def __missing__(self, asset: Any) -> int:
        msg = f"unknown asset_id {asset!r}: not in this run's price data"
        raise ConfigError(msg)


class Portfolio:
    """The ledger's positions marked at the last known close, and the equity curve.

    One path keeps the equity state: `record_close` appends each close's cash and positions
    value; the equity before the current bar (`prev_equity`) and the running peak
    (`peak_equity`, NaN marks skipped) are read from that curve.
    """

    __slots__ = (
        "_curve",
        "_peak",
        "_peaked",
        "cash",
        "last_close",
        "ledger",
        "positions",
        "start_equity",
    )

    def __init__(
        self, ledger: Ledger, *, last_close: np.ndarray, start_equity: float, peak_equity: float
    ) -> None:
        self.ledger = ledger
        self.last_close = read_only(last_close)
        self.start_equity = start_equity  # equity before the first bar of this run
        self.cash: list[float] = []  # per bar, at the close
        self.positions: list[float] = []
        self._peak = peak_equity
        self._peaked = 0  # bars of the curve already folded into `_peak`
        self._curve: tuple[np.ndarray, np.ndarray] = (np.empty(0), np.empty(0))

    def mark_close(self, close: np.ndarray, has_bar: np.ndarray | None) -> None:
        """The bar's closes become the last known close, kept where an asset has no bar
        (`has_bar` None: every asset has one)."""
        if has_bar is None:  # the row itself (read-only, a view)
            self.last_close = close
        else:
            marked = np.where(has_bar, close, self.last_close)
            marked.flags.writeable = False
            self.last_close = marked

    def split(self, a: int, ratio: float) -> None:
        """A split of `a` before this bar's open: its last close is in the new shares
        (close / ratio) until the asset's next bar marks it."""
        marked = self.last_close.copy()
        marked[a] = marked.item(a) / ratio
        marked.flags.writeable = False
        self.last_close = marked

    def equity(self) -> float:
        """cash + sum(qty x last close), now."""
        return self.ledger.cash + self.ledger.positions_value(self.last_close)

    def record_close(self) -> None:
        """Mark the equity at this close onto the curve."""
        ledger = self.ledger
        self.positions.append(
            ledger.positions_value(self.last_close) if ledger.open_assets else 0.0
        )
        self.cash.append(ledger.cash)

    @property
    def prev_equity(self) -> float:
        """The equity at the last recorded close (the start equity before the first)."""
        if not self.cash:
            return self.start_equity
        return self.cash[-1] + self.positions[-1]

    @property
    def peak_equity(self) -> float:
        """The highest equity recorded so far (and carried in), NaN marks skipped."""
        cash, positions = self.cash, self.positions
        peak, start, end = self._peak, self._peaked, len(cash)
        if end - start > 64:  # a whole chunk at once (no rule asked during it): in numpy
            cash_, positions_ = self.curve()
            equity = cash_[start:] + positions_[start:]
            known = equity[~np.isnan(equity)]
            if known.shape[0]:
                peak = max(peak, float(known.max()))
        else:  # a few bars since a rule last asked
            for k in range(start, end):
                value = cash[k] + positions[k]
                if value > peak:
                    peak = value
        self._peak, self._peaked = peak, end
        return peak

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The recorded cash and positions value per bar, as arrays."""
        if self._curve[0].shape[0] != len(self.cash):
            self._curve = (np.array(self.cash, dtype=np.float64), np.array(self.positions))
        return self._curve


class AccountView:
    """What a strategy may read of the account. Arrays are read-only and indexed like the
    run's assets (`batch.assets`)."""

    __slots__ = ("_ledger", "_portfolio", "index")

    def __init__(self, portfolio: Portfolio, index: Callable[[Any], int]) -> None:
        self._portfolio = portfolio
        self._ledger = portfolio.ledger
        self.index = index  # asset id -> array position (ConfigError for an unknown id)

    @property
    def cash(self) -> float:
        return self._ledger.cash

    @property
    def equity(self) -> float:
        """cash + sum(qty x last close)."""
        return self._portfolio.equity()

    @property
    def positions(self) -> np.ndarray:
        """Signed shares held per asset (read-only)."""
        return self._ledger.view.qty

    @property
    def avg_prices(self) -> np.ndarray:
        """Average entry price of each open position (0 where flat; read-only)."""
        return self._ledger.view.avg_price

    @property
    def last_close(self) -> np.ndarray:
        """The last known close of every asset (read-only)."""
        return self._portfolio.last_close

    def position(self, asset: Any) -> int:
        """Signed shares held in `asset` (an asset id)."""
        return self._ledger.qty.item(self.index(asset))

    def unrealized_pnl_pct(self, asset: Any) -> float | None:
        """The open position's return at the last close (signed for shorts); None when flat."""
        a = self.index(asset)
        qty = self._ledger.qty.item(a)
        if qty == 0:
            return None
        close = self._portfolio.last_close.item(a)
        return math.copysign(1.0, qty) * (close / self._ledger.avg_price.item(a) - 1.0)
