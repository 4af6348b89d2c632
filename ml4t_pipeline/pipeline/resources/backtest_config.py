"""The run config every backtest partition uses (configs/pipeline.yaml) and the universes."""

from pathlib import Path

import dagster as dg
import yaml
from pydantic import PrivateAttr

from ml4t_pipeline.engine import RunConfig, run_config_from_dict
from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.pipeline.partitions import (
    CONFIG_DIR,
    UNIVERSES_FILE,
    PartitionSpec,
    Universe,
    load_partition_spec,
)

PIPELINE_FILE = CONFIG_DIR / "pipeline.yaml"
_FRAMES = "<frames supplied by the pipeline>"


def load_pipeline_config(path: Path) -> RunConfig:
    """The engine's run YAML without `data`; checked by the engine's own config loader."""
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
    return run_config_from_dict(
        {**raw, "data": {"prices": _FRAMES}}, base_dir=path.parent, check_files=False
    )


class BacktestConfigResource(dg.ConfigurableResource["BacktestConfigResource"]):
    """The run config (default configs/pipeline.yaml) and the universes (default
    configs/universes.yaml, the file the partitions were built from); each file is read when
    first asked for, the universes once per resource instance."""

    run_config_path: str | None = None
    universes_path: str | None = None

    _spec: PartitionSpec | None = PrivateAttr(default=None)

    def run_config(self) -> RunConfig:
        return load_pipeline_config(Path(self.run_config_path or PIPELINE_FILE))

    def partition_spec(self) -> PartitionSpec:
        if self._spec is None:
            self._spec = load_partition_spec(Path(self.universes_path or UNIVERSES_FILE))
        return self._spec

    def universe(self, name: str) -> Universe:
        return self.partition_spec().universe(name)
