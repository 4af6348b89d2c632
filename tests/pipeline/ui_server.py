"""Run the Dagster web UI for a test: `dagster-webserver` on a free 127.0.0.1 port, plus the
`dagster-daemon` that takes runs off the queue, over a temporary instance and sample data.

The repo's dagster.yaml sets `run_queue`, so Dagster uses the queued run coordinator: a run
launched through the webserver waits in the queue until the daemon launches it (as under
`make ui`, whose `dagster dev` starts both). Each process gets a session of its own, so
stopping it signals its whole process group: the webserver or daemon, its code server and the
run workers the code server spawned.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from ml4t_pipeline.pipeline.local_postgres import HOST, free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "ml4t_pipeline"  # the code location workspace.yaml defines (as `make ui` shows it)
REPOSITORY = "__repository__"  # the name Dagster gives the repository of a Definitions object
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_CHARS = 4000

WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""


class UiError(RuntimeError):
    """The UI did not start, died, or answered a request with an error."""


def _reset_signals() -> None:
    """In the child before exec: default SIGINT/SIGTERM. A process started from a background
    shell job inherits SIGINT as ignored; Python then installs no handler for it, and Dagster
    maps SIGTERM onto the SIGINT handler, so SIGTERM would be ignored as well."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class Service:
    """One process started in a session (process group) of its own, its output in a file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pgid(self) -> int:
        return self.process.pid  # a session leader's group id is its pid

    def log_tail(self) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return text[-LOG_TAIL_CHARS:]


def spawn(name: str, argv: list[str], *, env: Mapping[str, str], log_dir: Path) -> Service:
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_reset_signals,
        )
    return Service(name, process, log)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group; on systems without /proc, the group id
    itself while the group can still be signalled."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _wait_group(service: Service, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.process.wait(timeout=0.1)
        if service.process.returncode is not None and not group_members(service.pgid):
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def stop(service: Service, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the whole process group, SIGKILL to what is left after `timeout`; raises
    `UiError` if a member of the group still lives after that."""
    if service.process.returncode is None or group_members(service.pgid):
        _signal_group(service.pgid, signal.SIGTERM)
        if not _wait_group(service, time.monotonic() + timeout):
            _signal_group(service.pgid, signal.SIGKILL)
            if not _wait_group(service, time.monotonic() + 10.0):
                left = group_members(service.pgid)
                msg = f"{service.name}: process group {service.pgid} survived SIGKILL: {left}"
                raise UiError(msg)
    service.process.wait()


@dataclass
class UiServer:
    """The running UI: its base URL, the instance directory and the processes behind it."""

    url: str
    home: Path
    services: list[Service] = field(default_factory=list)

    def check_alive(self) -> None:
        for service in self.services:
            code = service.process.poll()
            if code is not None:
                msg = f"{service.name} exited with code {code}:\n{service.log_tail()}"
                raise UiError(msg)

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.log_tail()}" for s in self.services)

    def graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, *, timeout: float = 30.0
    ) -> dict[str, Any]:
        """POST a GraphQL request; the `data` of the answer, or `UiError` on any error."""
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            msg = f"GraphQL HTTP {exc.code}: {exc.read().decode(errors='replace')[:2000]}"
            raise UiError(msg) from exc
        if answer.get("errors"):
            msg = "GraphQL errors: " + "; ".join(str(e.get("message")) for e in answer["errors"])
            raise UiError(msg)
        data: dict[str, Any] = answer["data"]
        return data


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _location_loaded(server: UiServer) -> bool:
    """True once the code location has loaded; `UiError` if it failed to load."""
    workspace = server.graphql(WORKSPACE_QUERY)["workspaceOrError"]
    if workspace["__typename"] != "Workspace":
        msg = f"workspace: {workspace.get('message', workspace['__typename'])}"
        raise UiError(msg)
    entries = {e["name"]: e for e in workspace["locationEntries"]}
    if entries and LOCATION not in entries:
        msg = f"no code location {LOCATION!r} in the workspace, only {sorted(entries)}"
        raise UiError(msg)
    entry = entries.get(LOCATION)
    if entry is None or entry["loadStatus"] != "LOADED":
        return False
    loaded = entry["locationOrLoadError"]
    if loaded is None:
        return False
    if loaded["__typename"] != "RepositoryLocation":
        msg = f"code location {LOCATION} failed to load: {loaded.get('message')}"
        raise UiError(msg)
    return True


