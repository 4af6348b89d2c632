"""The embedded backtest engine: a plain library (polars, numpy, pyarrow; never dagster).

from ml4t_pipeline.engine import load_run_config, run_backtest
result = run_backtest(load_run_config("run.yaml"))
result.equity, result.fills, result.trades, result.metrics
"""

from ml4t_pipeline.engine.api import run_backtest
from ml4t_pipeline.engine.config import (
    DataConfig,
    ExecutionConfig,
    RunConfig,
    StrategyConfig,
    load_run_config,
    run_config_from_dict,
)
from ml4t_pipeline.engine.enums import FillAt, OrderReason, OrderType, RejectReason, Side
from ml4t_pipeline.engine.feed import MarketData, Panel
from ml4t_pipeline.engine.feed.actions import read_corporate_actions
from ml4t_pipeline.engine.feed.features import (
    CallableFeatures,
    FeatureProvider,
    PrecomputedFeatures,
)
from ml4t_pipeline.engine.results import BacktestResult, compute_metrics, relative_metrics
from ml4t_pipeline.engine.results.attribution import DIMENSIONS as ATTRIBUTION_DIMENSIONS
from ml4t_pipeline.engine.results.attribution import attribution
from ml4t_pipeline.engine.risk.context import RiskContext, RiskDecision, RiskRule
from ml4t_pipeline.engine.risk.manager import RiskManager
from ml4t_pipeline.engine.state import EngineState
from ml4t_pipeline.engine.strategy.base import Strategy
from ml4t_pipeline.engine.strategy.builtin import SignalThreshold, TopKRotation
from ml4t_pipeline.engine.strategy.views import Batch, MarketEvent

__all__ = [
    "ATTRIBUTION_DIMENSIONS",
    "BacktestResult",
    "Batch",
    "CallableFeatures",
    "DataConfig",
    "EngineState",
    "ExecutionConfig",
    "FeatureProvider",
    "FillAt",
    "MarketData",
    "MarketEvent",
    "OrderReason",
    "OrderType",
    "Panel",
    "PrecomputedFeatures",
    "RejectReason",
    "RiskContext",
    "RiskDecision",
    "RiskManager",
    "RiskRule",
    "RunConfig",
    "Side",
    "SignalThreshold",
    "Strategy",
    "StrategyConfig",
    "TopKRotation",
    "attribution",
    "compute_metrics",
    "load_run_config",
    "read_corporate_actions",
    "relative_metrics",
    "run_backtest",
    "run_config_from_dict",
]
