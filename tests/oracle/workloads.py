"""Reference implementation of workloads W1, W2 and W3 from shared/WORKLOADS.md.

Written to be read next to the spec, not to be fast: one loop over bars, one step per rule, in
the order the spec gives. Zero imports from `ml4t_pipeline`.

Per bar t: (1) orders queued at the close of t-1 fill at open[t], sells before buys, in asset
order within each side; (2) protective stops (W2) on positions entered before t; (3) the
strategy decides at close[t] and queues orders for t+1; (4) equity is marked at close[t].
Orders still queued after the last bar never fill.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

FloatArray = npt.NDArray[np.float64]
#: Asset ids are strings or integers; either way "asset order" is ascending id order.
AssetId = str | int

INITIAL_CASH = 1_000_000.0
COMMISSION_RATE = 0.001


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One execution: `ts_us` is the fill bar's UTC timestamp in epoch microseconds."""

    ts_us: int
    bar: int
    asset_id: AssetId
    side: str
    qty: int
    price: float
    commission: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EquityRow:
    """Account state marked at the close of one bar."""

    ts_us: int
    cash: float
    positions_value: float
    equity: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OracleResult:
    """What a workload run produces: fills in execution order and the equity curve."""

    fills: list[Fill]
    equity: list[EquityRow]
    final_cash: float
    final_equity: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Panel:
    """A complete (bars x assets) panel; assets sorted by asset_id, bars by time."""

    ts_us: list[int]
    asset_ids: list[AssetId]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    signals: dict[str, FloatArray]
    vix: FloatArray


def _utc_epoch_us(
    df: pl.DataFrame, column: str = "timestamp", alias: str = "ts_us"
) -> pl.DataFrame:
    """Naive timestamps are read as UTC; aware ones are converted to UTC."""
    dtype = df.schema[column]
    if not isinstance(dtype, pl.Datetime):
        msg = f"{column} must be a Datetime column, got {dtype}"
        raise TypeError(msg)
    ts = pl.col(column)
    utc = ts.dt.replace_time_zone("UTC") if dtype.time_zone is None else ts
    return df.with_columns(utc.dt.convert_time_zone("UTC").dt.epoch("us").alias(alias))


def known_values(
    rows: list[tuple[int, int, tuple[float, ...]]], ts_us: list[int], width: int
) -> list[tuple[float, ...]]:
    """The values current at each bar of a feed with knowledge time (README, Knowledge time).

    `rows` are (timestamp, available_at, values) in epoch us. A row is known from the first
    bar at or after max(timestamp, available_at) (a row known before the first bar counts at
    the first bar; one known after the last bar never counts). At bar t the current row is the
    known one with the latest timestamp, in its latest known version (the greatest
    (timestamp, available_at)); it stays current until a greater one becomes known. Before
    any row is known every value is NaN; a null value reads NaN.
    """
    arriving: dict[int, list[tuple[int, int, tuple[float, ...]]]] = {}
    for row in rows:
        bar = bisect_left(ts_us, max(row[0], row[1]))
        if bar < len(ts_us):
            arriving.setdefault(bar, []).append(row)
    nothing = tuple([math.nan] * width)
    current: tuple[int, int, tuple[float, ...]] | None = None
    out: list[tuple[float, ...]] = []
    for t in range(len(ts_us)):
        for row in arriving.get(t, []):
            if current is None or (row[0], row[1]) > (current[0], current[1]):
                current = row
        out.append(nothing if current is None else current[2])
    return out


def _floats(values: tuple[object, ...]) -> tuple[float, ...]:
    return tuple(math.nan if v is None else float(v) for v in values)  # type: ignore[arg-type]


def _known_signals(
    sg: pl.DataFrame, columns: list[str], ts_us: list[int], asset_ids: list[AssetId]
) -> dict[str, FloatArray]:
    """Per asset, the signal values current at each bar (`known_values`)."""
    sg = _utc_epoch_us(sg, "available_at", "available_us")
    per_asset: dict[AssetId, list[tuple[int, int, tuple[float, ...]]]] = {}
    for r in sg.select("asset_id", "ts_us", "available_us", *columns).iter_rows():
        per_asset.setdefault(r[0], []).append((r[1], r[2], _floats(r[3:])))
    out = {c: np.full((len(ts_us), len(asset_ids)), np.nan) for c in columns}
    for j, a in enumerate(asset_ids):
        for t, values in enumerate(known_values(per_asset.get(a, []), ts_us, len(columns))):
            for c, v in zip(columns, values, strict=True):
                out[c][t, j] = v
    return out


