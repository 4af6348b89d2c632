"""What the research report adds to `ml4t-pipeline backtest`: W3 and W4 end to end.

    .venv/bin/python benchmarks/bench_report.py [--repeat 5] [--workloads w3 w4]

Per workload, fresh processes in turn (interleaved, so a noisy spell hits every variant):
`--no-report`, the default (report.html, matplotlib imported in a background thread while the
engine runs), and the default with the background import turned off (the import then happens
when the first chart is drawn). Prints the median and fastest wall seconds of each and the
median extra over `--no-report`, as one JSON line per workload; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # benchmarks/run.py: the W3/W4 datasets and configs

CHILD = (
    "import sys\n"
    "import ml4t_pipeline.cli as cli\n"
    "if sys.argv[1] == 'foreground':\n"
    "    cli._import_in_background = lambda: None\n"
    "raise SystemExit(cli.main(sys.argv[2:]))\n"
)
VARIANTS = {
    "no_report": ("background", ["--no-report"]),
    "report": ("background", []),
    "report_foreground_import": ("foreground", []),
}


def _one(cfg: Path, out: Path, mode: str, extra: list[str]) -> float:
    argv = [sys.executable, "-c", CHILD, mode, "backtest", "--config", str(cfg), "--out", str(out)]
    started = time.perf_counter()
    subprocess.run([*argv, *extra], check=True, capture_output=True)
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
            for k in range(args.repeat):
                for variant, (mode, extra) in VARIANTS.items():
                    out = Path(tmp) / f"{variant}-{k}"
                    walls[variant].append(_one(cfg, out, mode, extra))
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