def _wait_ready(server: UiServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        if _answers(server.url) and _location_loaded(server):
            return
        time.sleep(0.25)
    msg = f"the UI at {server.url} was not ready after {timeout:.0f} s\n{server.logs()}"
    raise UiError(msg)


def ui_env(home: Path, data_dir: Path) -> dict[str, str]:
    """The environment of `make ui`, pointed at a temporary instance and data directory."""
    env = dict(os.environ)
    env.pop("ML4T_STORAGE_DIR", None)  # results go to <DAGSTER_HOME>/storage/ml4t
    env.update(
        DAGSTER_HOME=str(home),
        ML4T_DATA_DIR=str(data_dir),
        DAGSTER_DISABLE_TELEMETRY="1",
        XDG_CACHE_HOME=str(home / "xdg-cache"),
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def running_ui(
    home: Path,
    data_dir: Path,
    *,
    daemon: bool = True,
    timeout: float = START_TIMEOUT_S,
    dagster_yaml: str | None = None,
) -> Iterator[UiServer]:
    """Start the webserver (and the daemon) over a fresh instance in `home` whose dagster.yaml
    is `dagster_yaml` (default: a copy of the repo's); yield once the code location has
    loaded; stop every process on exit, also when starting or the body fails."""
    home.mkdir(parents=True, exist_ok=True)
    if dagster_yaml is None:
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text(dagster_yaml, encoding="utf-8")
    # Create the storages here, once: the webserver, the daemon and their code servers
    # opening a fresh instance at the same moment race on the schema migrations.
    with dg.DagsterInstance.from_config(str(home)):
        pass
    env = ui_env(home, data_dir)
    workspace = ["-w", str(REPO / "workspace.yaml")]
    port = free_port()
    server = UiServer(url=f"http://{HOST}:{port}", home=home)
    try:
        server.services.append(
            spawn(
                "webserver",
                [str(BIN / "dagster-webserver"), "-h", HOST, "-p", str(port), *workspace],
                env=env,
                log_dir=home,
            )
        )
        if daemon:
            server.services.append(
                spawn(
                    "daemon",
                    [str(BIN / "dagster-daemon"), "run", *workspace],
                    env=env,
                    log_dir=home,
                )
            )
        _wait_ready(server, timeout)
        yield server
    finally:
        errors = []
        for service in reversed(server.services):  # the daemon first: no new run starts
            try:
                stop(service)
            except UiError as exc:
                errors.append(str(exc))
        if errors:
            raise UiError("; ".join(errors))


# --- runs and backfills through GraphQL, as the UI launches and watches them ---------------

TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
TERMINAL_BACKFILL_STATUSES = frozenset(
    {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
)
POLL_S = 0.5
BACKFILL_TAG = "dagster/backfill"

RUN_FIELDS = "runId status jobName creationTime startTime endTime tags { key value }"

LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""

RUN = f"""
query Run($runId: ID!) {{
  runOrError(runId: $runId) {{
    __typename
    ... on Run {{ {RUN_FIELDS} }}
    ... on Error {{ message }}
  }}
}}
"""

RUNS = f"""
query Runs($filter: RunsFilter!) {{
  runsOrError(filter: $filter) {{
    __typename
    ... on Runs {{ results {{ {RUN_FIELDS} }} }}
    ... on Error {{ message }}
  }}
}}
"""

RUN_EVENTS = """
query RunEvents($runId: ID!) {
  logsForRun(runId: $runId, limit: 5000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ErrorEvent { error { message errorChain { error { message } } } }
      }
    }
    ... on Error { message }
  }
}
"""

# The mutation of the UI's "Materialize selected" / "Launch backfill" dialog for an asset
# selection (no job selector): assetSelection plus partitionNames, or allPartitions.
LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionKeysNotFoundError { message }
    ... on Error { message }
  }
}
"""

BACKFILL = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      id
      status
      error { message }
      assetBackfillData {
        assetBackfillStatuses {
          __typename
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted
            numPartitionsInProgress
            numPartitionsMaterialized
            numPartitionsFailed
          }
        }
      }
    }
    ... on Error { message }
  }
}
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    """One run as the UI shows it (times in seconds since the epoch, None until known)."""

    run_id: str
    status: str
    job_name: str
    creation_time: float  # when the run was created (queued), before it was launched
    start_time: float | None
    end_time: float | None
    tags: Mapping[str, str]

    @classmethod
    def from_graphql(cls, run: Mapping[str, Any]) -> RunInfo:
        return cls(
            run_id=run["runId"],
            status=run["status"],
            job_name=run["jobName"],
            creation_time=run["creationTime"],
            start_time=run["startTime"],
            end_time=run["endTime"],
            tags={t["key"]: t["value"] for t in run["tags"]},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetBackfillCounts:
    """A partitioned asset's partitions in a backfill, by status."""

    targeted: int
    in_progress: int
    materialized: int
    failed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BackfillInfo:
    backfill_id: str
    status: str
    error: str | None
    assets: Mapping[str, AssetBackfillCounts]


def _expect(answer: Mapping[str, Any], typename: str, what: str) -> Mapping[str, Any]:
    if answer["__typename"] != typename:
        msg = f"{what}: {answer['__typename']}: {answer.get('message') or answer.get('errors')}"
        raise UiError(msg)
    return answer


def launch_run(ui: UiServer, job: str, partition: str | None = None) -> str:
    """Launch `job` (for one partition) through GraphQL as the launchpad does; its run id."""
    params: dict[str, Any] = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "jobName": job,
        },
        "runConfigData": {},
    }
    if partition is not None:
        params["executionMetadata"] = {"tags": [{"key": "dagster/partition", "value": partition}]}
    answer = ui.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    launched = _expect(answer, "LaunchRunSuccess", f"launching {job} {partition or ''}")
    run_id: str = launched["run"]["runId"]
    return run_id


