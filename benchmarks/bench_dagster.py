"""Wall time of one backtest partition through the Dagster CLI. Prints numbers; asserts nothing.

    .venv/bin/python benchmarks/bench_dagster.py [--repeat 3] [--partition "2024-01-01|core"]

In a temporary directory: writes the `make demo` sample data (60 assets x 90 business days),
makes a fresh DAGSTER_HOME from the repository's dagster.yaml, runs `inputs_job` once (not
timed), then times `repeat` fresh processes of

    dagster job execute -m ml4t_pipeline.pipeline.definitions -j backtest_job \
        --tags '{"dagster/partition": "<partition>"}'

(interpreter start, imports, instance, feature_table, the backtest's two ops, the blocking
checks, trade_attribution, every event written to SQLite). The first month of a universe starts
fresh, so the same partition can be re-run. Also times loading the code location alone (import
`ml4t_pipeline.pipeline.definitions` and call its `defs` loader, as Dagster does), the fixed
cost every run pays. The last line is one JSON object.
"""

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ml4t_pipeline.sample_data import SampleSpec, write_sample_data

REPO = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")
DEMO_SPEC = SampleSpec(assets=60, days=90, start=dt.date(2024, 1, 1), scenario="mixed", seed=2)


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        msg = f"failed ({done.returncode}): {' '.join(command)}"
        raise SystemExit(msg)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--partition", default="2024-01-01|core")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dagster-") as tmp:
        data, home = Path(tmp) / "data", Path(tmp) / "home"
        write_sample_data(DEMO_SPEC, data)
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "ML4T_DATA_DIR": str(data),
            "DAGSTER_DISABLE_TELEMETRY": "1",
        }
        execute = [str(DAGSTER), "job", "execute", "-m", "ml4t_pipeline.pipeline.definitions"]
        _timed([*execute, "-j", "inputs_job"], env)
        load = "from ml4t_pipeline.pipeline.definitions import defs; defs()"
        import_s = _timed([sys.executable, "-c", load], env)
        tags = json.dumps({"dagster/partition": args.partition})
        walls = [
            _timed([*execute, "-j", "backtest_job", "--tags", tags], env)
            for _ in range(args.repeat)
        ]

    for k, wall in enumerate(walls, start=1):
        print(f"run {k}: {wall:.2f} s")
    median = statistics.median(walls)
    print(f"dagster job execute backtest_job {args.partition}: median {median:.2f} s wall")
    print(
        json.dumps(
            {
                "partition": args.partition,
                "runs_s": [round(w, 3) for w in walls],
                "median_s": round(median, 3),
                "import_definitions_s": round(import_s, 3),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
