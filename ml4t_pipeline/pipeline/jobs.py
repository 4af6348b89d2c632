"""Jobs and the monthly schedule.

- `inputs_job`: register the raw files (and the optional corporate_actions.parquet, or its
  absence), read them, run the blocking contract checks. Run it whenever the data directory
  changes; backtest runs refuse inputs whose checks did not pass.
- `backtest_job`: feature_table -> backtest -> trade_attribution with their blocking checks,
  in one process, for one (month, universe) partition or a range of months (each month
  continues from the one before; the month before the range must be stored).
- `summary_job`: performance_summary of one universe over its stored months.
- `sweep_job`: parameter_sweep of one (sweep, universe), e.g. ``--tags '{"dagster/partition":
  "top_k_and_stop|core"}'`` (present when configs/sweeps/ holds a sweep file).
- `monthly_backtest_schedule`: on the 1st of each month (or at $ML4T_SCHEDULE_CRON), one `backtest_job` run per universe
  for the month that just closed (made by `build_monthly_schedule` from the universes config),
  skipped while that month is beyond the data (the code location's month axis).

Backfill: in the UI (select the three assets, Materialize, pick months x universes) or on
the command line, one run per universe chaining its months in order::

    dagster asset materialize -m ml4t_pipeline.pipeline.definitions \\
      --select feature_table,backtest,trade_attribution \\
      --partition-range "2024-01-01|core...2024-03-01|core"

One partition: ``dagster job execute -m ml4t_pipeline.pipeline.definitions -j backtest_job
--tags '{"dagster/partition": "2024-02-01|core"}'``. Runs are retried by the instance
(`run_retries` in dagster.yaml) only when they die for reasons other than an asset failure;
data, state and config errors fail once (`dg.Failure(allow_retries=False)`).
"""

import datetime as dt
import os

import dagster as dg

from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.pipeline.assets import (
    BACKTEST_ASSET_KEYS,
    INPUT_ASSET_KEYS,
    SUMMARY_ASSET_KEY,
    SWEEP_ASSET_KEY,
)
from ml4t_pipeline.pipeline.partitions import MonthKey, PartitionSpec, last_month

# A retried run (the daemon's run retries) re-executes from failure: every step's inputs are
# stored, none is kept in memory.
RUN_RETRY_TAGS = {"dagster/retry_strategy": "FROM_FAILURE"}

inputs_job = dg.define_asset_job(
    "inputs_job",
    selection=dg.AssetSelection.assets(*INPUT_ASSET_KEYS),
    executor_def=dg.in_process_executor,
    description="Register and validate the input files (blocking contract checks).",
)

backtest_job = dg.define_asset_job(
    "backtest_job",
    selection=dg.AssetSelection.assets(*BACKTEST_ASSET_KEYS),
    executor_def=dg.in_process_executor,
    run_tags=RUN_RETRY_TAGS,
    description="One (month, universe): feature_table -> backtest -> trade_attribution.",
)

summary_job = dg.define_asset_job(
    "summary_job",
    selection=dg.AssetSelection.assets(SUMMARY_ASSET_KEY),
    executor_def=dg.in_process_executor,
    description="Chain every stored month of one universe into its performance summary.",
)


sweep_job = dg.define_asset_job(
    "sweep_job",
    selection=dg.AssetSelection.assets(SWEEP_ASSET_KEY),
    executor_def=dg.in_process_executor,
    description="One (sweep, universe): every variant of a configs/sweeps/ grid, PBO, DSR.",
)
"""Only in the definitions when configs/sweeps/ holds a sweep (`build_defs`)."""


def closed_month(now: dt.datetime) -> dt.date:
    """The calendar month before the one `now` falls in."""
    last_day_before = dt.date(now.year, now.month, 1) - dt.timedelta(days=1)
    return last_day_before.replace(day=1)


SCHEDULE_CRON_ENV = "ML4T_SCHEDULE_CRON"
DEFAULT_CRON = "0 6 1 * *"


def schedule_cron() -> str:
    """The schedule's cron string: $ML4T_SCHEDULE_CRON (a team's own hour), else the 1st at
    06:00 UTC."""
    return os.environ.get(SCHEDULE_CRON_ENV, "").strip() or DEFAULT_CRON


def build_monthly_schedule(
    spec: PartitionSpec, *, data_month: dt.date | None = None
) -> dg.ScheduleDefinition:
    """`monthly_backtest_schedule` for the months (from `spec`'s first month to
    `partitions.last_month(spec, data_month)`) and the universes of `spec`."""
    last = last_month(spec, data_month)
    cron = schedule_cron()

    def monthly_backtest_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        month = closed_month(context.scheduled_execution_time)
        if month < spec.start_month:
            return dg.SkipReason(f"{month} is before the first configured month {spec.start_month}")
        if last is not None and month > last:
            return dg.SkipReason(
                f"{month:%Y-%m} is after the last month with data ({last:%Y-%m}); reload the "
                "code location once its prices have arrived"
            )
        keys = [MonthKey(month, universe).key for universe in spec.universes]
        return [dg.RunRequest(run_key=key, partition_key=key) for key in keys]

    schedule = dg.schedule(
        name="monthly_backtest_schedule",
        job=backtest_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        description=(
            f"At {cron!r} (UTC; {SCHEDULE_CRON_ENV} sets it, default {DEFAULT_CRON!r}: the 1st at "
            "06:00): backtest the month that just closed, every universe (the inputs must have "
            "passed inputs_job's checks; feature_table refuses otherwise)."
        ),
    )
    try:
        return schedule(monthly_backtest_schedule)
    except dg.DagsterInvalidDefinitionError as exc:  # Dagster's cron check names no variable
        msg = f"${SCHEDULE_CRON_ENV}={cron!r}: {exc}"
        raise ConfigError(msg) from None


JOBS = [inputs_job, backtest_job, summary_job]
