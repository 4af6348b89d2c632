"""Run configuration: frozen dataclasses, validated on construction, loaded from YAML.

Every default is defined once, here. Unknown keys, wrong types and missing files are
`ConfigError`s naming the key path.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ml4t_pipeline.engine.enums import CashPolicy, DelistPolicy, FillAt, NoBarPolicy, VolumePolicy
from ml4t_pipeline.engine.execution.costs import (
    CommissionModel,
    FixedBpsSlippage,
    NoSlippage,
    PercentCommission,
    PerOrderCommission,
    PerShareCommission,
    SlippageModel,
    SpreadSlippage,
    TieredCommission,
    VolumeShareSlippage,
)
from ml4t_pipeline.engine.risk.context import RiskRule
from ml4t_pipeline.engine.risk.rules import RULES
from ml4t_pipeline.engine.strategy.base import Strategy
from ml4t_pipeline.engine.strategy.builtin import BUILTIN_STRATEGIES
from ml4t_pipeline.engine.yaml_load import load_yaml
from ml4t_pipeline.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class DataConfig:
    prices: Path
    signals: Path | None = None
    context: Path | None = None
    features: Path | None = None  # extra precomputed features (see engine.features)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionConfig:
    initial_cash: float = 1_000_000.0
    fill_at: FillAt = FillAt.NEXT_OPEN
    commission_rate: float = 0.0
    commission: dict[str, Any] | None = None  # {model: per_share|per_order|tiered|percent, ...}
    slippage: dict[str, Any] | None = None  # {model: fixed_bps|spread|volume_share, ...}
    allow_negative_cash: bool = False
    allow_short: bool = False
    validate: bool = True
    on_insufficient_cash: CashPolicy = CashPolicy.RESIZE
    on_no_bar: NoBarPolicy = NoBarPolicy.WAIT
    on_delist: DelistPolicy = DelistPolicy.CLOSE
    max_participation: float | None = None  # fraction of a bar's volume an asset's fills may take
    on_volume_limit: VolumePolicy = VolumePolicy.WAIT

    def __post_init__(self) -> None:
        if not self.initial_cash > 0:
            msg = f"execution.initial_cash must be > 0, got {self.initial_cash!r}"
            raise ConfigError(msg)
        if self.max_participation is not None and not 0 < self.max_participation <= 1:
            msg = (
                "execution.max_participation must be a fraction of bar volume in (0, 1], "
                f"got {self.max_participation!r}"
            )
            raise ConfigError(msg)
        if not 0 <= self.commission_rate < 1:
            msg = f"execution.commission_rate must be a fraction in [0, 1), got {self.commission_rate!r}"
            raise ConfigError(msg)

    def commission_model(self) -> CommissionModel:
        if self.commission is None:
            return PercentCommission(rate=self.commission_rate)
        spec = dict(self.commission)
        model = spec.pop("model", None)
        try:
            if model == "percent":
                return PercentCommission(rate=float(spec.pop("rate")))
            if model == "per_share":
                return PerShareCommission(
                    per_share=float(spec.pop("per_share")), minimum=float(spec.pop("minimum", 0.0))
                )
            if model == "per_order":
                return PerOrderCommission(per_order=float(spec.pop("per_order")))
            if model == "tiered":
                tiers = spec.pop("tiers")
                return TieredCommission(
                    thresholds=tuple(float(t[0]) for t in tiers),
                    rates=tuple(float(t[1]) for t in tiers),
                )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            msg = f"execution.commission: bad or missing parameter for model {model!r}: {exc}"
            raise ConfigError(msg) from exc
        msg = f"execution.commission.model must be percent, per_share, per_order or tiered, got {model!r}"
        raise ConfigError(msg)

    def slippage_model(self) -> SlippageModel:
        if self.slippage is None:
            return NoSlippage()
        spec = dict(self.slippage)
        model = spec.pop("model", None)
        try:
            if model == "fixed_bps":
                return FixedBpsSlippage(bps=float(spec.pop("bps")))
            if model == "spread":
                return SpreadSlippage(spread=float(spec.pop("spread")))
            if model == "volume_share":
                return VolumeShareSlippage(impact=float(spec.pop("impact", 0.1)))
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"execution.slippage: bad or missing parameter for model {model!r}: {exc}"
            raise ConfigError(msg) from exc
        msg = f"execution.slippage.model must be fixed_bps, spread or volume_share, got {model!r}"
        raise ConfigError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyConfig:
    name: str | None = None  # a built-in
    class_path: str | None = None  # "package.module:ClassName"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.name is None) == (self.class_path is None):
            msg = "strategy: give exactly one of 'name' (built-in) or 'class' (module:Class)"
            raise ConfigError(msg)
        if self.name is not None and self.name not in BUILTIN_STRATEGIES:
            msg = f"strategy.name {self.name!r} is not a built-in ({', '.join(sorted(BUILTIN_STRATEGIES))})"
            raise ConfigError(msg)

    def build(self) -> Strategy:
        if self.name is not None:
            cls = BUILTIN_STRATEGIES[self.name]
            allowed = getattr(cls, "PARAMS", None)
            unknown = sorted(set(self.params) - set(allowed)) if allowed is not None else []
            if unknown:
                msg = f"strategy.params: unknown key(s) {unknown} for {self.name} (allowed: {sorted(allowed or ())})"
                raise ConfigError(msg)
            return cls(**self.params)
        assert self.class_path is not None
        module_name, _, attr = self.class_path.partition(":")
        try:
            module = importlib.import_module(module_name)
            cls = getattr(module, attr)
        except (ImportError, AttributeError, ValueError) as exc:
            msg = f"strategy.class {self.class_path!r} cannot be imported: {exc}"
            raise ConfigError(msg) from exc
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            msg = f"strategy.class {self.class_path!r} is not a Strategy subclass"
            raise ConfigError(msg)
        try:
            return cls(**self.params)
        except TypeError as exc:
            msg = f"strategy.params do not fit {self.class_path}: {exc}"
            raise ConfigError(msg) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    data: DataConfig
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    strategy: StrategyConfig
    risk: tuple[dict[str, Any], ...] = ()

    def build_rules(self) -> list[RiskRule]:
        rules: list[RiskRule] = []
        for k, spec in enumerate(self.risk):
            params = dict(spec)
            name = params.pop("rule", None)
            factory = RULES.get(str(name))
            if factory is None:
                msg = f"risk[{k}].rule {name!r} is unknown (known: {', '.join(sorted(RULES))})"
                raise ConfigError(msg)
            if "schedule" in params:
                params["schedule"] = tuple(
                    tuple(float(x) for x in pair) for pair in params["schedule"]
                )
            try:
                rules.append(factory(**params))
            except TypeError as exc:
                msg = f"risk[{k}] ({name}): {exc}"
                raise ConfigError(msg) from exc
        return rules


_TOP_KEYS = {"data", "execution", "strategy", "risk"}
_DATA_KEYS = {"prices", "signals", "context", "features"}
_EXEC_TYPES: dict[str, tuple[type, ...]] = {
    "initial_cash": (int, float),
    "fill_at": (str,),
    "commission_rate": (int, float),
    "commission": (dict,),
    "slippage": (dict,),
    "allow_negative_cash": (bool,),
    "allow_short": (bool,),
    "validate": (bool,),
    "on_insufficient_cash": (str,),
    "on_no_bar": (str,),
    "on_delist": (str,),
    "max_participation": (int, float),
    "on_volume_limit": (str,),
}
#: execution keys whose value is one of an enum's values
_EXEC_CHOICES: dict[str, type[StrEnum]] = {
    "fill_at": FillAt,
    "on_insufficient_cash": CashPolicy,
    "on_no_bar": NoBarPolicy,
    "on_delist": DelistPolicy,
    "on_volume_limit": VolumePolicy,
}
_STRATEGY_KEYS = {"name", "class", "params"}


def _unknown(section: str, given: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(given) - allowed)
    if extra:
        msg = f"{section}: unknown key(s) {extra} (allowed: {sorted(allowed)})"
        raise ConfigError(msg)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        msg = f"{where} must be a mapping, got {type(value).__name__}"
        raise ConfigError(msg)
    return value


def _path(value: Any, where: str, base_dir: Path, must_exist: bool) -> Path:
    if not isinstance(value, str | Path):
        msg = f"{where} must be a file path, got {type(value).__name__}"
        raise ConfigError(msg)
    path = Path(value)
    if not path.is_absolute():
        beside_config = base_dir / path
        path = beside_config if beside_config.exists() or not path.exists() else path.resolve()
    if must_exist and not path.is_file():
        msg = f"{where}: file not found: {path}"
        raise ConfigError(msg)
    return path


def run_config_from_dict(
    raw: Any, *, base_dir: Path | None = None, check_files: bool = True
) -> RunConfig:
    """Build a `RunConfig` from parsed YAML; relative paths resolve against `base_dir`."""
    base = base_dir or Path.cwd()
    top = _mapping(raw, "config")
    _unknown("config", top, _TOP_KEYS)
    for key in ("data", "strategy"):
        if key not in top:
            msg = f"config: missing required section '{key}'"
            raise ConfigError(msg)
    data = _mapping(top["data"], "data")
    _unknown("data", data, _DATA_KEYS)
    if "prices" not in data:
        msg = "data.prices is required"
        raise ConfigError(msg)
    data_cfg = DataConfig(
        prices=_path(data["prices"], "data.prices", base, check_files),
        signals=_path(data["signals"], "data.signals", base, check_files)
        if data.get("signals")
        else None,
        context=_path(data["context"], "data.context", base, check_files)
        if data.get("context")
        else None,
        features=_path(data["features"], "data.features", base, check_files)
        if data.get("features")
        else None,
    )
    execution = _mapping(top.get("execution", {}) or {}, "execution")
    _unknown("execution", execution, set(_EXEC_TYPES))
    for key, value in execution.items():
        kinds = _EXEC_TYPES[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            msg = f"execution.{key} must be {names}, got {type(value).__name__} {value!r}"
            raise ConfigError(msg)
    exec_kwargs = dict(execution)
    for key, choices in _EXEC_CHOICES.items():
        if key in exec_kwargs:
            try:
                exec_kwargs[key] = choices(exec_kwargs[key])
            except ValueError:
                msg = f"execution.{key} must be one of {[c.value for c in choices]}, got {execution[key]!r}"
                raise ConfigError(msg) from None
    for key in ("initial_cash", "commission_rate", "max_participation"):
        if key in exec_kwargs:
            exec_kwargs[key] = float(exec_kwargs[key])
    exec_cfg = ExecutionConfig(**exec_kwargs)
    exec_cfg.commission_model()
    exec_cfg.slippage_model()
    strategy = _mapping(top["strategy"], "strategy")
    _unknown("strategy", strategy, _STRATEGY_KEYS)
    params = _mapping(strategy.get("params", {}) or {}, "strategy.params")
    strategy_cfg = StrategyConfig(
        name=strategy.get("name"), class_path=strategy.get("class"), params=dict(params)
    )
    risk_raw = top.get("risk") or []
    if not isinstance(risk_raw, list):
        msg = "risk must be a list of rules, e.g. [{rule: stop_loss, pct: 0.05}]"
        raise ConfigError(msg)
    risk = tuple(_mapping(r, f"risk[{k}]") for k, r in enumerate(risk_raw))
    cfg = RunConfig(data=data_cfg, execution=exec_cfg, strategy=strategy_cfg, risk=risk)
    cfg.strategy.build()
    cfg.build_rules()
    return cfg


def load_run_config(path: str | Path, *, check_files: bool = True) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        msg = f"config file not found: {path}"
        raise ConfigError(msg)
    raw = load_yaml(path)
    return run_config_from_dict(raw, base_dir=path.parent, check_files=check_files)
