"""Every asset of the pipeline, in dependency order.

The input assets are unpartitioned module-level definitions; the partitioned ones are made by
`build_assets` from the partitions `build_defs` builds out of configs/universes.yaml.
"""

import dagster as dg

from ml4t_pipeline.pipeline.assets.attribution import TRADE_ATTRIBUTION, trade_attribution_asset
from ml4t_pipeline.pipeline.assets.backtest import backtest_asset
from ml4t_pipeline.pipeline.assets.features import FEATURE_TABLE, feature_table_asset
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


def build_assets(partitions: PipelinePartitions) -> list[dg.AssetsDefinition]:
    """The input assets, the (month, universe) chain, and the per-universe summary, with the
    catalog's owners, kinds and code versions."""
    return catalogued(
        [
            *INPUT_ASSETS,
            feature_table_asset(partitions.backtest),
            backtest_asset(partitions.backtest),
            trade_attribution_asset(partitions.backtest),
            performance_summary_asset(partitions.universes),
        ]
    )


__all__ = [
    "BACKTEST_ASSET_KEYS",
    "INPUT_ASSETS",
    "INPUT_ASSET_KEYS",
    "SUMMARY_ASSET_KEY",
    "build_assets",
]
