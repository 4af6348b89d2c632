"""The reference ML strategy, run from Python with its attribution table.

    .venv/bin/python examples/reference_strategy.py [OUT_DIR]

Generates the 500-asset sample universe (if missing), runs examples/reference.yaml, writes the
result tables and prints the summary and the P&L attribution by exit reason and rule.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import polars as pl

from ml4t_pipeline.engine import load_run_config, run_backtest
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "reference"


def main(out_dir: Path) -> None:
    if not (DATA / "prices.parquet").is_file():
        spec = SampleSpec(assets=500, days=504, scenario="mixed", seed=7, start=dt.date(2022, 1, 3))
        write_sample_data(spec, DATA)
    result = run_backtest(load_run_config(HERE / "reference.yaml"))
    result.write(out_dir)
    summary = result.summary()
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})
    by_reason = result.attribution.filter(pl.col("dimension").is_in(["exit_reason", "exit_rule"]))
    with pl.Config(tbl_rows=20, tbl_cols=8):
        print(by_reason.select("dimension", "key", "trades", "win_rate", pl.col("pnl").round(2)))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "results" / "reference")
