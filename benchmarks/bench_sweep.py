"""Sweeps and the prepared-panel cache on W4 (3,000 assets x 2,520 bars), end to end.

    .venv/bin/python benchmarks/bench_sweep.py [--repeat 3] [--workers 2]

Fresh `ml4t-pipeline` processes, interleaved so a noisy spell hits every kind alike:
- `single_cold`: `backtest --no-report` with an empty cache folder (decodes the Parquet inputs,
  writes the prepared panel from a background thread);
- `single_nocache`: the same with `--no-cache` (the engine as before the cache);
- `single_warm`: the same on a cache that holds the panel (memory-maps it);
- `sweep16`: `sweep` of 16 variants (top_k x rebalance_every, 4 x 4) with an empty cache, the
  best variant's tear sheet and the sweep page included; `sweep16_no_report` without them.
Prints, per kind, the median and fastest wall seconds and the peak resident memory of the
whole process tree (the parent and its workers, sampled every 20 ms), then the ratios the issue
names, as JSON lines; asserts nothing. Runs write Python bytecode caches as a user's install
does (PYTHONDONTWRITEBYTECODE is dropped for the children).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # benchmarks/run.py: the W3/W4 datasets and configs

CLI = Path(sys.executable).with_name("ml4t-pipeline")
GRID = {
    "strategy.params.top_k": [15, 20, 25, 30],
    "strategy.params.rebalance_every": [3, 5, 10, 20],
}


def _tree_rss_kb(root: int) -> int:
    """Resident memory of `root` and every descendant, in kB (0 for a process gone)."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    todo += [int(c) for c in children.read().split()]
        except (OSError, ValueError):
            continue
    return total


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak tree RSS (MB) and stdout of one process."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kb(child.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, err = child.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if child.returncode != 0:
        msg = f"benchmark run failed: {' '.join(argv)}\n{err.decode()[-2000:]}"
        raise SystemExit(msg)
    return wall, peak / 1024, out.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    cfg = run.config("w4", run.ROTATION, [])
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="ml4t-bench-sweep-") as tmp:
        root = Path(tmp)
        grid = root / "grid.yaml"
        grid.write_text(yaml.safe_dump(GRID, sort_keys=False))
        warm_cache = root / "warm-cache"
        single = [str(CLI), "backtest", "--config", str(cfg), "--no-report"]
        sweep = [str(CLI), "sweep", "--config", str(cfg), "--grid", str(grid)]
        sweep += ["--workers", str(args.workers)]
        kinds = {
            "single_cold": (single, None),
            "single_nocache": ([*single, "--no-cache"], None),
            "single_warm": (single, warm_cache),
            "sweep16": (sweep, None),
            "sweep16_no_report": ([*sweep, "--no-report"], None),
        }
        # prime: bytecode caches, the OS page cache of the inputs, the warm panel
        _timed(
            [*single, "--out", str(root / "prime")], base_env | {"XDG_CACHE_HOME": str(warm_cache)}
        )
        _timed(
            [*single, "--out", str(root / "prime")], base_env | {"XDG_CACHE_HOME": str(warm_cache)}
        )
        walls: dict[str, list[float]] = {k: [] for k in kinds}
        rss: dict[str, float] = dict.fromkeys(kinds, 0.0)
        lines: dict[str, str] = {}
        for k in range(args.repeat):
            for kind, (argv, cache) in kinds.items():
                home = cache or Path(tempfile.mkdtemp(dir=root, prefix="cache-"))
                out = root / f"{kind}-{k}"
                wall, peak, stdout = _timed(
                    [*argv, "--out", str(out)], base_env | {"XDG_CACHE_HOME": str(home)}
                )
                walls[kind].append(wall)
                rss[kind] = max(rss[kind], peak)
                lines[kind] = stdout.strip().splitlines()[-1]
    for kind, values in walls.items():
        print(
            json.dumps(
                {
                    "kind": kind,
                    "wall_s_median": round(statistics.median(values), 3),
                    "wall_s_min": round(min(values), 3),
                    "peak_rss_mb": round(rss[kind], 1),
                    "runs": len(values),
                }
            )
        )
    med = {kind: statistics.median(values) for kind, values in walls.items()}
    print(
        json.dumps(
            {
                "warm_over_cold": round(med["single_warm"] / med["single_cold"], 3),
                "warm_over_nocache": round(med["single_warm"] / med["single_nocache"], 3),
                "sweep16_over_cold_single": round(med["sweep16"] / med["single_cold"], 3),
                "sweep16_no_report_over_cold_single": round(
                    med["sweep16_no_report"] / med["single_cold"], 3
                ),
                "sweep16_line": json.loads(lines["sweep16"]),
            }
        )
    )


if __name__ == "__main__":
    main()
