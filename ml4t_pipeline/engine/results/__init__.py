"""Result tables (Polars), summary metrics, and atomic Parquet output."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ml4t_pipeline.engine.enums import ExitReason, OrderStatus, OrderType
from ml4t_pipeline.engine.execution.orders import Orders
from ml4t_pipeline.engine.feed import asset_list
from ml4t_pipeline.engine.results.attribution import attribution
from ml4t_pipeline.engine.risk.context import REJECT_BY_CODE
from ml4t_pipeline.engine.state import EngineState

if TYPE_CHECKING:
    from ml4t_pipeline.engine.loop import Engine

UTC_US = pl.Datetime("us", "UTC")
TABLES = ("equity", "fills", "orders", "trades", "rejections", "attribution")


@dataclass(slots=True)
class BacktestResult:
    equity: pl.DataFrame
    fills: pl.DataFrame
    orders: pl.DataFrame
    trades: pl.DataFrame
    rejections: pl.DataFrame
    metrics: dict[str, float]
    initial_cash: float
    final_cash: float
    final_equity: float
    bars: int
    wall_s: float
    final_state: EngineState
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bars_per_s(self) -> float:
        return self.bars / self.wall_s if self.wall_s > 0 else math.inf

    @property
    def attribution(self) -> pl.DataFrame:
        return attribution(self.trades)

    def summary(self) -> dict[str, Any]:
        """The JSON summary line of the CLI (wall_s covers the engine; the CLI may override)."""
        return {
            "final_equity": self.final_equity,
            "final_cash": self.final_cash,
            "initial_cash": self.initial_cash,
            "fills": self.fills.height,
            "trades": int(self.metrics.get("n_trades", 0)),
            "rejections": self.rejections.height,
            "bars": self.bars,
            "wall_s": self.wall_s,
            "bars_per_s": self.bars_per_s,
            **self.metrics,
            **self.extra,
        }

    def write(self, out_dir: str | Path) -> Path:
        """Write every table + summary.json + state.json; all files replace the old ones together.

        The new set is written into a temporary sibling directory, then each file is renamed
        into place, so a crash leaves the previous complete set (never a half-written file).
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out))
        try:
            for name in TABLES:
                getattr(self, name).write_parquet(tmp / f"{name}.parquet", statistics=False)
            (tmp / "summary.json").write_text(
                json.dumps(_deterministic(self.summary()), indent=2, sort_keys=True)
            )
            (tmp / "state.json").write_text(self.final_state.to_json())
            for item in sorted(tmp.iterdir()):
                os.replace(item, out / item.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out


def _deterministic(summary: dict[str, Any]) -> dict[str, Any]:
    """summary.json leaves out wall-clock numbers so identical inputs give identical files."""
    return {k: v for k, v in summary.items() if not k.endswith(("wall_s", "per_s"))}


def _label_table(labels: list[str]) -> pl.Series:
    return pl.Series("label", labels, dtype=pl.String)


_EXIT_LABELS = _label_table([r.label for r in ExitReason])
_ORDER_LABELS = _label_table([t.label for t in OrderType])
_SIDES = _label_table(["sell", "buy"])
_DIRECTIONS = _label_table(["short", "long"])
_STATUS_LABELS = _label_table([s.value for s in OrderStatus])  # filled, rejected, open
_REJECT_LABELS = _label_table([r.value for r in REJECT_BY_CODE])


def _labels(table: pl.Series, codes: np.ndarray, name: str) -> pl.Series:
    """String column of `table[codes]`, gathered natively (no Python string per row)."""
    return table[codes.astype(np.int64)].alias(name)  # (indexing takes a faster path than gather)


def _side(qty: np.ndarray) -> pl.Series:
    return _labels(_SIDES, (qty > 0).astype(np.int64), "side")


def _stamp(bars: np.ndarray, calendar: np.ndarray, offset: int) -> pl.Series:
    local = bars - offset
    return pl.Series("timestamp", calendar[local], dtype=UTC_US)


def build_result(engine: Engine, *, wall_s: float) -> BacktestResult:
    calendar = engine.data.calendar.timestamps
    first_bar = engine.bars_done - calendar.shape[0]
    assets = asset_list(engine.assets)
    asset_dtype = pl.Series(assets[:1]).dtype if assets else pl.String
    rule_names = engine.risk.names

    asset_ids = pl.Series("asset_id", assets, dtype=asset_dtype)
    rule_labels = _label_table(["", *rule_names])  # code -1: the strategy

    def asset_col(idx: np.ndarray) -> pl.Series:
        return asset_ids[idx.astype(np.int64)]

    def rule_col(idx: np.ndarray, name: str = "rule") -> pl.Series:
        return _labels(rule_labels, idx + 1, name)

    cash = np.concatenate(engine.equity_cash) if engine.equity_cash else np.empty(0)
    positions = np.concatenate(engine.equity_positions) if engine.equity_positions else np.empty(0)
    equity = pl.DataFrame(
        {
            "timestamp": pl.Series(calendar, dtype=UTC_US),
            "cash": cash,
            "positions_value": positions,
            "equity": cash + positions,
        }
    )

    f = engine.ledger.fill_columns()  # FILL_DTYPE columns: int64 and float64 already
    fills = pl.DataFrame(
        [
            _stamp(f["bar"], calendar, first_bar),
            pl.Series("bar", f["bar"], dtype=pl.Int64),
            asset_col(f["asset"]),
            _side(f["qty"]),
            pl.Series("qty", np.abs(f["qty"]), dtype=pl.Int64),
            pl.Series("price", f["price"]),
            pl.Series("commission", f["commission"]),
            pl.Series("slippage", f["slippage"]),
            pl.Series("order_id", f["order_id"], dtype=pl.Int64),
            _labels(_EXIT_LABELS, f["reason"], "reason"),
            rule_col(f["rule"]),
        ]
    )

    rejected = engine.broker.rejection_rows
    r = {
        n: np.array([row[k] for row in rejected], dtype=np.int64)
        for k, n in enumerate(("bar", "asset", "order_id", "qty", "reason", "rule"))
    }
    rejections = pl.DataFrame(
        [
            _stamp(r["bar"], calendar, first_bar),
            asset_col(r["asset"]),
            pl.Series("order_id", r["order_id"], dtype=pl.Int64),
            _side(r["qty"]),
            pl.Series("qty", np.abs(r["qty"]), dtype=pl.Int64),
            _labels(_REJECT_LABELS, r["reason"], "reason"),
            rule_col(r["rule"]),
        ]
    )
    all_orders = Orders.from_rows(engine.broker.order_log)
    ids = all_orders.order_id
    if ids.shape[0] > 1 and not bool(np.all(ids[1:] > ids[:-1])):  # logged out of id order
        all_orders = all_orders.take(np.argsort(ids, kind="stable"))
    created = all_orders.created_bar
    status = np.where(
        np.isin(all_orders.order_id, f["order_id"]),
        0,
        np.where(np.isin(all_orders.order_id, r["order_id"]), 1, 2),
    )
    orders = pl.DataFrame(
        [
            pl.Series("order_id", all_orders.order_id, dtype=pl.Int64),
            _stamp(created, calendar, first_bar).alias("created_at"),
            asset_col(all_orders.asset),
            _side(all_orders.qty),
            pl.Series("qty", np.abs(all_orders.qty), dtype=pl.Int64),
            _labels(_ORDER_LABELS, all_orders.order_type, "order_type"),
            pl.Series("limit_price", all_orders.limit_price),
            pl.Series("stop_price", all_orders.stop_price),
            pl.Series("trail_pct", all_orders.trail_pct),
            _labels(_EXIT_LABELS, all_orders.reason, "reason"),
            rule_col(all_orders.rule),
            _labels(_STATUS_LABELS, status, "status"),
        ]
    )
    trades = _trades(engine, calendar, first_bar, asset_col, rule_col)
    final_cash = float(engine.ledger.cash)
    final_equity = final_cash + engine.ledger.positions_value(engine.broker.last_close)
    initial_cash = engine.start_equity
    metrics = compute_metrics(equity, trades, fills, initial_cash=initial_cash)
    state = engine.final_state()
    return BacktestResult(
        equity=equity,
        fills=fills,
        orders=orders,
        trades=trades,
        rejections=rejections,
        metrics=metrics,
        initial_cash=initial_cash,
        final_cash=final_cash,
        final_equity=final_equity,
        bars=engine.data.n_rows,
        wall_s=wall_s,
        final_state=state,
    )


def _trades(
    engine: Engine, calendar: np.ndarray, first_bar: int, asset_col: Any, rule_col: Any
) -> pl.DataFrame:
    """The trade table: the ledger's trades with prices and P&L derived column-wise; trades
    still open are marked at the last close (exit_reason = open)."""
    t = engine.ledger.trades()
    s = t.sums
    still_open = t.exit_fill < 0
    last_bar = engine.bars_done - 1
    open_qty = np.where(still_open, engine.ledger.qty[t.asset], 0)
    mark = np.where(still_open, engine.broker.last_close[t.asset], 0.0)
    long = t.long
    entry_qty = np.where(long, s["buy_qty"], s["sell_qty"])
    exit_qty = np.where(long, s["sell_qty"], s["buy_qty"])
    gross = s["sell_notional"] - s["buy_notional"]
    gross = np.where(still_open, gross + open_qty * mark, gross)
    entry_price = _ratio(np.where(long, s["buy_notional"], s["sell_notional"]), entry_qty)
    exit_price = np.where(
        still_open, mark, _ratio(np.where(long, s["sell_notional"], s["buy_notional"]), exit_qty)
    )
    commission = s["trade_commission"]
    pnl = gross - commission
    with np.errstate(divide="ignore", invalid="ignore"):
        return_pct = pnl / (entry_price * entry_qty.astype(np.float64))
    entry_bar = t.entry_bar
    exit_bar = np.where(still_open, last_bar, t.exit_bar)
    reason = np.where(still_open, int(ExitReason.OPEN), t.exit_reason)
    rule = np.where(still_open, -1, t.exit_rule)
    in_window = (entry_bar >= first_bar) & (entry_bar - first_bar < calendar.shape[0])
    entry_us = (
        calendar[np.where(in_window, entry_bar - first_bar, 0)] if calendar.size else entry_bar
    )
    frame = pl.DataFrame(
        [
            asset_col(t.asset),
            _labels(_DIRECTIONS, long.astype(np.int64), "direction"),
            pl.Series("entry_time", entry_us, dtype=UTC_US).scatter(
                np.flatnonzero(~in_window), None
            ),
            _stamp(exit_bar, calendar, first_bar).alias("exit_time")
            if calendar.size
            else pl.Series("exit_time", [], dtype=UTC_US),
            pl.Series("entry_bar", entry_bar, dtype=pl.Int64),
            pl.Series("exit_bar", exit_bar, dtype=pl.Int64),
            pl.Series("bars_held", exit_bar - entry_bar, dtype=pl.Int64),
            pl.Series("qty", entry_qty, dtype=pl.Int64),
            pl.Series("entry_price", entry_price, dtype=pl.Float64),
            pl.Series("exit_price", exit_price, dtype=pl.Float64),
            pl.Series("gross_pnl", gross, dtype=pl.Float64),
            pl.Series("commission", commission, dtype=pl.Float64),
            pl.Series("slippage", s["trade_slippage"], dtype=pl.Float64),
            pl.Series("pnl", pnl, dtype=pl.Float64),
            _labels(_EXIT_LABELS, reason, "exit_reason"),
            rule_col(rule, "exit_rule"),
            *[pl.Series(f"entry_{n}", v, dtype=pl.Float64) for n, v in t.entry_signals.items()],
            *[pl.Series(f"exit_{n}", v, dtype=pl.Float64) for n, v in t.exit_signals.items()],
            pl.Series("return_pct", return_pct, dtype=pl.Float64),
        ]
    )
    # by exit, then asset (asset positions follow the sorted asset ids); stable: a trade closed
    # at the last bar comes before the asset's trade still open there
    return frame[np.lexsort((t.asset, exit_bar))]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0."""
    out = np.full(numerator.shape[0], np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def compute_metrics(
    equity: pl.DataFrame, trades: pl.DataFrame, fills: pl.DataFrame, *, initial_cash: float
) -> dict[str, float]:
    """Summary statistics of an equity curve (per-bar returns, annualised by bar spacing)."""
    values = equity["equity"].to_numpy()
    out: dict[str, float] = {}
    if values.shape[0] == 0:
        return out
    prev = np.r_[initial_cash, values[:-1]]
    returns = values / prev - 1.0
    stamps = equity["timestamp"].dt.epoch("us").to_numpy()
    spacing_days = float(np.median(np.diff(stamps))) / 86_400e6 if stamps.shape[0] > 1 else 1.0
    periods = 252.0 if spacing_days >= 0.5 else 252.0 / max(spacing_days, 1e-9)
    years = values.shape[0] / periods
    total = float(values[-1] / initial_cash - 1.0)
    vol = float(returns.std(ddof=1) * math.sqrt(periods)) if returns.shape[0] > 1 else 0.0
    mean = float(returns.mean() * periods)
    downside = returns[returns < 0]
    down_vol = (
        float(math.sqrt(float(np.mean(downside**2))) * math.sqrt(periods))
        if downside.shape[0]
        else 0.0
    )
    peak = np.maximum.accumulate(np.r_[initial_cash, values])[1:]
    drawdown = values / peak - 1.0
    exposure = equity["positions_value"].to_numpy()
    closed_pnl = trades["pnl"].to_numpy()[(trades["exit_reason"] != "open").to_numpy()]
    traded = float((fills["qty"].cast(pl.Float64) * fills["price"]).sum()) if fills.height else 0.0
    out["total_return"] = total
    out["cagr"] = (
        float((values[-1] / initial_cash) ** (1.0 / years) - 1.0)
        if years > 0 and values[-1] > 0
        else -1.0
    )
    out["volatility"] = vol
    out["sharpe"] = mean / vol if vol > 0 else 0.0
    out["sortino"] = mean / down_vol if down_vol > 0 else 0.0
    out["max_drawdown"] = float(drawdown.min())
    out["turnover"] = traded / float(np.mean(values)) / max(years, 1e-12)
    out["exposure"] = float(
        np.mean(np.abs(exposure) / np.where(values != 0, np.abs(values), np.nan))
    )
    wins = int(np.count_nonzero(closed_pnl > 0))
    n_closed = closed_pnl.shape[0]
    out["win_rate"] = wins / n_closed if n_closed else 0.0
    out["n_trades"] = float(n_closed)
    return out
