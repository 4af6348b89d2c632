"""sweep.html in headless Chromium, offline: the CSCV chart decodes, the heat tables and the
selection-luck table are there, nothing is fetched (the page has no script; a copy with a probe
appended reports what the browser rendered).

Set ML4T_REPORT_SCREENSHOT_DIR to keep a screenshot (`sweep.png`), e.g.
``ML4T_REPORT_SCREENSHOT_DIR=docs .venv/bin/pytest tests/sweep/test_sweep_browser.py``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import yaml

from ml4t_pipeline.cli import main
from ml4t_pipeline.sample_data.real_stocks import SIGNAL, write_real_inputs
from tests.browser import (
    SCREENSHOT_DIR_ENV,
    SKIP_REASON,
    find_chromium,
    headless_argv,
    probe_page,
    run_chromium,
)

SCREENSHOT_NAME = "sweep.png"
WINDOW = (1000, 1400)
QUERIES = """
    heatTables: document.querySelectorAll("table.heat").length,
    heatCells: document.querySelectorAll("table.heat td[style]").length,
    headings: [...document.querySelectorAll("h2")].map(h => h.textContent),
"""


def _sweep(folder: Path) -> Path:
    real = write_real_inputs(folder / "data", dividends=True)
    raw = {
        "data": {k: str(real[k]) for k in ("prices", "signals", "context", "corporate_actions")},
        "execution": {"initial_cash": 100_000, "commission_rate": 0.001},
        "strategy": {
            "name": "top_k_rotation",
            "params": {"score": SIGNAL, "top_k": 2, "weight": 0.45, "rebalance_every": 10},
        },
        "risk": [{"rule": "stop_loss", "pct": 0.06}],
    }
    grid = {"strategy.params.top_k": [1, 2, 3], "risk.0.pct": [0.03, 0.06, 0.12]}
    config, grid_file = folder / "run.yaml", folder / "grid.yaml"
    config.write_text(yaml.safe_dump(raw))
    grid_file.write_text(yaml.safe_dump(grid, sort_keys=False))
    out = folder / "sweep"
    argv = ["sweep", "--config", str(config), "--grid", str(grid_file), "--out", str(out)]
    assert main([*argv, "--workers", "1", "--blocks", "8"]) == 0
    return out / "sweep.html"


def test_the_sweep_page_renders_offline(tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(SKIP_REASON)
    page = _sweep(tmp_path)
    found = probe_page(chromium, page, tmp_path, QUERIES, WINDOW)
    assert found["fetched"] == []
    assert found["headings"] == [
        "Selection luck",
        "Metrics over the grid",
        "In sample vs out of sample",
        "Variants",
    ]
    assert found["heatTables"] == 3
    assert found["heatCells"] == 27  # 3 x 3 cells in each of the three tables
    ((complete, width, height),) = found["images"]
    assert complete
    assert width >= 600
    assert height >= 200
    png = tmp_path / SCREENSHOT_NAME
    argv = headless_argv(chromium, tmp_path / "profile-shot", WINDOW)
    run_chromium([*argv, f"--screenshot={png}", "--hide-scrollbars", page.as_uri()])
    pixels = np.asarray(mpimg.imread(png))
    colours = np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    keep = os.environ.get(SCREENSHOT_DIR_ENV)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, Path(keep) / SCREENSHOT_NAME)
