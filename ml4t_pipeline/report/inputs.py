"""What a report is made of: the tables of one run and its summary, from memory or a results dir.

A results directory (`ml4t-pipeline backtest --out DIR`) holds the Parquet tables and
`summary.json`; `read_results_dir` reads the ones the report uses and names the first missing
file or column. The optional benchmark (a `benchmark` column of equity.parquet: its value in
account currency per bar; a `benchmark` section of summary.json) is used when present.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from ml4t_pipeline.engine.results.output import REPORT_FILE
from ml4t_pipeline.errors import Ml4tError, clipped

__all__ = ["REPORT_FILE", "ReportError", "ReportInputs", "read_results_dir"]

BENCHMARK = "benchmark"
SUMMARY_FILE = "summary.json"
#: the tables the report reads, and the columns it needs of each
COLUMNS: Mapping[str, tuple[str, ...]] = {
    "equity": ("timestamp", "equity", "positions_value"),
    "trades": ("asset_id", "exit_time", "bars_held", "pnl", "exit_reason"),
    "fills": ("timestamp", "qty", "price"),
    "rejections": ("reason", "qty"),
    "attribution": ("dimension", "key", "trades", "win_rate", "pnl", "costs", "avg_return_pct"),
}
START_KEY = "initial_cash"  # summary.json: the equity before the first bar


class ReportError(Ml4tError):
    """A folder that is not a results directory, or one missing a file or column the report needs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportInputs:
    equity: pl.DataFrame  # timestamp, equity, positions_value [, benchmark]
    trades: pl.DataFrame
    fills: pl.DataFrame
    rejections: pl.DataFrame
    attribution: pl.DataFrame
    summary: Mapping[str, Any]  # summary.json's content (initial_cash [, benchmark section])
    title: str = "Backtest report"

    def __post_init__(self) -> None:
        for name, needed in COLUMNS.items():
            _check_columns(getattr(self, name), needed, f"{name} table")
        if not isinstance(self.summary.get(START_KEY), int | float):
            msg = f"the summary has no number {START_KEY!r} (the equity before the first bar)"
            raise ReportError(msg)

    @property
    def start_equity(self) -> float:
        return float(self.summary[START_KEY])

    @property
    def benchmark_values(self) -> pl.Series | None:
        """The benchmark's value per bar, when the run had one."""
        return self.equity[BENCHMARK] if BENCHMARK in self.equity.columns else None

    @property
    def benchmark_summary(self) -> Mapping[str, Any]:
        """summary.json's benchmark section ({} without one); null values stay None."""
        section = self.summary.get(BENCHMARK)
        return section if isinstance(section, Mapping) else {}


def _check_columns(frame: pl.DataFrame, needed: tuple[str, ...], where: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        msg = f"{where} has no column {', '.join(missing)} (it has: {', '.join(frame.columns)})"
        raise ReportError(clipped(msg, 600))


def read_results_dir(folder: str | Path) -> ReportInputs:
    """The report's inputs from a results directory; `ReportError` naming what is missing."""
    root = Path(folder)
    if not root.is_dir():
        msg = f"--results {clipped(str(root))} is not a folder (give a backtest's --out folder)"
        raise ReportError(msg)
    tables: dict[str, pl.DataFrame] = {}
    for name, needed in COLUMNS.items():
        path = root / f"{name}.parquet"
        if not path.is_file():
            msg = f"{path} is missing: {root} is not a backtest results directory"
            raise ReportError(msg)
        try:
            tables[name] = pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            msg = f"{path} cannot be read as Parquet: {clipped(str(exc))}"
            raise ReportError(msg) from exc
        _check_columns(tables[name], needed, str(path))
    summary_path = root / SUMMARY_FILE
    if not summary_path.is_file():
        msg = f"{summary_path} is missing: {root} is not a backtest results directory"
        raise ReportError(msg)
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{summary_path} cannot be read as JSON: {clipped(str(exc))}"
        raise ReportError(msg) from exc
    if not isinstance(summary, dict) or not isinstance(summary.get(START_KEY), int | float):
        msg = f"{summary_path} has no number {START_KEY!r} (the equity before the first bar)"
        raise ReportError(msg)
    return ReportInputs(
        equity=tables["equity"],
        trades=tables["trades"],
        fills=tables["fills"],
        rejections=tables["rejections"],
        attribution=tables["attribution"],
        summary=summary,
    )
