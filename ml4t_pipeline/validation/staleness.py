"""STALE_CONTEXT: bars at which a market-wide value is too old to use, or not there yet."""

from __future__ import annotations

import numpy as np
import polars as pl

from ml4t_pipeline.keys import AVAILABLE_AT, TIMESTAMP
from ml4t_pipeline.validation.policy import CoveragePolicy
from ml4t_pipeline.validation.report import (
    MAX_EXAMPLES,
    Failure,
    Rule,
    describe_rows,
    plural,
)
from ml4t_pipeline.validation.timing import bar_calendar

_HAS = "__has"


def context_staleness(
    context: pl.DataFrame,
    *,
    file: str,
    columns: list[str],
    prices: pl.DataFrame,
    policy: CoveragePolicy,
) -> list[Failure]:
    """STALE_CONTEXT: bars at which a context column's latest value is too old (or absent).

    A value observed at ``max(timestamp, available_at)`` serves every later bar; its staleness
    at a bar is the number of calendar bars since the last bar at or before the observation.
    Null and NaN values do not refresh a column.
    """
    price_ts = prices.get_column(TIMESTAMP).drop_nulls()
    if price_ts.is_empty():
        return []
    calendar = bar_calendar(price_ts)
    cal = calendar.to_physical().to_numpy()
    observed = (
        pl.max_horizontal(TIMESTAMP, AVAILABLE_AT)
        if AVAILABLE_AT in context.columns
        else pl.col(TIMESTAMP)
    )
    limit = policy.max_context_staleness_bars
    failures: list[Failure] = []
    for column in columns:
        value = pl.col(column)
        if context.schema[column].is_float():
            value = value.fill_nan(None)
        seen = (
            context.filter(value.is_not_null() & observed.is_not_null())
            .select(observed.cast(calendar.dtype))
            .to_series()
            .unique()
            .sort()
        )
        obs = seen.to_physical().to_numpy()
        latest = np.searchsorted(obs, cal, side="right") - 1
        has_value = latest >= 0
        last_seen = obs[np.maximum(latest, 0)] if obs.size else np.zeros_like(cal)
        last_bar = np.searchsorted(cal, last_seen, side="right") - 1
        age = np.arange(cal.size) - last_bar
        stale = ~has_value | (age > limit)
        n_stale = int(stale.sum())
        if not n_stale:
            continue
        where = np.flatnonzero(stale)[:MAX_EXAMPLES]
        last_seen_name = f"{column}_last_seen"
        examples = pl.DataFrame(
            {
                TIMESTAMP: calendar.gather(where),
                last_seen_name: pl.Series(last_seen[where]).cast(calendar.dtype),
                "bars_stale": pl.Series(age[where]),
                _HAS: pl.Series(has_value[where]),
            }
        ).select(
            TIMESTAMP,
            *(
                pl.when(pl.col(_HAS)).then(pl.col(name)).otherwise(None).alias(name)
                for name in (last_seen_name, "bars_stale")
            ),
        )
        n_empty = int((~has_value).sum())
        detail = f"value older than {limit} bars"
        if n_empty:
            detail += f"; no value yet at {plural(n_empty, 'bar')} before the first value"
        failures.append(
            Failure(
                file=file,
                column=column,
                rule=Rule.STALE_CONTEXT,
                severity=policy.stale_context,
                n_rows=n_stale,
                examples=describe_rows(examples, examples.columns),
                detail=detail,
            )
        )
    return failures
