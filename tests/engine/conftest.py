"""Tiny hand-written markets for the engine's unit tests, and a scripted strategy.

Every helper builds polars frames in the layout a user brings (timestamp UTC, asset_id,
open/high/low/close/volume; signals; context), so the tests go through the public
`run_backtest` entry point exactly as a notebook would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ml4t_pipeline.engine import (
    BacktestResult,
    Batch,
    OrderType,
    RunConfig,
    Strategy,
    run_backtest,
    run_config_from_dict,
)
from ml4t_pipeline.engine.strategy.views import ContextView
from tests.invariants import assert_backtest_invariants

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
#: One bar as (open, high, low, close); None means the asset has no bar at that timestamp.
Bar = tuple[float, float, float, float] | None


def stamp(bar: int) -> dt.datetime:
    """The timestamp of bar `bar` (daily bars from 2024-01-01, UTC)."""
    return T0 + dt.timedelta(days=bar)


def flat(price: float) -> tuple[float, float, float, float]:
    """A bar that trades at one price all day."""
    return (price, price, price, price)


def bars(asset: str, rows: Sequence[Bar], volume: float = 1_000_000.0) -> pl.DataFrame:
    """Price rows of one asset, bar k stamped `stamp(k)`; None rows are left out."""
    kept = [(k, r) for k, r in enumerate(rows) if r is not None]
    return pl.DataFrame(
        {
            "timestamp": [stamp(k) for k, _ in kept],
            "asset_id": [asset] * len(kept),
            "open": [float(r[0]) for _, r in kept],
            "high": [float(r[1]) for _, r in kept],
            "low": [float(r[2]) for _, r in kept],
            "close": [float(r[3]) for _, r in kept],
            "volume": [float(volume)] * len(kept),
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )


def panel(**assets: Sequence[Bar]) -> pl.DataFrame:
    """`panel(A=[...], B=[...])`: the price frame of several assets."""
    return pl.concat([bars(name, rows) for name, rows in assets.items()])


def signals(**columns: Mapping[str, Sequence[float | None]]) -> pl.DataFrame:
    """`signals(atr={"A": [...]})`: one signal frame, values per asset by bar (None = unknown)."""
    assets = sorted({a for per_asset in columns.values() for a in per_asset})
    rows: dict[str, list[Any]] = {"timestamp": [], "asset_id": []}
    n_bars = max(len(v) for per_asset in columns.values() for v in per_asset.values())
    for asset in assets:
        for k in range(n_bars):
            rows["timestamp"].append(stamp(k))
            rows["asset_id"].append(asset)
    for name, per_asset in columns.items():
        rows[name] = [
            (per_asset[a][k] if a in per_asset and k < len(per_asset[a]) else None)
            for a in assets
            for k in range(n_bars)
        ]
    return pl.DataFrame(
        rows,
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")}
        | {name: pl.Float64 for name in columns},
    )


def context(**columns: Sequence[float | None]) -> pl.DataFrame:
    """`context(vix=[...])`: market-wide values by bar (None rows are left out)."""
    n_bars = max(len(v) for v in columns.values())
    return pl.DataFrame(
        {"timestamp": [stamp(k) for k in range(n_bars)]}
        | {
            name: [v[k] if k < len(v) else None for k in range(n_bars)]
            for name, v in columns.items()
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")}
        | {name: pl.Float64 for name in columns},
    )


def config(
    tmp_path: Path,
    *,
    risk: Sequence[Mapping[str, Any]] = (),
    **execution: Any,
) -> RunConfig:
    """A run config for frames passed to `run_backtest` (the data path is a placeholder)."""
    execution = {"initial_cash": 100_000.0, "allow_negative_cash": True} | execution
    return run_config_from_dict(
        {
            "data": {"prices": "unused.parquet"},
            "execution": execution,
            "strategy": {"name": "signal_threshold"},
            "risk": [dict(r) for r in risk],
        },
        base_dir=tmp_path,
        check_files=False,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """One order a `Scripted` strategy submits at the close of a given bar."""

    asset: str
    qty: int
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    stop_price: float | None = None
    trail_pct: float | None = None
    time_in_force: str = "gtc"


@dataclass(slots=True)
class Seen:
    """What a `Scripted` strategy saw at each close: position and cash."""

    position: dict[tuple[int, str], int] = field(default_factory=dict)
    cash: dict[int, float] = field(default_factory=dict)


class Scripted(Strategy):
    """Submits the orders scheduled for each bar index; records what it saw.

    `script[bar]` is a list of orders, or a callable of the strategy returning one (to react to
    the position the engine reports at that close).
    """

    def __init__(
        self,
        script: Mapping[int, Sequence[Order] | Callable[[Scripted], Sequence[Order]]],
    ) -> None:
        super().__init__()
        self.script = dict(script)
        self.seen = Seen()

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        bar = batch.bar_index
        for asset in batch.assets.tolist():
            self.seen.position[(bar, str(asset))] = self.get_position(asset)
        self.seen.cash[bar] = self.get_cash()
        planned = self.script.get(bar, ())
        orders = planned(self) if callable(planned) else planned
        for o in orders:
            self.submit_order(
                o.asset,
                o.qty,
                order_type=o.order_type,
                limit_price=o.limit_price,
                stop_price=o.stop_price,
                trail_pct=o.trail_pct,
                time_in_force=o.time_in_force,
            )


def run(
    cfg: RunConfig,
    strategy: Strategy,
    prices: pl.DataFrame,
    out_dir: Path,
    *,
    signals: pl.DataFrame | None = None,
    context: pl.DataFrame | None = None,
) -> BacktestResult:
    """Run, write the result tables under `out_dir`, and check the suite-wide invariants."""
    result = run_backtest(cfg, strategy=strategy, prices=prices, signals=signals, context=context)
    result.write(out_dir)
    assert_backtest_invariants(out_dir, prices=prices)
    return result


def rows(frame: pl.DataFrame, *columns: str) -> list[tuple[Any, ...]]:
    """The chosen columns of a table as tuples, in table order (easy to compare by hand)."""
    return list(frame.select(columns).iter_rows())


def col(frame: pl.DataFrame, name: str) -> list[Any]:
    """One column as a list (compare floats with `pytest.approx`)."""
    return frame[name].to_list()
