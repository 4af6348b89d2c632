"""The result tables (Polars) of a run record: equity, fills, orders, trades, rejections."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from ml4t_pipeline.engine.enums import (
    TRADE_STILL_OPEN,
    OrderReason,
    OrderStatus,
    OrderType,
    RejectReason,
)
from ml4t_pipeline.engine.execution.fills import REJECT_REASONS, REJECTION_DTYPE, columns
from ml4t_pipeline.engine.execution.orders import Orders
from ml4t_pipeline.engine.results.metrics import (
    compute_metrics,
    periods_per_year,
    relative_metrics,
)
from ml4t_pipeline.engine.results.output import BacktestResult
from ml4t_pipeline.engine.results.record import RunRecord
from ml4t_pipeline.engine.state import NO_TIME

UTC_US = pl.Datetime("us", "UTC")


def _label_table(labels: list[str]) -> pl.Series:
    return pl.Series("label", labels, dtype=pl.String)


# order reasons, and a trade's exit reason: the reason of the order that closed it or "open"
_EXIT_LABELS = _label_table([*(r.label for r in OrderReason), TRADE_STILL_OPEN])
_STILL_OPEN = len(OrderReason)
_ORDER_LABELS = _label_table([t.label for t in OrderType])
_SIDES = _label_table(["sell", "buy"])
_DIRECTIONS = _label_table(["short", "long"])
_STATUS_LABELS = _label_table([s.value for s in OrderStatus])
_STATUS_CODE = {s: code for code, s in enumerate(OrderStatus)}
#: the status of an order whose (unfilled) rest ended with this rejection reason
_ENDED_AS = np.array(
    [
        _STATUS_CODE[
            OrderStatus.CANCELLED
            if r in (RejectReason.CANCELLED, RejectReason.DELISTED, RejectReason.SPLIT)
            else OrderStatus.EXPIRED
            if r is RejectReason.EXPIRED
            else OrderStatus.REJECTED
        ]
        for r in REJECT_REASONS
    ],
    dtype=np.int64,
)
_REJECT_LABELS = _label_table([r.value for r in REJECT_REASONS])


def _labels(table: pl.Series, codes: np.ndarray, name: str) -> pl.Series:
    """String column of `table[codes]`, gathered natively (no Python string per row)."""
    return table[codes.astype(np.int64)].alias(name)  # (indexing takes a faster path than gather)


def _side(qty: np.ndarray) -> pl.Series:
    return _labels(_SIDES, (qty > 0).astype(np.int64), "side")


def _stamp(bars: np.ndarray, calendar: np.ndarray, offset: int) -> pl.Series:
    local = bars - offset
    return pl.Series("timestamp", calendar[local], dtype=UTC_US)


def build_result(record: RunRecord, *, wall_s: float) -> BacktestResult:
    """The result tables of a run record."""
    calendar = record.timestamps
    first_bar = record.first_bar
    assets = record.asset_ids
    asset_dtype = pl.Series(assets[:1]).dtype if assets else pl.String
    rule_names = record.rule_names

    asset_ids = pl.Series("asset_id", assets, dtype=asset_dtype)
    rule_labels = _label_table(["", *rule_names])  # code -1: the strategy

    def asset_col(idx: np.ndarray) -> pl.Series:
        return asset_ids[idx.astype(np.int64)]

    def rule_col(idx: np.ndarray, name: str = "rule") -> pl.Series:
        return _labels(rule_labels, idx + 1, name)

    cash, positions = record.cash, record.positions_value
    equity = pl.DataFrame(
        {
            "timestamp": pl.Series(calendar, dtype=UTC_US),
            "cash": cash,
            "positions_value": positions,
            "equity": cash + positions,
            # the benchmark's value (`engine.benchmark`); no column without a benchmark
            **({} if record.benchmark is None else {"benchmark": record.benchmark}),
        }
    )

    book = record.fills  # FILL_DTYPE columns: int64 and float64 already
    f = _orders_only(book)  # (the rows of corporate actions have their own table)
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

    r = columns(record.rejections, REJECTION_DTYPE)
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
    all_orders = record.orders
    ids = all_orders.order_id
    if ids.shape[0] > 1 and not bool(np.all(ids[1:] > ids[:-1])):  # logged out of id order
        all_orders = all_orders.take(np.argsort(ids, kind="stable"))
    created = all_orders.created_bar
    filled_qty, status = _order_outcomes(
        all_orders, f, r, np.asarray(record.final_state.pending["order_id"], dtype=np.int64)
    )
    orders = pl.DataFrame(
        [
            pl.Series("order_id", all_orders.order_id, dtype=pl.Int64),
            _stamp(created, calendar, first_bar).alias("created_at"),
            asset_col(all_orders.asset),
            _side(all_orders.qty),
            pl.Series("qty", np.abs(all_orders.qty), dtype=pl.Int64),
            pl.Series("filled_qty", filled_qty, dtype=pl.Int64),
            _labels(_ORDER_LABELS, all_orders.order_type, "order_type"),
            pl.Series("limit_price", all_orders.limit_price),
            pl.Series("stop_price", all_orders.stop_price),
            pl.Series("trail_pct", all_orders.trail_pct),
            _labels(_EXIT_LABELS, all_orders.reason, "reason"),
            rule_col(all_orders.rule),
            _labels(_STATUS_LABELS, status, "status"),
        ]
    )
    trades = _trades(record, asset_col, rule_col)
    actions = _actions(record, asset_col)
    periods = record.periods_per_year
    if periods is None:
        periods = periods_per_year(calendar)
    metrics = compute_metrics(
        equity, trades, fills, start_equity=record.start_equity, periods=periods
    )
    extra: dict[str, Any] = {"benchmark": _benchmark_section(record, equity, periods)}
    if record.actions is not None:
        extra["corporate_actions"] = _action_counts(actions)
    return BacktestResult(
        equity=equity,
        fills=fills,
        orders=orders,
        trades=trades,
        rejections=rejections,
        actions=actions,
        metrics=metrics,
        start_equity=record.start_equity,
        final_cash=float(record.final_cash),
        final_equity=record.final_equity,
        bars=record.n_rows,
        wall_s=wall_s,
        final_state=record.final_state,
        negative_cash_fills=record.negative_cash_fills,
        extra=extra,
    )


def _benchmark_section(record: RunRecord, equity: pl.DataFrame, periods: float) -> dict[str, Any]:
    """summary.json's `benchmark`: what it is, its own figures and the strategy's against it."""
    section = dict(record.benchmark_info)
    values = record.benchmark
    if values is None or record.benchmark_start is None or values.shape[0] == 0:
        return section
    section["final_value"] = float(values[-1])
    section |= relative_metrics(
        equity["equity"].to_numpy(), record.start_equity, values, record.benchmark_start, periods
    )
    return section


def _trades(record: RunRecord, asset_col: Any, rule_col: Any) -> pl.DataFrame:
    """The trade table: the run's trades with prices and P&L derived column-wise; trades
    still open are marked at the last close (exit_reason = open)."""
    calendar, first_bar = record.timestamps, record.first_bar
    t = record.trades
    s = t.sums
    still_open = t.exit_fill < 0
    last_bar = record.last_bar
    open_qty = np.where(still_open, record.final_qty[t.asset], 0)
    mark = np.where(still_open, record.last_close[t.asset], 0.0)
    long = t.long
    entry_qty = np.where(long, s["buy_qty"], s["sell_qty"])
    exit_qty = np.where(long, s["sell_qty"], s["buy_qty"])
    dividends, in_lieu = s["trade_dividends"], s["trade_cash_in_lieu"]
    gross = s["sell_notional"] - s["buy_notional"]
    gross = np.where(still_open, gross + open_qty * mark, gross) + in_lieu + dividends
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
    reason = np.where(still_open, _STILL_OPEN, t.exit_reason)
    rule = np.where(still_open, -1, t.exit_rule)
    in_window = (entry_bar >= first_bar) & (entry_bar - first_bar < calendar.shape[0])
    entry_us = (
        calendar[np.where(in_window, entry_bar - first_bar, 0)] if calendar.size else entry_bar
    )
    # a trade carried from an earlier run: its entry time as that run saved it
    carried = record.carried_entry_us
    if carried is not None and t.asset.shape[0]:
        saved = carried[t.asset]
        known = ~in_window & (saved != NO_TIME)
        entry_us = np.where(known, saved, entry_us)
        in_window = in_window | known
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
            pl.Series("dividends", dividends, dtype=pl.Float64),
            pl.Series("cash_in_lieu", in_lieu, dtype=pl.Float64),
            pl.Series("splits", s["trade_splits"], dtype=pl.Int64),
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


_ACTION_REASONS = np.array([OrderReason.SPLIT, OrderReason.DIVIDEND], dtype=np.int64)
_ACTION_LABELS = {int(OrderReason.SPLIT): "split", int(OrderReason.DIVIDEND): "dividend"}
ACTIONS_SCHEMA = pl.Schema(
    {
        "timestamp": UTC_US,
        "bar": pl.Int64(),
        "asset_id": pl.String(),  # (the asset id's own dtype when there are rows)
        "action": pl.String(),
        "split_ratio": pl.Float64(),
        "dividend": pl.Float64(),
        "qty_before": pl.Int64(),
        "qty_after": pl.Int64(),
        "cash": pl.Float64(),
        "ref_price": pl.Float64(),
    }
)


def _orders_only(book: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The fill book without the rows of corporate actions (which have no order)."""
    reason = book["reason"]
    ours = ~np.isin(reason, _ACTION_REASONS)
    if bool(ours.all()):
        return book
    return {name: column[ours] for name, column in book.items()}


