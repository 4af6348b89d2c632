"""Running a sweep: every variant of a grid on one decoded panel, then the overfitting figures.

1. Every variant's config is built and checked (`grid.Grid.variants`), and every variant's run
   is planned (`engine.api.plan_run`: the columns its strategy and rules name), before any
   bar is run.
2. The inputs are decoded once per feed (the columns and volume a variant's parts read; most
   sweeps have one): the parent builds the prepared panel (`engine.feed.prepared`, kept in the
   cache for later runs), and the workers memory-map one snapshot of it (`shared_copy`).
3. The variants run in worker processes (`workers`, each variant one task; spawned, not
   forked, so no worker inherits the parent's threads) or in this process for one worker.
   Each variant's run is exactly `run_backtest` on its config: the same plan, the same arrays.
4. The best variant (by `grid.select`, ties to the lowest number) is run again here, for its
   full result and report; it must reproduce the worker's final equity to the bit.
5. PBO (CSCV over `n_blocks` blocks) and the deflated Sharpe ratio of the best variant are
   computed from the variants' per-bar returns (`sweep.overfitting`).

Outputs do not depend on the number of workers or the order tasks finish in: every table is
ordered by variant number, and no wall-clock figure is written to a file.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml4t_pipeline.engine.api import feed_inputs, plan_run, run_on
from ml4t_pipeline.engine.config import RunConfig
from ml4t_pipeline.engine.feed import Feed
from ml4t_pipeline.engine.feed.prepared import (
    Inputs,
    PreparedData,
    load_entry,
    prepared_data,
    shared_copy,
)
from ml4t_pipeline.engine.results import BacktestResult
from ml4t_pipeline.engine.results.metrics import bar_returns
from ml4t_pipeline.engine.results.output import json_ready
from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.sweep.grid import Grid, Variant
from ml4t_pipeline.sweep.overfitting import (
    DeflatedSharpe,
    PboResult,
    deflated_sharpe,
    pbo,
    sharpe_per_bar,
)

#: summary figures that are not results of the run (they vary run to run)
_NOT_RESULTS = frozenset({"wall_s", "bars_per_s", "engine_wall_s", "validate_wall_s"})
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What a worker returns of one variant: its summary figures and its equity curve."""

    number: int
    figures: Mapping[str, Any]  # flat summary figures (numbers), no wall-clock ones
    timestamps: np.ndarray  # int64 us UTC per bar
    equity: np.ndarray  # float64 per bar
    start_equity: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Sweep:
    """A finished sweep: the grid, its variants and outcomes (by number), the best variant's
    full result, and the overfitting figures (None, with the reason, when undefined)."""

    grid: Grid
    variants: tuple[Variant, ...]
    outcomes: tuple[Outcome, ...]
    best: int
    best_result: BacktestResult
    pbo: PboResult | None
    pbo_note: str
    deflated: DeflatedSharpe | None
    deflated_note: str
    n_blocks: int
    wall_s: float

    def overfitting(self) -> dict[str, Any]:
        """overfitting.json: the trials, the best variant, PBO and the deflated Sharpe."""
        best = self.variants[self.best]
        return {
            "n_trials": len(self.variants),
            "select": self.grid.select,
            "best": {
                "variant": best.number,
                "values": dict(best.values),
                self.grid.select: self.outcomes[self.best].figures.get(self.grid.select),
            },
            "n_blocks": self.n_blocks,
            "pbo": self.pbo.pbo if self.pbo is not None else None,
            "pbo_detail": self.pbo.to_dict() if self.pbo is not None else None,
            "pbo_note": self.pbo_note,
            "deflated_sharpe": self.deflated.deflated_sharpe if self.deflated else None,
            "deflated_sharpe_detail": self.deflated.to_dict() if self.deflated else None,
            "deflated_sharpe_note": self.deflated_note,
        }

    def line(self) -> dict[str, Any]:
        """The CLI's last stdout line."""
        return {
            "variants": len(self.variants),
            "best": self.best,
            "best_values": dict(self.variants[self.best].values),
            self.grid.select: self.outcomes[self.best].figures.get(self.grid.select),
            "pbo": self.pbo.pbo if self.pbo is not None else None,
            "deflated_sharpe": self.deflated.deflated_sharpe if self.deflated else None,
            "wall_s": self.wall_s,
        }


