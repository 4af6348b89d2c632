"""Five lines from a notebook: `run_backtest(load_run_config("run.yaml"))`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ml4t_pipeline.engine.config import RunConfig
from ml4t_pipeline.engine.feed import DEFAULT_MAX_CHUNK_CELLS, Feed, MarketData, Source
from ml4t_pipeline.engine.feed.features import (
    CallableFeatures,
    FeatureProvider,
    PrecomputedFeatures,
)
from ml4t_pipeline.engine.feed.prepared import Inputs, prepared_data
from ml4t_pipeline.engine.loop import Engine, ProgressFn
from ml4t_pipeline.engine.results import BacktestResult
from ml4t_pipeline.engine.risk.context import RiskRule
from ml4t_pipeline.engine.state import EngineState
from ml4t_pipeline.engine.strategy.base import Strategy
from ml4t_pipeline.errors import ConfigError, shown
from ml4t_pipeline.keys import ASSET_ID, AVAILABLE_AT, TIMESTAMP

_UNSET: Any = object()


def run_backtest(
    config: RunConfig,
    *,
    prices: Source | None = None,
    signals: Source | None = _UNSET,
    context: Source | None = _UNSET,
    corporate_actions: Source | None = _UNSET,
    strategy: Strategy | None = None,
    start: dt.datetime | dt.date | str | None = None,
    end: dt.datetime | dt.date | str | None = None,
    initial_state: EngineState | None = None,
    signal_columns: Sequence[str] | None = None,
    max_chunk_cells: int = DEFAULT_MAX_CHUNK_CELLS,
    progress: ProgressFn | None = None,
    features: Sequence[FeatureProvider] = (),
    panel_cache: Path | bool = False,
) -> BacktestResult:
    """Run one backtest. Frames given here replace the files named in `config.data`.

    `corporate_actions` (splits and dividends, `engine.feed.actions`) are applied at their
    ex-dates. `features` adds feature providers (precomputed tables, callables) whose values the
    strategy and the risk rules read like signals. `start`/`end` restrict the run to bars in
    [start, end); `initial_state` continues from the end of an earlier run (see `EngineState`).
    `panel_cache` (True: the default folder, or a folder) keeps the decoded inputs of a run on
    files for the next run on the same unchanged files (`feed.prepared`); runs on frames or
    continuing a saved state always decode.

    Every column the strategy or a risk rule names (`required_signals`) must be a column of
    the signals or of the features: a `ConfigError` lists those available.
    """
    signals = config.data.signals if signals is _UNSET else signals
    context = config.data.context if context is _UNSET else context
    if corporate_actions is _UNSET:
        corporate_actions = config.data.corporate_actions
    prices = prices if prices is not None else config.data.prices
    plan = plan_run(
        config,
        signals=signals,
        context=context,
        strategy=strategy,
        signal_columns=signal_columns,
        features=features,
    )
    data: Feed
    inputs = _file_inputs(plan, prices, signals, context, corporate_actions, start, end)
    if panel_cache is not False and inputs is not None and initial_state is None:
        cache = None if panel_cache is True else Path(panel_cache)
        data = prepared_data(inputs, cache=cache, max_chunk_cells=max_chunk_cells, background=True)
    else:
        data = MarketData(
            prices,
            signals,
            context,
            signal_columns=plan.signal_columns,
            start=start,
            end=end,
            max_chunk_cells=max_chunk_cells,
            extra_assets=initial_state.assets if initial_state is not None else (),
            load_volume=plan.load_volume,
            corporate_actions=corporate_actions,
        )
    return run_on(config, data, plan, initial_state=initial_state, progress=progress)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPlan:
    """What a run builds from its config before any data is read: the strategy, the risk rules
    and the feature providers, and what the feed must load for them. The strategy and the rules
    keep the state of a run: a plan serves one run."""

    strategy: Strategy
    rules: tuple[RiskRule, ...]
    providers: tuple[FeatureProvider, ...]
    signal_columns: tuple[str, ...] | None  # None: every numeric column of the signals
    load_volume: bool


def plan_run(
    config: RunConfig,
    *,
    signals: Source | None = _UNSET,
    context: Source | None = _UNSET,
    strategy: Strategy | None = None,
    signal_columns: Sequence[str] | None = None,
    features: Sequence[FeatureProvider] = (),
) -> RunPlan:
    """Build the run's parts and check every column they name against the inputs."""
    signals = config.data.signals if signals is _UNSET else signals
    context = config.data.context if context is _UNSET else context
    strategy = strategy if strategy is not None else config.strategy.build()
    rules = config.build_rules()
    providers = list(features)
    if config.data.features is not None:
        providers.insert(0, PrecomputedFeatures(config.data.features))
    in_signals = _columns(signals)
    _check_named_columns(strategy, rules, _per_asset_columns(in_signals, providers))
    in_context = _columns(context)
    _check_context_columns(strategy, rules, _market_columns(in_context, providers))
    _check_benchmark_column(config, in_context)
    if signal_columns is None:
        wanted = strategy.required_signals()
        if wanted is not None:
            rule_signals = [name for r in rules for name in r.required_signals()]
            signal_columns = (
                list(wanted)  # unreadable: MarketData says why
                if in_signals is None
                else [c for c in dict.fromkeys([*wanted, *rule_signals]) if c in in_signals]
            )
    slippage = config.execution.slippage or {}
    return RunPlan(
        strategy=strategy,
        rules=tuple(rules),
        providers=tuple(providers),
        signal_columns=tuple(signal_columns) if signal_columns is not None else None,
        load_volume=strategy.uses_volume
        or slippage.get("model") == "volume_share"
        or config.execution.max_participation is not None,
    )


