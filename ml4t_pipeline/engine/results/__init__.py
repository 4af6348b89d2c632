"""Results: the run record a run produces, the tables built from it, metrics, attribution
and the atomic Parquet output. Nothing here imports the loop."""

from ml4t_pipeline.engine.results.metrics import compute_metrics, relative_metrics
from ml4t_pipeline.engine.results.output import TABLES, BacktestResult
from ml4t_pipeline.engine.results.record import RunRecord
from ml4t_pipeline.engine.results.tables import UTC_US, build_result

__all__ = [
    "TABLES",
    "UTC_US",
    "BacktestResult",
    "RunRecord",
    "build_result",
    "compute_metrics",
    "relative_metrics",
]
