"""A backtest never imports pandas; validation only through pandera, which imports it itself.

pyarrow's numpy conversions (`Array.to_numpy`, `pa.array(ndarray)`, `pa.scalar`) import pandas
whenever it is installed, which would add a fifth of a second to every run; the feed reads Arrow
buffers directly instead. Checked in a fresh interpreter, on complete data and on data with late
listings, early delistings, gaps, shuffled rows and revised signals (`available_at`), read from
files, from frames and in several chunks.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from ml4t_pipeline.sample_data import SampleSpec, write_sample_data

CHILD = """
import sys
from pathlib import Path

importers = []


class Watch:
    '''Record which modules import pandas (the import itself goes on as usual); a lookup
    without an import (polars probes whether pandas is installed) is not recorded.'''

    def find_spec(self, name, path=None, target=None):
        if name != "pandas":
            return None
        frame, steps = sys._getframe(1), set()
        while frame.f_code.co_filename.startswith("<frozen"):
            steps.add(frame.f_code.co_name)
            frame = frame.f_back
        if "_find_and_load" in steps:
            importers.append(frame.f_globals.get("__name__"))
        return None


sys.meta_path.insert(0, Watch())

import polars as pl
from ml4t_pipeline.engine import CallableFeatures, run_backtest, run_config_from_dict
from ml4t_pipeline.validation import validate_inputs

root = Path(sys.argv[1])
for folder in (root / "complete", root / "late"):
    files = {role: folder / f"{role}.parquet" for role in ("prices", "signals", "context")}
    config = run_config_from_dict(
        {
            "data": {role: str(path) for role, path in files.items()},
            "execution": {"initial_cash": 1_000_000, "validate": False},
            "strategy": {
                "name": "top_k_rotation",
                "params": {"score": "ml_score", "top_k": 2, "weight": 0.3, "warmup_bars": 5},
            },
            "risk": [{"rule": "volatility_stop", "atr_multiplier": 2.0, "feature": "atr"}],
        }
    )
    run_backtest(config)
    run_backtest(config, max_chunk_cells=50)
    frames = {role: pl.read_parquet(path) for role, path in files.items()}
    last = CallableFeatures({"last_close": lambda history: history.prices("close")[-1]})
    run_backtest(config, **frames, features=[last])
assert "pandas" not in sys.modules, f"the backtest imported pandas (asked by {importers})"
for folder in (root / "complete", root / "late"):
    validate_inputs(
        prices=folder / "prices.parquet",
        signals=folder / "signals.parquet",
        context=folder / "context.parquet",
    )
assert all(name.startswith("pandera") for name in importers), importers
print("ok")
"""


def _late_listings(source: Path, out: Path) -> None:
    """The sample panel with late listings, early delistings, a gap, shuffled rows, stamps in
    New York time and signals published an hour after their bar."""
    prices = pl.read_parquet(source / "prices.parquet")
    assets = sorted(prices["asset_id"].unique().to_list())
    days = sorted(prices["timestamp"].unique().to_list())
    asset, stamp = pl.col("asset_id"), pl.col("timestamp")
    keep = (
        ~((asset == assets[0]) & (stamp < days[10]))
        & ~((asset == assets[1]) & (stamp >= days[-10]))
        & ~((asset == assets[2]) & stamp.is_between(days[20], days[27]))
    )
    out.mkdir()
    zoned = stamp.dt.replace_time_zone("UTC").dt.convert_time_zone("America/New_York")
    (
        prices.filter(keep)
        .sample(fraction=1.0, shuffle=True, seed=1)
        .with_columns(zoned)
        .write_parquet(out / "prices.parquet", row_group_size=100)
    )
    signals = pl.read_parquet(source / "signals.parquet").filter(keep)
    published = (stamp + dt.timedelta(hours=1)).alias("available_at")
    signals.with_columns(published).write_parquet(out / "signals.parquet", row_group_size=64)
    pl.read_parquet(source / "context.parquet").write_parquet(out / "context.parquet")


def test_backtests_import_no_pandas_and_validation_only_through_pandera(tmp_path: Path) -> None:
    if importlib.util.find_spec("pandas") is None:
        pytest.skip("pandas is not installed, so nothing can import it")
    write_sample_data(SampleSpec(assets=5, days=60, seed=1), tmp_path / "complete")
    _late_listings(tmp_path / "complete", tmp_path / "late")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
