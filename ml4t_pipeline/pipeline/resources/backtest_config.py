"""The run config every backtest partition uses (<config dir>/pipeline.yaml) and the universes
(<config dir>/universes.yaml). The config directory is the resource's `config_dir`, else
$ML4T_CONFIG_DIR, else the repository's configs/ (`partitions.config_dir`), read when used."""

from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from pydantic import PrivateAttr

from ml4t_pipeline.engine import RunConfig, run_config_from_dict
from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.pipeline.chain import chain_fingerprint
from ml4t_pipeline.pipeline.partitions import (
    PIPELINE_NAME,
    UNIVERSES_NAME,
    PartitionSpec,
    Universe,
    config_dir,
    load_partition_spec,
)

_FRAMES = "<frames supplied by the pipeline>"


def load_pipeline_config(path: Path) -> RunConfig:
    """The engine's run YAML without `data`; checked by the engine's own config loader."""
    raw = read_pipeline_yaml(path)
    return run_config_from_dict(
        {**raw, "data": {"prices": _FRAMES}}, base_dir=path.parent, check_files=False
    )


def read_pipeline_yaml(path: Path) -> dict[str, Any]:
    """The pipeline's run YAML as parsed: a mapping without `data` (a ConfigError else)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        msg = f"{path}: cannot read the pipeline run config: {exc}"
        raise ConfigError(msg) from exc
    if not isinstance(raw, dict):
        msg = f"{path}: expected a mapping with execution, strategy and risk"
        raise ConfigError(msg)
    if "data" in raw:
        msg = f"{path}: leave out 'data'; the pipeline supplies each month's frames"
        raise ConfigError(msg)
    return raw


class BacktestConfigResource(dg.ConfigurableResource["BacktestConfigResource"]):
    """The run config and the universes; explicit paths win over `config_dir`. Each file is
    read when first asked for, the universes once per resource instance."""

    config_dir: str | None = None
    run_config_path: str | None = None
    universes_path: str | None = None

    _spec: PartitionSpec | None = PrivateAttr(default=None)

    def run_config_file(self) -> Path:
        return Path(self.run_config_path or config_dir(self.config_dir) / PIPELINE_NAME)

    def universes_file(self) -> Path:
        return Path(self.universes_path or config_dir(self.config_dir) / UNIVERSES_NAME)

    def run_config(self) -> RunConfig:
        return load_pipeline_config(self.run_config_file())

    def run_config_yaml(self) -> dict[str, Any]:
        """The run config as parsed YAML (what a sweep's grid paths walk)."""
        return read_pipeline_yaml(self.run_config_file())

    def partition_spec(self) -> PartitionSpec:
        if self._spec is None:
            self._spec = load_partition_spec(self.universes_file())
        return self._spec

    def universe(self, name: str) -> Universe:
        return self.partition_spec().universe(name)

    def fingerprint(self, universe: str, *, corporate_actions: bool) -> str:
        """The config fingerprint of `universe`'s chain (`chain.chain_fingerprint`)."""
        return chain_fingerprint(
            self.run_config(), self.partition_spec(), universe, corporate_actions=corporate_actions
        )
