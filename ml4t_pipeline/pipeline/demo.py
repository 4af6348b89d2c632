"""`ml4t-pipeline demo`: materialize the demo chain into the Dagster instance at $DAGSTER_HOME.

Runs, in order and in this process: `inputs_job` (register + validate the files), then
`backtest_job` for the first three months of every universe (months in order, since each
continues from the previous one), then `summary_job` per universe. Every run is recorded in the
instance, so `make ui` shows the materializations, check results and charts.
"""

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import dagster as dg

from ml4t_pipeline.pipeline.definitions import build_defs
from ml4t_pipeline.pipeline.io_manager import resolve_storage_root
from ml4t_pipeline.pipeline.layout import StorageLayout
from ml4t_pipeline.pipeline.partitions import MonthKey, PartitionSpec, load_partition_spec
from ml4t_pipeline.pipeline.resources.data_dir import ROLES
from ml4t_pipeline.pipeline.resources.storage import BACKTEST

DEMO_MONTHS = 3
# The console shows warnings and errors only; every event is still stored in the instance.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class _ErrorInfo(Protocol):
    """The shape of Dagster's serialized error info (message, chained cause)."""

    @property
    def message(self) -> str: ...

    @property
    def cause(self) -> "_ErrorInfo | None": ...


def _innermost(error: _ErrorInfo) -> str:
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def failure_lines(result: dg.ExecuteInProcessResult) -> list[str]:
    """What went wrong in a run: failed steps (innermost cause) and failed checks."""
    lines = [
        f"{event.step_key}: {_innermost(event.step_failure_data.error)}"
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data.error is not None
    ]
    lines += [
        f"check {check.check_name} on {check.asset_key.to_user_string()} failed: {check.description}"
        for check in result.get_asset_check_evaluations()
        if not check.passed
    ]
    return lines


def _run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job: str,
    partition_key: str | None = None,
) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(job).execute_in_process(
        run_config=QUIET_CONSOLE,
        instance=instance,
        partition_key=partition_key,
        raise_on_error=False,
    )
    label = f"{job} {partition_key}" if partition_key else job
    if not result.success:
        detail = "\n  ".join(failure_lines(result)) or "see the run's logs in the UI"
        msg = f"{label} failed:\n  {detail}"
        raise RuntimeError(msg)
    print(f"ok  {label}  (run {result.run_id[:8]})")
    return result


def demo_keys(spec: PartitionSpec, months: int = DEMO_MONTHS) -> list[MonthKey]:
    """The first `months` months of every universe, months in order within a universe."""
    keys: list[MonthKey] = []
    for universe in spec.universes:
        key = MonthKey(spec.start_month, universe)
        for _ in range(months):
            keys.append(key)
            key = key.next()
    return keys


def materialize_chain(
    defs: dg.Definitions, instance: dg.DagsterInstance, keys: Sequence[MonthKey]
) -> None:
    """inputs_job, then backtest_job for each key in the given order, then summary_job."""
    _run(defs, instance, "inputs_job")
    for key in keys:
        result = _run(defs, instance, "backtest_job", key.key)
        equity = result.asset_materializations_for_node("backtest")[0].metadata["final_equity"]
        print(f"      final equity {equity.value:,.2f}")
    for universe in dict.fromkeys(k.universe for k in keys):
        _run(defs, instance, "summary_job", universe)


def run_demo(data_dir: Path) -> int:
    """Materialize 3 months x every universe; 0 on success, 1 with a message on failure."""
    if not os.environ.get("DAGSTER_HOME"):
        print("error: DAGSTER_HOME is not set; run `make demo` (it sets it)", file=sys.stderr)
        return 1
    data = data_dir.absolute()
    missing = [f"{role}.parquet" for role in ROLES if not (data / f"{role}.parquet").is_file()]
    if missing:
        print(f"error: {data} lacks {', '.join(missing)}; run `make demo`", file=sys.stderr)
        return 1
    spec = load_partition_spec()
    defs = build_defs(data_dir=str(data), universes_path=str(spec.source))
    instance = dg.DagsterInstance.get()
    try:
        materialize_chain(defs, instance, demo_keys(spec))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    storage = StorageLayout(resolve_storage_root(None, instance))
    first = MonthKey(spec.start_month, next(iter(spec.universes)))
    print(f"\nresults (Parquet, hive layout month=/universe=): {storage.root}")
    print(f"  e.g. {storage.location(BACKTEST.path, first.dimensions)}")
    print(f"Dagster instance: {os.environ['DAGSTER_HOME']}")
    print("Open the UI with `make ui` (http://127.0.0.1:3000): Assets -> backtest -> a partition")
    return 0
