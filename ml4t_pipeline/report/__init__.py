"""The research report (tear sheet) of a backtest: one self-contained, deterministic HTML page.

`render_report(inputs)` draws it from a run's tables (`ReportInputs.from_result`, or
`read_results_dir` for a `backtest --out` folder); `write_report(folder)` regenerates
`report.html` inside a results folder, replacing that file alone. matplotlib is imported only
when a chart is drawn (`charts.py`).
"""

from ml4t_pipeline.report.html import equity_png, render_report, render_summary
from ml4t_pipeline.report.inputs import (
    REPORT_FILE,
    ReportError,
    ReportInputs,
    read_results_dir,
)
from ml4t_pipeline.report.write import write_report

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
