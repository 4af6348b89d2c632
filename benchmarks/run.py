"""Benchmarks of the canonical workloads (shared/WORKLOADS.md). Prints numbers; asserts nothing.

    .venv/bin/python benchmarks/run.py [--repeat 3] [--only w1,w3,w4,risk]

- W4 (3,000 assets x 2,520 bars) end to end: a fresh `ml4t-pipeline backtest` process per run
  (interpreter start, imports, Parquet load, validation off/on, result writing; `--no-report`,
  as before the report existed: `bench_report.py` measures what it adds), wall seconds and the
  child's peak RSS.
- W3 (500 x 252) and W1 (1 x 10,000, per-event callback): engine time in-process, split into
  data load and the loop, interpreter start and imports excluded; medians, and the rate of the
  fastest run.
- Risk cost on W4: no rule vs a stop-loss vs four rules, end to end (fresh processes, the
  three interleaved) and the engine's own time from each run's JSON summary.
Data is generated once under benchmarks/data/ (git-ignored) with the sample-data generator.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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


def _one_process(cfg: Path, out: Path) -> tuple[float, float, dict[str, Any]]:
    """One fresh `ml4t-pipeline backtest` process: wall seconds, peak RSS (MB), its summary.

    Each run gets an empty validation cache, so a validating config pays full validation.
    """
    env = os.environ | {"XDG_CACHE_HOME": tempfile.mkdtemp(prefix="ml4t-bench-cache-")}
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(
            [str(CLI), "backtest", "--config", str(cfg), "--out", str(out), "--no-report"],
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if child.returncode != 0:
            msg = f"benchmark run failed: {cfg}\n{stderr.read()[-2000:]}"
            raise SystemExit(msg)
        summary = json.loads(stdout.read().strip().splitlines()[-1])
    return wall, usage.ru_maxrss / 1024, summary


def end_to_end(cfg: Path, repeat: int) -> dict[str, float]:
    """Fresh process per run: wall seconds and peak RSS of each child."""
    walls, rss = [], []
    for k in range(repeat):
        wall, peak, summary = _one_process(cfg, DATA / "out" / f"e2e-{k}")
        walls.append(wall)
        rss.append(peak)
    return {
        "wall_s_median": statistics.median(walls),
        "wall_s_min": min(walls),
        "peak_rss_mb": max(rss),
        "final_equity": summary["final_equity"],
        "fills": summary["fills"],
    }


def risk_cost(repeat: int) -> dict[str, float]:
    """W4 end to end without rules, with a stop-loss, with four rules.

    The three configurations run interleaved (none, stop, four, none, ...) so that drift in the
    machine's speed hits them alike; medians of `repeat` fresh processes each.
    """
    configs = {
        "no_rule": config("w4", ROTATION, []),
        "stop_loss": config("w4", ROTATION, [{"rule": "stop_loss", "pct": 0.05}]),
        "four_rules": config("w4", ROTATION, FOUR_RULES),
    }
    walls: dict[str, list[float]] = {name: [] for name in configs}
    engine: dict[str, list[float]] = {name: [] for name in configs}
    for k in range(repeat):
        for name, cfg in configs.items():
            seconds, _, summary = _one_process(cfg, DATA / "out" / f"risk-{name}-{k}")
            walls[name].append(seconds)
            engine[name].append(summary["engine_wall_s"])
    wall = {name: statistics.median(v) for name, v in walls.items()}
    loop = {name: statistics.median(v) for name, v in engine.items()}
    quiet = min(walls["no_rule"])  # the no-rule process when the shared machine was quiet
    out: dict[str, float] = {"wall_s_no_rule_fastest": quiet}
    for name in configs:
        out[f"wall_s_{name}"] = wall[name]
        out[f"engine_s_{name}"] = loop[name]
    for name in ("stop_loss", "four_rules"):
        added = loop[name] - loop["no_rule"]
        out[f"overhead_{name}_pct"] = 100 * (wall[name] / wall["no_rule"] - 1)
        out[f"engine_overhead_{name}_pct"] = 100 * (loop[name] / loop["no_rule"] - 1)
        # the engine time a rule adds, as a share of the no-rule wall: the wall itself varies
        # more between identical processes than the rules add, the engine time does not
        out[f"added_engine_s_{name}"] = added
        out[f"added_share_of_median_wall_{name}_pct"] = 100 * added / wall["no_rule"]
        out[f"added_share_of_fastest_wall_{name}_pct"] = 100 * added / quiet
    return out


def in_process(cfg_path: Path, repeat: int) -> dict[str, float]:
    """Engine time: data load and the loop, measured separately (imports excluded)."""
    cfg = load_run_config(cfg_path)
    loads, loops, engines = [], [], []
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
        engines.append(loads[-1] + loops[-1])
    load, loop = statistics.median(loads), statistics.median(loops)
    return {
        "bars": result.bars,
        "load_s": load,
        "loop_s": loop,
        "engine_s": load + loop,
        "bars_per_s_engine": result.bars / (load + loop),
        "bars_per_s_loop": result.bars / loop,
        # the least disturbed run: on a shared machine the median drifts with the neighbours
        "bars_per_s_engine_fastest": result.bars / min(engines),
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
        report["w4_risk_cost"] = risk_cost(max(args.repeat, 5))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
