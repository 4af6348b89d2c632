"""The monthly schedule: one run request per universe for the month that just closed."""

import datetime as dt

import dagster as dg

from ml4t_pipeline.pipeline.jobs import build_monthly_schedule, closed_month
from ml4t_pipeline.pipeline.partitions import build_partitions, load_partition_spec

SPEC = load_partition_spec()
monthly_backtest_schedule = build_monthly_schedule(SPEC)


def test_a_tick_requests_the_closed_month_for_every_universe() -> None:
    tick = dt.datetime(2024, 3, 1, 6, 0, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        requests = monthly_backtest_schedule(context)
    assert isinstance(requests, list)
    assert [r.partition_key for r in requests] == [f"2024-02-01|{u}" for u in SPEC.universes]
    assert len({r.run_key for r in requests}) == len(requests)
    keys = build_partitions(SPEC).backtest.get_partition_keys()
    assert all(r.partition_key in keys for r in requests)


def test_a_tick_before_the_first_month_skips() -> None:
    tick = dt.datetime(2024, 1, 1, 6, 0, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        result = monthly_backtest_schedule(context)
    assert isinstance(result, dg.SkipReason)


def test_closed_month_wraps_the_year() -> None:
    assert closed_month(dt.datetime(2025, 1, 1, 6, tzinfo=dt.UTC)) == dt.date(2024, 12, 1)
    assert closed_month(dt.datetime(2024, 7, 15, tzinfo=dt.UTC)) == dt.date(2024, 6, 1)
