"""report.html in headless Chromium, offline: every image decodes, the headline table is
there, nothing is fetched. The page has no script of its own; the test loads a copy with a
probe appended that reports what the browser rendered into the dumped DOM.

Set ML4T_REPORT_SCREENSHOT_DIR to keep a screenshot of docs/report-example.html
(`report.png`), e.g. ``ML4T_REPORT_SCREENSHOT_DIR=docs .venv/bin/pytest tests/report/test_browser.py``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pytest

from tests.browser import (
    SCREENSHOT_DIR_ENV,
    SKIP_REASON,
    find_chromium,
    headless_argv,
    probe_page,
    run_chromium,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "report-example.html"
SCREENSHOT_NAME = "report.png"
WINDOW = (1000, 1600)
QUERIES = """
    headlineRows: document.querySelectorAll("#headline tbody tr").length,
    sections: [...document.querySelectorAll("section")].map(s => s.id),
"""


def _chromium() -> str:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(SKIP_REASON)
    return chromium


def _rendered(chromium: str, report: Path, work: Path) -> dict[str, Any]:
    return probe_page(chromium, report, work, QUERIES, WINDOW)


def _check(found: dict[str, Any]) -> None:
    assert found["fetched"] == []  # everything is inline
    assert found["sections"] == [
        "headline",
        "equity",
        "returns",
        "rolling",
        "trades",
        "attribution",
        "rejections",
    ]
    assert found["headlineRows"] == 12
    assert len(found["images"]) == 2
    for complete, width, height in found["images"]:
        assert complete
        assert width >= 600
        assert height >= 400


def test_a_fresh_report_renders_offline(results: Path, tmp_path: Path) -> None:
    _check(_rendered(_chromium(), results / "report.html", tmp_path))


def test_the_example_report_renders_offline_and_its_screenshot(tmp_path: Path) -> None:
    chromium = _chromium()
    _check(_rendered(chromium, EXAMPLE, tmp_path))
    png = tmp_path / SCREENSHOT_NAME
    argv = headless_argv(chromium, tmp_path / "profile-shot", WINDOW)
    run_chromium([*argv, f"--screenshot={png}", "--hide-scrollbars", EXAMPLE.as_uri()])
    pixels = np.asarray(mpimg.imread(png))
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    colours, counts = np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0, return_counts=True)
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    assert counts.max() < 0.97 * counts.sum(), "the screenshot is (nearly) one colour"
    keep = os.environ.get(SCREENSHOT_DIR_ENV)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, Path(keep) / SCREENSHOT_NAME)