def run_sweep(
    grid: Grid,
    variants: Sequence[Variant],
    *,
    workers: int | None = None,
    n_blocks: int | None = None,
    cache: Path,
    progress: Progress | None = None,
) -> Sweep:
    """Run every variant (see the module docstring); `cache` holds the prepared panels;
    `n_blocks` (default: the grid's `blocks`) cuts the bars for the PBO."""
    started = time.perf_counter()
    n_blocks = grid.blocks if n_blocks is None else n_blocks
    if isinstance(n_blocks, bool) or n_blocks < 2 or n_blocks % 2:
        msg = f"--blocks must be an even number >= 2, got {n_blocks}"
        raise ConfigError(msg)
    workers = _workers(workers, len(variants))
    feeds: dict[str, PreparedData | Inputs] = {}  # a run too long for one chunk: its inputs
    inputs = plan_variants(variants)
    keys = [i.key() for i in inputs]
    n_bars: set[int] = set()
    for key, found in zip(keys, inputs, strict=True):
        if key not in feeds:
            data = prepared_data(found, cache=cache)
            n_bars.add(int(data.calendar.timestamps.shape[0]))
            # a streaming MarketData is read once per run: each run makes its own
            feeds[key] = data if isinstance(data, PreparedData) else found
    if max(n_bars) < n_blocks:
        msg = f"--blocks {n_blocks}: the run has only {max(n_bars)} bars; give fewer blocks"
        raise ConfigError(msg)
    if workers == 1:
        outcomes = _in_process(variants, keys, feeds, progress)
    else:
        with ExitStack() as stack:  # one snapshot of each feed for every worker
            shared = {
                key: stack.enter_context(shared_copy(feed, cache))
                if isinstance(feed, PreparedData)
                else None
                for key, feed in feeds.items()
            }
            folders = [shared[key] for key in keys]
            outcomes = _in_workers(variants, folders, workers, progress)
    best = _best(outcomes, grid.select)
    config = variants[best].config
    best_result = run_on(config, _feed(feeds[keys[best]]), plan_run(config))
    if best_result.final_equity != outcomes[best].equity[-1]:  # the same run, bit for bit
        msg = (
            f"variant {best} ran to {outcomes[best].equity[-1]!r} in a worker and to "
            f"{best_result.final_equity!r} here: a run depends on more than its config and data"
        )
        raise RuntimeError(msg)
    returns = returns_matrix(outcomes)
    found_pbo, pbo_note = _pbo(returns, n_blocks)
    found_dsr, dsr_note = _deflated(returns, best)
    return Sweep(
        grid=grid,
        variants=tuple(variants),
        outcomes=tuple(outcomes),
        best=best,
        best_result=best_result,
        pbo=found_pbo,
        pbo_note=pbo_note,
        deflated=found_dsr,
        deflated_note=dsr_note,
        n_blocks=n_blocks,
        wall_s=time.perf_counter() - started,
    )


def returns_matrix(outcomes: Sequence[Outcome]) -> np.ndarray:
    """(bars, variants) per-bar simple returns of equity, the overfitting statistics' input."""
    return np.column_stack([bar_returns(o.equity, o.start_equity) for o in outcomes])


def plan_variants(variants: Sequence[Variant]) -> list[Inputs]:
    """Plan every variant's run (its parts built, the columns they name checked against the
    inputs) and give the feed each reads; a `ConfigError` names the variant."""
    found = []
    for variant in variants:
        try:
            found.append(feed_inputs(variant.config, plan_run(variant.config)))
        except ConfigError as exc:
            msg = f"grid variant {variant.number} ({variant.label()}): {exc}"
            raise ConfigError(msg) from None
    return found