def run_on(
    config: RunConfig,
    data: Feed,
    plan: RunPlan,
    *,
    initial_state: EngineState | None = None,
    progress: ProgressFn | None = None,
) -> BacktestResult:
    """Run the planned backtest on data already read (a sweep's variants share one `data`)."""
    engine = Engine(
        config,
        data,
        strategy=plan.strategy,
        initial_state=initial_state,
        features=plan.providers,
        rules=plan.rules,
    )
    return engine.run(progress)


def feed_inputs(
    config: RunConfig,
    plan: RunPlan,
    *,
    start: dt.datetime | dt.date | str | None = None,
    end: dt.datetime | dt.date | str | None = None,
) -> Inputs:
    """The files and options the feed of a run on `config`'s files reads (`feed.prepared`)."""
    data = config.data
    found = _file_inputs(
        plan, data.prices, data.signals, data.context, data.corporate_actions, start, end
    )
    assert found is not None  # a config names files
    return found


def _file_inputs(
    plan: RunPlan,
    prices: Source,
    signals: Source | None,
    context: Source | None,
    corporate_actions: Source | None,
    start: dt.datetime | dt.date | str | None,
    end: dt.datetime | dt.date | str | None,
) -> Inputs | None:
    """The feed's inputs when every source is a file (frames cannot be fingerprinted)."""
    sources = (prices, signals, context, corporate_actions)
    if not all(s is None or isinstance(s, str | Path) for s in sources):
        return None
    return Inputs(
        prices=Path(str(prices)),
        signals=Path(str(signals)) if signals is not None else None,
        context=Path(str(context)) if context is not None else None,
        corporate_actions=Path(str(corporate_actions)) if corporate_actions is not None else None,
        signal_columns=plan.signal_columns,
        load_volume=plan.load_volume,
        start=start,
        end=end,
    )


_KEYS = {TIMESTAMP, ASSET_ID, AVAILABLE_AT}


def _per_asset_columns(
    in_signals: set[str] | None, providers: Sequence[FeatureProvider]
) -> set[str] | None:
    """The per-asset columns a run can read: signals and features (None: cannot tell)."""
    return _readable(in_signals, providers, market=False)