def get_run(ui: UiServer, run_id: str) -> RunInfo:
    answer = _expect(ui.graphql(RUN, {"runId": run_id})["runOrError"], "Run", f"run {run_id}")
    return RunInfo.from_graphql(answer)


def runs_tagged(ui: UiServer, key: str, value: str) -> list[RunInfo]:
    """Every run with tag `key` = `value` (e.g. the runs of one backfill), newest first."""
    filters = {"tags": [{"key": key, "value": value}]}
    answer = _expect(ui.graphql(RUNS, {"filter": filters})["runsOrError"], "Runs", "runs")
    return [RunInfo.from_graphql(run) for run in answer["results"]]


def run_messages(ui: UiServer, run_id: str) -> list[str]:
    """The messages of a run's event log, in order."""
    logs = _expect(
        ui.graphql(RUN_EVENTS, {"runId": run_id})["logsForRun"], "EventConnection", "run logs"
    )
    return [str(e["message"]) for e in logs["events"] if e.get("message")]


def run_errors(ui: UiServer, run_id: str) -> str:
    """The error events of a run, one line each: step, message, root cause."""
    logs = _expect(
        ui.graphql(RUN_EVENTS, {"runId": run_id})["logsForRun"], "EventConnection", "run logs"
    )
    lines = []
    for event in logs["events"]:
        if event.get("level") in ("ERROR", "CRITICAL") or event.get("error"):
            error = event.get("error") or {}
            chain = [link["error"]["message"] for link in error.get("errorChain", [])]
            cause = (chain[-1] if chain else error.get("message", "")).strip()
            lines.append(f"{event.get('stepKey') or '-'}: {event.get('message')} {cause}".strip())
    return "\n".join(lines) or "no error events"


