"""The research report (tear sheet) of a backtest: one self-contained, deterministic HTML page.

`render_report(inputs)` draws it from a run's tables (`ReportInputs.from_result`, or
`read_results_dir` for a `backtest --out` folder); `write_report(folder)` regenerates
`report.html` inside a results folder, replacing that file alone. matplotlib is imported only
when a chart is drawn (`charts.py`), and only where it is drawn (`drawing.py`).

The names below load their modules on first use (PEP 562), so a chart-drawing helper process
that imports `ml4t_pipeline.report.charts` does not also import polars and the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml4t_pipeline.report.html import equity_png, render_report, render_summary
    from ml4t_pipeline.report.inputs import (
        REPORT_FILE,
        ReportError,
        ReportInputs,
        read_results_dir,
    )
    from ml4t_pipeline.report.write import write_report

_HOME = {
    "equity_png": "html",
    "render_report": "html",
    "render_summary": "html",
    "REPORT_FILE": "inputs",
    "ReportError": "inputs",
    "ReportInputs": "inputs",
    "read_results_dir": "inputs",
    "write_report": "write",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = [
    "REPORT_FILE",
    "ReportError",
    "ReportInputs",
    "equity_png",
    "read_results_dir",
    "render_report",
    "render_summary",
    "write_report",
]
