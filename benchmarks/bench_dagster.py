"""Wall time of one backtest partition through the Dagster CLI and of a UI backfill through the
daemon. Prints numbers; asserts nothing.

    .venv/bin/python benchmarks/bench_dagster.py [--repeat 3] [--partition "2024-01-01|core"]
        [--skip-backfill] [--months 12] [--backfill-repeat 1] [--max-concurrent-runs N]
        [--backend sqlite|postgres]

In a temporary directory: writes the `make demo` sample data (60 assets x 90 business days),
makes a fresh DAGSTER_HOME from the repository's dagster.yaml, runs `inputs_job` once (not
timed), then times `repeat` fresh processes of

    dagster job execute -m ml4t_pipeline.pipeline.definitions -j backtest_job \
        --tags '{"dagster/partition": "<partition>"}'

(interpreter start, imports, instance, feature_table, the backtest's two ops, the blocking
checks, trade_attribution, every event written to SQLite). The first month of a universe starts
fresh, so the same partition can be re-run. Also times loading the code location alone (import
`ml4t_pipeline.pipeline.definitions` and call its `defs` loader, as Dagster does), the fixed
cost every run pays.

Then (unless `--skip-backfill`) a UI backfill through the daemon: `dagster-webserver` +
`dagster-daemon` over a fresh instance from the repository's dagster.yaml (or with the run
queue opened to `--max-concurrent-runs N`) and sample data of 60 assets x 262 business days
(2024), `inputs_job` launched through GraphQL (not timed), then one `launchPartitionBackfill`
of the backtest assets over `--months` months x every universe, as the UI's backfill dialog
sends it. Timed from the launch to the end of the backfill's last run (`runs_done_s`), and to
the first poll (every 0.5 s) that sees the backfill finished (`completed_s`; the asset backfill
daemon ticks every 30 s). `--backfill-repeat` fresh instances; medians. The outcome (status,
runs, failed runs) is printed with the times: a backfill that failed is reported, not hidden.
The last line is one JSON object.
"""

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from ml4t_pipeline.pipeline.assets import BACKTEST_ASSET_KEYS
from ml4t_pipeline.pipeline.partitions import MonthKey, load_partition_spec
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data

REPO = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")
DEMO_SPEC = SampleSpec(assets=60, days=90, start=dt.date(2024, 1, 1), scenario="mixed", seed=2)
YEAR_SPEC = SampleSpec(assets=60, days=262, start=dt.date(2024, 1, 1), scenario="mixed", seed=2)
BACKFILL_TIMEOUT_S = 900.0


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        msg = f"failed ({done.returncode}): {' '.join(command)}"
        raise SystemExit(msg)
    return wall


def time_job_execute(repeat: int, partition: str) -> dict[str, Any]:
    """`repeat` fresh `dagster job execute backtest_job` processes of one partition."""
    with tempfile.TemporaryDirectory(prefix="bench-dagster-") as tmp:
        data, home = Path(tmp) / "data", Path(tmp) / "home"
        write_sample_data(DEMO_SPEC, data)
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "ML4T_DATA_DIR": str(data),
            "DAGSTER_DISABLE_TELEMETRY": "1",
        }
        execute = [str(DAGSTER), "job", "execute", "-m", "ml4t_pipeline.pipeline.definitions"]
        _timed([*execute, "-j", "inputs_job"], env)
        load = "from ml4t_pipeline.pipeline.definitions import defs; defs()"
        import_s = _timed([sys.executable, "-c", load], env)
        tags = json.dumps({"dagster/partition": partition})
        walls = [
            _timed([*execute, "-j", "backtest_job", "--tags", tags], env) for _ in range(repeat)
        ]

    for k, wall in enumerate(walls, start=1):
        print(f"run {k}: {wall:.2f} s")
    median = statistics.median(walls)
    print(f"dagster job execute backtest_job {partition}: median {median:.2f} s wall")
    return {
        "partition": partition,
        "runs_s": [round(w, 3) for w in walls],
        "median_s": round(median, 3),
        "import_definitions_s": round(import_s, 3),
    }


INSTANCE_FILES = {
    "sqlite": REPO / "dagster.yaml",
    "postgres": REPO / "deploy/dagster.postgres.yaml",
}


def _instance_yaml(max_concurrent_runs: int | None, backend: str = "sqlite") -> str:
    """The backend's instance file (dagster.yaml, or the team file on PostgreSQL), with the run
    queue limit replaced when one is given."""
    text = INSTANCE_FILES[backend].read_text(encoding="utf-8")
    if max_concurrent_runs is None:
        return text
    raw: dict[str, Any] = yaml.safe_load(text) or {}
    concurrency = raw.get("concurrency")
    if isinstance(concurrency, dict) and ("runs" in concurrency or "run_queue" not in raw):
        concurrency.setdefault("runs", {})["max_concurrent_runs"] = max_concurrent_runs
    else:
        raw.setdefault("run_queue", {})["max_concurrent_runs"] = max_concurrent_runs
    return yaml.safe_dump(raw, sort_keys=False)