def wait_run(
    ui: UiServer,
    run_id: str,
    *,
    until: frozenset[str] = TERMINAL_RUN_STATUSES,
    timeout: float = 120.0,
) -> RunInfo:
    """Poll a run until its status is in `until`; `UiError` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        ui.check_alive()
        run = get_run(ui, run_id)
        if run.status in until:
            return run
        if time.monotonic() > deadline:
            msg = (
                f"run {run_id} ({run.job_name}) still {run.status} after {timeout:.0f} s\n"
                f"{ui.logs()}"
            )
            raise UiError(msg)
        time.sleep(POLL_S)


def launch_backfill(ui: UiServer, assets: list[str], partitions: list[str] | None = None) -> str:
    """Launch an asset backfill as the UI's backfill dialog does: `assets` over the given
    partition keys, or over all partitions when `partitions` is None; the backfill id."""
    params: dict[str, Any] = {
        "assetSelection": [{"path": [name]} for name in assets],
        "tags": [],
    }
    if partitions is None:
        params["allPartitions"] = True
    else:
        params["partitionNames"] = partitions
        params["fromFailure"] = False
    answer = ui.graphql(LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    launched = _expect(answer, "LaunchBackfillSuccess", "launching the backfill")
    backfill_id: str = launched["backfillId"]
    return backfill_id


def get_backfill(ui: UiServer, backfill_id: str) -> BackfillInfo:
    answer = _expect(
        ui.graphql(BACKFILL, {"backfillId": backfill_id})["partitionBackfillOrError"],
        "PartitionBackfill",
        f"backfill {backfill_id}",
    )
    assets = {}
    for status in (answer["assetBackfillData"] or {}).get("assetBackfillStatuses", []):
        if status["__typename"] == "AssetPartitionsStatusCounts":
            assets["/".join(status["assetKey"]["path"])] = AssetBackfillCounts(
                targeted=status["numPartitionsTargeted"],
                in_progress=status["numPartitionsInProgress"],
                materialized=status["numPartitionsMaterialized"],
                failed=status["numPartitionsFailed"],
            )
    error = answer["error"]["message"] if answer["error"] else None
    return BackfillInfo(
        backfill_id=backfill_id, status=answer["status"], error=error, assets=assets
    )


def wait_backfill(ui: UiServer, backfill_id: str, *, timeout: float) -> BackfillInfo:
    """Poll a backfill until it is finished and none of its runs is still queued or running
    (a run retry can start after the backfill is marked finished); `UiError` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        ui.check_alive()
        backfill = get_backfill(ui, backfill_id)
        if backfill.status in TERMINAL_BACKFILL_STATUSES:
            runs = runs_tagged(ui, BACKFILL_TAG, backfill_id)
            if all(run.status in TERMINAL_RUN_STATUSES for run in runs):
                return backfill
        if time.monotonic() > deadline:
            msg = (
                f"backfill {backfill_id} still {backfill.status} after {timeout:.0f} s: "
                f"{backfill.assets}\n{ui.logs()}"
            )
            raise UiError(msg)
        time.sleep(POLL_S)


# --- schedules: started from the UI, ticked by the daemon ------------------------------------

START_SCHEDULE = """
mutation StartSchedule($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on PythonError { message }
  }
}
"""

SCHEDULE_TICKS = """
query ScheduleTicks($selector: ScheduleSelector!, $after: Float) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule {
      scheduleState {
        ticks(afterTimestamp: $after, limit: 100) {
          tickId status timestamp skipReason runIds error { message }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


@dataclass(frozen=True, slots=True)
class TickInfo:
    tick_id: str
    status: str  # STARTED, SKIPPED, SUCCESS, FAILURE
    timestamp: float
    skip_reason: str | None
    run_ids: tuple[str, ...]
    error: str | None


def _schedule_selector(name: str) -> dict[str, str]:
    return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "scheduleName": name}


def start_schedule(ui: UiServer, name: str) -> None:
    """Turn a schedule on, as its toggle in the UI does; the daemon ticks it from then on."""
    answer = ui.graphql(START_SCHEDULE, {"selector": _schedule_selector(name)})["startSchedule"]
    state = _expect(answer, "ScheduleStateResult", f"starting {name}")["scheduleState"]
    if state["status"] != "RUNNING":
        msg = f"schedule {name} is {state['status']} after starting it"
        raise UiError(msg)


def schedule_ticks(ui: UiServer, name: str, *, after: float) -> list[TickInfo]:
    """The daemon's ticks of a schedule since `after` (epoch seconds)."""
    variables = {"selector": _schedule_selector(name), "after": after}
    answer = _expect(
        ui.graphql(SCHEDULE_TICKS, variables)["scheduleOrError"], "Schedule", f"schedule {name}"
    )
    return [
        TickInfo(
            tick_id=t["tickId"],
            status=t["status"],
            timestamp=t["timestamp"],
            skip_reason=t["skipReason"],
            run_ids=tuple(t["runIds"]),
            error=(t["error"] or {}).get("message"),
        )
        for t in answer["scheduleState"]["ticks"]
    ]
