"""A sweep's output folder, published whole (`results.publish.publish_dir`).

- `variants.parquet`: one row per variant: `variant`, a column per swept path (named by the
  path; numbers and text as they are, mappings and lists as JSON text) and the run's summary
  figures (`final_equity`, `sharpe`, ..., the benchmark's as `benchmark_<figure>`).
- `equity.parquet`: every variant's equity per bar (`variant`, `timestamp`, `equity`).
- `overfitting.json`: the trials, the best variant, PBO and the deflated Sharpe ratio.
- `best.yaml`: the best variant's whole run config (data paths absolute), to run on its own.
- `best/`: the best variant's backtest result, with its tear sheet (`best/report.html`).
- `sweep.html`: the sweep page (`sweep.page`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from ml4t_pipeline.engine.results.output import write_table, write_text
from ml4t_pipeline.engine.results.publish import publish_dir
from ml4t_pipeline.sweep.run import Sweep, overfitting_json

SWEEP_FILES = (
    "variants.parquet",
    "equity.parquet",
    "overfitting.json",
    "best.yaml",
    "sweep.html",
)
SWEEP_FOLDERS = ("best",)


def write_sweep(out: str | Path, sweep: Sweep, *, page: bool = True) -> Path:
    """Write every output and publish them together as `out` (the best variant's tear sheet
    and the sweep page unless `page` is False)."""
    members: dict[str, Callable[[Path], None]] = {
        "variants.parquet": functools.partial(write_table, variants_frame(sweep)),
        "equity.parquet": functools.partial(write_table, equity_frame(sweep)),
        "overfitting.json": functools.partial(write_text, overfitting_json(sweep)),
        "best.yaml": functools.partial(write_text, best_yaml(sweep)),
        "best": lambda path: _best(sweep, path, report=page),
    }
    if page:
        from ml4t_pipeline.sweep.page import render_sweep

        members["sweep.html"] = functools.partial(write_text, render_sweep(sweep))
    return publish_dir(out, members, optional=SWEEP_FILES, folders=SWEEP_FOLDERS)


def variants_frame(sweep: Sweep) -> pl.DataFrame:
    columns: dict[str, pl.Series] = {
        "variant": pl.Series("variant", [v.number for v in sweep.variants], dtype=pl.Int64)
    }
    for path in sweep.grid.paths:
        columns[path] = _values_column(path, [v.values[path] for v in sweep.variants])
    names: dict[str, None] = {}
    for outcome in sweep.outcomes:
        names.update(dict.fromkeys(outcome.figures))
    for name in names:
        values = [o.figures.get(name) for o in sweep.outcomes]
        whole = all(isinstance(v, int) or v is None for v in values)
        columns[name] = pl.Series(name, values, dtype=pl.Int64 if whole else pl.Float64)
    return pl.DataFrame(list(columns.values()))


def _values_column(path: str, values: list[Any]) -> pl.Series:
    """Swept values as one typed column: bool, whole numbers, numbers or text as they are;
    anything else (mappings, lists, mixed kinds) as JSON text."""
    if all(isinstance(v, bool) for v in values):
        return pl.Series(path, values, dtype=pl.Boolean)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pl.Series(path, values, dtype=pl.Int64)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return pl.Series(path, [float(v) for v in values], dtype=pl.Float64)
    if all(isinstance(v, str) for v in values):
        return pl.Series(path, values, dtype=pl.String)
    return pl.Series(path, [json.dumps(v, sort_keys=True) for v in values], dtype=pl.String)


def equity_frame(sweep: Sweep) -> pl.DataFrame:
    frames = [
        pl.DataFrame(
            {
                "variant": pl.Series([o.number] * o.equity.shape[0], dtype=pl.Int64),
                "timestamp": pl.Series(o.timestamps, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
                "equity": pl.Series(o.equity, dtype=pl.Float64),
            }
        )
        for o in sweep.outcomes
    ]
    return pl.concat(frames)


def best_yaml(sweep: Sweep) -> str:
    """The best variant's config as YAML, its data files by absolute path."""
    best = sweep.variants[sweep.best]
    raw = json.loads(json.dumps(best.raw, default=str))
    data = best.config.data
    raw["data"] = {
        key: str(getattr(data, key).resolve())
        for key in ("prices", "signals", "context", "features", "corporate_actions")
        if getattr(data, key) is not None
    }
    head = f"# variant {best.number} of the sweep: {best.label()}\n"
    return head + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def _best(sweep: Sweep, path: Path, *, report: bool) -> None:
    sweep.best_result.write(path, report=report)
