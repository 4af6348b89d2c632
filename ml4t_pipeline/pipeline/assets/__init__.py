"""Every asset of the pipeline, in dependency order.

The input assets are unpartitioned module-level definitions; the partitioned ones are made by
`build_assets` from the partitions `build_defs` builds out of universes.yaml (and the data's
last month). Automation (declarative, evaluated by the default automation-condition sensor of
`dagster dev` / the daemon): `feature_table`, `backtest` and `trade_attribution` are `eager`
(a universe's new month materializes once its inputs are there and, for `backtest`, the
previous month is stored; nothing runs while a dependency is missing or in progress), and
`performance_summary` is `eager` too, so it follows every month that changes.
`parameter_sweep` (one partition per sweep file x universe) runs only when asked.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import polars as pl

from ml4t_pipeline.pipeline.assets.attribution import (
    TRADE_ATTRIBUTION,
    attribute_trades,
    trade_attribution_asset,
)
from ml4t_pipeline.pipeline.assets.backtest import backtest_asset
from ml4t_pipeline.pipeline.assets.features import (
    FEATURE_TABLE,
    chain_beta_apis,
    feature_table_asset,
)
from ml4t_pipeline.pipeline.assets.inputs import (
    raw_context,
    raw_corporate_actions,
    raw_prices,
    raw_signals,
    validated_context,
    validated_corporate_actions,
    validated_prices,
    validated_signals,
)
from ml4t_pipeline.pipeline.assets.summary import PERFORMANCE_SUMMARY, performance_summary_asset
from ml4t_pipeline.pipeline.assets.sweep import PARAMETER_SWEEP, parameter_sweep_asset
from ml4t_pipeline.pipeline.catalog import catalogued
from ml4t_pipeline.pipeline.partitions import PipelinePartitions
from ml4t_pipeline.pipeline.resources.storage import BACKTEST

INPUT_ASSETS = [
    raw_prices,
    raw_signals,
    raw_context,
    raw_corporate_actions,
    validated_prices,
    validated_signals,
    validated_context,
    validated_corporate_actions,
]
INPUT_ASSET_KEYS = [asset.key for asset in INPUT_ASSETS]
BACKTEST_ASSET_KEYS = [dg.AssetKey(FEATURE_TABLE), BACKTEST, dg.AssetKey(TRADE_ATTRIBUTION)]
SUMMARY_ASSET_KEY = dg.AssetKey(PERFORMANCE_SUMMARY)
SWEEP_ASSET_KEY = dg.AssetKey(PARAMETER_SWEEP)


def range_attribution(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`trade_attribution` as attribution.py defines it (description, kinds, group), over a
    range of partitions per run like feature_table and backtest (`attribute_trades` per
    month), so a job of the three has one backfill policy."""
    spec = next(iter(trade_attribution_asset(partitions).specs))

    def trade_attribution(
        context: dg.AssetExecutionContext, backtest: Any
    ) -> Mapping[str, pl.DataFrame]:
        sets = backtest if isinstance(backtest, Mapping) else {context.partition_key: backtest}
        tables = {}
        for key, month in sets.items():
            output = attribute_trades(month)
            tables[str(key)] = output.value
            context.add_asset_metadata(dict(output.metadata), partition_key=str(key))
        return tables

    with chain_beta_apis():
        return dg.asset(
            key=spec.key,
            partitions_def=partitions,
            group_name=spec.group_name,
            kinds=set(spec.kinds),
            description=spec.description,
            backfill_policy=dg.BackfillPolicy.single_run(),
            automation_condition=dg.AutomationCondition.eager(),
            ins={"backtest": dg.AssetIn("backtest")},
        )(trade_attribution)


def build_assets(
    partitions: PipelinePartitions,
    *,
    code_version: str | None = None,
    universes_version: str | None = None,
    sweeps: Sequence[str] = (),
    sweeps_version: str | None = None,
) -> list[dg.AssetsDefinition]:
    """The input assets, the (month, universe) chain, the per-universe summary and (with
    `sweeps`, the names of configs/sweeps/*.yaml) the parameter sweeps, with the catalog's
    owners, kinds and code versions. `code_version`: the run config's fingerprint
    (`chain.config_code_version`), the version of `backtest`; `universes_version` that of
    `feature_table`; `sweeps_version` that of `parameter_sweep` (a version an asset declares
    wins over the catalog's)."""
    assets = [
        *INPUT_ASSETS,
        feature_table_asset(partitions.backtest, code_version=universes_version),
        backtest_asset(partitions.backtest, code_version=code_version),
        range_attribution(partitions.backtest),
        performance_summary_asset(
            partitions.universes, automation_condition=dg.AutomationCondition.eager()
        ),
    ]
    if sweeps:
        assets.append(
            parameter_sweep_asset(list(sweeps), partitions.universes, code_version=sweeps_version)
        )
    return catalogued(assets)


__all__ = [
    "BACKTEST_ASSET_KEYS",
    "INPUT_ASSETS",
    "INPUT_ASSET_KEYS",
    "SUMMARY_ASSET_KEY",
    "SWEEP_ASSET_KEY",
    "build_assets",
]
