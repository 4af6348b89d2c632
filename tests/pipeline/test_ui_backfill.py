"""UI backfills of months x universes: dagster-webserver + dagster-daemon on 127.0.0.1 over a
temporary instance and the sample data, `inputs_job` launched through GraphQL, then rounds of
backfills of the backtest assets over 4 months x every universe, launched with the UI's own
`launchPartitionBackfill` mutation (an asset selection and partition names) and executed by
the daemon:
- SINGLE_BACKFILL: one backfill of months x universes;
- CONTENDED: a backfill per universe, a `summary_job` run per universe, and the daemon's tick
  of the schedule (every minute, $ML4T_SCHEDULE_CRON), all at once, over months stored before.

What must hold whatever the design of the chain, after every round: each backfill ends
COMPLETED_SUCCESS, every targeted partition of every selected asset is materialized by a run
of that round, every run's record is complete, no run on the instance failed (a failure that a
run retry papered over counts), the tick recorded no error, per universe the months' equity
and fills are bit-identical to one `run_backtest` over the whole period (for a point-in-time
universe: signals of each month's members only), and every month shows its blocking checks
passed.

The instance is a parameter (`INSTANCE_SETUPS`, one UI session per setup shared by the
tests): the dagster.yaml text the webserver and daemon run over, and the rounds. `concurrent`
(default run) is the repository's dagster.yaml with the run queue at `CONCURRENT_RUNS` runs
launched at once (dequeue threads), and its runs must overlap; `postgres` (default run, when
PostgreSQL can run here) is deploy/dagster.postgres.yaml opened the same way over a throwaway
local server, and what it stores must equal what `concurrent` stores. Both run the single
backfill; `contended` and `postgres-contended` (slow) add the contended round (its summaries
need stored months) on each backend; `repo` (slow) is the file as it is.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml

from ml4t_pipeline.pipeline.assets import BACKTEST_ASSET_KEYS
from ml4t_pipeline.pipeline.jobs import SCHEDULE_CRON_ENV
from ml4t_pipeline.pipeline.local_postgres import Connection
from ml4t_pipeline.pipeline.partitions import MonthKey, load_partition_spec
from ml4t_pipeline.pipeline.resources import BacktestConfigResource, ResultStore
from tests.invariants import check_backtest_tables
from tests.pipeline.conftest import FEB, JAN, MAR, universe_prices
from tests.pipeline.one_run import one_engine_run, universe_assets
from tests.pipeline.ui_server import (
    BACKFILL_TAG,
    REPO,
    BackfillInfo,
    RunInfo,
    TickInfo,
    UiServer,
    launch_backfill,
    launch_run,
    run_errors,
    running_ui,
    runs_tagged,
    schedule_ticks,
    start_schedule,
    wait_backfill,
    wait_run,
)

APR = dt.date(2024, 4, 1)
MONTHS = (JAN, FEB, MAR, APR)  # the sample data (90 business days from 2024-01-01) covers them
PERIOD_END = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
SPEC = load_partition_spec()
UNIVERSES = tuple(SPEC.universes)
PARTITIONS = [MonthKey(m, u).key for u in UNIVERSES for m in MONTHS]
ASSETS = [key.to_user_string() for key in BACKTEST_ASSET_KEYS]
CONCURRENT_RUNS = 4
INPUTS_TIMEOUT_S = 120.0
# The asset backfill daemon ticks every 30 s; this bounds a hang, it is not a speed target.
BACKFILL_TIMEOUT_S = 240.0
SCHEDULE = "monthly_backtest_schedule"
EVERY_MINUTE = "* * * * *"  # $ML4T_SCHEDULE_CRON of the UI processes: a tick in every round
SUMMARY_LEAD_S = 2.0
BACKFILL_FROM_SECOND = 30.0
TICK_TIMEOUT_S = 75.0

MATERIALIZATIONS = """
query Materializations($assetKeys: [AssetKeyInput!], $partitions: [String!]) {
  assetNodes(assetKeys: $assetKeys) {
    assetKey { path }
    latestMaterializationByPartition(partitions: $partitions) { runId partition }
  }
}
"""

FAILED_RUNS = """
query FailedRuns {
  runsOrError(filter: {statuses: [FAILURE, CANCELED]}) {
    __typename
    ... on Runs { results { runId jobName status tags { key value } } }
    ... on Error { message }
  }
}
"""

CHECK_EXECUTIONS = """
query CheckExecutions($assetKey: AssetKeyInput!, $checkName: String!) {
  assetCheckExecutions(assetKey: $assetKey, checkName: $checkName, limit: 1000) {
    runId status partition
  }
}
"""

RUN_STATS = """
query RunStats($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      stats { ... on RunStatsSnapshot { stepsSucceeded stepsFailed materializations } }
    }
  }
}
"""

CHECKS = """
query Checks($assetKeys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $assetKeys) {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
  }
}
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceSetup:
    """One instance configuration to run the backfill over: its dagster.yaml text, and
    whether it is meant to run several runs at once (then runs must have overlapped)."""

    name: str
    dagster_yaml: str
    concurrent: bool
    postgres: bool = False  # the instance stores runs and events in a throwaway PostgreSQL
    #: what it launches, one round after the other over the same storage (`ROUNDS`):
    #: SINGLE_BACKFILL, months x universes in one backfill; CONTENDED, a backfill per universe,
    #: a summary run per universe and the schedule's tick, all at once
    rounds: tuple[str, ...] = ("single_backfill",)
    #: the SQLite setup of the same rounds whose stored results a Postgres one must equal
    sqlite_twin: str | None = None