def _market_columns(
    in_context: set[str] | None, providers: Sequence[FeatureProvider]
) -> set[str] | None:
    """The market-wide columns a run can read: the context's, and any feature provider's
    (None: cannot tell)."""
    return _readable(in_context, providers, market=True)


def _readable(
    in_file: set[str] | None, providers: Sequence[FeatureProvider], *, market: bool
) -> set[str] | None:
    """An input file's columns and the feature providers' (callable features split into
    per-asset and market-wide ones); None when a source cannot tell before the run."""
    if in_file is None:
        return None
    columns = in_file - _KEYS
    for provider in providers:
        if isinstance(provider, PrecomputedFeatures):
            columns |= set(provider.columns)
        elif isinstance(provider, CallableFeatures):
            columns |= (
                set(provider.functions) if market else set(provider.functions) - provider.market
            )
        else:  # a provider of its own kind: its columns are known only once it runs
            return None
    return columns


def _check_named_columns(
    strategy: Strategy,
    rules: Sequence[RiskRule],
    per_asset: set[str] | None,
) -> None:
    """Every column the strategy or a rule names is in the inputs."""
    if per_asset is None:
        return
    named = _named(
        strategy, strategy.required_signals() or (), rules, [r.required_signals() for r in rules]
    )
    for owner, obj, name in named:
        if name not in per_asset:
            msg = (
                f"{_where(owner, obj, name)} = {name!r} is not a column of the signals or "
                f"features; available: {shown(sorted(per_asset)) if per_asset else 'none'}"
            )
            raise ConfigError(msg)


def _check_context_columns(
    strategy: Strategy, rules: Sequence[RiskRule], market: set[str] | None
) -> None:
    """Every market-wide column the strategy or a rule reads (`required_context`) exists."""
    if market is None:
        return
    named = _named(
        strategy, strategy.required_context(), rules, [r.required_context() for r in rules]
    )
    for owner, obj, name in named:
        if name not in market:
            if owner == "strategy":  # a built-in's filter names its column in `vix`
                key = "strategy.params.max_vix" if getattr(obj, "vix", None) == name else owner
            else:
                key = f"{owner}.feature" if getattr(obj, "feature", None) == name else owner
            msg = (
                f"{key} reads the market-wide column {name!r}, which is not in the context; "
                f"available: {shown(sorted(market)) if market else 'none (no context file)'}"
            )
            raise ConfigError(msg)


def _check_benchmark_column(config: RunConfig, in_context: set[str] | None) -> None:
    """A context benchmark's column is a column of the context file (not a key)."""
    column = config.benchmark.column
    if column is None or in_context is None:
        return
    if column not in in_context - _KEYS:
        available = sorted(in_context - _KEYS)
        msg = (
            f"benchmark.context {column!r} is not a column of the context; available: "
            f"{shown(available) if available else 'none (no context file)'}"
        )
        raise ConfigError(msg)


def _named(
    strategy: Strategy,
    own: Sequence[str],
    rules: Sequence[RiskRule],
    per_rule: Sequence[Sequence[str]],
) -> list[tuple[str, object, str]]:
    """(owner, the object, column) of every column the strategy (`own`) and each rule
    (`per_rule`) name; the owner is `strategy` or `risk[k]`, as in the config."""
    named: list[tuple[str, object, str]] = [("strategy", strategy, name) for name in own]
    for k, (rule, names) in enumerate(zip(rules, per_rule, strict=True)):
        named += [(f"risk[{k}]", rule, name) for name in names]
    return named


def _where(owner: str, obj: object, name: str) -> str:
    """The key path of the parameter holding column `name`: `risk[2].feature`, ..."""
    params = "strategy.params" if owner == "strategy" else owner
    for attr in ("feature", "score"):
        if getattr(obj, attr, None) == name:
            return f"{params}.{attr}"
    return f"{owner} ({type(obj).__name__}.required_signals())"


def _columns(source: Source | None) -> set[str] | None:
    """Column names of a source without reading its data (None: unreadable)."""
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
        return None
