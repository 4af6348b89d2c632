"""The web UI (`make ui`): the webserver on 127.0.0.1 over a fresh instance and the sample data,
its asset graph and checks through GraphQL, a run launched through GraphQL and executed, and a
screenshot of the asset page in headless Chromium.

Set ML4T_UI_SCREENSHOT_DIR to keep a copy of the screenshot (`ui-asset-page.png`), e.g.
``ML4T_UI_SCREENSHOT_DIR=docs .venv/bin/pytest tests/pipeline/test_ui.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pytest

from ml4t_pipeline.pipeline.partitions import MonthKey, load_partition_spec
from tests.browser import SKIP_REASON, find_chromium, headless_argv
from tests.pipeline.ui_server import (
    LOCATION,
    REPOSITORY,
    Service,
    UiServer,
    launch_run,
    run_errors,
    running_ui,
    stop,
    wait_run,
)

SPEC = load_partition_spec()
FIRST = MonthKey(SPEC.start_month, next(iter(SPEC.universes)))
RUN_TIMEOUT_S = 120.0
SCREENSHOT_DIR_ENV = "ML4T_UI_SCREENSHOT_DIR"
SCREENSHOT_NAME = "ui-asset-page.png"
WINDOW = (1400, 900)
VIRTUAL_TIME_BUDGETS_MS = (15_000, 45_000)

DEPENDENCIES = {
    "raw_prices": set(),
    "raw_signals": set(),
    "raw_context": set(),
    "raw_corporate_actions": set(),
    "validated_prices": {"raw_prices"},
    "validated_signals": {"raw_signals"},
    "validated_context": {"raw_context"},
    "validated_corporate_actions": {"raw_corporate_actions"},
    "feature_table": {"validated_prices", "validated_signals", "validated_context"},
    "backtest": {"feature_table", "validated_corporate_actions", "backtest"},  # previous month
    "trade_attribution": {"backtest"},
    "performance_summary": {"backtest"},
    "parameter_sweep": {
        "validated_prices",
        "validated_signals",
        "validated_context",
        "validated_corporate_actions",
    },
}
CHECKS = {
    "validated_prices": {"prices_contract"},
    "validated_signals": {"signals_contract"},
    "validated_context": {"context_contract"},
    "validated_corporate_actions": {"corporate_actions_contract"},
    "feature_table": {"no_look_ahead"},
    "backtest": {"ledger_reconciles", "no_nan_equity", "fills_inside_bars"},
}
PARTITIONS = {
    "feature_table": ("MULTIPARTITIONED", {"month", "universe"}),
    "backtest": ("MULTIPARTITIONED", {"month", "universe"}),
    "trade_attribution": ("MULTIPARTITIONED", {"month", "universe"}),
    "performance_summary": ("STATIC", {"default"}),  # one dimension, named by Dagster
    "parameter_sweep": ("MULTIPARTITIONED", {"sweep", "universe"}),
}
JOB_ASSETS = {
    "inputs_job": {
        "raw_prices",
        "raw_signals",
        "raw_context",
        "raw_corporate_actions",
        "validated_prices",
        "validated_signals",
        "validated_context",
        "validated_corporate_actions",
    },
    "backtest_job": {"feature_table", "backtest", "trade_attribution"},
    "summary_job": {"performance_summary"},
    "sweep_job": {"parameter_sweep"},
}

ASSET_GRAPH_QUERY = """
query AssetGraph {
  assetNodes {
    assetKey { path }
    dependencyKeys { path }
    groupName
    isPartitioned
    jobNames
    partitionDefinition { type dimensionTypes { name } }
    repository { name location { name } }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name blocking } }
    }
  }
}
"""

RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status jobName tags { key value } }
    ... on Error { message }
  }
}
"""

MATERIALIZED = """
query Materialized($partition: String!) {
  assetNodes(assetKeys: [{path: ["feature_table"]}, {path: ["backtest"]},
                         {path: ["trade_attribution"]}]) {
    assetKey { path }
    latestMaterializationByPartition(partitions: [$partition]) { runId partition }
    assetChecksOrError {
      ... on AssetChecks {
        checks { name executionForLatestMaterialization { runId status partition } }
      }
    }
  }
}
"""

DISMISS_WELCOME = "mutation DismissWelcome { setNuxSeen }"


def _name(key: dict[str, Any]) -> str:
    return "/".join(key["path"])


def launch_and_wait(ui: UiServer, job: str, partition: str | None = None) -> str:
    """Launch `job` (for one partition) through GraphQL; the run id once the run succeeded."""
    run = wait_run(ui, launch_run(ui, job, partition), timeout=RUN_TIMEOUT_S)
    if run.status != "SUCCESS":
        pytest.fail(
            f"{job} {partition or ''} run {run.run_id}: {run.status}\n"
            f"{run_errors(ui, run.run_id)}\nthe processes' logs:\n{ui.logs()}"
        )
    return run.run_id


