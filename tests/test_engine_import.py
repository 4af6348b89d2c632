"""The import contract: the engine and the validation layer are libraries, Dagster is a shell.

- Importing every module of `ml4t_pipeline.engine` and `ml4t_pipeline.validation`, and the CLI,
  in a fresh interpreter does not import dagster.
- Statically (every module file parsed): only `ml4t_pipeline.pipeline` imports dagster; it
  reaches the engine through `ml4t_pipeline.engine` and `ml4t_pipeline.engine.tolerances` only,
  and the validation layer through `ml4t_pipeline.validation`; the engine's results package
  does not import the loop.
"""

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ml4t_pipeline"
PIPELINE = PACKAGE / "pipeline"
ENGINE_API = {"ml4t_pipeline.engine", "ml4t_pipeline.engine.tolerances"}
VALIDATION_API = {"ml4t_pipeline.validation"}


@dataclass(frozen=True, slots=True)
class Imported:
    """One imported module and the names taken from it (empty for `import x`); `derived` when
    it is `pkg.name` for a `from pkg import name`, which may be a submodule or an attribute."""

    module: str
    names: frozenset[str]
    line: int
    derived: bool = False


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_in(source: str, module: str, *, is_package: bool) -> Iterator[Imported]:
    """Every import in the source of `module` (top level, functions, TYPE_CHECKING blocks),
    relative imports resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source, filename=module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Imported(alias.name, frozenset(), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            parent = ".".join([*base, *([node.module] if node.module else [])])
            names = frozenset(alias.name for alias in node.names)
            yield Imported(parent, names, node.lineno)
            for name in sorted(names):
                yield Imported(f"{parent}.{name}", frozenset(), node.lineno, derived=True)


def imports_of(path: Path) -> Iterator[Imported]:
    source = path.read_text(encoding="utf-8")
    return imports_in(source, _module_name(path), is_package=path.name == "__init__.py")


def _modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _where(path: Path, imported: Imported) -> str:
    return f"{path.relative_to(REPO)}:{imported.line} imports {imported.module}"


def test_the_engine_validation_and_cli_import_without_dagster() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import ml4t_pipeline.cli, ml4t_pipeline.engine, ml4t_pipeline.validation\n"
        "for package in (ml4t_pipeline.engine, ml4t_pipeline.validation):\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('dagster')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert out.stdout.strip() == "[]"


def test_only_the_pipeline_package_imports_dagster() -> None:
    offenders = [
        _where(path, imported)
        for path in _modules(PACKAGE)
        if not path.is_relative_to(PIPELINE)
        for imported in imports_of(path)
        if imported.module.split(".")[0].startswith("dagster")
    ]
    assert offenders == []


def test_the_pipeline_uses_the_public_engine_and_validation_api() -> None:
    offenders = []
    for path in _modules(PIPELINE):
        for imported in imports_of(path):
            module = imported.module
            if imported.derived and not _is_module(module):
                continue  # `from ml4t_pipeline.engine import run_backtest`: a name, not a module
            if module.startswith("ml4t_pipeline.engine") and module not in ENGINE_API:
                offenders.append(_where(path, imported))
            if module.startswith("ml4t_pipeline.validation") and module not in VALIDATION_API:
                offenders.append(_where(path, imported))
    assert offenders == []


def test_the_import_walk_resolves_relative_and_submodule_imports() -> None:
    source = (
        "import numpy as np\nfrom ..loop import run\nfrom .. import loop\nfrom . import tables\n"
    )
    found = {
        (i.module, i.derived)
        for i in imports_in(source, "ml4t_pipeline.engine.results.x", is_package=False)
    }
    assert ("numpy", False) in found
    assert ("ml4t_pipeline.engine.loop", False) in found
    assert ("ml4t_pipeline.engine.loop", True) in found
    assert ("ml4t_pipeline.engine.results.tables", True) in found
    package = {i.module for i in imports_in("from . import a", "p.q", is_package=True)}
    assert package == {"p.q", "p.q.a"}


def test_results_do_not_import_the_loop() -> None:
    offenders = [
        _where(path, imported)
        for path in _modules(PACKAGE / "engine" / "results")
        for imported in imports_of(path)
        if imported.module == "ml4t_pipeline.engine.loop"
        or imported.module.startswith("ml4t_pipeline.engine.loop.")
    ]
    assert offenders == []