def _actions(record: RunRecord, asset_col: Any) -> pl.DataFrame:
    """What each corporate action did to the account, in the order applied: a split's
    shares before and after and the cash paid for fractions (a split that leaves no whole
    share pays the whole position at the previous close), a dividend's cash."""
    rows = record.actions or []
    if not rows:
        schema = dict(ACTIONS_SCHEMA)
        if record.asset_ids:
            schema["asset_id"] = pl.Series(record.asset_ids[:1]).dtype
        return pl.DataFrame(schema=schema)
    bar = np.array([r.bar for r in rows], dtype=np.int64)
    return pl.DataFrame(
        [
            _stamp(bar, record.timestamps, record.first_bar),
            pl.Series("bar", bar, dtype=pl.Int64),
            asset_col(np.array([r.asset for r in rows], dtype=np.int64)),
            pl.Series("action", [_ACTION_LABELS[r.kind] for r in rows], dtype=pl.String),
            pl.Series("split_ratio", [r.split_ratio for r in rows], dtype=pl.Float64),
            pl.Series("dividend", [r.dividend for r in rows], dtype=pl.Float64),
            pl.Series("qty_before", [r.qty_before for r in rows], dtype=pl.Int64),
            pl.Series("qty_after", [r.qty_after for r in rows], dtype=pl.Int64),
            pl.Series("cash", [r.cash for r in rows], dtype=pl.Float64),
            pl.Series("ref_price", [r.ref_price for r in rows], dtype=pl.Float64),
        ]
    )


