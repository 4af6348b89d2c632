"""An independent reference for the canonical workloads (shared/WORKLOADS.md).

Nothing in this package imports `ml4t_pipeline`: it reads the same Parquet inputs with plain
polars and numpy and replays the spec with straightforward loops, so the engine's results can be
checked against a second, deliberately naive implementation.
"""
