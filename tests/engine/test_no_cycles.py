"""A finished run is freed as soon as its last reference goes, without the garbage collector.

Sweeps and the Dagster layer run many backtests in one process: a reference cycle through the
engine's parts (the broker and the order desk read each other) would keep every finished
run's dense arrays alive until a full collection, and the next load would pay for fresh
memory (measured: the second W4 load in one process took 2.5 x the first).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml4t_pipeline.engine import MarketData, run_config_from_dict
from ml4t_pipeline.engine.loop import Engine
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "risk", [[], [{"rule": "stop_loss", "pct": 0.05}, {"rule": "time_exit", "max_bars": 3}]]
)
def test_a_finished_run_leaves_no_cycle_holding_its_arrays(
    tmp_path: Path, no_gc: None, risk: list[dict[str, object]]
) -> None:
    paths = write_sample_data(SampleSpec(assets=6, days=40, seed=2), tmp_path)
    cfg = run_config_from_dict(
        {
            "data": {k: str(paths[k]) for k in ("prices", "signals", "context")},
            "strategy": {"name": "top_k_rotation", "params": {"top_k": 2, "warmup_bars": 2}},
            "risk": risk,
        }
    )
    data = MarketData(paths["prices"], paths["signals"], paths["context"])
    engine = Engine(cfg, data)
    result = engine.run()
    close = engine.clock.panel.close
    arrays = weakref.ref(close.base if close.base is not None else close)
    assert result.fills.height > 0
    del engine, result, data, close
    assert arrays() is None, "a reference cycle keeps the run's arrays alive"
