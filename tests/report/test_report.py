"""report.html of a real backtest: every section, self-contained, byte-identical per input;
`ml4t-pipeline report --results` and its errors; with and without a benchmark."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from ml4t_pipeline.cli import main
from ml4t_pipeline.engine.results.attribution import SCHEMA as ATTRIBUTION_SCHEMA
from ml4t_pipeline.report import ReportInputs, read_results_dir, render_report
from tests.report.conftest import add_benchmark, copy_results

SECTIONS = ("headline", "equity", "returns", "rolling", "trades", "attribution", "rejections")
HEADINGS = (
    "Total return",
    "CAGR",
    "Volatility (annualised)",
    "Sharpe ratio",
    "Sortino ratio",
    "Max drawdown",
    "Information ratio",
    "Top drawdowns",
    "Monthly returns",
    "Annual returns",
    "Win rate",
    "Payoff ratio",
    "Mean holding time (bars)",
    "Best trade",
    "Worst trade",
    "By exit reason",
    "By rule",
    "By exit month",
    "By asset",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _row(page: str, label: str) -> list[str]:
    """The cells of the table row whose first cell is `label`."""
    found = re.search(rf"<tr><td>{re.escape(label)}</td>(.*?)</tr>", page)
    assert found, f"no row {label!r}"
    return re.findall(r"<td[^>]*>(.*?)</td>", found.group(1))


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def _digests(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_ino)
        for p in sorted(folder.iterdir())
    }


def test_the_report_has_every_section_and_needs_no_network(results: Path) -> None:
    page = (results / "report.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    for heading in HEADINGS:
        assert heading in page, heading
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing to fetch
    assert "<script" not in page
    images = _images(page)
    assert len(images) == 2
    assert all(png.startswith(PNG_SIGNATURE) for png in images)
    assert "Peak</th><th>Trough</th><th>Recovery" in page


def test_the_headline_reads_in_per_cent_and_two_decimals(results: Path) -> None:
    page = (results / "report.html").read_text(encoding="utf-8")
    summary = json.loads((results / "summary.json").read_text())
    total, bench = _row(page, "Total return")
    assert total == f"{100 * summary['total_return']:,.2f}%"
    benchmark = summary["benchmark"]  # the default: equal weight
    assert bench == f"{100 * benchmark['total_return']:,.2f}%"
    assert _row(page, "Max drawdown")[0] == f"{100 * summary['max_drawdown']:,.2f}%"
    assert _row(page, "Sharpe ratio")[0] == f"{summary['sharpe']:.2f}"
    assert _row(page, "Beta") == ["—", f"{benchmark['beta']:.2f}"]
    win_rate = _row(page, "Win rate")[0]
    assert win_rate == f"{100 * summary['win_rate']:.2f}%"


def test_rejections_are_counted_by_reason(results: Path) -> None:
    rejections = pl.read_parquet(results / "rejections.parquet")
    page = (results / "report.html").read_text(encoding="utf-8")
    assert rejections.height > 0  # the fixture's run is short of cash
    for reason, n in rejections.group_by("reason").len().iter_rows():
        assert _row(page, reason)[0] == f"{n:,}"


def test_two_renders_are_byte_identical_and_match_what_the_backtest_wrote(results: Path) -> None:
    inputs = read_results_dir(results)
    first, second = render_report(inputs), render_report(inputs)
    assert first == second
    assert first.encode() == (results / "report.html").read_bytes()


def test_report_rewrites_report_html_alone(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_results(results, tmp_path / "run")
    original = (folder / "report.html").read_bytes()
    (folder / "report.html").write_text("stale")
    before = _digests(folder)
    assert main(["report", "--results", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out)["report"] == str(folder / "report.html")
    after = _digests(folder)
    assert (folder / "report.html").read_bytes() == original
    assert {k: v for k, v in after.items() if k != "report.html"} == {
        k: v for k, v in before.items() if k != "report.html"
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging left beside it


def test_a_results_folder_without_a_report_gets_one(
    report_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["backtest", "--config", str(report_config), "--out", str(out), "--no-validate"]
    assert main([*argv, "--no-report"]) == 0
    assert not (out / "report.html").exists()
    assert main(["report", "--results", str(out)]) == 0
    assert (out / "report.html").stat().st_size > 10_000
    # a folder holding a report is still a result: --no-report replaces it, report and all
    assert main([*argv, "--no-report"]) == 0
    assert not (out / "report.html").exists()
    capsys.readouterr()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("no folder", "is not a folder"),
        ("no equity", "equity.parquet is missing"),
        ("no summary", "summary.json is missing"),
        ("no column", "has no column positions_value"),
        ("bad json", "summary.json cannot be read as JSON"),
        ("no cash", "has no number 'initial_cash'"),
        ("not parquet", "trades.parquet cannot be read as Parquet"),
    ],
)
def test_report_names_what_is_missing(
    results: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: str,
    expected: str,
) -> None:
    folder = tmp_path / "run" if damage == "no folder" else copy_results(results, tmp_path / "run")
    if damage == "no equity":
        (folder / "equity.parquet").unlink()
    elif damage == "no summary":
        (folder / "summary.json").unlink()
    elif damage == "no column":
        pl.read_parquet(folder / "equity.parquet").drop("positions_value").write_parquet(
            folder / "equity.parquet"
        )
    elif damage == "bad json":
        (folder / "summary.json").write_text("{not json")
    elif damage == "no cash":
        (folder / "summary.json").write_text('{"fills": 3}')
    elif damage == "not parquet":
        (folder / "trades.parquet").write_text("not parquet")
    assert main(["report", "--results", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert expected in err
    assert "Traceback" not in err


def test_report_refuses_a_folder_that_holds_other_files(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_results(results, tmp_path / "run")
    (folder / "notes.txt").write_text("mine")
    assert main(["report", "--results", str(folder)]) == 2
    assert "not a backtest result" in capsys.readouterr().err
    assert (folder / "notes.txt").read_text() == "mine"


def test_a_benchmark_is_drawn_and_tabled_when_present(results: Path, tmp_path: Path) -> None:
    folder = copy_results(results, tmp_path / "run")
    add_benchmark(folder)
    page = render_report(read_results_dir(folder))
    assert "<th>Benchmark (equal_weight)</th>" in page
    assert _row(page, "Total return")[1] == "8.12%"
    assert _row(page, "Sharpe ratio")[1] == "0.43"
    assert _row(page, "Beta") == ["—", "0.88"]
    assert _row(page, "Alpha (annualised)") == ["—", "—"]  # null in summary.json
    assert _row(page, "Tracking error") == ["—", "4.56%"]
    assert _row(page, "Sortino ratio")[1] != "—"  # from the benchmark column
    assert "<th>Year</th><th>Strategy</th><th>Benchmark</th>" in page
    plain = render_report(read_results_dir(results))
    assert [len(png) for png in _images(page)] != [len(png) for png in _images(plain)]
    assert page == render_report(read_results_dir(folder))


def test_neither_the_engine_the_definitions_nor_a_backtest_without_report_import_matplotlib(
    report_config: Path, tmp_path: Path
) -> None:
    code = (
        "import sys\n"
        "import ml4t_pipeline.engine, ml4t_pipeline.cli, ml4t_pipeline.report\n"
        "from ml4t_pipeline.pipeline.definitions import defs\n"
        "defs()  # the code location every Dagster run loads\n"
        "from ml4t_pipeline.cli import main\n"
        "argv = ['backtest', '--config', sys.argv[1], '--out', sys.argv[2], '--no-validate']\n"
        "assert main([*argv, '--no-report']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(report_config), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("bars", [0, 1, 3])
def test_a_run_of_few_bars_and_no_trades_still_reports(bars: int) -> None:
    utc = pl.Datetime("us", "UTC")
    stamps = [dt.datetime(2024, 1, 2, tzinfo=dt.UTC) + dt.timedelta(days=k) for k in range(bars)]
    inputs = ReportInputs(
        equity=pl.DataFrame(
            {"timestamp": stamps, "equity": [100.0 + k for k in range(bars)]},
            schema={"timestamp": utc, "equity": pl.Float64},
        ).with_columns(positions_value=pl.lit(0.0)),
        trades=pl.DataFrame(
            schema={
                "asset_id": pl.String,
                "exit_time": utc,
                "bars_held": pl.Int64,
                "pnl": pl.Float64,
                "exit_reason": pl.String,
            }
        ),
        fills=pl.DataFrame(schema={"timestamp": utc, "qty": pl.Int64, "price": pl.Float64}),
        rejections=pl.DataFrame(schema={"reason": pl.String, "qty": pl.Int64}),
        attribution=pl.DataFrame(schema=ATTRIBUTION_SCHEMA),
        summary={"initial_cash": 100.0},
    )
    page = render_report(inputs)
    assert page.count("data:image/png;base64,") == (2 if bars else 0)
    assert "No order was rejected." in page
    assert _row(page, "Closed trades") == ["0"]
    assert _row(page, "Win rate") == ["—"]
