"""Wall time and peak extra memory of `validate_prices` on a large, valid price panel.

    .venv/bin/python benchmarks/bench_validation.py [--rows 5000000] [--assets 2000] [--signals]

Generates a valid panel (assets x days, random-walk prices, rows shuffled) with numpy, writes it
to Parquet in a temporary directory, then measures in a fresh child process: the median wall
seconds of `validate_prices` over `--repeats` runs, and the peak resident memory the validation
added on top of the loaded frame. With `--signals`, the same for `validate_signals` of a
signals frame (one score per price row) checked against the prices. Prints numbers; asserts
nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from ml4t_pipeline.validation import ValidationReport, read_input, validate_prices, validate_signals

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def make_prices(*, rows: int, assets: int, seed: int) -> pl.DataFrame:
    """A valid panel of about `rows` rows: every asset on every day, in shuffled order."""
    rng = np.random.default_rng(seed)
    days = max(rows // assets, 1)
    n = days * assets
    start = np.datetime64("2010-01-01", "us")
    day_index = np.tile(np.arange(days), assets)
    asset_index = np.repeat(np.arange(assets), days)
    log_returns = rng.normal(0.0, 0.01, size=(assets, days))
    close = (100.0 * np.exp(np.cumsum(log_returns, axis=1))).ravel()
    open_ = close * np.exp(rng.normal(0.0, 0.002, size=n))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.003, size=n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.003, size=n)))
    order = rng.permutation(n)
    names = np.char.add("A", np.char.zfill(np.arange(assets).astype(str), 5))
    return pl.DataFrame(
        {
            "timestamp": start + (day_index[order] * 86_400_000_000).astype("timedelta64[us]"),
            "asset_id": names[asset_index[order]],
            "open": open_[order],
            "high": high[order],
            "low": low[order],
            "close": close[order],
            "volume": rng.integers(1_000, 1_000_000, size=n)[order],
        }
    ).with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))


def _status_kib(field: str) -> int | None:
    if not _STATUS.exists():
        return None
    for line in _STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where that is unavailable."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _measure(run: Callable[[], ValidationReport], repeats: int) -> dict[str, object]:
    """Median wall and CPU seconds of `run`, and the peak memory it added over current RSS.

    CPU seconds (all threads) are reported because wall time depends on what else runs.
    """
    gc.collect()
    rss_before = _status_kib("VmRSS")
    peak_reset = _reset_peak()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    clean = True
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        report = run()
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
        clean = clean and not report.failures
    peak = _status_kib("VmHWM") if peak_reset else None
    if peak is not None and rss_before is not None:
        extra_kib = peak - rss_before
    else:
        extra_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before
    return {
        "median_s": round(statistics.median(seconds), 3),
        "runs_s": [round(s, 3) for s in seconds],
        "median_cpu_s": round(statistics.median(cpu_seconds), 3),
        "peak_extra_rss_mb": round(extra_kib / 1024, 1),
        "peak_measured_with": "VmHWM reset" if peak_reset else "ru_maxrss delta",
        "report_clean": clean,
    }


def measure(path: Path, repeats: int, *, signals: bool) -> dict[str, object]:
    """Run in a fresh process: load the prices, then measure each validation."""
    prices = read_input(path, role="prices")
    result: dict[str, object] = {
        "rows": prices.height,
        "polars_threads": pl.thread_pool_size(),
        "frame_mb": round(prices.estimated_size("mb"), 1),
        "validate_prices": _measure(lambda: validate_prices(prices, file=path.name), repeats),
    }
    if signals:
        scores = prices.select("timestamp", "asset_id", ml_score=pl.col("close").rank() / 1e7)
        result["validate_signals_with_prices"] = _measure(
            lambda: validate_signals(scores, file="signals", prices=prices), repeats
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--assets", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--signals", action="store_true", help="also time validate_signals")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.repeats, signals=args.signals)))
        return
    with tempfile.TemporaryDirectory(prefix="bench_validation_") as tmp:
        path = Path(tmp) / "prices.parquet"
        make_prices(rows=args.rows, assets=args.assets, seed=args.seed).write_parquet(path)
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--measure",
                str(path),
                "--repeats",
                str(args.repeats),
                *(["--signals"] if args.signals else []),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    for name, value in result.items():
        if isinstance(value, dict):
            for key, number in value.items():
                print(f"{name}.{key}: {number}")
        else:
            print(f"{name}: {value}")


if __name__ == "__main__":
    main()
