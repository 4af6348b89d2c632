"""Where the charts are drawn does not change a byte: the CLI's helper process, this process,
and a helper that dies half way (its charts are then drawn here)."""

from __future__ import annotations

from pathlib import Path

from ml4t_pipeline.cli import main
from ml4t_pipeline.report import read_results_dir, render_report
from ml4t_pipeline.report.drawing import ChartProcess, InProcess
from tests.report.conftest import add_benchmark, copy_results


def test_the_helper_process_draws_the_bytes_drawn_here(results: Path, tmp_path: Path) -> None:
    folder = copy_results(results, tmp_path / "run")
    add_benchmark(folder)
    inputs = read_results_dir(folder)
    here = render_report(inputs, InProcess())
    with ChartProcess() as helper:
        assert render_report(inputs, helper) == here
        assert render_report(inputs, helper) == here  # and again, on the same helper
    assert render_report(inputs) == here


def test_a_helper_that_dies_leaves_its_charts_to_this_process(
    results: Path, tmp_path: Path
) -> None:
    inputs = read_results_dir(results)
    here = render_report(inputs, InProcess())
    with ChartProcess() as helper:
        helper._process.kill()  # e.g. the OOM killer
        helper._process.join()
        assert render_report(inputs, helper) == here


def test_the_cli_report_equals_the_report_command(report_config: Path, tmp_path: Path) -> None:
    """`backtest` draws in its helper process; `report --results` draws here."""
    out = tmp_path / "out"
    assert main(["backtest", "--config", str(report_config), "--out", str(out)]) == 0
    written = (out / "report.html").read_bytes()
    assert main(["report", "--results", str(out)]) == 0
    assert (out / "report.html").read_bytes() == written
