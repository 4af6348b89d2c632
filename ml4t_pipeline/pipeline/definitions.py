# ruff: noqa: E402  -- the garbage-collector tuning below has to run before the heavy imports
"""The Dagster code location: `dagster dev -w workspace.yaml` / `dagster job execute -m ...`.

Asset graph::

    raw_prices  -> validated_prices  --[prices_contract]--+
    raw_signals -> validated_signals --[signals_contract]-+-> feature_table --[no_look_ahead]-->
    raw_context -> validated_context --[context_contract]-+
      backtest (chain_start -> run_engine) --[ledger_reconciles, no_nan_equity,
      fills_inside_bars]--> trade_attribution
    backtest (all months of a universe) -> performance_summary

Every check is blocking. Storage defaults to <DAGSTER_HOME>/storage/ml4t (or
$ML4T_STORAGE_DIR); inputs come from $ML4T_DATA_DIR (default data/sample).
"""

import atexit
import gc

# Garbage-collector tuning for the processes that load this module: the dagster CLI, run
# workers and code servers. What they have loaded so far (Dagster itself, the instance) and
# the definitions below live until the process exits, yet every full collection walks them:
# - freezing now means the full collection that loading these modules triggers walks only the
#   new objects (~0.1 s of a `dagster job execute` run);
# - freezing again at exit means interpreter shutdown skips its final walk over everything
#   (~0.5 s). Exit handlers that flush logs and files still run.
# Nothing else changes: objects created later are collected as usual.
gc.freeze()
atexit.register(gc.freeze)

import dagster as dg

from ml4t_pipeline.pipeline.assets import ALL_ASSETS
from ml4t_pipeline.pipeline.checks import ASSET_CHECKS
from ml4t_pipeline.pipeline.io_manager import ParquetIOManager
from ml4t_pipeline.pipeline.jobs import JOBS, SCHEDULES
from ml4t_pipeline.pipeline.resources import BacktestConfigResource, DataDirResource, ResultStore


def build_defs(
    *,
    data_dir: str | None = None,
    storage_dir: str | None = None,
    run_config_path: str | None = None,
) -> dg.Definitions:
    """The definitions; arguments override the defaults (used by tests and the demo)."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=JOBS,
        schedules=SCHEDULES,
        resources={
            "io_manager": ParquetIOManager(base_dir=storage_dir),
            "mem_io_manager": dg.mem_io_manager,
            "store": ResultStore(base_dir=storage_dir),
            "data_dir": DataDirResource(path=data_dir),
            "backtest_config": BacktestConfigResource(run_config_path=run_config_path),
        },
        executor=dg.in_process_executor,
    )


defs = build_defs()
