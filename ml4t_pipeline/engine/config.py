"""Run configuration: frozen dataclasses, validated on construction, loaded from YAML.

Every default is defined once, here. Unknown keys, wrong types and missing files are
`ConfigError`s naming the key path.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml4t_pipeline.engine.enums import (
    BenchmarkKind,
    CashPolicy,
    DelistPolicy,
    FillAt,
    NoBarPolicy,
    VolumePolicy,
)
from ml4t_pipeline.engine.execution.costs import (
    CommissionModel,
    NoSlippage,
    PercentCommission,
    SlippageModel,
    commission_from_spec,
    slippage_from_spec,
)
from ml4t_pipeline.engine.params import (
    FLAG,
    NAME,
    RATE,
    Check,
    Choice,
    Number,
    check_fields,
    fail,
    unknown_keys,
)
from ml4t_pipeline.engine.risk.context import RiskRule
from ml4t_pipeline.engine.risk.rules import RULES
from ml4t_pipeline.engine.strategy.base import Strategy
from ml4t_pipeline.engine.strategy.builtin import BUILTIN_STRATEGIES
from ml4t_pipeline.engine.yaml_load import load_yaml
from ml4t_pipeline.errors import ConfigError, shown

#: above this float64 no longer keeps cents of the cash balance
MAX_CASH = 1e13


class _CostSpec:
    """An `execution.commission` / `execution.slippage` mapping: checked by building it."""

    def __init__(self, build: Any) -> None:
        self._build = build

    def expected(self) -> str:
        return "a mapping with a 'model' and its parameters"

    def check(self, where: str, value: Any) -> Any:
        if value is not None:
            self._build(where, value)
        return value


#: every execution key, with its check (the defaults are the fields of `ExecutionConfig`)
_EXECUTION: dict[str, Check] = {
    "initial_cash": Number(
        low=0, high=MAX_CASH, low_open=True, noun="an amount of cash", meaning="float64 cents"
    ),
    "fill_at": Choice(FillAt),
    "commission_rate": RATE,
    "commission": _CostSpec(commission_from_spec),
    "slippage": _CostSpec(slippage_from_spec),
    "allow_negative_cash": FLAG,
    "allow_short": FLAG,
    "validate": FLAG,
    "on_insufficient_cash": Choice(CashPolicy),
    "on_no_bar": Choice(NoBarPolicy),
    "on_delist": Choice(DelistPolicy),
    "max_participation": Number(
        low=0,
        high=1,
        low_open=True,
        noun="a fraction of bar volume",
        meaning="0.1 for 10 %",
        optional=True,
    ),
    "on_volume_limit": Choice(VolumePolicy),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class DataConfig:
    prices: Path
    signals: Path | None = None
    context: Path | None = None
    features: Path | None = None  # extra precomputed features (see engine.features)
    corporate_actions: Path | None = None  # splits and dividends (see engine.feed.actions)


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
        check_fields(self, "execution", _EXECUTION)
        if self.commission is not None and self.commission_rate != 0.0:
            msg = (
                "execution: give commission_rate (a percent of notional) or a commission model, "
                f"not both (commission_rate={self.commission_rate!r} would be ignored)"
            )
            raise ConfigError(msg)

    def commission_model(self) -> CommissionModel:
        if self.commission is None:
            return PercentCommission(rate=self.commission_rate)
        return commission_from_spec("execution.commission", self.commission)

    def slippage_model(self) -> SlippageModel:
        if self.slippage is None:
            return NoSlippage()
        return slippage_from_spec("execution.slippage", self.slippage)


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
            fail("strategy.name", f"a built-in: {', '.join(sorted(BUILTIN_STRATEGIES))}", self.name)
        if self.class_path is not None and not (
            isinstance(self.class_path, str) and _CLASS_PATH.fullmatch(self.class_path)
        ):
            fail("strategy.class", "'package.module:ClassName'", self.class_path)
        if not isinstance(self.params, Mapping) or not all(isinstance(k, str) for k in self.params):
            fail("strategy.params", "a mapping of parameter names to values", self.params)

    def build(self) -> Strategy:
        if self.name is not None:
            return BUILTIN_STRATEGIES[self.name](**self.params)
        assert self.class_path is not None
        module_name, _, attr = self.class_path.partition(":")
        try:
            module = importlib.import_module(module_name)
            cls = getattr(module, attr)
        except (ImportError, AttributeError) as exc:
            msg = f"strategy.class {shown(self.class_path)} cannot be imported: {exc}"
            raise ConfigError(msg) from exc
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            msg = f"strategy.class {shown(self.class_path)} is not a Strategy subclass"
            raise ConfigError(msg)
        try:
            return cls(**self.params)
        except TypeError as exc:
            msg = f"strategy.params do not fit {self.class_path}: {exc}"
            raise ConfigError(msg) from exc


#: every metrics key, with its check (the defaults are the fields of `MetricsConfig`)
_METRICS: dict[str, Check] = {
    "periods_per_year": Number(
        low=0,
        low_open=True,
        noun="bars per year",
        meaning="252 for daily bars; leave it out to infer it from the bar spacing",
        optional=True,
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """`metrics:` how the summary annualizes (docs/METRICS.md)."""

    periods_per_year: float | None = None  # None: from the median bar spacing

    def __post_init__(self) -> None:
        check_fields(self, "metrics", _METRICS)


_BENCHMARK_SPELLINGS = (
    "{kind: equal_weight} (the default), {asset: <asset_id>}, {context: <column>} or {kind: none}"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchmarkConfig:
    """`benchmark:` what the run is compared with (`engine.benchmark` builds it): an
    equal-weight basket (the default), one asset, a context price level, or none."""

    kind: BenchmarkKind = BenchmarkKind.EQUAL_WEIGHT
    asset: str | int | None = None  # the asset id of kind asset
    column: str | None = None  # the context column of kind context

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Choice(BenchmarkKind).check("benchmark.kind", self.kind))
        if self.kind is BenchmarkKind.ASSET:
            if isinstance(self.asset, bool) or not (
                isinstance(self.asset, int) or (isinstance(self.asset, str) and self.asset.strip())
            ):
                fail("benchmark.asset", "an asset id (text or a whole number)", self.asset)
        elif self.asset is not None:
            fail("benchmark.asset", f"left out for kind {self.kind}", self.asset)
        if self.kind is BenchmarkKind.CONTEXT:
            NAME.check("benchmark.context", self.column)
        elif self.column is not None:
            fail("benchmark.context", f"left out for kind {self.kind}", self.column)

    @property
    def named(self) -> dict[str, Any]:
        """What the benchmark follows, as summary.json shows it (`asset` or `column`)."""
        if self.kind is BenchmarkKind.ASSET:
            return {"asset": self.asset}
        if self.kind is BenchmarkKind.CONTEXT:
            return {"column": self.column}
        return {}


def benchmark_from_yaml(value: Any) -> BenchmarkConfig:
    """The `benchmark:` section: a mapping with exactly one of `kind` (equal_weight or none),
    `asset` or `context`; anything else is a ConfigError listing the spellings allowed."""
    if not isinstance(value, dict) or len(value) != 1:
        fail("benchmark", _BENCHMARK_SPELLINGS, value)
    unknown_keys("benchmark", value, {"kind", "asset", "context"})
    ((key, given),) = value.items()
    if key == "asset":
        return BenchmarkConfig(kind=BenchmarkKind.ASSET, asset=given)
    if key == "context":
        return BenchmarkConfig(kind=BenchmarkKind.CONTEXT, column=given)
    if given not in (BenchmarkKind.EQUAL_WEIGHT, BenchmarkKind.NONE):
        fail(
            "benchmark.kind", "equal_weight or none (or give {asset: ...} / {context: ...})", given
        )
    return BenchmarkConfig(kind=BenchmarkKind(given))


#: "package.module:ClassName": dotted identifiers, no relative import
_CLASS_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    data: DataConfig
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    strategy: StrategyConfig
    risk: tuple[dict[str, Any], ...] = ()
    #: the data contract's policy (`validation.CoveragePolicy` fields), e.g. strict splits
    validation: dict[str, Any] = field(default_factory=dict)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def validation_policy(self) -> Any:
        """The `CoveragePolicy` of `validation` (imported here only: the engine runs without
        the validation layer); a bad key or value is a ConfigError naming `validation.<key>`."""
        from dataclasses import fields

        from ml4t_pipeline.validation.policy import CoveragePolicy

        unknown_keys("validation", self.validation, {f.name for f in fields(CoveragePolicy)})
        try:
            return CoveragePolicy(**self.validation)
        except ConfigError as exc:
            msg = f"validation: {exc}"
            raise ConfigError(msg) from None

    def build_rules(self) -> list[RiskRule]:
        """The risk rules, each checked: `risk[k].<param>` names a bad parameter."""
        rules: list[RiskRule] = []
        for k, spec in enumerate(self.risk):
            where = f"risk[{k}]"
            if not isinstance(spec, Mapping):
                fail(where, "a mapping such as {rule: stop_loss, pct: 0.05}", spec)
            params = dict(spec)
            name = params.pop("rule", None)
            factory = RULES.get(name) if isinstance(name, str) else None
            if factory is None:
                fail(f"{where}.rule", f"one of {', '.join(sorted(RULES))}", name)
            rules.append(factory(**factory.checked(where, params)))
        return rules


_TOP_KEYS = {"data", "execution", "strategy", "risk", "validation", "benchmark", "metrics"}
_OPTIONAL_FILES = ("signals", "context", "features", "corporate_actions")
_DATA_KEYS = {"prices", *_OPTIONAL_FILES}
_STRATEGY_KEYS = {"name", "class", "params"}


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        msg = f"{where} must be a mapping, got {type(value).__name__}"
        raise ConfigError(msg)
    return value


def _path(value: Any, where: str, base_dir: Path, must_exist: bool) -> Path:
    if not isinstance(value, str | Path) or not str(value).strip():
        fail(where, "a file path (leave the key out for none)", value)
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
    unknown_keys("", top, _TOP_KEYS)
    for key in ("data", "strategy"):
        if key not in top:
            msg = f"config: missing required section '{key}'"
            raise ConfigError(msg)
    data = _mapping(top["data"], "data")
    unknown_keys("data", data, _DATA_KEYS)
    if "prices" not in data:
        msg = "data.prices is required"
        raise ConfigError(msg)
    data_cfg = DataConfig(
        prices=_path(data["prices"], "data.prices", base, check_files),
        **{
            key: _path(data[key], f"data.{key}", base, check_files)
            for key in _OPTIONAL_FILES
            if data.get(key) is not None
        },
    )
    execution = _mapping(top.get("execution", {}) or {}, "execution")
    unknown_keys("execution", execution, _EXECUTION)
    exec_cfg = ExecutionConfig(**execution)
    strategy = _mapping(top["strategy"], "strategy")
    unknown_keys("strategy", strategy, _STRATEGY_KEYS)
    params = _mapping(strategy.get("params", {}) or {}, "strategy.params")
    strategy_cfg = StrategyConfig(
        name=strategy.get("name"), class_path=strategy.get("class"), params=dict(params)
    )
    risk_raw = top.get("risk") or []
    if not isinstance(risk_raw, list):
        fail("risk", "a list of rules, e.g. [{rule: stop_loss, pct: 0.05}]", risk_raw)
    risk = tuple(_mapping(r, f"risk[{k}]") for k, r in enumerate(risk_raw))
    validation = _mapping(top.get("validation", {}) or {}, "validation")
    metrics = _mapping(top.get("metrics", {}) or {}, "metrics")
    unknown_keys("metrics", metrics, _METRICS)
    cfg = RunConfig(
        data=data_cfg,
        execution=exec_cfg,
        strategy=strategy_cfg,
        risk=risk,
        validation=dict(validation),
        benchmark=benchmark_from_yaml(top["benchmark"])
        if "benchmark" in top
        else BenchmarkConfig(),
        metrics=MetricsConfig(**metrics),
    )
    cfg.strategy.build()
    cfg.build_rules()
    if validation:
        cfg.validation_policy()
    return cfg


def load_run_config(path: str | Path, *, check_files: bool = True) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        msg = f"config file not found: {path}"
        raise ConfigError(msg)
    raw = load_yaml(path)
    return run_config_from_dict(raw, base_dir=path.parent, check_files=check_files)
