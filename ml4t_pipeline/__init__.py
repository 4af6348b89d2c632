"""ml4t-pipeline: a columnar backtest engine and the Dagster pipeline around it."""

__version__ = "0.1.0"
