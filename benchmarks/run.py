"""Benchmarks of the canonical workloads (shared/WORKLOADS.md). Prints numbers; asserts nothing.

    .venv/bin/python benchmarks/run.py [--repeat 3] [--only w1,w3,w4,risk]

- W4 (3,000 assets x 2,520 bars) end to end: a fresh `ml4t-pipeline backtest` process per run
  (interpreter start, imports, Parquet load, validation off/on, result writing), wall seconds
  and the child's peak RSS.
- W3 (500 x 252) and W1 (1 x 10,000, per-event callback): engine time in-process, split into
  data load and the loop, interpreter start and imports excluded.
- Risk cost on W4: no rule vs a stop-loss vs four rules, engine time.
Data is generated once under benchmarks/data/ (git-ignored) with the sample-data generator.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from ml4t_pipeline.engine import MarketData, load_run_config
from ml4t_pipeline.engine.loop import Engine
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
CLI = Path(sys.executable).with_name("ml4t-pipeline")

WORKLOADS = {
    "w1": SampleSpec(assets=1, days=10_000, scenario="mixed", seed=1, start=dt.date(1985, 1, 1)),
    "w3": SampleSpec(assets=500, days=252, scenario="mixed", seed=3, start=dt.date(2020, 1, 1)),
    "w4": SampleSpec(assets=3_000, days=2_520, scenario="mixed", seed=4, start=dt.date(2010, 1, 1)),
}
THRESHOLD = {
    "name": "signal_threshold",
    "params": {"score": "ml_score", "entry_above": 0.6, "exit_below": 0.4, "qty": 100},
}
ROTATION = {
    "name": "top_k_rotation",
    "params": {
        "score": "ml_score",
        "top_k": 25,
        "weight": 0.04,
        "rebalance_every": 5,
        "warmup_bars": 20,
        "max_vix": 30,
    },
}
FOUR_RULES = [
    {"rule": "stop_loss", "pct": 0.05},
    {"rule": "trailing_stop", "pct": 0.08},
    {"rule": "time_exit", "max_bars": 60},
    {"rule": "max_positions", "n": 25},
]


def dataset(name: str) -> Path:
    folder = DATA / name
    if not (folder / "prices.parquet").is_file():
        write_sample_data(WORKLOADS[name], folder)
    return folder


def config(
    name: str, strategy: dict[str, Any], risk: list[dict[str, Any]], validate: bool = False
) -> Path:
    folder = dataset(name)
    raw = {
        "data": {k: str(folder / f"{k}.parquet") for k in ("prices", "signals", "context")},
        "execution": {
            "initial_cash": 1_000_000,
            "fill_at": "next_open",
            "commission_rate": 0.001,
            "allow_negative_cash": True,
            "validate": validate,
        },
        "strategy": strategy,
        "risk": risk,
    }
    path = folder / f"run-{len(risk)}-{int(validate)}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def end_to_end(cfg: Path, repeat: int) -> dict[str, float]:
    """Fresh process per run: wall seconds and peak RSS of the child.

    Each run gets an empty validation cache, so a validating config pays full validation.
    """
    walls, rss = [], []
    for k in range(repeat):
        out = DATA / "out" / f"e2e-{k}"
        env = os.environ | {"XDG_CACHE_HOME": tempfile.mkdtemp(prefix="ml4t-bench-cache-")}
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        done = subprocess.run(
            [str(CLI), "backtest", "--config", str(cfg), "--out", str(out)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        walls.append(time.perf_counter() - started)
        rss.append(max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024)
        summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "wall_s_median": statistics.median(walls),
        "wall_s_min": min(walls),
        "peak_rss_mb": max(rss),
        "final_equity": summary["final_equity"],
        "fills": summary["fills"],
    }


def in_process(cfg_path: Path, repeat: int) -> dict[str, float]:
    """Engine time: data load and the loop, measured separately (imports excluded)."""
    cfg = load_run_config(cfg_path)
    loads, loops = [], []
    for _ in range(repeat):
        strategy = cfg.strategy.build()
        started = time.perf_counter()
        data = MarketData(
            cfg.data.prices,
            cfg.data.signals,
            cfg.data.context,
            signal_columns=list(strategy.required_signals() or []) or None,
            load_volume=False,
        )
        loaded = time.perf_counter()
        result = Engine(cfg, data, strategy=strategy).run()
        loops.append(time.perf_counter() - loaded)
        loads.append(loaded - started)
    load, loop = statistics.median(loads), statistics.median(loops)
    return {
        "bars": result.bars,
        "load_s": load,
        "loop_s": loop,
        "engine_s": load + loop,
        "bars_per_s_engine": result.bars / (load + loop),
        "bars_per_s_loop": result.bars / loop,
        "final_equity": result.final_equity,
        "fills": result.fills.height,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="w1,w3,w4,risk")
    args = parser.parse_args()
    only = set(args.only.split(","))
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "date": dt.datetime.now(dt.UTC).date().isoformat(),
        }
    }
    if "w1" in only:
        report["w1_event_callback"] = in_process(config("w1", THRESHOLD, []), args.repeat)
        report["w2_event_callback_stop"] = in_process(
            config("w1", THRESHOLD, [{"rule": "stop_loss", "pct": 0.05}]), args.repeat
        )
    if "w3" in only:
        report["w3"] = in_process(config("w3", ROTATION, []), args.repeat)
    if "w4" in only:
        report["w4_end_to_end"] = end_to_end(config("w4", ROTATION, []), args.repeat)
        report["w4_end_to_end_validated"] = end_to_end(
            config("w4", ROTATION, [], validate=True), args.repeat
        )
    if "risk" in only:
        base = in_process(config("w4", ROTATION, []), args.repeat)
        stop = in_process(config("w4", ROTATION, [{"rule": "stop_loss", "pct": 0.05}]), args.repeat)
        four = in_process(config("w4", ROTATION, FOUR_RULES), args.repeat)
        report["w4_risk_cost"] = {
            "engine_s_no_rule": base["engine_s"],
            "engine_s_stop_loss": stop["engine_s"],
            "engine_s_four_rules": four["engine_s"],
            "overhead_stop_loss_pct": 100 * (stop["engine_s"] / base["engine_s"] - 1),
            "overhead_four_rules_pct": 100 * (four["engine_s"] / base["engine_s"] - 1),
            "loop_overhead_stop_loss_pct": 100 * (stop["loop_s"] / base["loop_s"] - 1),
            "loop_overhead_four_rules_pct": 100 * (four["loop_s"] / base["loop_s"] - 1),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
