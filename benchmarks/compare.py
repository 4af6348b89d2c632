"""Side-by-side engine time of this checkout and another one (e.g. the previous main).

    .venv/bin/python benchmarks/compare.py --other /path/to/other/checkout [--rounds 5]

Each round runs every workload once per checkout, alternating, each in a fresh process whose
`PYTHONPATH` points at that checkout (so both use this venv's packages); drift of the shared
machine hits both alike. Prints medians per checkout and the ratio this / other. Workloads:
W1 and W3 engine time in process (load + loop + result tables, imports excluded, median of 3
per process); W4's loop time and wall from a `ml4t-pipeline backtest` process (`w4`) and its
engine time in process (`w4_engine`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
THIS = HERE.parent


def _worker(workload: str) -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    import run  # the benchmark harness: data sets and configurations

    if workload == "w4":
        cfg = run.config("w4", run.ROTATION, [])
        # one output folder per checkout: each refuses a folder holding the other's files
        tree = os.environ.get("PYTHONPATH", str(THIS)).replace(os.sep, "_").strip("_")
        wall, rss, summary = run._one_process(cfg, run.DATA / "out" / f"compare-w4-{tree}")
        return {"loop_s": summary["engine_wall_s"], "wall_s": wall, "rss_mb": rss}
    if workload == "w4_engine":  # load + loop + result tables, in process
        measured = run.in_process(run.config("w4", run.ROTATION, []), 2)
        return {"engine_s": measured["engine_s"], "load_s": measured["load_s"]}
    strategy = run.THRESHOLD if workload == "w1" else run.ROTATION
    measured = run.in_process(run.config(workload, strategy, []), 3)
    return {"engine_s": measured["engine_s"], "loop_s": measured["loop_s"]}


def _measure(tree: Path, workload: str) -> dict[str, float]:
    env = os.environ | {"PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, str(HERE / "compare.py"), "--worker", workload],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--other", type=Path, help="the checkout to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="w1,w3,w4,w4_engine")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker)))
        return
    if args.other is None:
        parser.error("--other is required")
    trees = {"this": THIS, "other": args.other.resolve()}
    workloads = args.only.split(",")
    samples: dict[str, dict[str, dict[str, list[float]]]] = {
        w: {t: {} for t in trees} for w in workloads
    }
    for _ in range(args.rounds):
        for workload in workloads:
            for name, tree in trees.items():
                for key, value in _measure(tree, workload).items():
                    samples[workload][name].setdefault(key, []).append(value)
    report: dict[str, dict[str, float]] = {}
    for workload, per_tree in samples.items():
        row: dict[str, float] = {}
        for key in per_tree["this"]:
            this = statistics.median(per_tree["this"][key])
            other = statistics.median(per_tree["other"][key])
            row[f"{key}_this"] = this
            row[f"{key}_other"] = other
            row[f"{key}_ratio"] = this / other
        report[workload] = row
    print(json.dumps({"other": str(trees["other"]), "rounds": args.rounds} | report, indent=2))


if __name__ == "__main__":
    main()