def _known_vix(cx: pl.DataFrame, ts_us: list[int]) -> FloatArray:
    """The market-wide vix current at each bar (`known_values`)."""
    cx = _utc_epoch_us(cx, "available_at", "available_us")
    rows = [
        (t, k, _floats((v,))) for t, k, v in cx.select("ts_us", "available_us", "vix").iter_rows()
    ]
    return np.array([v[0] for v in known_values(rows, ts_us, 1)])


def _wide(df: pl.DataFrame, column: str, ts_us: list[int], asset_ids: list[AssetId]) -> FloatArray:
    """Pivot one column of a long (ts_us, asset_id) table to a bars x assets float array."""
    row_of = {t: i for i, t in enumerate(ts_us)}
    col_of = {a: j for j, a in enumerate(asset_ids)}
    out = np.full((len(ts_us), len(asset_ids)), np.nan)
    for t, a, value in df.select("ts_us", "asset_id", column).iter_rows():
        out[row_of[t], col_of[a]] = np.nan if value is None else float(value)
    return out


def load_panel(prices: Path, signals: Path, context: Path) -> Panel:
    """Read the three workload files into a panel; the oracle only handles complete panels.

    Without `available_at`, a signals row counts at its own bar only (NaN where there is
    none) and the context is read at each bar's own timestamp. With `available_at` (signals
    or context), the value at a bar is the one known by then (`known_values`).
    """
    px = _utc_epoch_us(pl.read_parquet(prices))
    sg = _utc_epoch_us(pl.read_parquet(signals))
    cx = _utc_epoch_us(pl.read_parquet(context))
    ts_us = sorted(set(px["ts_us"].to_list()))
    asset_ids = sorted(set(px["asset_id"].to_list()))
    if px.height != len(ts_us) * len(asset_ids):
        msg = "the oracle needs a complete panel (every asset on every timestamp)"
        raise ValueError(msg)
    keys = ("timestamp", "asset_id", "available_at", "ts_us")
    signal_columns = [c for c in sg.columns if c not in keys]
    if "available_at" in cx.columns:
        vix = _known_vix(cx, ts_us)
    else:
        vix_of = dict(zip(cx["ts_us"].to_list(), cx["vix"].to_list(), strict=True))
        vix = np.array([np.nan if vix_of.get(t) is None else float(vix_of[t]) for t in ts_us])
    if "available_at" in sg.columns:
        signal_values = _known_signals(sg, signal_columns, ts_us, asset_ids)
    else:
        signal_values = {c: _wide(sg, c, ts_us, asset_ids) for c in signal_columns}
    return Panel(
        ts_us=ts_us,
        asset_ids=asset_ids,
        open=_wide(px, "open", ts_us, asset_ids),
        high=_wide(px, "high", ts_us, asset_ids),
        low=_wide(px, "low", ts_us, asset_ids),
        close=_wide(px, "close", ts_us, asset_ids),
        signals=signal_values,
        vix=vix,
    )


