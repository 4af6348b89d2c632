"""The sweep grid: dotted config paths mapped to lists of values, expanded into run configs.

A grid file is a YAML mapping::

    strategy.params.top_k: [20, 25, 30]   # a path into the run config, and its values
    risk.0.pct: [0.03, 0.05]              # list entries by position: risk[0].pct
    mode: product                         # every combination (default), or zip: the k-th
                                          # value of every path together
    select: sharpe                        # the summary metric that picks the best variant
    heatmap: [strategy.params.top_k, risk.0.pct]  # the sweep page's two axes (default: the
                                                  # first two paths)
    blocks: 10                            # CSCV blocks of the PBO (even; `--blocks` wins)

A path walks the run config's YAML: a mapping by key (a missing key is created, and the
config's own checks then judge it), a list by position (which must exist). The data and
validation sections cannot be swept: every variant reads the same inputs, decoded once and
checked once. Every variant's config is built and checked (strategy, rules, the columns they
name) before anything runs; an error names the path, the value and the variant.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml4t_pipeline.engine.config import RunConfig, run_config_from_dict
from ml4t_pipeline.engine.yaml_load import load_yaml
from ml4t_pipeline.errors import ConfigError, shown

MODES = ("product", "zip")
SETTINGS = ("mode", "select", "heatmap", "blocks")
DEFAULT_SELECT = "sharpe"
DEFAULT_BLOCKS = 10
#: the summary metrics a sweep can select by; a higher value is better for each (a drawdown
#: is a fraction <= 0, so the shallowest wins)
SELECTABLE = ("sharpe", "sortino", "total_return", "cagr", "final_equity", "max_drawdown")
_SWEEPABLE = ("execution", "strategy", "risk", "benchmark", "metrics")
MAX_VARIANTS = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    """One point of the grid: its number, the swept values by path, and its run config."""

    number: int
    values: Mapping[str, Any]
    raw: Mapping[str, Any]  # the run config's YAML with the values set
    config: RunConfig

    def label(self) -> str:
        return describe(self.values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Grid:
    """The parsed grid file: the swept paths (in file order), their values, the settings."""

    paths: tuple[str, ...]
    values: Mapping[str, tuple[Any, ...]]
    mode: str = "product"
    select: str = DEFAULT_SELECT
    heatmap: tuple[str, ...] = ()
    blocks: int = DEFAULT_BLOCKS

    def points(self) -> list[dict[str, Any]]:
        """The swept values of each variant, in order (the first path varies slowest)."""
        columns = [self.values[p] for p in self.paths]
        rows = itertools.product(*columns) if self.mode == "product" else zip(*columns, strict=True)
        return [dict(zip(self.paths, row, strict=True)) for row in rows]

    def variants(self, base: Mapping[str, Any], *, base_dir: Path) -> list[Variant]:
        """Every variant's config, each built and checked; the first bad one is a ConfigError
        naming its values."""
        out: list[Variant] = []
        for number, values in enumerate(self.points()):
            raw = copy.deepcopy(dict(base))
            for path, value in values.items():
                set_path(raw, path, copy.deepcopy(value))
            try:
                config = run_config_from_dict(raw, base_dir=base_dir)
            except ConfigError as exc:
                msg = f"grid variant {number} ({describe(values)}): {exc}"
                raise ConfigError(msg) from None
            out.append(Variant(number=number, values=values, raw=raw, config=config))
        return out


def describe(values: Mapping[str, Any]) -> str:
    """A variant's swept values as errors and pages name it: `path=value, ...`."""
    return ", ".join(f"{path}={shown(value, 60)}" for path, value in values.items())


def load_grid(path: Path) -> Grid:
    """Parse and check a grid file (`ConfigError` naming the key and the rule)."""
    if not path.is_file():
        msg = f"grid file not found: {path}"
        raise ConfigError(msg)
    raw = load_yaml(path)
    return grid_from_dict(raw, where=str(path))


