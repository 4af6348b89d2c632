"""The Dagster project around the engine: assets, checks, jobs, resources and storage.

The only package of ml4t_pipeline that imports dagster (`tests/test_engine_import.py` checks
it). It reaches the engine through `ml4t_pipeline.engine`'s public names only. Dagster loads
it from `ml4t_pipeline.pipeline.definitions` (workspace.yaml, `-m`).
"""
