"""What the research report adds to `ml4t-pipeline backtest`: W3 and W4 end to end.

    .venv/bin/python benchmarks/bench_report.py [--repeat 5] [--workloads w3 w4]

Per workload, fresh `ml4t-pipeline backtest` processes in turn, `--no-report` then the
default (report.html), interleaved so a noisy spell hits both, one warm-up pair first (bytecode
and page caches, the prepared panel). Prints the median and fastest wall seconds of each and
the median extra of the report, as one JSON line per workload; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # benchmarks/run.py: the W3/W4 datasets and configs

CLI = Path(sys.executable).with_name("ml4t-pipeline")
VARIANTS = {"no_report": ["--no-report"], "report": []}


#: children write Python bytecode caches, as a user's install does
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _one(cfg: Path, out: Path, extra: list[str]) -> float:
    argv = [str(CLI), "backtest", "--config", str(cfg), "--out", str(out), *extra]
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workloads", nargs="+", default=["w3", "w4"])
    args = parser.parse_args()
    for name in args.workloads:
        cfg = run.config(name, run.ROTATION, [])
        walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
        with tempfile.TemporaryDirectory(prefix="ml4t-bench-report-") as tmp:
            for variant, extra in VARIANTS.items():  # warm-up, not counted
                _one(cfg, Path(tmp) / f"warm-{variant}", extra)
            for k in range(args.repeat):
                for variant, extra in VARIANTS.items():
                    out = Path(tmp) / f"{variant}-{k}"
                    walls[variant].append(_one(cfg, out, extra))
        base = statistics.median(walls["no_report"])
        print(
            json.dumps(
                {
                    "workload": name,
                    "repeat": args.repeat,
                    **{f"{v}_median_s": round(statistics.median(w), 3) for v, w in walls.items()},
                    **{f"{v}_min_s": round(min(w), 3) for v, w in walls.items()},
                    **{
                        f"{v}_extra_median_s": round(statistics.median(w) - base, 3)
                        for v, w in walls.items()
                        if v != "no_report"
                    },
                }
            )
        )


if __name__ == "__main__":
    main()
