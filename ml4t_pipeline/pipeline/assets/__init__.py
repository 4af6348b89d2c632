"""Every asset of the pipeline, in dependency order."""

from ml4t_pipeline.pipeline.assets.attribution import trade_attribution
from ml4t_pipeline.pipeline.assets.backtest import backtest
from ml4t_pipeline.pipeline.assets.features import feature_table
from ml4t_pipeline.pipeline.assets.inputs import (
    raw_context,
    raw_prices,
    raw_signals,
    validated_context,
    validated_prices,
    validated_signals,
)
from ml4t_pipeline.pipeline.assets.summary import performance_summary

INPUT_ASSETS = [
    raw_prices,
    raw_signals,
    raw_context,
    validated_prices,
    validated_signals,
    validated_context,
]
BACKTEST_ASSETS = [feature_table, backtest, trade_attribution]
ALL_ASSETS = [*INPUT_ASSETS, *BACKTEST_ASSETS, performance_summary]

__all__ = [
    "ALL_ASSETS",
    "BACKTEST_ASSETS",
    "INPUT_ASSETS",
    "backtest",
    "feature_table",
    "performance_summary",
    "raw_context",
    "raw_prices",
    "raw_signals",
    "trade_attribution",
    "validated_context",
    "validated_prices",
    "validated_signals",
]
