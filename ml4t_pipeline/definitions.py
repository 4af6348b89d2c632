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

import dagster as dg

from ml4t_pipeline.assets import ALL_ASSETS
from ml4t_pipeline.checks import ASSET_CHECKS
from ml4t_pipeline.io_manager import ParquetIOManager
from ml4t_pipeline.jobs import JOBS, SCHEDULES
from ml4t_pipeline.resources import BacktestConfigResource, DataDirResource, ResultStore


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
