"""The run launcher's worker health check (pipeline/launcher.py) on real processes: a live
worker, a dead one, a pid the system has given to a later process, and workers elsewhere.
The end-to-end case (a worker killed with its code server, failed by the daemon's run
monitoring) is in test_run_monitoring.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ml4t_pipeline.pipeline.launcher import LocalRunLauncher, _alive_since, _launched_here
from tests.pipeline.ui_server import REPO


def test_a_live_process_started_before_the_record_is_alive() -> None:
    assert _alive_since(os.getpid(), time.time())


def test_a_process_started_after_the_record_is_another_process() -> None:
    """The pid was reused: this process started long after the worker's pid was logged."""
    assert not _alive_since(os.getpid(), time.time() - 3600.0)


def test_an_exited_process_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not _alive_since(child.pid, time.time())


def test_a_zombie_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10.0
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.01)
    try:
        assert not _alive_since(child.pid, time.time())
    finally:
        child.wait()


@pytest.mark.parametrize(
    ("info", "local"),
    [
        ({"host": "localhost", "port": 4000}, True),
        ({"host": "127.0.0.1", "port": 4000}, True),
        ({"host": "localhost", "socket": "/tmp/grpc.sock"}, True),
        ({"host": "code-server.internal", "port": 4000}, False),
    ],
)
def test_only_workers_of_a_local_code_server_are_checked(
    info: dict[str, object], local: bool
) -> None:
    assert _launched_here(json.dumps(info)) is local
    assert not _launched_here(None)
    assert not _launched_here("not json")


def test_the_repository_instance_uses_the_launcher(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text(encoding="utf-8"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, LocalRunLauncher)
        assert launcher.supports_check_run_worker_health
        assert instance.run_monitoring_enabled