@dataclass(slots=True)
class _Book:
    """Cash, positions and the fill log; the only place that changes them."""

    panel: Panel
    cash: float
    commission_rate: float
    positions: list[int]
    fills: list[Fill] = field(default_factory=list)
    equity: list[EquityRow] = field(default_factory=list)

    def execute(self, t: int, a: int, signed_qty: int, price: float, reason: str) -> None:
        qty = abs(signed_qty)
        commission = qty * price * self.commission_rate
        if signed_qty > 0:
            self.cash -= qty * price
        else:
            self.cash += qty * price
        self.cash -= commission
        self.positions[a] += signed_qty
        side = "buy" if signed_qty > 0 else "sell"
        self.fills.append(
            Fill(
                ts_us=self.panel.ts_us[t],
                bar=t,
                asset_id=self.panel.asset_ids[a],
                side=side,
                qty=qty,
                price=price,
                commission=commission,
                reason=reason,
            )
        )

    def fill_at_open(self, t: int, queued: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Market orders queued at t-1 fill at open[t]: all sells, then all buys.

        Returns the (asset, signed qty) pairs in the order they filled.
        """
        sells = sorted(o for o in queued if o[1] < 0)
        buys = sorted(o for o in queued if o[1] > 0)
        for a, signed_qty in sells + buys:
            self.execute(t, a, signed_qty, float(self.panel.open[t, a]), "signal")
        return sells + buys

    def positions_value(self, t: int) -> float:
        value = 0.0
        for a, qty in enumerate(self.positions):
            value += qty * float(self.panel.close[t, a])
        return value

    def mark(self, t: int) -> None:
        pv = self.positions_value(t)
        self.equity.append(
            EquityRow(
                ts_us=self.panel.ts_us[t], cash=self.cash, positions_value=pv, equity=self.cash + pv
            )
        )

    def result(self) -> OracleResult:
        last = self.equity[-1]
        return OracleResult(
            fills=self.fills, equity=self.equity, final_cash=self.cash, final_equity=last.equity
        )


def signal_threshold(
    panel: Panel,
    *,
    score: str = "ml_score",
    entry_above: float,
    exit_below: float,
    qty: int,
    stop_pct: float | None = None,
    initial_cash: float = INITIAL_CASH,
    commission_rate: float = COMMISSION_RATE,
) -> OracleResult:
    """W1 (and W2 when `stop_pct` is given), applied to every asset of the panel."""
    n_bars, n_assets = panel.close.shape
    book = _Book(
        panel=panel, cash=initial_cash, commission_rate=commission_rate, positions=[0] * n_assets
    )
    entry_bar = [-1] * n_assets
    stop = [math.nan] * n_assets
    queued: list[tuple[int, int]] = []
    for t in range(n_bars):
        for a, signed_qty in book.fill_at_open(t, queued):
            if signed_qty > 0 and stop_pct is not None:  # W1 buys only when flat: an entry
                entry_bar[a] = t
                stop[a] = float(panel.open[t, a]) * (1 - stop_pct)
        queued = []
        if stop_pct is not None:
            for a in range(n_assets):
                held = book.positions[a]
                if held > 0 and t > entry_bar[a] and panel.low[t, a] <= stop[a]:
                    price = min(float(panel.open[t, a]), stop[a])
                    book.execute(t, a, -held, price, "stop_loss")
        for a in range(n_assets):
            s = float(panel.signals[score][t, a])
            if math.isnan(s):
                continue
            held = book.positions[a]
            if held == 0 and s > entry_above:
                queued.append((a, qty))
            elif held > 0 and s < exit_below:
                queued.append((a, -held))
        book.mark(t)
    return book.result()


def top_k_rotation(
    panel: Panel,
    *,
    score: str = "ml_score",
    top_k: int,
    weight: float,
    rebalance_every: int,
    warmup_bars: int,
    max_vix: float,
    initial_cash: float = INITIAL_CASH,
    commission_rate: float = COMMISSION_RATE,
) -> OracleResult:
    """W3: equal-weight the top-k scores on rebalance bars when vix is low enough."""
    n_bars, n_assets = panel.close.shape
    book = _Book(
        panel=panel, cash=initial_cash, commission_rate=commission_rate, positions=[0] * n_assets
    )
    queued: list[tuple[int, int]] = []
    for t in range(n_bars):
        book.fill_at_open(t, queued)
        queued = []
        rebalance = t >= warmup_bars and t % rebalance_every == 0 and panel.vix[t] <= max_vix
        if rebalance:
            equity_t = book.cash + book.positions_value(t)
            scores = panel.signals[score][t]
            ranked = sorted(
                (a for a in range(n_assets) if not math.isnan(scores[a])),
                key=lambda a: (-scores[a], a),
            )
            targets = set(ranked[:top_k])
            for a in range(n_assets):
                close = float(panel.close[t, a])
                target = math.floor(weight * equity_t / close) if a in targets else 0
                order = target - book.positions[a]
                if order != 0:
                    queued.append((a, order))
        book.mark(t)
    return book.result()


def fills_frame(result: OracleResult) -> pl.DataFrame:
    """The oracle's fills as a table shaped like the engine's (UTC timestamps)."""
    ids = [f.asset_id for f in result.fills]
    return pl.DataFrame(
        {
            "timestamp": [f.ts_us for f in result.fills],
            "bar": [f.bar for f in result.fills],
            "asset_id": ids,
            "side": [f.side for f in result.fills],
            "qty": [f.qty for f in result.fills],
            "price": [f.price for f in result.fills],
            "commission": [f.commission for f in result.fills],
            "reason": [f.reason for f in result.fills],
        },
        schema={
            "timestamp": pl.Int64,
            "bar": pl.Int64,
            "asset_id": pl.Int64 if all(isinstance(a, int) for a in ids) and ids else pl.String,
            "side": pl.String,
            "qty": pl.Int64,
            "price": pl.Float64,
            "commission": pl.Float64,
            "reason": pl.String,
        },
    ).with_columns(pl.from_epoch("timestamp", time_unit="us").dt.replace_time_zone("UTC"))


def equity_frame(result: OracleResult) -> pl.DataFrame:
    """The oracle's equity curve as a table shaped like the engine's (UTC timestamps)."""
    return pl.DataFrame(
        {
            "timestamp": [e.ts_us for e in result.equity],
            "cash": [e.cash for e in result.equity],
            "positions_value": [e.positions_value for e in result.equity],
            "equity": [e.equity for e in result.equity],
        },
        schema={
            "timestamp": pl.Int64,
            "cash": pl.Float64,
            "positions_value": pl.Float64,
            "equity": pl.Float64,
        },
    ).with_columns(pl.from_epoch("timestamp", time_unit="us").dt.replace_time_zone("UTC"))
