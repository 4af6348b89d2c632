"""Regenerate `report.html` inside a results directory, replacing that one file atomically."""

from __future__ import annotations

from pathlib import Path

from ml4t_pipeline.engine.results.output import RESULT_FILES
from ml4t_pipeline.engine.results.publish import replace_member
from ml4t_pipeline.report.html import render_report
from ml4t_pipeline.report.inputs import REPORT_FILE, read_results_dir


def write_report(folder: str | Path) -> Path:
    """Read the results in `folder`, render the report and rename it into `folder` (under the
    writers' lock, so a backtest publishing the same folder waits); returns its path."""
    page = render_report(read_results_dir(folder))

    def write(path: Path) -> None:
        path.write_text(page, encoding="utf-8")

    return replace_member(folder, REPORT_FILE, write, names=RESULT_FILES)