@pytest.fixture(scope="module")
def ui(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    with running_ui(tmp_path_factory.mktemp("ui") / "dagster_home", sample_dir) as server:
        yield server


@pytest.fixture(scope="module")
def runs(ui: UiServer) -> dict[str, str]:
    """Run ids of inputs_job and of backtest_job for the first month of the first universe,
    both launched through GraphQL and executed by the daemon."""
    return {
        "inputs_job": launch_and_wait(ui, "inputs_job"),
        "backtest_job": launch_and_wait(ui, "backtest_job", FIRST.key),
    }


def test_the_ui_serves_graphql_on_localhost(ui: UiServer) -> None:
    assert ui.url.startswith("http://127.0.0.1:")
    assert ui.graphql("{ version }")["version"]


def test_the_asset_graph_and_its_blocking_checks_over_graphql(ui: UiServer) -> None:
    nodes = {_name(n["assetKey"]): n for n in ui.graphql(ASSET_GRAPH_QUERY)["assetNodes"]}
    assert {name: {_name(k) for k in n["dependencyKeys"]} for name, n in nodes.items()} == (
        DEPENDENCIES
    )
    for node in nodes.values():
        assert node["repository"] == {"name": REPOSITORY, "location": {"name": LOCATION}}
        assert node["assetChecksOrError"]["__typename"] == "AssetChecks"
    checks = {
        name: {c["name"]: c["blocking"] for c in n["assetChecksOrError"]["checks"]}
        for name, n in nodes.items()
        if n["assetChecksOrError"]["checks"]
    }
    assert {name: set(c) for name, c in checks.items()} == CHECKS
    assert all(blocking for c in checks.values() for blocking in c.values())
    for name, node in nodes.items():
        assert node["isPartitioned"] == (name in PARTITIONS), name
        if name in PARTITIONS:
            kind, dimensions = PARTITIONS[name]
            definition = node["partitionDefinition"]
            assert definition["type"] == kind, name
            assert {d["name"] for d in definition["dimensionTypes"]} == dimensions, name
    for job, assets in JOB_ASSETS.items():
        assert {name for name, n in nodes.items() if job in n["jobNames"]} == assets, job
    assert {n["groupName"] for n in nodes.values()} == {"inputs", "backtest", "reports"}


def test_a_run_launched_through_graphql_materializes_a_partition(
    ui: UiServer, runs: dict[str, str]
) -> None:
    run = ui.graphql(RUN_STATUS, {"runId": runs["backtest_job"]})["runOrError"]
    assert run["jobName"] == "backtest_job"
    assert {"key": "dagster/partition", "value": FIRST.key} in run["tags"]
    nodes = ui.graphql(MATERIALIZED, {"partition": FIRST.key})["assetNodes"]
    assert {_name(n["assetKey"]) for n in nodes} == JOB_ASSETS["backtest_job"]
    for node in nodes:
        [latest] = node["latestMaterializationByPartition"]
        assert latest == {"runId": runs["backtest_job"], "partition": FIRST.key}
        for check in node["assetChecksOrError"]["checks"]:
            execution = check["executionForLatestMaterialization"]
            assert execution is not None, check["name"]
            assert execution["status"] == "SUCCEEDED", check
            assert execution["runId"] == runs["backtest_job"], check


def headless_capture(chromium: str, url: str, png: Path, profile: Path, budget_ms: int) -> str:
    """Screenshot `url` into `png`; the rendered DOM. The UI is a JavaScript app: the virtual
    time budget lets it fetch its data and render before the capture."""
    argv = [
        *headless_argv(chromium, profile, WINDOW),
        f"--virtual-time-budget={budget_ms}",
        f"--screenshot={png}",
        "--dump-dom",
        url,
    ]
    dom_file = profile.parent / "dom.html"
    with dom_file.open("wb") as dom:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=dom,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    chrome = Service("chromium", process, dom_file)
    try:
        process.wait(timeout=90)
    finally:
        stop(chrome, timeout=5)
    assert process.returncode == 0, f"chromium exited with {process.returncode}"
    return dom_file.read_text(errors="replace")


def test_a_screenshot_of_the_asset_page(ui: UiServer, runs: dict[str, str], tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(SKIP_REASON)
    assert ui.graphql(DISMISS_WELCOME)["setNuxSeen"]  # the one-time welcome dialog
    png = tmp_path / SCREENSHOT_NAME
    expected = ("backtest", "Latest materialization", FIRST.key, "final_equity", "backtest_job")
    missing: list[str] = []
    for budget_ms in VIRTUAL_TIME_BUDGETS_MS:  # a slow machine gets a second, longer try
        profile = tmp_path / f"profile-{budget_ms}"
        dom = headless_capture(chromium, f"{ui.url}/assets/backtest", png, profile, budget_ms)
        missing = [text for text in expected if text not in dom]
        if not missing:
            break
    assert not missing, f"the asset page does not show {missing} (still loading?)"
    assert png.stat().st_size > 20_000
    pixels = np.asarray(mpimg.imread(png))
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    colours, counts = np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0, return_counts=True)
    assert len(colours) > 100, "the screenshot is (nearly) blank"
    assert counts.max() < 0.97 * counts.sum(), "the screenshot is (nearly) one colour"
    keep = os.environ.get(SCREENSHOT_DIR_ENV)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, Path(keep) / SCREENSHOT_NAME)