def _action_counts(actions: pl.DataFrame) -> dict[str, Any]:
    """The summary's `corporate_actions`: how many applied to the account, and their cash."""
    split = actions.filter(pl.col("action") == "split")
    dividend = actions.filter(pl.col("action") == "dividend")
    return {
        "splits": split.height,
        "dividends": dividend.height,
        "dividend_cash": float(dividend["cash"].sum()),
        "cash_in_lieu": float(split["cash"].sum()),
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0."""
    out = np.full(numerator.shape[0], np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _order_outcomes(
    orders: Orders,
    fills: dict[str, np.ndarray],
    rejections: dict[str, np.ndarray],
    working: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per order (sorted by id): the shares filled, and its status code: `open` while it still
    works at the end; else `filled` when nothing of it was refused; else by how its rest
    ended: `partially_filled` if some of it filled, otherwise `cancelled`, `expired` or
    `rejected` from the reason."""
    ids = orders.order_id
    n = ids.shape[0]
    filled = np.zeros(n, dtype=np.int64)
    ended = np.full(n, -1, dtype=np.int64)  # the reason code of the last refusal
    if n:
        for column, into in ((fills, None), (rejections, ended)):
            pos = np.minimum(np.searchsorted(ids, column["order_id"]), n - 1)
            ours = ids[pos] == column["order_id"]  # a carried order may be of an earlier run
            if into is None:
                np.add.at(filled, pos[ours], np.abs(column["qty"][ours]))
            else:
                into[pos[ours]] = column["reason"][ours]
    status = np.full(n, _STATUS_CODE[OrderStatus.FILLED], dtype=np.int64)
    refused = ended >= 0
    status[refused] = np.where(
        filled[refused] > 0,
        _STATUS_CODE[OrderStatus.PARTIALLY_FILLED],
        _ENDED_AS[ended[refused]],
    )
    status[np.isin(ids, working)] = _STATUS_CODE[OrderStatus.OPEN]
    return filled, status
