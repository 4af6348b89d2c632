"""Invariants every backtest in the suite must satisfy, checked on its output tables.

Call `assert_backtest_invariants(out_dir, prices=...)` after any run that wrote its results,
`assert_result_invariants(result, prices=...)` on an in-memory result, or
`check_backtest_tables(...)` with bare frames. The checks rebuild the
account from the fills table alone (cash from signed notionals and commissions, positions from
signed quantities marked at each bar's close) and compare it with what the engine reported:

- equity == cash + positions_value on every bar; no NaN in the equity curve;
- cash on every bar == initial cash - cumulative signed notional - cumulative commission
  + the cash of corporate actions (dividends, fractions of splits);
- positions_value on every bar == sum(qty * close), closes carried forward over missing bars;
- every fill: qty > 0, side buy/sell, commission >= 0, timestamp on the equity timeline, price
  inside [low, high] of its own bar (before slippage);
- protective-stop exits are gap-aware: never worse than the open (long exit <= open);
- the summary agrees with the tables (fill count, final cash, final equity, initial cash).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from ml4t_pipeline.engine.tolerances import FILL_BAR_RTOL

#: Money amounts summed in a different order agree to this relative tolerance.
REL_TOL = 1e-9
#: ... and to this absolute tolerance (currency units) near zero.
ABS_TOL = 1e-6
#: Fills are compared with the bars as written in the prices file: the engine may have widened a
#: bar within the OHLC tolerance (split-adjusted data), and prices rebuilt from (price,
#: slippage) carry round-off; the slack is far below a cent.
PRICE_REL_TOL = FILL_BAR_RTOL
STOP_REASONS = frozenset({"stop_loss", "trailing_stop", "volatility_stop"})


def utc_us(df: pl.DataFrame, column: str = "timestamp") -> pl.DataFrame:
    """Add `ts_us`: the column as UTC epoch microseconds (naive values are read as UTC)."""
    dtype = df.schema[column]
    if not isinstance(dtype, pl.Datetime):
        msg = f"column {column!r} must be a Datetime, got {dtype}"
        raise TypeError(msg)
    ts = pl.col(column)
    utc = ts.dt.replace_time_zone("UTC") if dtype.time_zone is None else ts
    return df.with_columns(utc.dt.convert_time_zone("UTC").dt.epoch("us").alias("ts_us"))


def _close(actual: float, expected: float, scale: float) -> bool:
    return abs(actual - expected) <= REL_TOL * max(abs(actual), abs(expected), scale, 1.0)


def _mismatches(
    what: str, ts_us: np.ndarray, actual: np.ndarray, expected: np.ndarray, scale: float
) -> list[str]:
    bad = np.flatnonzero(
        ~(np.abs(actual - expected) <= REL_TOL * np.maximum(np.maximum(np.abs(actual), scale), 1.0))
    )
    return [
        f"{what} at ts_us={int(ts_us[i])}: "
        f"engine {float(actual[i])!r} != rebuilt {float(expected[i])!r}"
        for i in bad[:3]
    ] + ([f"... {bad.size} {what} mismatches in all"] if bad.size > 3 else [])


def _check_fill_rows(fills: pl.DataFrame, prices: pl.DataFrame) -> list[str]:
    problems: list[str] = []
    if fills.height == 0:
        return problems
    if (fills["qty"] <= 0).any():
        problems.append(f"non-positive fill qty: {fills.filter(pl.col('qty') <= 0).head(3)}")
    sides = set(fills["side"].unique().to_list())
    if not sides <= {"buy", "sell"}:
        problems.append(f"unknown fill sides {sides}")
    commission = fills["commission"]
    if commission.is_null().any() or commission.is_nan().any() or (commission < 0).any():
        problems.append(
            f"commission negative or missing: {fills.filter(~(pl.col('commission') >= 0)).head(3)}"
        )
    bars = utc_us(prices).select("ts_us", "asset_id", "open", "high", "low")
    joined = utc_us(fills).join(bars, on=["ts_us", "asset_id"], how="left")
    no_bar = joined.filter(pl.col("low").is_null())
    if no_bar.height:
        problems.append(
            f"{no_bar.height} fill(s) on a (timestamp, asset_id) with no bar: {no_bar.head(3)}"
        )
    # `slippage` is the fill's total cost |qty| * |price - price before slippage|
    slip = pl.col("slippage").fill_null(0.0) if "slippage" in joined.columns else pl.lit(0.0)
    sign = pl.when(pl.col("side") == "buy").then(1.0).otherwise(-1.0)
    slack = PRICE_REL_TOL * pl.col("high")
    joined = joined.with_columns((pl.col("price") - sign * slip / pl.col("qty")).alias("raw_price"))
    outside = joined.filter(
        pl.col("low").is_not_null()
        & (
            (pl.col("raw_price") < pl.col("low") - slack)
            | (pl.col("raw_price") > pl.col("high") + slack)
        )
    )
    if outside.height:
        problems.append(f"{outside.height} fill price(s) outside [low, high]: {outside.head(3)}")
    if "reason" in joined.columns:
        stops = joined.filter(pl.col("reason").is_in(list(STOP_REASONS)))
        worse = stops.filter(
            ((pl.col("side") == "sell") & (pl.col("raw_price") > pl.col("open") + slack))
            | ((pl.col("side") == "buy") & (pl.col("raw_price") < pl.col("open") - slack))
        )
        if worse.height:
            problems.append(f"{worse.height} stop exit(s) filled beyond the open: {worse.head(3)}")
    return problems


def _closes_carried(
    prices: pl.DataFrame,
    ts_us: np.ndarray,
    assets: list[Any],
    actions: pl.DataFrame | None = None,
) -> np.ndarray:
    """(bars x assets) closes on the equity timeline, carried forward over missing bars; a
    close carried over a split (`actions` rows, `ts_us` added) is in the new shares (/ ratio)."""
    px = utc_us(prices).select("ts_us", "asset_id", "close")
    close = np.full((ts_us.shape[0], len(assets)), np.nan)
    col_of = {a: j for j, a in enumerate(assets)}
    rows = np.searchsorted(ts_us, px["ts_us"].to_numpy())
    for row, t, a, c in zip(
        rows, px["ts_us"].to_list(), px["asset_id"].to_list(), px["close"].to_list(), strict=True
    ):
        if a in col_of and row < ts_us.shape[0] and ts_us[row] == t:
            close[row, col_of[a]] = c
    divisor = np.ones(close.shape)
    if actions is not None:
        for row in actions.filter(pl.col("action") == "split").iter_rows(named=True):
            if row["asset_id"] in col_of:
                at = int(np.searchsorted(ts_us, row["ts_us"]))
                divisor[at, col_of[row["asset_id"]]] *= row["split_ratio"]
    for i in range(1, close.shape[0]):
        missing = np.isnan(close[i])
        close[i, missing] = close[i - 1, missing] / divisor[i, missing]
    return close


def _check_account(
    fills: pl.DataFrame,
    equity: pl.DataFrame,
    prices: pl.DataFrame,
    initial_cash: float,
    actions: pl.DataFrame | None = None,
) -> list[str]:
    problems: list[str] = []
    eq = utc_us(equity)
    ts_us = eq["ts_us"].to_numpy()
    cash = eq["cash"].to_numpy()
    pv = eq["positions_value"].to_numpy()
    total = eq["equity"].to_numpy()
    if eq.height == 0:
        return ["equity curve is empty"]
    if np.isnan(np.stack([cash, pv, total])).any():
        problems.append("NaN in the equity curve (cash, positions_value or equity)")
    if not (np.diff(ts_us) > 0).all():
        problems.append("equity timestamps are not strictly increasing")
    scale = max(initial_cash, float(np.nanmax(np.abs(total))))
    problems += _mismatches("equity vs cash + positions_value", ts_us, total, cash + pv, scale)

    f = utc_us(fills)
    acts = utc_us(actions) if actions is not None and actions.height else None
    assets = sorted(
        set(f["asset_id"].to_list())
        | (set(acts["asset_id"].to_list()) if acts is not None else set())
    )
    row = np.searchsorted(ts_us, f["ts_us"].to_numpy())
    off_timeline = (row >= ts_us.shape[0]) | (
        ts_us[np.minimum(row, ts_us.shape[0] - 1)] != f["ts_us"].to_numpy()
    )
    if off_timeline.any():
        return [*problems, f"{int(off_timeline.sum())} fill(s) stamped off the equity timeline"]
    sign = np.where(f["side"].to_numpy() == "buy", 1, -1)
    qty = f["qty"].to_numpy().astype(np.int64)
    price = f["price"].to_numpy()
    commission = f["commission"].to_numpy()
    flow = np.zeros(ts_us.shape[0])
    np.add.at(flow, row, -(sign * qty * price) - commission)
    held = np.zeros((ts_us.shape[0], len(assets)), dtype=np.int64)
    if acts is not None:  # corporate actions: cash (dividends, fractions) and shares moved
        act_row = np.searchsorted(ts_us, acts["ts_us"].to_numpy())
        np.add.at(flow, act_row, acts["cash"].to_numpy())
        act_col = np.array([assets.index(a) for a in acts["asset_id"].to_list()], dtype=np.int64)
        moved = (acts["qty_after"] - acts["qty_before"]).to_numpy()
        np.add.at(held, (act_row, act_col), moved)
    problems += _mismatches("cash", ts_us, cash, initial_cash + np.cumsum(flow), scale)

    col = np.array([assets.index(a) for a in f["asset_id"].to_list()], dtype=np.int64)
    np.add.at(held, (row, col), sign * qty)
    held = np.cumsum(held, axis=0)
    close = _closes_carried(prices, ts_us, assets, acts)
    unpriced = (held != 0) & np.isnan(close)
    if unpriced.any():
        problems.append(f"{int(unpriced.sum())} (bar, asset) holding(s) with no close to mark at")
    rebuilt_pv = np.where(held != 0, held * np.nan_to_num(close), 0.0).sum(axis=1)
    problems += _mismatches("positions_value", ts_us, pv, rebuilt_pv, scale)
    return problems


def check_backtest_tables(
    *,
    fills: pl.DataFrame,
    equity: pl.DataFrame,
    prices: pl.DataFrame,
    initial_cash: float,
    final_cash: float | None = None,
    summary: dict[str, Any] | None = None,
    actions: pl.DataFrame | None = None,
) -> None:
    """Raise AssertionError listing every broken invariant of one backtest result
    (`actions`: the corporate-actions table, whose cash and shares count too)."""
    problems = _check_fill_rows(fills, prices) + _check_account(
        fills, equity, prices, initial_cash, actions
    )
    signed = np.where(fills["side"].to_numpy() == "buy", 1.0, -1.0) * fills["qty"].to_numpy()
    expected_cash = (
        initial_cash
        - float(np.sum(signed * fills["price"].to_numpy()))
        - float(fills["commission"].sum())
        + (float(actions["cash"].sum()) if actions is not None else 0.0)
    )
    last_cash = float(equity["cash"][-1]) if equity.height else math.nan
    for label, value in (("equity table", last_cash), ("reported", final_cash)):
        if value is not None and not _close(value, expected_cash, initial_cash):
            problems.append(f"final cash ({label}) {value!r} != reconciled {expected_cash!r}")
    if summary is not None:
        if int(summary["fills"]) != fills.height:
            problems.append(f"summary fills {summary['fills']} != fills table rows {fills.height}")
        for key, value in (
            ("final_cash", last_cash),
            ("final_equity", float(equity["equity"][-1])),
        ):
            if key in summary and not _close(float(summary[key]), value, initial_cash):
                problems.append(f"summary {key} {summary[key]!r} != equity table {value!r}")
    if problems:
        raise AssertionError("backtest invariants broken:\n- " + "\n- ".join(problems))


class ResultLike(Protocol):
    """What an in-memory backtest result offers (e.g. `ml4t_pipeline.engine.BacktestResult`)."""

    @property
    def fills(self) -> pl.DataFrame: ...
    @property
    def equity(self) -> pl.DataFrame: ...
    @property
    def start_equity(self) -> float: ...
    @property
    def final_cash(self) -> float: ...
    def summary(self) -> dict[str, Any]: ...


def assert_result_invariants(result: ResultLike, *, prices: Path | pl.DataFrame) -> None:
    """Check an in-memory result (no files written) against its prices input."""
    check_backtest_tables(
        fills=result.fills,
        equity=result.equity,
        prices=prices if isinstance(prices, pl.DataFrame) else pl.read_parquet(prices),
        initial_cash=result.start_equity,
        final_cash=result.final_cash,
        summary=result.summary(),
        actions=getattr(result, "actions", None),
    )


def assert_backtest_invariants(
    out_dir: Path, *, prices: Path | pl.DataFrame, initial_cash: float | None = None
) -> None:
    """Check the tables a run wrote under `out_dir` against its prices input.

    `initial_cash` defaults to the summary's `initial_cash`.
    """
    summary: dict[str, Any] = json.loads((out_dir / "summary.json").read_text())
    start_cash = float(summary["initial_cash"]) if initial_cash is None else initial_cash
    check_backtest_tables(
        fills=pl.read_parquet(out_dir / "fills.parquet"),
        equity=pl.read_parquet(out_dir / "equity.parquet"),
        prices=prices if isinstance(prices, pl.DataFrame) else pl.read_parquet(prices),
        initial_cash=start_cash,
        final_cash=float(summary["final_cash"]) if "final_cash" in summary else None,
        summary=summary,
        actions=pl.read_parquet(out_dir / "actions.parquet")
        if (out_dir / "actions.parquet").is_file()
        else None,
    )