def repo_dagster_yaml() -> str:
    return (REPO / "dagster.yaml").read_text(encoding="utf-8")


def postgres_dagster_yaml() -> str:
    return (REPO / "deploy" / "dagster.postgres.yaml").read_text(encoding="utf-8")


QUEUED_RUN_COORDINATOR = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}


def concurrent_dagster_yaml(text: str, runs: int) -> str:
    """A dagster.yaml that lets `runs` runs run at once and launches them at once: the run
    queue limit set to `runs` (under `concurrency.runs` when the file uses it), and the
    daemon's dequeue in `runs` threads (`run_coordinator` config, which then also holds what
    `run_queue` held: the two sections exclude each other). Every other setting is kept.

    Without threads the daemon launches queued runs one after the other, each launch waiting
    for its run worker to start (~1.5 s here), which spaces runs out by luck."""
    raw: dict[str, Any] = yaml.safe_load(text) or {}
    coordinator = raw.pop("run_coordinator", None) or dict(QUEUED_RUN_COORDINATOR)
    if coordinator.get("class") != QUEUED_RUN_COORDINATOR["class"]:
        msg = f"dagster.yaml: run_coordinator {coordinator.get('class')!r} is not queued"
        raise AssertionError(msg)
    config = {**coordinator.get("config", {}), **raw.pop("run_queue", {})}
    concurrency = raw.get("concurrency")
    if isinstance(concurrency, dict) and "runs" in concurrency:
        concurrency["runs"]["max_concurrent_runs"] = runs
    else:
        config["max_concurrent_runs"] = runs
    config.update(dequeue_use_threads=True, dequeue_num_workers=runs)
    raw["run_coordinator"] = {**coordinator, "config": config}
    return yaml.safe_dump(raw, sort_keys=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunQueue:
    """What an instance's run queue does, as Dagster reads it."""

    max_concurrent_runs: int  # -1: no limit
    tag_limits: list[Any]
    dequeue_threads: int  # 0: runs are launched one after the other


def run_queue(home: Path) -> RunQueue:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        queue = instance.get_concurrency_config().run_queue_config
        if queue is None:
            msg = f"{home}: the instance has no run queue"
            raise AssertionError(msg)
        coordinator = instance.run_coordinator
        threads = 0
        if isinstance(coordinator, dg.QueuedRunCoordinator) and coordinator.dequeue_use_threads:
            threads = coordinator.dequeue_num_workers or -1
        return RunQueue(
            max_concurrent_runs=queue.max_concurrent_runs,
            tag_limits=list(queue.tag_concurrency_limits),
            dequeue_threads=threads,
        )


INSTANCE_SETUPS = [
    pytest.param(
        InstanceSetup(name="repo", dagster_yaml=repo_dagster_yaml(), concurrent=False),
        id="repo",
        # the same file but for the dequeue threads is the default run's `concurrent` setup
        marks=pytest.mark.slow,
    ),
    pytest.param(
        InstanceSetup(
            name="concurrent",
            dagster_yaml=concurrent_dagster_yaml(repo_dagster_yaml(), CONCURRENT_RUNS),
            concurrent=True,
        ),
        id="concurrent",
    ),
    pytest.param(
        InstanceSetup(
            name="postgres",
            dagster_yaml=concurrent_dagster_yaml(postgres_dagster_yaml(), CONCURRENT_RUNS),
            concurrent=True,
            postgres=True,
            sqlite_twin="concurrent",
        ),
        id="postgres",
    ),
    # The contended round waits for the schedule's minute and two backfill daemon ticks
    # (~70-130 s of mostly waiting on top of the single backfill): slow, both backends side by
    # side (`pytest -m slow tests/pipeline/test_ui_backfill.py`).
    pytest.param(
        InstanceSetup(
            name="contended",
            dagster_yaml=concurrent_dagster_yaml(repo_dagster_yaml(), CONCURRENT_RUNS),
            concurrent=True,
            rounds=("single_backfill", "contended"),
        ),
        id="contended",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        InstanceSetup(
            name="postgres-contended",
            dagster_yaml=concurrent_dagster_yaml(postgres_dagster_yaml(), CONCURRENT_RUNS),
            concurrent=True,
            postgres=True,
            rounds=("single_backfill", "contended"),
            sqlite_twin="contended",
        ),
        id="postgres-contended",
        marks=pytest.mark.slow,
    ),
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Round:
    """What one round launched through the UI and what the instance recorded of it."""

    kind: str  # SINGLE_BACKFILL or CONTENDED
    backfills: list[BackfillInfo]
    runs: list[RunInfo]  # the backfills' runs
    summaries: list[RunInfo]  # summary runs launched with them (CONTENDED)
    ticks: list[TickInfo]  # the schedule's ticks since the launch (CONTENDED)
    window: tuple[float, float]  # epoch seconds: launched, the last run ended
    failed_runs: list[dict[str, Any]]  # every failed or canceled run on the instance
    latest: dict[str, dict[str, str | None]]  # asset -> partition -> run id
    stats: dict[str, dict[str, int]]  # run id -> its run record's step and event counts
    # "asset:check" -> partition (None: a range run's summary) -> status of the run
    check_runs: dict[str, dict[str | None, str]]

    @property
    def wall_s(self) -> float:
        return self.window[1] - self.window[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class BackfillOutcome:
    rounds: list[Round]
    storage: Path

    @property
    def runs(self) -> list[RunInfo]:
        return [run for round_ in self.rounds for run in round_.runs]


def _failed_runs(ui: UiServer) -> list[dict[str, Any]]:
    answer = ui.graphql(FAILED_RUNS)["runsOrError"]
    assert answer["__typename"] == "Runs", answer
    runs: list[dict[str, Any]] = answer["results"]
    return runs


def _latest(ui: UiServer) -> dict[str, dict[str, str | None]]:
    variables = {"assetKeys": [{"path": [a]} for a in ASSETS], "partitions": PARTITIONS}
    nodes = ui.graphql(MATERIALIZATIONS, variables)["assetNodes"]
    latest: dict[str, dict[str, str | None]] = {}
    for node in nodes:
        found = {m["partition"]: m["runId"] for m in node["latestMaterializationByPartition"] if m}
        latest["/".join(node["assetKey"]["path"])] = {p: found.get(p) for p in PARTITIONS}
    return latest


def _check_runs(ui: UiServer, run_ids: set[str]) -> dict[str, dict[str | None, str]]:
    """For every blocking check of the selected assets: partition -> status of its execution
    by a run of the backfill."""
    nodes = ui.graphql(CHECKS, {"assetKeys": [{"path": [a]} for a in ASSETS]})["assetNodes"]
    statuses: dict[str, dict[str | None, str]] = {}
    for node in nodes:
        asset = "/".join(node["assetKey"]["path"])
        for check in node["assetChecksOrError"].get("checks", []):
            if not check["blocking"]:
                continue
            executions = ui.graphql(
                CHECK_EXECUTIONS,
                {"assetKey": {"path": [asset]}, "checkName": check["name"]},
            )["assetCheckExecutions"]
            statuses[f"{asset}:{check['name']}"] = {
                e["partition"]: e["status"] for e in executions if e["runId"] in run_ids
            }
    return statuses


def run_ui_backfill(setup: InstanceSetup, data_dir: Path, home: Path) -> BackfillOutcome:
    """Start the UI over `setup`, validate the inputs, run its rounds one after the other."""
    with running_ui(home, data_dir, dagster_yaml=setup.dagster_yaml) as ui:
        if setup.concurrent:
            queue = run_queue(home)
            assert queue.max_concurrent_runs == -1 or queue.max_concurrent_runs > 1, queue
            assert queue.dequeue_threads != 0, queue
        inputs = wait_run(ui, launch_run(ui, "inputs_job"), timeout=INPUTS_TIMEOUT_S)
        assert inputs.status == "SUCCESS", run_errors(ui, inputs.run_id)
        rounds = [ROUNDS[kind](ui) for kind in setup.rounds]
        with dg.DagsterInstance.from_config(str(home)) as instance:
            storage = Path(instance.storage_directory()) / "ml4t"
        return BackfillOutcome(rounds=rounds, storage=storage)


def single_backfill(ui: UiServer) -> Round:
    """One backfill of every month x every universe, as the UI's backfill dialog sends it."""
    launched = time.time()
    backfill_id = launch_backfill(ui, ASSETS, PARTITIONS)
    backfill = wait_backfill(ui, backfill_id, timeout=BACKFILL_TIMEOUT_S)
    return _recorded(ui, SINGLE_BACKFILL, launched, [backfill], [], [])


def contended(ui: UiServer) -> Round:
    """Everything a team's instance does at once: a backfill per universe, a summary run per
    universe, and the daemon's tick of the schedule (every minute here, $ML4T_SCHEDULE_CRON),
    timed to fall among them."""
    start_schedule(ui, SCHEDULE)
    # The scheduler ticks at each minute; a backfill's runs come in two stages a backfill
    # daemon tick (30 s) apart, so launched in the second half of a minute the round spans the
    # next one. The summary runs (a few seconds) go just before it.
    _sleep_to_second(BACKFILL_FROM_SECOND)
    launched = time.time()
    backfill_ids = [
        launch_backfill(ui, ASSETS, [MonthKey(m, u).key for m in MONTHS]) for u in UNIVERSES
    ]
    _sleep_to_second(60.0 - SUMMARY_LEAD_S)
    summary_ids = [launch_run(ui, "summary_job", u) for u in UNIVERSES]
    backfills = [wait_backfill(ui, b, timeout=BACKFILL_TIMEOUT_S) for b in backfill_ids]
    summaries = [wait_run(ui, r) for r in summary_ids]
    deadline = time.monotonic() + TICK_TIMEOUT_S
    while not (ticks := _ticks(ui, launched)):
        if time.monotonic() > deadline:
            msg = f"no tick of {SCHEDULE} within {TICK_TIMEOUT_S:.0f} s of the round"
            raise AssertionError(msg)
        time.sleep(0.5)
    return _recorded(ui, CONTENDED, launched, backfills, summaries, ticks)


def _ticks(ui: UiServer, since: float) -> list[TickInfo]:
    return [t for t in schedule_ticks(ui, SCHEDULE, after=since) if t.status != "STARTED"]


def _recorded(
    ui: UiServer,
    kind: str,
    launched: float,
    backfills: list[BackfillInfo],
    summaries: list[RunInfo],
    ticks: list[TickInfo],
) -> Round:
    runs = [run for b in backfills for run in runs_tagged(ui, BACKFILL_TAG, b.backfill_id)]
    ended = max((r.end_time or launched) for r in [*runs, *summaries]) if runs else launched
    return Round(
        kind=kind,
        backfills=backfills,
        runs=runs,
        summaries=summaries,
        ticks=ticks,
        window=(launched, ended),
        failed_runs=_failed_runs(ui),
        latest=_latest(ui),
        stats={r.run_id: run_stats(ui, r.run_id) for r in [*runs, *summaries]},
        check_runs=_check_runs(ui, {r.run_id for r in runs}),
    )


SINGLE_BACKFILL = "single_backfill"
CONTENDED = "contended"
ROUNDS = {SINGLE_BACKFILL: single_backfill, CONTENDED: contended}


def _sleep_to_second(second: float) -> None:
    """Sleep until `second` past the minute, unless the minute is already past it."""
    time.sleep(max(0.0, second - time.time() % 60.0))


def run_stats(ui: UiServer, run_id: str) -> dict[str, int]:
    answer = ui.graphql(RUN_STATS, {"runId": run_id})["runOrError"]
    assert answer["__typename"] == "Run", answer
    stats: dict[str, int] = answer["stats"]
    return stats


def _failures(ui_runs: list[RunInfo], round_: Round) -> str:
    return ", ".join(f"{r.run_id[:8]} {r.status}" for r in ui_runs) + f" | {round_.failed_runs}"


def _universe_assets(universe: str, data_dir: Path) -> list[str]:
    return universe_assets(SPEC, universe, MONTHS, data_dir)


def _overlapping(runs: list[RunInfo]) -> bool:
    spans = sorted((r.start_time, r.end_time) for r in runs if r.start_time and r.end_time)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def describe(outcome: BackfillOutcome) -> str:
    """Each round's runs, one line each: partition (range), status, seconds from the round's
    launch to its start and end."""
    lines = []
    for round_ in outcome.rounds:
        launched = round_.window[0]
        lines.append(
            f"{round_.kind}: {len(round_.backfills)} backfills, {len(round_.runs)} runs, "
            f"launch to last run done {round_.wall_s:.1f} s"
        )
        for run in sorted([*round_.runs, *round_.summaries], key=lambda r: r.start_time or 0.0):
            tags = run.tags
            partition = tags.get("dagster/partition") or (
                f"{tags.get('dagster/asset_partition_range_start')}.."
                f"{tags.get('dagster/asset_partition_range_end')}"
            )
            start = (run.start_time or launched) - launched
            end = (run.end_time or launched) - launched
            lines.append(f"  {run.job_name} {partition} {run.status} {start:6.1f} -> {end:6.1f} s")
        lines.extend(f"  tick {t.status} {t.timestamp - launched:6.1f} s" for t in round_.ticks)
    return "\n".join(lines)


def assert_round_succeeded(round_: Round) -> None:
    """Every backfill of the round succeeded over what it targeted, together every partition
    of PARTITIONS; every run succeeded with a complete record; no run on the instance failed;
    every partition's latest materialization is this round's."""
    for backfill in round_.backfills:
        assert backfill.status == "COMPLETED_SUCCESS", (
            f"backfill {backfill.backfill_id}: {backfill.status} {backfill.error or ''} "
            f"{backfill.assets}; runs: {_failures(round_.runs, round_)}"
        )
        for asset in ASSETS:
            counts = backfill.assets[asset]
            assert counts.targeted == counts.materialized, (backfill.backfill_id, asset, counts)
            assert (counts.failed, counts.in_progress) == (0, 0), (asset, counts)
    for asset in ASSETS:
        targeted = sum(b.assets[asset].targeted for b in round_.backfills)
        assert targeted == len(PARTITIONS), (round_.kind, asset, targeted)
    assert round_.failed_runs == [], f"failed runs on the instance: {round_.failed_runs}"
    assert round_.runs, "the backfills launched no run"
    runs = [*round_.runs, *round_.summaries]
    assert {r.status for r in runs} == {"SUCCESS"}, _failures(runs, round_)
    incomplete = [r.run_id for r in runs if r.start_time is None or r.end_time is None]
    assert not incomplete, f"run records without a start or an end: {incomplete}"
    assert all(round_.stats[r.run_id]["stepsFailed"] == 0 for r in runs), round_.stats
    materialized = sum(round_.stats[r.run_id]["materializations"] for r in round_.runs)
    assert materialized == len(ASSETS) * len(PARTITIONS), (round_.kind, round_.stats)
    assert all(round_.stats[r.run_id]["materializations"] == 1 for r in round_.summaries)
    run_ids = {r.run_id for r in round_.runs}
    for asset, by_partition in round_.latest.items():
        stray = {p: run for p, run in by_partition.items() if run not in run_ids}
        assert not stray, f"{asset}: latest materializations not from the {round_.kind}: {stray}"


def assert_results_equal_one_engine_run(outcome: BackfillOutcome, data_dir: Path) -> None:
    store = ResultStore(base_dir=str(outcome.storage))
    initial_cash = BacktestConfigResource().run_config().execution.initial_cash
    for universe in UNIVERSES:
        months = [store.read_backtest(MonthKey(m, universe)) for m in MONTHS]
        equity = pl.concat([m.tables["equity"] for m in months])
        fills = pl.concat([m.tables["fills"] for m in months])
        full = one_engine_run(SPEC, universe, MONTHS, data_dir, end=PERIOD_END)
        assert equity.equals(full.equity), f"{universe}: equity differs from one engine run"
        assert fills.equals(full.fills), f"{universe}: fills differ from one engine run"
        last = json.loads(months[-1].texts["summary.json"])
        assert float(last["final_equity"]) == full.final_equity, universe
        check_backtest_tables(
            fills=fills,
            equity=equity,
            prices=universe_prices(data_dir, _universe_assets(universe, data_dir)),
            initial_cash=initial_cash,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Backfilled:
    setup: InstanceSetup
    outcome: BackfillOutcome


#: setup name -> the storage its backfill wrote (to compare backends)
STORED: dict[str, Path] = {}


def _setup(param: Any) -> InstanceSetup:
    setup = param.values[0]
    assert isinstance(setup, InstanceSetup), setup
    return setup


@dataclass
class SideBySide:
    """The setups of the default run, in UI sessions of their own at the same time: each is
    mostly waiting for the daemons' 30 s ticks, so together they take the wall of one."""

    futures: dict[str, Future[BackfillOutcome]]
    skipped: dict[str, str]  # setup name -> why it cannot run here


def _side_by_side(
    request: pytest.FixtureRequest,
    slow: bool,
    sample_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SideBySide]:
    """The setups of one group (the default run's, or the slow ones) in UI sessions at once."""
    setups = [_setup(p) for p in INSTANCE_SETUPS if bool(p.marks) == slow]
    skipped: dict[str, str] = {}
    with pytest.MonkeyPatch.context() as env:  # what the UI processes (and we) read
        env.setenv(SCHEDULE_CRON_ENV, EVERY_MINUTE)
        runnable = []
        for setup in setups:
            if setup.postgres:
                try:
                    connection: Connection = request.getfixturevalue("local_pg")
                except pytest.skip.Exception as exc:
                    skipped[setup.name] = str(exc)
                    continue
                for name, value in connection.env().items():
                    env.setenv(name, value)
            runnable.append(setup)
        with ThreadPoolExecutor(max_workers=len(runnable) or 1) as pool:
            futures = {
                setup.name: pool.submit(
                    run_ui_backfill,
                    setup,
                    sample_dir,
                    tmp_path_factory.mktemp(f"backfill-{setup.name}") / "dagster_home",
                )
                for setup in runnable
            }
            yield SideBySide(futures=futures, skipped=skipped)


@pytest.fixture(scope="module")
def side_by_side(
    request: pytest.FixtureRequest, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SideBySide]:
    yield from _side_by_side(request, False, sample_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def side_by_side_slow(
    request: pytest.FixtureRequest, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SideBySide]:
    yield from _side_by_side(request, True, sample_dir, tmp_path_factory)


@pytest.fixture(scope="module", params=INSTANCE_SETUPS)
def backfilled(
    request: pytest.FixtureRequest, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Backfilled:
    """One UI session per instance setup, shared by the tests below; the setups of a group
    (the default run's, the slow ones) run side by side."""
    setup: InstanceSetup = request.param
    slow = any(_setup(p) is setup and p.marks for p in INSTANCE_SETUPS)
    batch: SideBySide = request.getfixturevalue("side_by_side_slow" if slow else "side_by_side")
    if setup.name in batch.skipped:
        pytest.skip(batch.skipped[setup.name])
    outcome = batch.futures[setup.name].result()
    print(f"{setup.name}: {describe(outcome)}")  # shown with -s: what the daemon did
    STORED[setup.name] = outcome.storage
    return Backfilled(setup=setup, outcome=outcome)


def test_a_ui_backfill_materializes_every_partition_without_a_failed_run(
    backfilled: Backfilled,
) -> None:
    for round_ in backfilled.outcome.rounds:
        assert_round_succeeded(round_)


def test_the_backfilled_months_equal_one_engine_run(
    backfilled: Backfilled, sample_dir: Path
) -> None:
    assert_results_equal_one_engine_run(backfilled.outcome, sample_dir)


def test_runs_of_a_concurrent_setup_overlap(backfilled: Backfilled) -> None:
    """A run of one universe created while another universe's run is running starts without
    waiting for it to end. (The daemon submits a stage's runs one by one; on a loaded machine
    a run of a second or so can end before the next is even created, and then there is no
    contention to observe.)"""
    if not backfilled.setup.concurrent:
        pytest.skip(f"{backfilled.setup.name} is not meant to run runs at once")
    runs = backfilled.outcome.runs
    contended = [
        (earlier, later)
        for earlier in runs
        for later in runs
        if earlier.start_time is not None
        and earlier.end_time is not None
        and _universe(earlier) != _universe(later)
        and earlier.start_time <= later.creation_time < earlier.end_time
    ]
    if not contended:
        pytest.skip(f"no run was created while another ran:\n{describe(backfilled.outcome)}")
    held = [
        (earlier.run_id, later.run_id)
        for earlier, later in contended
        if later.start_time is None or later.start_time >= earlier.end_time  # type: ignore[operator]
    ]
    assert not held, (held, describe(backfilled.outcome))
    assert _overlapping(runs), describe(backfilled.outcome)


def _universe(run: RunInfo) -> str:
    tags = run.tags
    key = tags.get("dagster/partition") or tags.get("dagster/asset_partition_range_start", "")
    return key.rsplit("|", 1)[-1]


def test_every_backfilled_partition_has_its_blocking_checks_passed(
    backfilled: Backfilled,
) -> None:
    """Each month shows its own check result. A run over a range of months records each check
    once for the range too (Dagster 1.13 gives a range step's result no partition): that
    summary row is the `None` key, beside the months."""
    for round_ in backfilled.outcome.rounds:
        for check, statuses in round_.check_runs.items():
            months = {p: s for p, s in statuses.items() if p is not None}
            assert months == dict.fromkeys(PARTITIONS, "SUCCEEDED"), (round_.kind, check, statuses)
            assert statuses.get(None, "SUCCEEDED") == "SUCCEEDED", (check, statuses)


def test_the_concurrent_setup_only_opens_the_run_queue(tmp_path: Path) -> None:
    repo_home, opened_home = tmp_path / "repo", tmp_path / "opened"
    for home, text in (
        (repo_home, repo_dagster_yaml()),
        (opened_home, concurrent_dagster_yaml(repo_dagster_yaml(), CONCURRENT_RUNS)),
    ):
        home.mkdir()
        (home / "dagster.yaml").write_text(text, encoding="utf-8")
    repo, opened = run_queue(repo_home), run_queue(opened_home)
    assert opened == RunQueue(
        max_concurrent_runs=CONCURRENT_RUNS,
        tag_limits=repo.tag_limits,
        dequeue_threads=CONCURRENT_RUNS,
    )
    kept = yaml.safe_load(repo_dagster_yaml())
    changed = yaml.safe_load(concurrent_dagster_yaml(repo_dagster_yaml(), CONCURRENT_RUNS))
    queue_sections = {"run_queue", "run_coordinator", "concurrency"}
    for key in (set(kept) | set(changed)) - queue_sections:
        assert changed.get(key) == kept.get(key), key


def test_the_schedule_ticked_during_the_contended_round(backfilled: Backfilled) -> None:
    """The daemon's tick wrote its record among the round's runs, without an error (it skips:
    the month that just closed is beyond the sample data)."""
    rounds = [r for r in backfilled.outcome.rounds if r.kind == CONTENDED]
    if not rounds:
        pytest.skip(f"{backfilled.setup.name} runs no contended round")
    for round_ in rounds:
        launched, ended = round_.window
        during = [t for t in round_.ticks if launched <= t.timestamp <= ended]
        assert during, describe(backfilled.outcome)
        failed = [t for t in round_.ticks if t.error is not None or t.status == "FAILURE"]
        assert not failed, failed


def test_postgres_stores_what_sqlite_stores(backfilled: Backfilled) -> None:
    """The same backfill over either backend leaves the same tables and texts, month by month."""
    twin = backfilled.setup.sqlite_twin
    if twin is None:
        pytest.skip("compares a postgres setup with its sqlite twin")
    if twin not in STORED:
        pytest.skip(f"the sqlite setup {twin!r} did not run in this session")
    sqlite = ResultStore(base_dir=str(STORED[twin]))
    postgres = ResultStore(base_dir=str(STORED[backfilled.setup.name]))
    for key in (MonthKey(m, u) for u in UNIVERSES for m in MONTHS):
        a, b = sqlite.read_backtest(key), postgres.read_backtest(key)
        assert a.tables.keys() == b.tables.keys(), key
        for name in a.tables:
            assert a.tables[name].equals(b.tables[name]), (key, name)
        assert a.texts == b.texts, key
