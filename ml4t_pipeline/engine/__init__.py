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
from ml4t_pipeline.engine.data import MarketData, Panel
from ml4t_pipeline.engine.enums import ExitReason, FillAt, OrderType, RejectReason, Side
from ml4t_pipeline.engine.features import CallableFeatures, FeatureProvider, PrecomputedFeatures
from ml4t_pipeline.engine.results import BacktestResult
from ml4t_pipeline.engine.risk import RiskContext, RiskDecision, RiskRule
from ml4t_pipeline.engine.risk_manager import RiskManager
from ml4t_pipeline.engine.state import EngineState
from ml4t_pipeline.engine.strategies import SignalThreshold, TopKRotation
from ml4t_pipeline.engine.strategy import Strategy
from ml4t_pipeline.engine.views import Batch, MarketEvent

__all__ = [
    "BacktestResult",
    "Batch",
    "CallableFeatures",
    "DataConfig",
    "EngineState",
    "ExecutionConfig",
    "ExitReason",
    "FeatureProvider",
    "FillAt",
    "MarketData",
    "MarketEvent",
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
    "load_run_config",
    "run_backtest",
    "run_config_from_dict",
]
