"""Five lines from a notebook: `run_backtest(load_run_config("run.yaml"))`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ml4t_pipeline.engine.config import RunConfig
from ml4t_pipeline.engine.feed import DEFAULT_MAX_CHUNK_CELLS, MarketData, Source
from ml4t_pipeline.engine.feed.features import FeatureProvider, PrecomputedFeatures
from ml4t_pipeline.engine.loop import Engine, ProgressFn
from ml4t_pipeline.engine.results import BacktestResult
from ml4t_pipeline.engine.state import EngineState
from ml4t_pipeline.engine.strategy.base import Strategy

_UNSET: Any = object()


def run_backtest(
    config: RunConfig,
    *,
    prices: Source | None = None,
    signals: Source | None = _UNSET,
    context: Source | None = _UNSET,
    strategy: Strategy | None = None,
    start: dt.datetime | dt.date | str | None = None,
    end: dt.datetime | dt.date | str | None = None,
    initial_state: EngineState | None = None,
    signal_columns: Sequence[str] | None = None,
    max_chunk_cells: int = DEFAULT_MAX_CHUNK_CELLS,
    progress: ProgressFn | None = None,
    features: Sequence[FeatureProvider] = (),
) -> BacktestResult:
    """Run one backtest. Frames given here replace the files named in `config.data`.

    `features` adds feature providers (precomputed tables, callables) whose values the
    strategy and the risk rules read like signals. `start`/`end` restrict the run to bars in [start, end); `initial_state` continues from
    the end of an earlier run (see `EngineState`).
    """
    strategy = strategy if strategy is not None else config.strategy.build()
    rules = config.build_rules()
    if signal_columns is None:
        wanted = strategy.required_signals()
        if wanted is not None:
            rule_signals = [name for r in rules for name in r.required_signals()]
            available = _columns(config.data.signals if signals is _UNSET else signals)
            signal_columns = list(
                dict.fromkeys([*wanted, *(f for f in rule_signals if f in available)])
            )
    slippage = config.execution.slippage or {}
    data = MarketData(
        prices if prices is not None else config.data.prices,
        config.data.signals if signals is _UNSET else signals,
        config.data.context if context is _UNSET else context,
        signal_columns=signal_columns,
        start=start,
        end=end,
        max_chunk_cells=max_chunk_cells,
        extra_assets=initial_state.assets if initial_state is not None else (),
        load_volume=strategy.uses_volume
        or slippage.get("model") == "volume_share"
        or config.execution.max_participation is not None,
    )
    providers = list(features)
    if config.data.features is not None:
        providers.insert(0, PrecomputedFeatures(config.data.features))
    engine = Engine(
        config,
        data,
        strategy=strategy,
        initial_state=initial_state,
        features=providers,
        rules=rules,
    )
    return engine.run(progress)


def _columns(source: Source | None) -> set[str]:
    """Column names of a signals source without reading its data."""
    if source is None:
        return set()
    if isinstance(source, pl.DataFrame):
        return set(source.columns)
    if isinstance(source, pl.LazyFrame):
        return set(source.collect_schema().names())
    if isinstance(source, pa.Table):
        return set(source.schema.names)
    try:
        return set(pq.read_schema(source).names)
    except (OSError, pa.ArrowException):
        return set()
