"""Dagster resources: where inputs live, which run config applies, where results are stored."""

from ml4t_pipeline.pipeline.resources.backtest_config import BacktestConfigResource
from ml4t_pipeline.pipeline.resources.data_dir import DataDirResource
from ml4t_pipeline.pipeline.resources.storage import ResultStore

__all__ = ["BacktestConfigResource", "DataDirResource", "ResultStore"]