def grid_from_dict(raw: Any, *, where: str = "grid") -> Grid:
    if not isinstance(raw, dict) or not raw:
        msg = (
            f"{where}: a grid is a mapping of config paths to lists of values, e.g. "
            "{strategy.params.top_k: [20, 25, 30]}"
        )
        raise ConfigError(msg)
    settings = {k: raw[k] for k in SETTINGS if k in raw}
    swept = {k: v for k, v in raw.items() if k not in SETTINGS}
    if not swept:
        msg = f"{where}: no config path to sweep (only {', '.join(settings)})"
        raise ConfigError(msg)
    values: dict[str, tuple[Any, ...]] = {}
    for path, given in swept.items():
        check_path(path, where)
        if not isinstance(given, list) or not given:
            msg = f"{where}: {path} must be a non-empty list of values, got {shown(given)}"
            raise ConfigError(msg)
        seen: set[str] = set()
        for value in given:
            key = json.dumps(value, sort_keys=True, default=str)
            if key in seen:
                msg = f"{where}: {path} lists the value {shown(value)} twice"
                raise ConfigError(msg)
            seen.add(key)
        values[path] = tuple(given)
    paths = tuple(swept)
    for a, b in itertools.permutations(paths, 2):
        if b.startswith(f"{a}."):
            msg = f"{where}: {b} is inside {a}; sweep one or the other"
            raise ConfigError(msg)
    mode = settings.get("mode", "product")
    if mode not in MODES:
        msg = f"{where}: mode must be one of {', '.join(MODES)}, got {shown(mode)}"
        raise ConfigError(msg)
    if mode == "zip" and len({len(v) for v in values.values()}) > 1:
        lengths = ", ".join(f"{p}: {len(v)}" for p, v in values.items())
        msg = f"{where}: mode zip needs lists of one length, got {lengths}"
        raise ConfigError(msg)
    select = settings.get("select", DEFAULT_SELECT)
    if select not in SELECTABLE:
        msg = f"{where}: select must be one of {', '.join(SELECTABLE)}, got {shown(select)}"
        raise ConfigError(msg)
    heatmap = _heatmap(settings.get("heatmap"), paths, where)
    blocks = settings.get("blocks", DEFAULT_BLOCKS)
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 2 or blocks % 2:
        msg = f"{where}: blocks must be an even whole number >= 2, got {shown(blocks)}"
        raise ConfigError(msg)
    grid = Grid(
        paths=paths, values=values, mode=mode, select=select, heatmap=heatmap, blocks=blocks
    )
    n = len(grid.points()) if mode == "zip" else _product(values.values())
    if n > MAX_VARIANTS:
        msg = f"{where}: {n} variants; a sweep runs at most {MAX_VARIANTS}"
        raise ConfigError(msg)
    return grid


def _product(lists: Any) -> int:
    n = 1
    for values in lists:
        n *= len(values)
    return n


def _heatmap(given: Any, paths: tuple[str, ...], where: str) -> tuple[str, ...]:
    if given is None:
        return paths[:2]
    if (
        not isinstance(given, list)
        or len(given) != 2
        or len(set(map(str, given))) != 2
        or not all(p in paths for p in given)
    ):
        msg = (
            f"{where}: heatmap must name two of the swept paths ({', '.join(paths)}), "
            f"got {shown(given)}"
        )
        raise ConfigError(msg)
    return tuple(given)


def check_path(path: Any, where: str = "grid") -> None:
    """A dotted path into a sweepable section: `strategy.params.top_k`, `risk.0.pct`."""
    if not isinstance(path, str) or not path or any(not part for part in path.split(".")):
        msg = f"{where}: {shown(path)} is not a dotted config path such as strategy.params.top_k"
        raise ConfigError(msg)
    section = path.split(".", 1)[0]
    if section in ("data", "validation"):
        msg = (
            f"{where}: {path} cannot be swept: every variant reads the same inputs, decoded "
            "and checked once; run one sweep per input or policy"
        )
        raise ConfigError(msg)
    if section not in _SWEEPABLE:
        msg = (
            f"{where}: {path} does not start with a config section; sweepable: "
            f"{', '.join(_SWEEPABLE)}"
        )
        raise ConfigError(msg)


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set `value` at `path` in the parsed YAML `raw` (in place)."""
    parts = path.split(".")
    node: Any = raw
    walked: list[str] = []
    for part in parts[:-1]:
        node = _child(node, part, walked, path)
        walked.append(part)
    last = parts[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list):
        node[_index(node, last, walked, path)] = value
    else:
        _not_a_container(node, walked, path)


def _child(node: Any, part: str, walked: Sequence[str], path: str) -> Any:
    if isinstance(node, dict):
        if node.get(part) is None:  # a section left out (or empty): the config judges the key
            node[part] = {}
        return node[part]
    if isinstance(node, list):
        return node[_index(node, part, walked, path)]
    _not_a_container(node, walked, path)
    return None


def _index(node: list[Any], part: str, walked: Sequence[str], path: str) -> int:
    where = ".".join(walked)
    if not part.isdigit():
        msg = f"grid: {path}: {where} is a list; address its entries by position (0, 1, ...)"
        raise ConfigError(msg)
    index = int(part)
    if index >= len(node):
        msg = f"grid: {path}: {where} has {len(node)} entr{'y' if len(node) == 1 else 'ies'}"
        raise ConfigError(msg)
    return index


def _not_a_container(node: Any, walked: Sequence[str], path: str) -> None:
    where = ".".join(walked)
    msg = f"grid: {path}: {where} is {shown(node)}, not a mapping or a list"
    raise ConfigError(msg)
