"""What the asset catalog says about every asset: its owner, its kinds and its code version.

One table for the whole graph (`ASSET_CATALOG`), applied by `catalogued` when the assets are
built, so the UI, `dg list defs` and Dagster's staleness read the same facts.

- **Owner**: `OWNER`, a Dagster team string.
- **Kinds**: what an asset is made of and stored as (the UI's icons, `kind:` selections):
  `parquet` for files on disk, `polars` for frames and tables, `numpy` for the engine's
  arrays.
- **Code version**: a digest of the code that computes the asset's value, taken from the
  compiled functions, classes and constants of the modules named for it. Any change to what
  that code does changes the version, and Dagster then shows the asset (and what depends on
  it) as stale; moving files, editing comments or docstrings, or another checkout path does
  not. The digest reads no file (the bytecode is already loaded) and is the same in every
  process of one Python version. A code version an asset already declares is kept: an asset
  whose version also covers its configuration (`backtest`) says so itself.
"""

import hashlib
import inspect
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

OWNER = "team:quant-research"
"""Who answers for every asset of the pipeline (a Dagster `team:` owner)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogEntry:
    """An asset's kinds and the modules whose code computes its value."""

    kinds: frozenset[str]
    modules: tuple[str, ...]


_INPUTS = "ml4t_pipeline.pipeline.assets.inputs"
_RAW = CatalogEntry(
    kinds=frozenset({"parquet"}), modules=(_INPUTS, "ml4t_pipeline.validation.cache")
)
_VALIDATED = CatalogEntry(
    kinds=frozenset({"polars", "parquet"}), modules=(_INPUTS, "ml4t_pipeline.validation.io")
)
ASSET_CATALOG: Mapping[str, CatalogEntry] = {
    **{f"raw_{role}": _RAW for role in ("prices", "signals", "context", "corporate_actions")},
    **{
        f"validated_{role}": _VALIDATED
        for role in ("prices", "signals", "context", "corporate_actions")
    },
    "feature_table": CatalogEntry(
        kinds=frozenset({"polars", "parquet"}),
        modules=(
            "ml4t_pipeline.pipeline.assets.features",
            "ml4t_pipeline.pipeline.partitions",
            "ml4t_pipeline.validation.timing",
        ),
    ),
    "backtest": CatalogEntry(
        kinds=frozenset({"numpy", "polars", "parquet"}),
        # (and the summary's metrics and benchmark each month stores)
        modules=(
            "ml4t_pipeline.pipeline.assets.backtest",
            "ml4t_pipeline.engine.benchmark",
            "ml4t_pipeline.engine.results.metrics",
        ),
    ),
    "trade_attribution": CatalogEntry(
        kinds=frozenset({"polars", "parquet"}),
        modules=(
            "ml4t_pipeline.pipeline.assets.attribution",
            "ml4t_pipeline.engine.results.attribution",
        ),
    ),
    "performance_summary": CatalogEntry(
        kinds=frozenset({"polars", "parquet"}),
        modules=(
            "ml4t_pipeline.pipeline.assets.summary",
            "ml4t_pipeline.engine.results.metrics",
            # its report.html, written beside it
            "ml4t_pipeline.report.stats",
            "ml4t_pipeline.report.html",
            "ml4t_pipeline.report.charts",
        ),
    ),
    "parameter_sweep": CatalogEntry(
        kinds=frozenset({"numpy", "parquet"}),
        modules=(
            "ml4t_pipeline.pipeline.assets.sweep",
            "ml4t_pipeline.pipeline.universe_inputs",
            "ml4t_pipeline.sweep.grid",
            "ml4t_pipeline.sweep.run",
            "ml4t_pipeline.sweep.overfitting",
        ),
    ),
}
"""Every asset of the graph by name; an asset missing here is an error when assets are built."""


_PLAIN_CONSTANTS = (str, int, float, bool, tuple, frozenset)


def _constant(value: object) -> Iterator[str]:
    """A constant as stable text: sets sorted (their order follows the string hash seed),
    code objects by what they do."""
    if isinstance(value, types.CodeType):
        yield from _code(value)
    elif type(value) in (frozenset, set):
        yield "{" + ",".join(sorted(repr(v) for v in value)) + "}"  # type: ignore[attr-defined]
    elif type(value) is tuple:
        yield "("
        for item in value:
            yield from _constant(item)
        yield ")"
    else:
        yield repr(value)


def _code(code: types.CodeType, *, docstring: str | None = None) -> Iterator[str]:
    """The instructions, names and constants of `code` and the code nested in it; not its
    file, line numbers or docstring."""
    yield code.co_name
    yield code.co_code.hex()
    yield repr(code.co_names)
    yield repr(code.co_varnames)
    consts = code.co_consts
    if docstring is not None and consts and consts[0] == docstring:
        consts = consts[1:]
    for value in consts:
        yield from _constant(value)


def _members(module: types.ModuleType) -> Iterator[str]:
    for name, value in sorted(vars(module).items()):
        if name.startswith("__"):
            continue
        if inspect.isfunction(value) and value.__module__ == module.__name__:
            yield f"def {name}"
            yield from _code(value.__code__, docstring=value.__doc__)
        elif inspect.isclass(value) and value.__module__ == module.__name__:
            yield f"class {name}"
            for attr, member in sorted(vars(value).items()):
                function = getattr(member, "__func__", member)
                if isinstance(member, property):
                    function = member.fget
                if inspect.isfunction(function):
                    yield f"{name}.{attr}"
                    yield from _code(function.__code__, docstring=function.__doc__)
        elif type(value) in _PLAIN_CONSTANTS and name.isupper():
            yield f"{name}="
            yield from _constant(value)


def code_version(modules: Sequence[str]) -> str:
    """The digest (16 hex digits) of what the named, already importable modules compute."""
    digest = hashlib.sha256()
    for name in modules:
        module = __import__(name, fromlist=["_"])
        digest.update(name.encode())
        for part in _members(module):
            digest.update(part.encode())
            digest.update(b"\0")
    return digest.hexdigest()[:16]


def _catalogued_spec(spec: dg.AssetSpec) -> dg.AssetSpec:
    name = spec.key.to_user_string()
    entry = ASSET_CATALOG.get(name)
    if entry is None:
        msg = f"asset {name!r} has no entry in ml4t_pipeline/pipeline/catalog.py ASSET_CATALOG"
        raise dg.DagsterInvalidDefinitionError(msg)
    # the code's digest, and a version the asset declares itself (the run config's
    # fingerprint of `backtest`): a change of either makes the asset's results stale
    code = code_version(entry.modules)
    return spec.replace_attributes(
        owners=[OWNER],
        kinds=set(entry.kinds),
        code_version=f"{code}+{spec.code_version}" if spec.code_version else code,
    )


def catalogued(assets: Iterable[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """`assets` with the catalog's owner, kinds and code versions."""
    return [asset.map_asset_specs(_catalogued_spec) for asset in assets]
