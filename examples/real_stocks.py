"""Real daily stocks end to end: unadjusted prices plus their splits as corporate actions,
against split-adjusted prices, and what happens without the actions file.

.venv/bin/python examples/real_stocks.py

AAPL, IBM and MSFT from bokeh-sampledata (a dev dependency), 2004-10 to 2005-06, around
AAPL's 2:1 split on 2005-02-28; a top-1 rotation on 20-bar momentum with a 15 % trailing stop.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from ml4t_pipeline.engine import BacktestResult, run_backtest, run_config_from_dict
from ml4t_pipeline.sample_data.real_stocks import SIGNAL, write_real_inputs
from ml4t_pipeline.validation import validate_inputs

folder = Path(tempfile.mkdtemp())
paths = write_real_inputs(
    folder, tickers=("AAPL", "IBM", "MSFT"), start=dt.date(2004, 10, 1), end=dt.date(2005, 6, 1)
)


def show_validation(label: str, **files: Any) -> None:
    report = validate_inputs(prices=paths["prices"], **files)
    moves = [f"{f.rule}: {'; '.join(f.examples)}" for f in report.warnings]
    print(f"validate {label}: ok={report.ok}, warnings={len(report.warnings)}")
    for line in moves:
        print(f"  {line}")


show_validation("raw prices, no actions file")
show_validation("raw prices + actions", corporate_actions=paths["corporate_actions"])


def backtest(prices: str, actions: Path | None) -> BacktestResult:
    data = {"prices": str(paths[prices]), "signals": str(paths["signals"])}
    if actions is not None:
        data["corporate_actions"] = str(actions)
    config = run_config_from_dict(
        {
            "data": data,
            "execution": {"commission_rate": 0.001, "allow_negative_cash": False},
            "strategy": {
                "name": "top_k_rotation",
                "params": {
                    "score": SIGNAL,
                    "top_k": 1,
                    "weight": 0.9,
                    "rebalance_every": 5,
                    "warmup_bars": 0,
                },
            },
            "risk": [{"rule": "trailing_stop", "pct": 0.15}],
        }
    )
    return run_backtest(config)


runs = {
    "raw + actions": backtest("prices", paths["corporate_actions"]),
    "split-adjusted": backtest("prices_split_adjusted", None),
    "raw, no actions": backtest("prices", None),
}
print(f"{'run':<16} {'final equity':>14} {'return':>8} {'trades':>6}  AAPL exit on 2005-02-28")
split_day = dt.datetime(2005, 2, 28, tzinfo=dt.UTC)
for name, result in runs.items():
    aapl = result.trades.filter(
        (result.trades["asset_id"] == "AAPL") & (result.trades["exit_time"] == split_day)
    )
    exit_reason = aapl["exit_reason"][0] if aapl.height else "-"
    ret = result.final_equity / result.start_equity - 1.0
    print(
        f"{name:<16} {result.final_equity:>14,.2f} {ret:>8.2%} {result.trades.height:>6}  "
        f"{exit_reason}"
    )
print(
    runs["raw + actions"].actions.select(
        "timestamp", "asset_id", "action", "qty_before", "qty_after"
    )
)
