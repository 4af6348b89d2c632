"""Jobs and the monthly schedule.

- `inputs_job`: register the raw files (and the optional corporate_actions.parquet, or its
  absence), read them, run the blocking contract checks. Run it whenever the data directory
  changes; backtest runs refuse inputs whose checks did not pass.
- `backtest_job`: one (month, universe) partition of feature_table -> backtest ->
  trade_attribution, with their blocking checks, in one process. Months of a universe must
  run in order (each continues from the previous month's saved state).
- `summary_job`: performance_summary of one universe over its stored months.
- `monthly_backtest_schedule`: on the 1st of each month, one `backtest_job` run per universe
  for the month that just closed (made by `build_monthly_schedule` from the universes config).

Backfill, months in order (each run waits for the previous one to finish)::

    for month in 2024-01-01 2024-02-01 2024-03-01; do
      for universe in core liquid; do
        dagster job execute -m ml4t_pipeline.pipeline.definitions -j backtest_job \\
          --tags "{\\"dagster/partition\\": \\"$month|$universe\\"}" || exit 1
      done
    done

One partition the asset way (same assets and checks):
``dagster asset materialize -m ml4t_pipeline.pipeline.definitions --partition "2024-02-01|core"
--select feature_table,backtest,trade_attribution``. A single run over a month range
(``--partition-range``) is not offered: each month must start from the state the previous
month saved, and a missing month must fail rather than start fresh.
"""

import datetime as dt

import dagster as dg

from ml4t_pipeline.pipeline.assets import BACKTEST_ASSET_KEYS, INPUT_ASSET_KEYS, SUMMARY_ASSET_KEY
from ml4t_pipeline.pipeline.partitions import MonthKey, PartitionSpec

# Run retries need the daemon (dagster dev / dagster-daemon); a retried run starts over, since
# the op passing the chain state between the backtest's two ops keeps it in memory.
RUN_RETRY_TAGS = {"dagster/max_retries": "1", "dagster/retry_strategy": "ALL_STEPS"}

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


def closed_month(now: dt.datetime) -> dt.date:
    """The calendar month before the one `now` falls in."""
    last_day_before = dt.date(now.year, now.month, 1) - dt.timedelta(days=1)
    return last_day_before.replace(day=1)


def build_monthly_schedule(spec: PartitionSpec) -> dg.ScheduleDefinition:
    """`monthly_backtest_schedule` for the first month and the universes of `spec`."""

    @dg.schedule(
        name="monthly_backtest_schedule",
        job=backtest_job,
        cron_schedule="0 6 1 * *",
        execution_timezone="UTC",
        description=(
            "On the 1st at 06:00 UTC: backtest the month that just closed, every universe "
            "(the inputs must have passed inputs_job's checks; feature_table refuses otherwise)."
        ),
    )
    def monthly_backtest_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        month = closed_month(context.scheduled_execution_time)
        if month < spec.start_month:
            return dg.SkipReason(f"{month} is before the first configured month {spec.start_month}")
        keys = [MonthKey(month, universe).key for universe in spec.universes]
        return [dg.RunRequest(run_key=key, partition_key=key) for key in keys]

    return monthly_backtest_schedule


JOBS = [inputs_job, backtest_job, summary_job]
