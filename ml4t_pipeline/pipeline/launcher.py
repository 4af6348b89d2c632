"""A run launcher whose run workers run monitoring can see: Dagster's default launcher plus a
worker health check, for the single-host instance this project ships (dagster.yaml).

Dagster's `DefaultRunLauncher` starts each run worker as a child of the code server and has
no health check, so run monitoring has only its start and cancel timeouts. A worker killed
alone is still caught (its code server sees the exit and fails the run), but a worker that
dies *with* its code server (an OOM kill of the group, `kill -9` on the process tree) leaves
nobody to report it: the run stays STARTED forever.

`LocalRunLauncher.check_run_worker_health` looks at the worker itself. The code server
records the worker's pid in the run's event log ("Started process for run (pid: N)"); the
worker is alive when that pid is a live, non-zombie process that started no later than that
event. The start time rules out a pid the system has since given to another process. It only
answers for workers on this host (the code server's address is local, as in `dagster dev`):
for any other placement, and before the pid is recorded, it reports RUNNING, because run
monitoring fails a run on any other answer. Teams on a cluster launcher (k8s, Docker) use
that launcher's own health check instead (README, "For a team").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

#: the code server's addresses that mean "this host" (a Unix socket is local too)
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", ""})
#: the worker's pid as the code server logs it (dagster/_grpc/impl.py)
PID_EVENT_PREFIX = "Started process for run (pid: "
#: slack between the worker's start and the event that records it (clock-tick resolution)
START_SLACK_S = 1.0


class LocalRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` with a run worker health check for workers on this host."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        if not _launched_here(run.tags.get(GRPC_INFO_TAG)):
            return CheckRunHealthResult(WorkerStatus.RUNNING, "worker not on this host")
        recorded = self._recorded_worker(run.run_id)
        if recorded is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "worker pid not recorded yet")
        pid, logged_at = recorded
        if _alive_since(pid, logged_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker (pid {pid}) is gone: it died without reporting the run "
            "(killed with its code server?)",
            run_worker_id=str(pid),
        )

    def _recorded_worker(self, run_id: str) -> tuple[int, float] | None:
        """The worker pid the code server logged for the run, and when (epoch seconds)."""
        events = self._instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
        for event in reversed(events):  # a resumed run records a later worker
            message = event.message or ""
            if message.startswith(PID_EVENT_PREFIX):
                digits = message[len(PID_EVENT_PREFIX) :].split(")", 1)[0]
                if digits.isdigit():
                    return int(digits), float(event.timestamp)
        return None


def _launched_here(grpc_info: str | None) -> bool:
    """Whether the code server that launched the run (its address tag) is on this host."""
    if not grpc_info:
        return False
    try:
        info: Any = json.loads(grpc_info)
    except ValueError:
        return False
    if not isinstance(info, dict):
        return False
    return bool(info.get("socket")) or str(info.get("host", "")) in LOCAL_HOSTS


def _alive_since(pid: int, logged_at: float) -> bool:
    """Whether `pid` is a live process that started by `logged_at` (epoch seconds)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    started = _linux_start_time(pid)
    if started is None:  # no /proc: a live pid is all we can tell
        return True
    state, started_at = started
    return state not in ("Z", "X") and started_at <= logged_at + START_SLACK_S


def _linux_start_time(pid: int) -> tuple[str, float] | None:
    """(state, start time in epoch seconds) of a process from /proc, or None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after "pid (comm)": state is field 3
    btime = next(
        (float(line.split()[1]) for line in boot.splitlines() if line.startswith("btime ")),
        None,
    )
    if btime is None or len(fields) < 20:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return fields[0], btime + float(fields[19]) / ticks
