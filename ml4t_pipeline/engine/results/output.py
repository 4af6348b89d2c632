"""`BacktestResult`: the tables of a run, its summary, and their atomic Parquet output."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ml4t_pipeline.engine.results.attribution import attribution
from ml4t_pipeline.engine.state import EngineState

TABLES = ("equity", "fills", "orders", "trades", "rejections", "attribution")


@dataclass(slots=True)
class BacktestResult:
    equity: pl.DataFrame
    fills: pl.DataFrame
    orders: pl.DataFrame
    trades: pl.DataFrame
    rejections: pl.DataFrame
    metrics: dict[str, float]
    start_equity: float  # the equity before the first bar (the initial cash unless chained)
    final_cash: float
    final_equity: float
    bars: int
    wall_s: float
    final_state: EngineState
    #: fills that left cash below zero though negative cash is not allowed: covers, exits and
    #: sells' commissions reduce risk and are never refused for cash, but never unnoticed
    negative_cash_fills: int = 0
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
            "initial_cash": self.start_equity,  # the CLI's JSON key, kept for its readers
            "fills": self.fills.height,
            "trades": int(self.metrics.get("n_trades", 0)),
            "rejections": self.rejections.height,
            "negative_cash_fills": self.negative_cash_fills,
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