def one_backfill(months: int, dagster_yaml: str) -> dict[str, Any]:
    """One UI backfill of `months` months x every universe over a fresh instance."""
    # the harness lives with the tests (tests/pipeline/ui_server.py); run from any directory
    sys.path.insert(0, str(REPO))
    from tests.pipeline import ui_server as ui_harness

    spec = load_partition_spec()
    first = spec.start_month
    keys = []
    for universe in spec.universes:
        key = MonthKey(first, universe)
        for _ in range(months):
            keys.append(key.key)
            key = key.next()
    assets = [k.to_user_string() for k in BACKTEST_ASSET_KEYS]
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        data, home = Path(tmp) / "data", Path(tmp) / "home"
        write_sample_data(YEAR_SPEC, data)
        with ui_harness.running_ui(home, data, dagster_yaml=dagster_yaml) as ui:
            inputs = ui_harness.wait_run(ui, ui_harness.launch_run(ui, "inputs_job"))
            if inputs.status != "SUCCESS":
                msg = f"inputs_job {inputs.status}: {ui_harness.run_errors(ui, inputs.run_id)}"
                raise SystemExit(msg)
            launched = time.time()
            backfill_id = ui_harness.launch_backfill(ui, assets, keys)
            backfill = ui_harness.wait_backfill(ui, backfill_id, timeout=BACKFILL_TIMEOUT_S)
            completed = time.time() - launched
            runs = ui_harness.runs_tagged(ui, ui_harness.BACKFILL_TAG, backfill_id)
            failed = [r for r in ui.graphql(FAILED_RUNS)["runsOrError"]["results"] if r is not None]
    ends = [r.end_time for r in runs if r.end_time is not None]
    return {
        "partitions": len(keys),
        "status": backfill.status,
        "runs": len(runs),
        "failed_runs": len(failed),
        "runs_done_s": round(max(ends) - launched, 2) if ends else None,
        "completed_s": round(completed, 2),
    }


FAILED_RUNS = """
query FailedRuns {
  runsOrError(filter: {statuses: [FAILURE, CANCELED]}) { ... on Runs { results { runId } } }
}
"""


def time_backfill(
    months: int, repeat: int, max_concurrent_runs: int | None, backend: str = "sqlite"
) -> dict[str, Any]:
    dagster_yaml = _instance_yaml(max_concurrent_runs, backend)
    outcomes = []
    for k in range(1, repeat + 1):
        if backend == "postgres":  # a fresh throwaway server per backfill, like a fresh home
            from ml4t_pipeline.pipeline.local_postgres import local_postgres

            with local_postgres() as connection:
                os.environ.update(connection.env())
                outcome = one_backfill(months, dagster_yaml)
        else:
            outcome = one_backfill(months, dagster_yaml)
        outcomes.append(outcome)
        print(
            f"backfill {k}: {outcome['partitions']} partitions, {outcome['status']}, "
            f"{outcome['runs']} runs ({outcome['failed_runs']} failed), "
            f"launch to runs done {outcome['runs_done_s']} s, "
            f"to backfill finished {outcome['completed_s']} s"
        )
    done = [o["runs_done_s"] for o in outcomes if o["runs_done_s"] is not None]
    median_done = statistics.median(done) if done else None
    median_completed = statistics.median(o["completed_s"] for o in outcomes)
    queue = "repo dagster.yaml" if max_concurrent_runs is None else f"{max_concurrent_runs} runs"
    print(
        f"UI backfill {months} months x {outcomes[0]['partitions'] // months} universes "
        f"({backend}, {queue}): median {median_done} s to runs done, {median_completed:.2f} s to finished"
    )
    return {
        "months": months,
        "backend": backend,
        "max_concurrent_runs": max_concurrent_runs,
        "outcomes": outcomes,
        "median_runs_done_s": median_done,
        "median_completed_s": round(median_completed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--partition", default="2024-01-01|core")
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--backfill-repeat", type=int, default=1)
    parser.add_argument(
        "--max-concurrent-runs",
        type=int,
        default=None,
        help="replace the run queue limit of the repo's dagster.yaml (default: keep it)",
    )
    parser.add_argument(
        "--backend",
        choices=sorted(INSTANCE_FILES),
        default="sqlite",
        help="instance storage of the backfill: the embedded SQLite, or a throwaway local "
        "PostgreSQL with deploy/dagster.postgres.yaml",
    )
    args = parser.parse_args()

    report: dict[str, Any] = {"job_execute": time_job_execute(args.repeat, args.partition)}
    if not args.skip_backfill:
        report["backfill"] = time_backfill(
            args.months, args.backfill_repeat, args.max_concurrent_runs, args.backend
        )
    report["cpus"] = os.cpu_count()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
