"""`BacktestResult`: the tables of a run, its summary, and their Parquet output, published whole."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ml4t_pipeline.engine.results.attribution import attribution
from ml4t_pipeline.engine.results.publish import LOCK_TIMEOUT_S, publish_dir
from ml4t_pipeline.engine.state import EngineState

TABLES = ("equity", "fills", "orders", "trades", "rejections", "actions", "attribution")
REPORT_FILE = "report.html"  # the tear sheet (`ml4t_pipeline.report`), written on request
RESULT_FILES = frozenset(
    {*(f"{name}.parquet" for name in TABLES), "summary.json", "state.json", REPORT_FILE}
)


@dataclass(slots=True)
class BacktestResult:
    equity: pl.DataFrame
    fills: pl.DataFrame
    orders: pl.DataFrame
    trades: pl.DataFrame
    rejections: pl.DataFrame
    actions: pl.DataFrame  # what corporate actions did to the account (splits, dividends)
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
        """The JSON summary line of the CLI (wall_s covers the engine; the CLI may override).
        A value the run does not define (NaN, +-inf: `results.metrics`) is None (JSON null)."""
        summary = {
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
        return json_ready(summary)

    def write(
        self,
        out_dir: str | Path,
        *,
        report: bool = False,
        lock_timeout_s: float = LOCK_TIMEOUT_S,
        drawing: Any = None,
    ) -> Path:
        """Write every table + summary.json + state.json (+ report.html with `report`) and
        publish them together as `out_dir`. `drawing` (`report.drawing`) is where the report's
        figures are drawn, while the tables are written (default: here, first).

        `publish.publish_dir` states the guarantees: the directory is swapped as a whole (a
        crash or a reader sees the complete old or the complete new set), data is fsynced
        first, concurrent writers of one `out_dir` wait for each other, leftovers of a killed
        run are removed, a directory holding anything but result files is refused. A report
        of an earlier run in `out_dir` goes with the old set.
        """
        members: dict[str, Callable[[Path], None]] = {
            f"{name}.parquet": functools.partial(write_table, getattr(self, name))
            for name in TABLES
        }
        summary = self._summary_json()
        members["summary.json"] = functools.partial(write_text, summary)
        members["state.json"] = functools.partial(write_text, self.final_state.to_json())
        if report:
            from ml4t_pipeline.report.html import start_report

            pending = start_report(self._report_inputs(), drawing)
            members[REPORT_FILE] = lambda path: write_text(pending.html(), path)
        publish_dir(out_dir, members, optional=RESULT_FILES, lock_timeout_s=lock_timeout_s)
        return Path(out_dir)

    def _summary_json(self) -> str:
        return json.dumps(_deterministic(self.summary()), indent=2, sort_keys=True, allow_nan=False)

    def _report_inputs(self) -> Any:
        from ml4t_pipeline.report import ReportInputs

        return ReportInputs(
            equity=self.equity,
            trades=self.trades,
            fills=self.fills,
            rejections=self.rejections,
            attribution=self.attribution,
            summary=json.loads(self._summary_json()),  # what summary.json holds
        )

    def report(self, path: str | Path | None = None) -> str:
        """The tear sheet (`ml4t_pipeline.report`) as an HTML string; also written to `path`."""
        from ml4t_pipeline.report import render_report

        page: str = render_report(self._report_inputs())
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page

    def _repr_html_(self) -> str:
        """A notebook's view: the headline table and a small equity + drawdown chart."""
        from ml4t_pipeline.report import render_summary

        summary: str = render_summary(self._report_inputs())
        return summary

    def to_pandas(self) -> dict[str, Any]:
        """Every table (and the attribution) as a pandas DataFrame, by name; needs the
        `pandas` extra."""
        if importlib.util.find_spec("pandas") is None:
            msg = "to_pandas() needs pandas: pip install 'ml4t-pipeline[pandas]'"
            raise ModuleNotFoundError(msg, name="pandas")
        return {name: getattr(self, name).to_pandas() for name in TABLES}


def json_ready(value: Any) -> Any:
    """`value` with every float that is not finite (NaN, +-inf) replaced by None, in nested
    dicts and lists too: JSON has no such numbers (`NaN` / `Infinity` tokens are not JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def write_table(frame: pl.DataFrame, path: Path) -> None:
    """A result table as Parquet, without column statistics (the same rows, the same bytes)."""
    frame.write_parquet(path, statistics=False)


def write_text(text: str, path: Path) -> None:
    path.write_text(text, encoding="utf-8")


def _deterministic(summary: dict[str, Any]) -> dict[str, Any]:
    """summary.json leaves out wall-clock numbers so identical inputs give identical files."""
    return {k: v for k, v in summary.items() if not k.endswith(("wall_s", "per_s"))}
