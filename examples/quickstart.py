"""Five lines from a notebook: sample data, one config, one call, the results as frames.

.venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ml4t_pipeline.engine import run_backtest, run_config_from_dict
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data

folder = Path(tempfile.mkdtemp())
paths = write_sample_data(SampleSpec(assets=50, days=252, scenario="bull", seed=2), folder)
config = run_config_from_dict(
    {
        "data": {k: str(paths[k]) for k in ("prices", "signals", "context")},
        "execution": {"commission_rate": 0.001},
        "strategy": {"name": "top_k_rotation", "params": {"top_k": 10, "weight": 0.09}},
        "risk": [{"rule": "stop_loss", "pct": 0.05}],
    }
)
result = run_backtest(config)
print(result.metrics)
print(result.trades.select("asset_id", "entry_time", "exit_time", "pnl", "exit_reason").head())
