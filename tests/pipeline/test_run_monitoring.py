"""A run whose run worker is killed (SIGKILL, as the OOM killer or a lost machine does) ends
FAILURE instead of staying STARTED forever: dagster-webserver + dagster-daemon over the
repository's dagster.yaml and the sample data, a `backtest_job` run launched through GraphQL,
its run worker killed while the run is STARTED.

The instance is the repository's dagster.yaml; only a run monitoring poll interval it sets is
shortened to `POLL_INTERVAL_S` (the setting's default is 120 s), so the test waits seconds,
not minutes. Whether run monitoring is on, and everything else, stays the repository's.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ml4t_pipeline.pipeline.partitions import MonthKey, load_partition_spec
from tests.pipeline.ui_server import (
    REPO,
    TERMINAL_RUN_STATUSES,
    RunInfo,
    UiServer,
    get_run,
    launch_run,
    run_errors,
    run_messages,
    running_ui,
    wait_run,
)

SPEC = load_partition_spec()
FIRST = MonthKey(SPEC.start_month, next(iter(SPEC.universes)))  # starts fresh: re-runnable
POLL_INTERVAL_S = 2
CATCH_ATTEMPTS = 3  # a run can finish before the poll below sees it running
FAILED_TIMEOUT_S = 90.0
MONITORING_TIMEOUT_S = 10 * POLL_INTERVAL_S + 10.0
WORKER_PID = re.compile(r"Started process for run \(pid: (\d+)\)")


def monitored_dagster_yaml() -> str:
    """The repository's dagster.yaml with its run monitoring poll interval (if it has run
    monitoring) at most `POLL_INTERVAL_S`."""
    text = (REPO / "dagster.yaml").read_text(encoding="utf-8")
    raw: dict[str, Any] = yaml.safe_load(text) or {}
    monitoring = raw.get("run_monitoring")
    if not isinstance(monitoring, dict):
        return text
    interval = monitoring.get("poll_interval_seconds", POLL_INTERVAL_S)
    monitoring["poll_interval_seconds"] = min(int(interval), POLL_INTERVAL_S)
    return yaml.safe_dump(raw, sort_keys=False)


def _worker_pid(ui: UiServer, run_id: str) -> int | None:
    for message in run_messages(ui, run_id):
        found = WORKER_PID.search(message)
        if found:
            return int(found.group(1))
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.is_file() or stat.read_text().rsplit(")", 1)[-1].split()[0] not in "ZX"


def kill_a_running_run(
    ui: UiServer, partition: str, *, also_parent: bool = False
) -> tuple[RunInfo, int]:
    """Launch backtest_job for `partition`, SIGKILL its run worker while the run is STARTED
    (first its parent, the code server that spawned it, when `also_parent`); the run as it
    was when killed and the worker's pid."""
    for _ in range(CATCH_ATTEMPTS):
        run_id = launch_run(ui, "backtest_job", partition)
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            ui.check_alive()
            run = get_run(ui, run_id)
            if run.status in TERMINAL_RUN_STATUSES:
                break  # finished before it was caught running: try again
            pid = _worker_pid(ui, run_id) if run.status == "STARTED" else None
            if pid is not None:
                victims = [pid]
                if also_parent:
                    server = _parent(pid)
                    assert "grpc" in _cmdline(server), _cmdline(server)  # dagster api grpc
                    victims.insert(0, server)
                for victim in victims:
                    os.kill(victim, signal.SIGKILL)
                _wait_dead(victims)
                return run, pid
            time.sleep(0.05)
        else:
            pytest.fail(f"run {run_id} never started\n{ui.logs()}")
    pytest.fail(f"{CATCH_ATTEMPTS} runs of {partition} finished before they could be killed")


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[-1].split()[1])


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _wait_dead(pids: list[int]) -> None:
    deadline = time.monotonic() + 10.0
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], f"processes survived SIGKILL: {pids}"


def test_a_run_whose_worker_is_killed_is_marked_failed(sample_dir: Path, tmp_path: Path) -> None:
    """Only the run worker dies: the run is marked failed, naming what happened. Two watchers
    race for it: the code server that spawned the worker sees its exit (Dagster's orphaned-run
    check, every 0.5 s: "SIGKILL"), or run monitoring's worker health check sees the pid gone
    (LocalRunLauncher: "run worker (pid N) is gone"); either one is right."""
    with running_ui(
        tmp_path / "dagster_home", sample_dir, dagster_yaml=monitored_dagster_yaml()
    ) as ui:
        inputs = wait_run(ui, launch_run(ui, "inputs_job"))
        assert inputs.status == "SUCCESS", run_errors(ui, inputs.run_id)
        killed, pid = kill_a_running_run(ui, FIRST.key)
        _wait_dead([pid])
        run = wait_run(ui, killed.run_id, timeout=FAILED_TIMEOUT_S)
        assert run.status == "FAILURE", (run, run_messages(ui, killed.run_id)[-5:])
        messages = run_messages(ui, killed.run_id)
        named = ("SIGKILL", f"run worker (pid {pid}) is gone")
        assert any(cause in m for m in messages for cause in named), messages[-5:]


def test_a_run_killed_with_its_code_server_is_marked_failed(
    sample_dir: Path, tmp_path: Path
) -> None:
    """The run worker and the code server that launched it die together (an OOM kill of the
    whole group): nothing in that process group is left to report the run, so run monitoring
    (in the daemon, which lives on) marks it failed through the launcher's worker health
    check (pipeline/launcher.py), naming the dead worker."""
    with running_ui(
        tmp_path / "dagster_home", sample_dir, dagster_yaml=monitored_dagster_yaml()
    ) as ui:
        inputs = wait_run(ui, launch_run(ui, "inputs_job"))
        assert inputs.status == "SUCCESS", run_errors(ui, inputs.run_id)
        killed, pid = kill_a_running_run(ui, FIRST.key, also_parent=True)
        run = wait_run(ui, killed.run_id, timeout=MONITORING_TIMEOUT_S)
        assert run.status == "FAILURE", (run, run_messages(ui, killed.run_id)[-5:])
        assert any(f"run worker (pid {pid}) is gone" in m for m in run_messages(ui, run.run_id))
