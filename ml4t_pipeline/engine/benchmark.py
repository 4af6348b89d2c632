"""The benchmark a run is compared with: its value in account currency at every close.

Built once at the run's first bar and then only marked (it never trades, pays no costs and
takes nothing from the account), chunk by chunk over the (bars x assets) close matrix:

- `equal_weight`: the start equity split equally over the assets that have a bar at the
  first bar, bought at that bar's close in fractional shares, held.
- `asset`: the start equity in one asset at the first bar's close, fractional shares, held.
- `context`: start equity x level / first level of a context column (an index level).

A held asset without a bar (a gap, or bars that ended: delisted) is valued at its last close.
Corporate actions of held assets apply before the open of their bar, as they do to the
ledger: a dividend adds shares x dividend to the benchmark's cash, a split multiplies its
shares by the ratio (and divides the last close, until the asset's next bar). The holdings
travel in `EngineState.benchmark`, so chained runs mark the same values, bit for bit, as one
run: the value is the sum, in the order of the sorted asset ids, of shares x last close, plus
cash; every figure is saved exactly.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml4t_pipeline.engine.config import BenchmarkConfig
from ml4t_pipeline.engine.enums import BenchmarkKind
from ml4t_pipeline.engine.feed import Panel, asset_list
from ml4t_pipeline.engine.feed.actions import Action
from ml4t_pipeline.errors import ConfigError, DataError, StateError, shown
from ml4t_pipeline.keys import to_datetime


@dataclass(slots=True, kw_only=True)
class _Holdings:
    """Shares per benchmark asset (in the order of the sorted asset ids) and cash."""

    ids: list[Any]
    units: np.ndarray  # (K,) float64 fractional shares
    price: np.ndarray  # (K,) the last known close (split-adjusted until the next bar)
    cash: float  # dividends received


@dataclass(slots=True, kw_only=True)
class _Level:
    """A context level: value = initial x level / first level."""

    initial: float
    first_level: float
    last_level: float


class Benchmark:
    """The benchmark of one run: formed at its first bar (or restored), marked per chunk."""

    def __init__(
        self,
        spec: BenchmarkConfig,
        *,
        assets: np.ndarray,
        start_value: float,
        saved: dict[str, Any] | None,
        context: str = "context",
    ) -> None:
        """`assets` the run's universe (sorted ids), `start_value` the value a fresh
        benchmark starts from (the start equity), `saved` the state of the run this one
        continues (None or empty: form it at this run's first bar), `context` the name of
        the context input, for messages."""
        self.spec = spec
        self.ids = asset_list(assets)
        self._context_name = context
        self._values: list[np.ndarray] = []
        self._holdings: _Holdings | None = None
        self._level: _Level | None = None
        self._cols = np.empty(0, np.int64)  # holding -> column in this run (-1: not in it)
        self.inception_us: int | None = None
        self.start_value = start_value  # the value before this run's first bar
        self.inception_value = start_value
        if spec.kind is BenchmarkKind.ASSET and not saved and spec.asset not in set(self.ids):
            examples = ", ".join(repr(a) for a in self.ids[:5])
            msg = (
                f"benchmark.asset {shown(spec.asset)} is not an asset of the prices "
                f"({len(self.ids)} assets, e.g. {examples})"
            )
            raise ConfigError(msg)
        if saved:
            self._restore(saved)

    # -- chained runs ---------------------------------------------------------------------------
    def _restore(self, saved: dict[str, Any]) -> None:
        spec = self.spec
        kind = BenchmarkKind(saved["kind"])
        named = {k: saved.get(k) for k in ("asset", "column") if saved.get(k) is not None}
        if kind is not spec.kind or named != spec.named:
            msg = (
                f"the saved state's benchmark is {kind} {named or ''} but the config's is "
                f"{spec.kind} {spec.named or ''}: a chain of runs keeps one benchmark (start a "
                "new chain to change it)"
            )
            raise StateError(msg)
        self.inception_us = int(saved["inception_us"])
        self.inception_value = float(saved["inception_value"])
        self.start_value = float(saved["value"])
        if kind is BenchmarkKind.CONTEXT:
            self._level = _Level(
                initial=float(saved["initial"]),
                first_level=float(saved["first_level"]),
                last_level=float(saved["last_level"]),
            )
            return
        self._hold(
            list(saved["assets"]),
            np.asarray(saved["units"], dtype=np.float64),
            np.asarray(saved["price"], dtype=np.float64),
            float(saved["cash"]),
        )

    def saved(self) -> dict[str, Any]:
        """What the next run needs to continue (`EngineState.benchmark`); exact floats."""
        if self.inception_us is None:
            return {}
        out: dict[str, Any] = {
            "kind": str(self.spec.kind),
            **self.spec.named,
            "inception_us": self.inception_us,
            "inception_value": self.inception_value,
            "value": float(self._values[-1][-1]) if self._values else self.start_value,
        }
        if self._level is not None:
            level = self._level
            out |= {
                "initial": level.initial,
                "first_level": level.first_level,
                "last_level": level.last_level,
            }
        elif self._holdings is not None:
            held = self._holdings
            out |= {
                "assets": held.ids,
                "units": held.units.tolist(),
                "price": held.price.tolist(),
                "cash": held.cash,
            }
        return out

    def _hold(self, ids: list[Any], units: np.ndarray, price: np.ndarray, cash: float) -> None:
        self._holdings = _Holdings(ids=ids, units=units, price=price, cash=cash)
        column = {a: i for i, a in enumerate(self.ids)}
        self._cols = np.array([column.get(a, -1) for a in ids], dtype=np.int64)

    # -- forming ------------------------------------------------------------------------------
    def _form(self, panel: Panel) -> None:
        """Buy at the close of the panel's first bar (the run's first bar)."""
        stamp = int(panel.timestamps[0])
        self.inception_us = stamp
        self.inception_value = self.start_value
        if self.spec.kind is BenchmarkKind.CONTEXT:
            column = self.spec.column
            assert column is not None
            level = float(panel.context[column][0])
            if not (math.isfinite(level) and level > 0):
                msg = (
                    f"{self._context_name}: column {column!r} (benchmark.context) is {level!r} "
                    f"at the run's first bar {to_datetime(stamp)}; the benchmark needs a "
                    "level > 0 there"
                )
                raise DataError(msg)
            self._level = _Level(initial=self.start_value, first_level=level, last_level=level)
            return
        if self.spec.kind is BenchmarkKind.ASSET:
            cols = np.array([self.ids.index(self.spec.asset)], dtype=np.int64)
            if not bool(panel.has_bar[0, cols[0]]):
                msg = (
                    f"benchmark.asset {shown(self.spec.asset)} has no bar at the run's first "
                    f"bar {to_datetime(stamp)}; the benchmark buys there"
                )
                raise DataError(msg)
        else:
            cols = np.flatnonzero(panel.has_bar[0])
        close = panel.close[0, cols]
        bad = np.flatnonzero(~(np.isfinite(close) & (close > 0)))
        if bad.shape[0]:
            k = int(bad[0])
            msg = (
                f"benchmark: asset {shown(self.ids[cols[k]])} has close {float(close[k])!r} at "
                f"the run's first bar {to_datetime(stamp)}, where the benchmark buys "
                f"({bad.shape[0]} asset(s) without a close > 0)"
            )
            raise DataError(msg)
        units = (self.start_value / cols.shape[0]) / close
        self._hold([self.ids[c] for c in cols.tolist()], units, close.copy(), 0.0)

    # -- marking ------------------------------------------------------------------------------
    def mark(self, panel: Panel, actions: dict[int, list[Action]]) -> None:
        """The benchmark's value at every close of the chunk. `actions`: the corporate
        actions by row, applied before that row's open to what the benchmark holds."""
        first = 0
        if self.inception_us is None:
            self._form(panel)
            first = 1  # formed at row 0's close: that bar's actions came before it held
        if self._level is not None:
            self._values.append(self._mark_level(panel))
            return
        held = self._holdings
        assert held is not None
        rows = [r for r in sorted(actions) if r >= first]
        bounds = [0, *[r for r in rows if r > 0], panel.n_bars]
        out = np.empty(panel.n_bars)
        for lo, hi in itertools.pairwise(bounds):
            if lo in actions and lo >= first:
                self._apply(actions[lo])
            out[lo:hi] = self._mark_rows(panel, lo, hi)
        self._values.append(out)

    def _apply(self, actions: list[Action]) -> None:
        """Dividends on the shares held at the previous close (to cash), then splits."""
        held = self._holdings
        assert held is not None
        position = {int(c): k for k, c in enumerate(self._cols.tolist()) if c >= 0}
        for action in actions:
            k = position.get(action.asset)
            if k is not None and action.dividend:
                held.cash += float(held.units[k]) * action.dividend
        for action in actions:
            k = position.get(action.asset)
            if k is not None and action.split_ratio != 1.0:
                held.units[k] *= action.split_ratio
                held.price[k] /= action.split_ratio

    def _mark_rows(self, panel: Panel, lo: int, hi: int) -> np.ndarray:
        """cash + sum over holdings of shares x last close, for rows [lo, hi), in blocks of
        rows small enough to stay in cache (a bar's value depends on its row alone)."""
        held = self._holdings
        assert held is not None
        cols = self._cols
        every = cols.shape[0] == len(self.ids) and bool(np.all(cols == np.arange(cols.shape[0])))
        inside = cols >= 0
        safe = np.where(inside, cols, 0)
        out = np.empty(hi - lo)
        step = max(1, _BLOCK_CELLS // max(cols.shape[0], 1))
        for b in range(lo, hi, step):
            e = min(b + step, hi)
            if every:  # (views of the panel's rows)
                close, has_bar = panel.close[b:e], panel.has_bar[b:e]
            else:
                close, has_bar = panel.close[b:e, safe], panel.has_bar[b:e, safe] & inside
            gaps = ~has_bar.all(axis=0)
            if bool(gaps.any()):  # carry the last close into the cells without a bar
                close = close.copy() if every else close
                close[:, gaps] = _carried(close[:, gaps], has_bar[:, gaps], held.price[gaps])
            held.price = close[-1].copy()
            # row-major products, so each row is summed on its own in one order whatever the
            # layout of `close` (a gather of columns is column-major) and the rows around it
            out[b - lo : e - lo] = np.multiply(close, held.units, order="C").sum(axis=1)
        return out + held.cash

    def _mark_level(self, panel: Panel) -> np.ndarray:
        level, column = self._level, self.spec.column
        assert level is not None
        assert column is not None
        values = panel.context[column]
        known = ~np.isnan(values)
        if not bool(known.all()):
            values = _carried(
                values[:, np.newaxis], known[:, np.newaxis], np.array([level.last_level])
            )[:, 0]
        if values.shape[0]:
            level.last_level = float(values[-1])
        return level.initial * values / level.first_level

    # -- what the run produced ------------------------------------------------------------------
    def values(self) -> np.ndarray:
        """The value at every close of the run, in account currency."""
        return np.concatenate(self._values) if self._values else np.empty(0)

    def describe(self) -> dict[str, Any]:
        """The summary's description: kind, what it follows, when and at what value it began."""
        return {
            "kind": str(self.spec.kind),
            **self.spec.named,
            "inception": None
            if self.inception_us is None
            else to_datetime(self.inception_us).isoformat(),
            "inception_value": self.inception_value,
        }


#: rows x holdings marked at once: a block's temporaries stay in the CPU cache
_BLOCK_CELLS = 1 << 16


def _carried(values: np.ndarray, known: np.ndarray, before: np.ndarray) -> np.ndarray:
    """(R, K) values with each unknown cell holding the last known one above it, or `before`
    (the value carried in) above the first known one."""
    rows = np.where(known, np.arange(values.shape[0])[:, np.newaxis], -1)
    np.maximum.accumulate(rows, axis=0, out=rows)
    taken = values[np.maximum(rows, 0), np.arange(values.shape[1])]
    return np.where(rows >= 0, taken, before)
