"""The golden cases of `cases.yaml`: their datasets, and how each is run and written.

Everything goes through the engine's public interface (`run_config_from_dict`, `run_backtest`
with `start`/`end`/`initial_state`, `BacktestResult.write`), so the engine's internals can
change freely as long as the outputs stay the same bytes.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from ml4t_pipeline.engine import BacktestResult, run_backtest, run_config_from_dict
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data

CASES_FILE = Path(__file__).with_name("cases.yaml")
EXPECTED_DIR = Path(__file__).with_name("expected")
INPUTS = ("prices", "signals", "context")
#: Input files of a dataset, by dataset name: {"prices": path, "signals": path, "context": path}.
Inputs = Callable[[str], dict[str, Path]]
#: What a case's `covers` can name: table and column whose values must include the listed ones.
COVERAGE: Mapping[str, tuple[str, str]] = {
    "order_types": ("orders", "order_type"),
    "order_statuses": ("orders", "status"),
    "exit_reasons": ("trades", "exit_reason"),
    "directions": ("trades", "direction"),
    "rejections": ("rejections", "reason"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Dataset:
    """A generated market; `windows` keeps each named asset's bars in [first, stop) ranges."""

    name: str
    spec: SampleSpec
    windows: Mapping[str, tuple[tuple[int, int], ...]]

    def write(self, folder: Path) -> dict[str, Path]:
        """Generate the inputs under `folder`; returns the paths of prices, signals, context."""
        paths = write_sample_data(self.spec, folder / "generated")
        if not self.windows:
            return {k: paths[k] for k in INPUTS}
        out = folder / "windowed"
        out.mkdir()
        written = {"context": paths["context"]}
        for key in ("prices", "signals"):
            frame = _keep_windows(pl.read_parquet(paths[key]), self.windows)
            written[key] = out / f"{key}.parquet"
            frame.write_parquet(written[key])
        return written


def _keep_windows(
    frame: pl.DataFrame, windows: Mapping[str, tuple[tuple[int, int], ...]]
) -> pl.DataFrame:
    bar = pl.col("timestamp").rank("dense").cast(pl.Int64) - 1
    frame = frame.with_columns(bar.alias("_bar"))
    for asset, ranges in windows.items():
        inside = pl.lit(False)
        for first, stop in ranges:
            inside = inside | pl.col("_bar").is_between(first, stop, closed="left")
        frame = frame.filter((pl.col("asset_id") != asset) | inside)
    return frame.drop("_bar")


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One golden configuration: a run config (without `data`) over a dataset.

    `months` (boundaries) makes it a chain of runs, each continuing from the previous one's
    final state; their outputs are stored per month. `covers` names values that must occur in
    the results (see `COVERAGE`), so a regenerated golden cannot quietly stop exercising them.
    """

    name: str
    dataset: str
    config: Mapping[str, Any]
    months: tuple[dt.date, ...] = ()
    covers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def run(self, inputs: Mapping[str, Path]) -> dict[str, BacktestResult]:
        """The results by output folder ('' for a single run, the month for a chain)."""
        config = run_config_from_dict({"data": {k: str(inputs[k]) for k in INPUTS}, **self.config})
        if not self.months:
            return {"": run_backtest(config)}
        results: dict[str, BacktestResult] = {}
        previous: BacktestResult | None = None
        for start, end in itertools.pairwise(self.months):
            previous = run_backtest(
                config,
                start=start,
                end=end,
                initial_state=previous.final_state if previous is not None else None,
            )
            results[start.strftime("%Y-%m")] = previous
        return results

    def missing_coverage(self, results: Mapping[str, BacktestResult]) -> list[str]:
        """The `covers` values that none of the results shows."""
        missing: list[str] = []
        for key, wanted in self.covers.items():
            table, column = COVERAGE[key]
            seen = {v for r in results.values() for v in getattr(r, table)[column].to_list()}
            missing += [f"{key}: {value!r}" for value in wanted if value not in seen]
        return missing


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalog:
    datasets: Mapping[str, Dataset]
    cases: Mapping[str, Case]


def load_catalog(path: Path = CASES_FILE) -> Catalog:
    """Parse `cases.yaml` (keys starting with '_' are YAML anchors only)."""
    raw = yaml.safe_load(path.read_text())
    datasets = {
        name: Dataset(
            name=name,
            spec=SampleSpec(**body["spec"]),
            windows={
                asset: tuple((int(a), int(b)) for a, b in ranges)
                for asset, ranges in (body.get("windows") or {}).items()
            },
        )
        for name, body in raw["datasets"].items()
    }
    cases = {
        name: Case(
            name=name,
            dataset=body["data"],
            config=body["config"],
            months=tuple(body.get("months") or ()),
            covers={k: tuple(v) for k, v in (body.get("covers") or {}).items()},
        )
        for name, body in raw["cases"].items()
    }
    unknown = sorted({c.dataset for c in cases.values()} - set(datasets))
    unknown += sorted({k for c in cases.values() for k in c.covers} - set(COVERAGE))
    if unknown:
        msg = f"{path}: unknown dataset(s) or covers key(s) {unknown}"
        raise ValueError(msg)
    return Catalog(datasets=datasets, cases=cases)
