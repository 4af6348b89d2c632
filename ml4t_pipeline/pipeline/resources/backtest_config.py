"""The run config every backtest partition uses (configs/pipeline.yaml) and the universes."""

from pathlib import Path

import dagster as dg
import yaml

from ml4t_pipeline.engine import RunConfig, run_config_from_dict
from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.pipeline.partitions import CONFIG_DIR, SPEC, Universe

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
    """Loads the run config (default configs/pipeline.yaml) and looks up universes."""

    run_config_path: str | None = None

    def run_config(self) -> RunConfig:
        return load_pipeline_config(Path(self.run_config_path or PIPELINE_FILE))

    def universe(self, name: str) -> Universe:
        try:
            return SPEC.universes[name]
        except KeyError:
            known = ", ".join(SPEC.universes)
            msg = f"unknown universe {name!r} (configs/universes.yaml has: {known})"
            raise ConfigError(msg) from None