def _workers(asked: int | None, n_variants: int) -> int:
    if asked is not None and (isinstance(asked, bool) or asked < 1):
        msg = f"--workers must be a whole number >= 1, got {asked!r}"
        raise ConfigError(msg)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(asked or cores or 1, n_variants))


def _feed(found: PreparedData | Inputs) -> Feed:
    """The data of one run: the shared prepared panel, or its own streaming `MarketData`."""
    return found if isinstance(found, PreparedData) else found.market_data()


def _in_process(
    variants: Sequence[Variant],
    keys: Sequence[str],
    feeds: Mapping[str, PreparedData | Inputs],
    progress: Progress | None,
) -> list[Outcome]:
    outcomes = []
    for done, (variant, key) in enumerate(zip(variants, keys, strict=True), start=1):
        outcomes.append(_outcome(variant.number, variant.config, _feed(feeds[key])))
        if progress is not None:
            progress(done, len(variants))
    return outcomes


def _in_workers(
    variants: Sequence[Variant],
    folders: Sequence[Path | None],
    workers: int,
    progress: Progress | None,
) -> list[Outcome]:
    found: dict[int, Outcome] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        tasks = [
            pool.submit(run_variant, v.number, v.config, folder)
            for v, folder in zip(variants, folders, strict=True)
        ]
        for done, task in enumerate(as_completed(tasks), start=1):
            outcome = task.result()
            found[outcome.number] = outcome
            if progress is not None:
                progress(done, len(variants))
    return [found[v.number] for v in variants]


def run_variant(number: int, config: RunConfig, folder: Path | None) -> Outcome:
    """One variant in a worker: its data from the parent's snapshot of the prepared panel
    (None: a run too long for one chunk, which streams its own)."""
    data: Feed
    if folder is not None:
        data = load_entry(folder, config.data.corporate_actions)
    else:
        data = feed_inputs(config, plan_run(config)).market_data()
    return _outcome(number, config, data)


def _outcome(number: int, config: RunConfig, data: Feed) -> Outcome:
    result = run_on(config, data, plan_run(config))
    return Outcome(
        number=number,
        figures=figures(result),
        timestamps=result.equity["timestamp"].dt.epoch("us").to_numpy(),
        equity=result.equity["equity"].to_numpy(),
        start_equity=result.start_equity,
    )


def figures(result: BacktestResult) -> dict[str, Any]:
    """The run's summary as flat numbers: the benchmark section as `benchmark_<figure>`."""
    out: dict[str, Any] = {}
    for key, value in result.summary().items():
        if key in _NOT_RESULTS:
            continue
        if isinstance(value, Mapping):
            for inner, figure in value.items():
                if _number(figure) or figure is None:
                    out[f"benchmark_{inner}" if key == "benchmark" else f"{key}_{inner}"] = figure
        elif _number(value) or value is None:
            out[key] = value
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _best(outcomes: Sequence[Outcome], select: str) -> int:
    """The variant with the highest `select` figure; undefined figures rank last, ties go to
    the lowest number."""

    def score(o: Outcome) -> float:
        value: Any = o.figures.get(select)
        return float(value) if _number(value) and math.isfinite(value) else -math.inf

    scores = [score(o) for o in outcomes]
    return int(np.argmax(scores))


def _pbo(returns: np.ndarray, n_blocks: int) -> tuple[PboResult | None, str]:
    try:
        return pbo(returns, n_blocks=n_blocks), ""
    except ValueError as exc:
        return None, str(exc)


def _deflated(returns: np.ndarray, best: int) -> tuple[DeflatedSharpe | None, str]:
    try:
        trials = sharpe_per_bar(returns)
        return deflated_sharpe(returns[:, best], trials, n_trials=returns.shape[1]), ""
    except ValueError as exc:
        return None, str(exc)


def overfitting_json(sweep: Sweep) -> str:
    return json.dumps(json_ready(sweep.overfitting()), indent=2, sort_keys=True, allow_nan=False)
