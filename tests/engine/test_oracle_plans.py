"""Order plans replayed by the engine (CLI) and by the reference in tests/oracle/plans.py.

`PlanStrategy` (tests/fixtures/plan_strategy.py) submits a fixed list of market, limit, stop
and stop-limit orders; the oracle replays the same list bar by bar from the spec. Every case
compares the fills (bar, timestamp, asset, side, qty, reason exactly; price and commission to
1e-9 relative) and the equity curve (to the cent).

The YAML names every knob (on_insufficient_cash, on_no_bar, on_delist), so a change of the
engine's defaults cannot change what a case means.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from tests.oracle.plans import (
    ALL_KINDS,
    EquityRow,
    Fill,
    Knobs,
    OrderKind,
    PlanOrder,
    fills_frame,
    random_panel,
    random_plan,
    replay,
    run_plan,
    thin_volume,
)

PRICE_REL_TOL = 1e-9
CENT = 0.01

# -- running the engine -------------------------------------------------------------------------


def write_inputs(directory: Path, prices: pl.DataFrame, plan: list[PlanOrder]) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    prices_path = directory / "prices.parquet"
    prices.sample(fraction=1.0, shuffle=True, seed=7).write_parquet(prices_path)
    plan_path = directory / "plan.json"
    plan_path.write_text(json.dumps([p.to_json() for p in plan]))
    return prices_path, plan_path


def engine_config(prices: Path, plan: Path, knobs: Knobs) -> dict[str, Any]:
    """The run's YAML as a mapping, every knob named."""
    execution: dict[str, Any] = {
        "initial_cash": knobs.initial_cash,
        "fill_at": "next_open",
        "commission_rate": knobs.commission_rate,
        "allow_short": knobs.allow_short,
        "allow_negative_cash": knobs.allow_negative_cash,
        "validate": False,
    }
    if knobs.slippage_bps:
        execution["slippage"] = {"model": "fixed_bps", "bps": knobs.slippage_bps}
    execution["on_insufficient_cash"] = knobs.on_insufficient_cash
    execution["on_no_bar"] = knobs.on_no_bar
    execution["on_delist"] = knobs.on_delist
    if knobs.max_participation is not None:
        execution["max_participation"] = knobs.max_participation
        execution["on_volume_limit"] = knobs.on_volume_limit
    config: dict[str, Any] = {
        "data": {"prices": str(prices)},
        "execution": execution,
        "strategy": {
            "class": "tests.fixtures.plan_strategy:PlanStrategy",
            "params": {"plan": str(plan)},
        },
    }
    if knobs.stop_loss_pct is not None:
        config["risk"] = [{"rule": "stop_loss", "pct": knobs.stop_loss_pct}]
    return config


def run_engine(
    tmp_path: Path,
    prices: pl.DataFrame,
    plan: list[PlanOrder],
    knobs: Knobs,
    capsys: pytest.CaptureFixture[str],
) -> Path:
    """Run `ml4t-pipeline backtest` in-process; returns the output folder."""
    from ml4t_pipeline.cli import main

    prices_path, plan_path = write_inputs(tmp_path / "data", prices, plan)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(engine_config(prices_path, plan_path, knobs)))
    out = tmp_path / "out"
    code = main(["backtest", "--config", str(config), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return out


def engine_fills(out: Path) -> pl.DataFrame:
    fills = pl.read_parquet(out / "fills.parquet")
    return fills.with_columns(pl.col("timestamp").dt.epoch("us").alias("ts_us"))


# -- comparing ----------------------------------------------------------------------------------

_KEY = ["bar", "ts_us", "asset_id", "side", "reason", "qty"]


def _sorted_rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    return df.select([*_KEY, "price", "commission"]).sort([*_KEY, "price"]).to_dicts()


def assert_same_fills(engine: pl.DataFrame, oracle: list[Fill]) -> None:
    got, want = _sorted_rows(engine), _sorted_rows(fills_frame(oracle))
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        same = {k: g[k] for k in _KEY} == {k: w[k] for k in _KEY} and all(
            math.isclose(g[k], w[k], rel_tol=PRICE_REL_TOL, abs_tol=1e-12)
            for k in ("price", "commission")
        )
        assert same, f"fill #{i} (sorted by bar, asset, side): engine {g} != oracle {w}"
    assert len(got) == len(want), f"engine has {len(got)} fills, oracle {len(want)}"


def assert_same_equity(out: Path, oracle: list[EquityRow]) -> None:
    equity = pl.read_parquet(out / "equity.parquet")
    assert equity.height == len(oracle)
    for row, want in zip(equity.iter_rows(named=True), oracle, strict=True):
        for column in ("cash", "equity"):
            got = row[column]
            assert abs(got - getattr(want, column)) < CENT, (
                f"{column} at bar {want.bar}: engine {got!r} != oracle {getattr(want, column)!r}"
            )


def check(
    tmp_path: Path,
    prices: pl.DataFrame,
    plan: list[PlanOrder],
    knobs: Knobs,
    capsys: pytest.CaptureFixture[str],
) -> Path:
    out = run_engine(tmp_path, prices, plan, knobs, capsys)
    fills, equity = run_plan(prices, plan, knobs)
    assert_same_fills(engine_fills(out), fills)
    assert_same_equity(out, equity)
    return out


# -- random plans on random panels ---------------------------------------------------------------

CASES: dict[str, Knobs] = {
    # the legacy rules, runnable today
    "limits_with_slippage": Knobs(
        commission_rate=0.001, slippage_bps=8.0, allow_short=True, allow_negative_cash=True
    ),
    "cash_rejections": Knobs(initial_cash=30_000.0, commission_rate=0.0005),
    # market orders only: every strategy fill is at the open, before the stops either way
    "short_stops_market": Knobs(
        commission_rate=0.0005, allow_short=True, allow_negative_cash=True, stop_loss_pct=0.03
    ),
    # stops meet intrabar fills: booked before them (issue 13), and the rules the engine
    # learns next
    "short_stops": Knobs(
        commission_rate=0.0005, allow_short=True, allow_negative_cash=True, stop_loss_pct=0.03
    ),
    "stop_first": Knobs(
        initial_cash=40_000.0, commission_rate=0.001, allow_short=True, stop_loss_pct=0.02
    ),
    "delistings": Knobs(
        commission_rate=0.001,
        slippage_bps=5.0,
        allow_short=True,
        allow_negative_cash=True,
        on_delist="close",
    ),
    "resized_buys": Knobs(
        initial_cash=25_000.0, commission_rate=0.001, on_insufficient_cash="resize"
    ),
    "no_bar_wait": Knobs(commission_rate=0.001, allow_negative_cash=True, on_no_bar="wait"),
    # fills bounded by the bar's volume (`thin_volume`: the cap bites most bars)
    "participation_wait": Knobs(
        commission_rate=0.001,
        slippage_bps=5.0,
        allow_short=True,
        allow_negative_cash=True,
        max_participation=0.1,
        on_no_bar="wait",
    ),
    "participation_reject": Knobs(
        initial_cash=30_000.0,
        commission_rate=0.001,
        allow_short=True,
        on_insufficient_cash="resize",
        max_participation=0.25,
        on_volume_limit="reject",
        on_delist="close",
    ),
    "participation_with_stops": Knobs(
        commission_rate=0.0005,
        allow_short=True,
        allow_negative_cash=True,
        stop_loss_pct=0.02,
        max_participation=0.1,
    ),
}
# Long only, sells beyond the position meet the cap: the part that would open a short is
# rejected, the cap bounds the rest (`Broker._execute`).
CASES["participation_long_only"] = Knobs(
    commission_rate=0.001, allow_negative_cash=True, max_participation=0.1
)
KINDS: dict[str, tuple[OrderKind, ...]] = {"short_stops_market": ("market",)}
SEEDS = (1, 2, 3)


def case_inputs(case: str, seed: int) -> tuple[pl.DataFrame, list[PlanOrder]]:
    prices = random_panel(seed)
    if CASES[case].max_participation is not None:
        prices = thin_volume(prices, seed + 200)
    return prices, random_plan(prices, seed + 100, kinds=KINDS.get(case, ALL_KINDS))


RANDOM_CASES = [pytest.param(case, seed, id=f"{case}-{seed}") for case in CASES for seed in SEEDS]


@pytest.mark.parametrize(("case", "seed"), RANDOM_CASES)
def test_random_plans_match_the_oracle(
    case: str, seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prices, plan = case_inputs(case, seed)
    check(tmp_path, prices, plan, CASES[case], capsys)


# -- hand-computed cases ------------------------------------------------------------------------


Bar = tuple[float, float, float, float] | None  # (open, high, low, close); None: no bar


def hand_prices(
    bars: dict[str, list[Bar]], volumes: dict[str, list[float]] | None = None
) -> pl.DataFrame:
    """Daily bars per asset; None = no bar that day; volume 1,000 unless `volumes` says."""
    start = datetime(2024, 1, 2, 21)  # noqa: DTZ001
    rows = []
    for asset, ohlc in bars.items():
        for d, bar in enumerate(ohlc):
            if bar is not None:
                o, h, lo, c = bar
                rows.append(
                    {
                        "timestamp": start + timedelta(days=d),
                        "asset_id": asset,
                        "open": float(o),
                        "high": float(h),
                        "low": float(lo),
                        "close": float(c),
                        "volume": 1000.0 if volumes is None else volumes[asset][d],
                    }
                )
    return pl.DataFrame(rows)


FillRow = tuple[int, str, str, int, float, str]  # bar, asset, side, qty, price, reason
RejectionRow = tuple[str, str, int, str]  # asset, side, qty asked, reason


@dataclass(frozen=True, slots=True, kw_only=True)
class HandCase:
    """A few bars worked out by hand: the fills in booking order, the rejections, the cash
    after each bar and the final equity."""

    bars: dict[str, list[Bar]]
    plan: list[PlanOrder]
    knobs: Knobs
    fills: list[FillRow]
    rejections: list[RejectionRow] = field(default_factory=list)
    final_equity: float
    cash: list[float] | None = None
    volumes: dict[str, list[float]] | None = None


HAND: dict[str, HandCase] = {
    # Buy limit 99 (the low 98 reaches it, the open 100 is above): 99, and 10 bps would make it
    # 99.099, past the limit: 99. Market sell at bar 2's open 101: 101 * (1 - 0.001) = 100.899.
    # Commission 0.1 %: 9.9 and 10.0899. Cash 10,000 - 9,909.9 + 10,089.9 - 10.0899.
    "limit_with_slippage": HandCase(
        bars={
            "X": [
                (100, 101, 99, 100),
                (100, 100.5, 98, 99.5),
                (101, 102, 100, 101),
                (101, 101, 101, 101),
            ]
        },
        plan=[
            PlanOrder(bar=0, asset="X", qty=100, type="limit", limit=99.0),
            PlanOrder(bar=1, asset="X", qty=-100, type="market"),
        ],
        knobs=Knobs(initial_cash=10_000.0, commission_rate=0.001, slippage_bps=10.0),
        fills=[(1, "X", "buy", 100, 99.0, "signal"), (2, "X", "sell", 100, 100.899, "signal")],
        cash=[10_000.0, 90.1, 10_169.9101, 10_169.9101],
        final_equity=10_169.9101,
    ),
    # Short 100 at 50, stop 3 % above: 51.5. Bar 2 gaps up to 53: bought back at the open 53;
    # the working buy limit at 45 (a short's buy the low 48 does not reach) is stopped_out.
    "short_stop_gap": HandCase(
        bars={"X": [(50, 50, 50, 50), (50, 50.5, 49.5, 50), (53, 54, 48, 52), (52, 52, 52, 52)]},
        plan=[
            PlanOrder(bar=0, asset="X", qty=-100, type="market"),
            PlanOrder(bar=1, asset="X", qty=100, type="limit", limit=45.0),
        ],
        knobs=Knobs(initial_cash=10_000.0, allow_short=True, stop_loss_pct=0.03),
        fills=[(1, "X", "sell", 100, 50.0, "signal"), (2, "X", "buy", 100, 53.0, "stop_loss")],
        rejections=[("X", "buy", 100, "stopped_out")],
        final_equity=9_700.0,
    ),
    # Long 100 at 100, stop 5 %: 95. Bar 2 (open 99, high 104, low 90) reaches both the sell
    # limit 103 and the stop: the stop is booked first, at 95, and the sell is stopped_out.
    "stop_before_intrabar_sell": HandCase(
        bars={
            "X": [(100, 100, 100, 100), (100, 101, 99, 100), (99, 104, 90, 92), (92, 92, 92, 92)]
        },
        plan=[
            PlanOrder(bar=0, asset="X", qty=100, type="market"),
            PlanOrder(bar=1, asset="X", qty=-100, type="limit", limit=103.0),
        ],
        knobs=Knobs(initial_cash=20_000.0, stop_loss_pct=0.05),
        fills=[(1, "X", "buy", 100, 100.0, "signal"), (2, "X", "sell", 100, 95.0, "stop_loss")],
        rejections=[("X", "sell", 100, "stopped_out")],
        final_equity=19_500.0,
    ),
    # 1,000 buys 10 X at 100, leaving 0. Bar 2: X's stop (95) brings 950 before the buy limit
    # of 9 Y at 100 (open 102, low 99) fills inside the bar for 900. Equity 50 + 9 * 101.
    "stop_pays_for_intrabar_buy": HandCase(
        bars={
            "X": [(100, 100, 100, 100), (100, 100, 100, 100), (97, 98, 90, 91), (91, 91, 91, 91)],
            "Y": [
                (100, 100, 100, 100),
                (102, 102, 102, 102),
                (102, 103, 99, 101),
                (101, 101, 101, 101),
            ],
        },
        plan=[
            PlanOrder(bar=0, asset="X", qty=10, type="market"),
            PlanOrder(bar=1, asset="Y", qty=9, type="limit", limit=100.0),
        ],
        knobs=Knobs(initial_cash=1_000.0, stop_loss_pct=0.05),
        fills=[
            (1, "X", "buy", 10, 100.0, "signal"),
            (2, "X", "sell", 10, 95.0, "stop_loss"),
            (2, "Y", "buy", 9, 100.0, "signal"),
        ],
        final_equity=959.0,
    ),
    # Cash 1,000, a market buy of 11 at 100 costs 1,101.1 with 0.1 %: rejected whole.
    "cash_rejects_whole_buy": HandCase(
        bars={"X": [(100, 100, 100, 100), (100, 100, 100, 100)]},
        plan=[PlanOrder(bar=0, asset="X", qty=11, type="market")],
        knobs=Knobs(initial_cash=1_000.0, commission_rate=0.001),
        fills=[],
        rejections=[("X", "buy", 11, "insufficient_cash")],
        final_equity=1_000.0,
    ),
    # cost(9) = 900.9 <= 1,000 < cost(10) = 1,001: 9 of 11 fill. With 99.1 left, a buy of 5
    # at 100 (cost(1) = 100.1) resizes to nothing: rejected.
    "resized_buy": HandCase(
        bars={"X": [(100, 100, 100, 100)] * 3},
        plan=[
            PlanOrder(bar=0, asset="X", qty=11, type="market"),
            PlanOrder(bar=1, asset="X", qty=5, type="market"),
        ],
        knobs=Knobs(initial_cash=1_000.0, commission_rate=0.001, on_insufficient_cash="resize"),
        fills=[(1, "X", "buy", 9, 100.0, "signal")],
        # the 2 shares cut from the first order, then the whole second one
        rejections=[("X", "buy", 2, "insufficient_cash"), ("X", "buy", 5, "insufficient_cash")],
        cash=[1_000.0, 99.1, 99.1],
        final_equity=999.1,
    ),
    # Short 10 at 100 (cash 1,100); a buy of 30 costs 3,000: 11 are affordable, so 10 cover
    # and 1 opens a long (two fills).
    "resize_covers_the_short": HandCase(
        bars={"X": [(100, 100, 100, 100)] * 3},
        plan=[
            PlanOrder(bar=0, asset="X", qty=-10, type="market"),
            PlanOrder(bar=1, asset="X", qty=30, type="market"),
        ],
        knobs=Knobs(initial_cash=100.0, allow_short=True, on_insufficient_cash="resize"),
        fills=[
            (1, "X", "sell", 10, 100.0, "signal"),
            (2, "X", "buy", 10, 100.0, "signal"),
            (2, "X", "buy", 1, 100.0, "signal"),
        ],
        rejections=[("X", "buy", 19, "insufficient_cash")],  # the 19 the cash could not pay
        cash=[100.0, 1_100.0, 0.0],
        final_equity=100.0,
    ),
    # X has no bar on day 1: the market buy decided on day 0 is rejected ...
    "no_bar_reject": HandCase(
        bars={
            "X": [(100, 100, 100, 100), None, (103, 104, 102, 103), (103, 103, 103, 103)],
            "Y": [(10, 10, 10, 10)] * 4,
        },
        plan=[PlanOrder(bar=0, asset="X", qty=10, type="market")],
        knobs=Knobs(initial_cash=5_000.0),
        fills=[],
        rejections=[("X", "buy", 10, "no_bar")],
        final_equity=5_000.0,
    ),
    # ... or, with on_no_bar: wait, keeps working and fills at day 2's open 103.
    "no_bar_wait": HandCase(
        bars={
            "X": [(100, 100, 100, 100), None, (103, 104, 102, 103), (103, 103, 103, 103)],
            "Y": [(10, 10, 10, 10)] * 4,
        },
        plan=[PlanOrder(bar=0, asset="X", qty=10, type="market")],
        knobs=Knobs(initial_cash=5_000.0, on_no_bar="wait"),
        fills=[(2, "X", "buy", 10, 103.0, "signal")],
        final_equity=5_000.0,
    ),
    # X's last bar is day 2 of 5; long 10 from 50. Held: valued at its last close 40 for ever,
    # its sell limit at 60 keeps working.
    "delisting_hold": HandCase(
        bars={
            "X": [(50, 50, 50, 50), (50, 51, 49, 50), (45, 46, 39, 40), None, None],
            "Y": [(10, 10, 10, 10)] * 5,
        },
        plan=[
            PlanOrder(bar=0, asset="X", qty=10, type="market"),
            PlanOrder(bar=2, asset="X", qty=-10, type="limit", limit=60.0),
        ],
        knobs=Knobs(initial_cash=1_000.0),
        fills=[(1, "X", "buy", 10, 50.0, "signal")],
        cash=[1_000.0, 500.0, 500.0, 500.0, 500.0],
        final_equity=900.0,
    ),
    # Closed, with 10 bps: bought at 50.05, sold at day 2's close 40 less 10 bps = 39.96; the
    # sell limit decided at that close is cancelled (delisted). 1,000 - 500.5 + 399.6.
    "delisting_close": HandCase(
        bars={
            "X": [(50, 50, 50, 50), (50, 51, 49, 50), (45, 46, 39, 40), None, None],
            "Y": [(10, 10, 10, 10)] * 5,
        },
        plan=[
            PlanOrder(bar=0, asset="X", qty=10, type="market"),
            PlanOrder(bar=2, asset="X", qty=-10, type="limit", limit=60.0),
        ],
        knobs=Knobs(initial_cash=1_000.0, slippage_bps=10.0, on_delist="close"),
        fills=[(1, "X", "buy", 10, 50.05, "signal"), (2, "X", "sell", 10, 39.96, "delisted")],
        rejections=[("X", "sell", 10, "delisted")],
        cash=[1_000.0, 499.5, 899.1, 899.1, 899.1],
        final_equity=899.1,
    ),
    # Sell stop-limit (stop 95, limit 96) on a long of 10. Bar 2 opens at 94, under the stop:
    # the trigger price 94 does not honour 96, so it rests as a limit; bar 3's high 97 reaches
    # 96: it sells at max(open 95, 96) = 96.
    "stop_limit_rests": HandCase(
        bars={
            "X": [
                (100, 100, 100, 100),
                (100, 100, 100, 100),
                (94, 95.5, 93, 95),
                (95, 97, 94, 96),
                (96, 96, 96, 96),
            ]
        },
        plan=[
            PlanOrder(bar=0, asset="X", qty=10, type="market"),
            PlanOrder(bar=1, asset="X", qty=-10, type="stop_limit", stop=95.0, limit=96.0),
        ],
        knobs=Knobs(initial_cash=2_000.0),
        fills=[(1, "X", "buy", 10, 100.0, "signal"), (3, "X", "sell", 10, 96.0, "signal")],
        final_equity=1_960.0,
    ),
}


HAND |= {
    # Cap 10 % of volume. 300 bought at 100 (stop 5 %: 95). Bar 2 (volume 2,000: 200 shares)
    # crosses the stop: 200 sold at 95; the sell limit at 96.5 the bar also reaches finds no
    # room left and waits, whole (the position is not flat, so it is not stopped out). The
    # exit's last 100 wait as a market order: bar 3's open 95 (volume 1,000: 100 shares);
    # flat, the sell limit is stopped out.
    "participation_stop_rest": HandCase(
        bars={
            "X": [(100, 100, 100, 100), (100, 100, 100, 100), (96, 97, 90, 92), (95, 95, 95, 95)]
        },
        volumes={"X": [10_000.0, 10_000.0, 2_000.0, 1_000.0]},
        plan=[
            PlanOrder(bar=0, asset="X", qty=300, type="market"),
            PlanOrder(bar=1, asset="X", qty=-100, type="limit", limit=96.5),
        ],
        knobs=Knobs(initial_cash=40_000.0, stop_loss_pct=0.05, max_participation=0.1),
        fills=[
            (1, "X", "buy", 300, 100.0, "signal"),
            (2, "X", "sell", 200, 95.0, "stop_loss"),
            (3, "X", "sell", 100, 95.0, "stop_loss"),
        ],
        rejections=[("X", "sell", 100, "stopped_out")],
        cash=[40_000.0, 10_000.0, 29_000.0, 38_500.0],
        final_equity=38_500.0,
    ),
    # Cap 25 % of 1,000 = 250 of a buy of 400 (the 150 rejected: volume_limit); 20,000 pays
    # 200 of those 250 (50 insufficient_cash). Bar 2 traded nothing: the buy of 10 is rejected.
    "participation_reject_then_cash": HandCase(
        bars={"X": [(100, 100, 100, 100)] * 4},
        volumes={"X": [1_000.0, 1_000.0, 0.0, 1_000.0]},
        plan=[
            PlanOrder(bar=0, asset="X", qty=400, type="market"),
            PlanOrder(bar=1, asset="X", qty=10, type="market"),
        ],
        knobs=Knobs(
            initial_cash=20_000.0,
            on_insufficient_cash="resize",
            max_participation=0.25,
            on_volume_limit="reject",
        ),
        fills=[(1, "X", "buy", 200, 100.0, "signal")],
        rejections=[
            ("X", "buy", 150, "volume_limit"),
            ("X", "buy", 50, "insufficient_cash"),
            ("X", "buy", 10, "volume_limit"),
        ],
        cash=[20_000.0, 0.0, 0.0, 0.0],
        final_equity=20_000.0,
    ),
    # Long only, long 100; a sell of 250 on a bar with room for 30: the 150 that would open a
    # short are rejected, 30 sell, the other 70 wait and sell at bar 3.
    "participation_clipped_sell": HandCase(
        bars={"X": [(10, 10, 10, 10)] * 4},
        volumes={"X": [1e6, 1e6, 300.0, 1e6]},
        plan=[
            PlanOrder(bar=0, asset="X", qty=100, type="market"),
            PlanOrder(bar=1, asset="X", qty=-250, type="market"),
        ],
        knobs=Knobs(initial_cash=10_000.0, max_participation=0.1),
        fills=[
            (1, "X", "buy", 100, 10.0, "signal"),
            (2, "X", "sell", 30, 10.0, "signal"),
            (3, "X", "sell", 70, 10.0, "signal"),
        ],
        rejections=[("X", "sell", 150, "short_not_allowed")],
        cash=[10_000.0, 9_000.0, 9_300.0, 10_000.0],
        final_equity=10_000.0,
    ),
}


def assert_hand_fills(got: list[FillRow], want: list[FillRow]) -> None:
    assert [g[:4] + g[5:] for g in got] == [w[:4] + w[5:] for w in want], got
    for g, w in zip(got, want, strict=True):
        assert math.isclose(g[4], w[4], rel_tol=1e-12), (g, w)


def assert_hand_money(cash: list[float], equity: float, case: HandCase) -> None:
    if case.cash is not None:
        assert cash == pytest.approx(case.cash, abs=1e-9)
    assert equity == pytest.approx(case.final_equity, abs=1e-9)


@pytest.mark.parametrize("name", list(HAND))
def test_oracle_by_hand(name: str) -> None:
    """The oracle itself against the hand-worked numbers."""
    case = HAND[name]
    fills, equity, rejections = replay(hand_prices(case.bars, case.volumes), case.plan, case.knobs)
    got = [(f.bar, f.asset_id, f.side, f.qty, f.price, f.reason) for f in fills]
    assert_hand_fills(got, case.fills)
    asked = [case.plan[r.plan_index] for r in rejections]
    assert [
        (p.asset, "buy" if r.qty > 0 else "sell", abs(r.qty), r.reason)
        for p, r in zip(asked, rejections, strict=True)
    ] == case.rejections
    assert_hand_money([e.cash for e in equity], equity[-1].equity, case)


@pytest.mark.parametrize("name", list(HAND))
def test_engine_by_hand(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The engine against the same numbers, and against the oracle."""
    case = HAND[name]
    out = check(tmp_path, hand_prices(case.bars, case.volumes), case.plan, case.knobs, capsys)
    fills = pl.read_parquet(out / "fills.parquet")
    got = [
        (r["bar"], r["asset_id"], r["side"], r["qty"], r["price"], r["reason"])
        for r in fills.iter_rows(named=True)
    ]
    assert_hand_fills(got, case.fills)
    rejections = pl.read_parquet(out / "rejections.parquet")
    assert [
        (r["asset_id"], r["side"], r["qty"], r["reason"]) for r in rejections.iter_rows(named=True)
    ] == case.rejections
    equity = pl.read_parquet(out / "equity.parquet")
    assert_hand_money(equity["cash"].to_list(), float(equity["equity"][-1]), case)


def test_engine_keeps_a_delisted_assets_order_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Held through a delisting, the sell limit never meets a bar again: status open."""
    case = HAND["delisting_hold"]
    out = check(tmp_path, hand_prices(case.bars), case.plan, case.knobs, capsys)
    assert pl.read_parquet(out / "orders.parquet")["status"].to_list() == ["filled", "open"]


def test_random_inputs_exercise_every_rule() -> None:
    """The randomized cases are only worth running if the oracle meets each rule in them."""
    seen: dict[str, int] = {}
    for case, knobs in CASES.items():
        for seed in SEEDS:
            prices, plan = case_inputs(case, seed)
            fills, _, rejections = replay(prices, plan, knobs)
            for f in fills:
                seen[f"{case}:{f.reason}"] = seen.get(f"{case}:{f.reason}", 0) + 1
            for r in rejections:
                seen[f"{case}:{r.reason}"] = seen.get(f"{case}:{r.reason}", 0) + 1
    for key in (
        "short_stops:stop_loss",
        "short_stops_market:stop_loss",
        "short_stops:stopped_out",
        "stop_first:stop_loss",
        "delistings:delisted",
        "cash_rejections:insufficient_cash",
        "resized_buys:insufficient_cash",
        "limits_with_slippage:no_bar",
        "cash_rejections:short_not_allowed",
        "participation_reject:volume_limit",
        "participation_reject:insufficient_cash",
        "participation_with_stops:stop_loss",
    ):
        assert seen.get(key, 0) > 0, f"{key} never happens: {sorted(seen)}"


def test_random_inputs_meet_the_volume_cap() -> None:
    """In the participation cases the cap binds: an asset's fills of a bar take exactly
    floor(f x volume) on many bars, and stop exits spread over several bars."""
    for case in ("participation_wait", "participation_reject", "participation_with_stops"):
        knobs = CASES[case]
        assert knobs.max_participation is not None
        binding = spread_exits = 0
        for seed in SEEDS:
            prices, plan = case_inputs(case, seed)
            fills, _, _ = replay(prices, plan, knobs)
            volume = {
                (int(r[0]), r[1]): r[2]
                for r in prices.select(
                    pl.col("timestamp").dt.replace_time_zone("UTC").dt.epoch("us"),
                    "asset_id",
                    "volume",
                ).iter_rows()
            }
            taken: dict[tuple[int, str], int] = {}
            for f in fills:
                if f.reason != "delisted":
                    taken[(f.ts_us, f.asset_id)] = taken.get((f.ts_us, f.asset_id), 0) + f.qty
            for key, qty in taken.items():
                cap = math.floor(knobs.max_participation * volume[key])
                assert qty <= cap, (case, seed, key, qty, cap)
                binding += qty == cap
            exits = [(f.asset_id, f.bar) for f in fills if f.reason == "stop_loss"]
            spread_exits += sum((a, b + 1) in exits for a, b in exits)
        assert binding >= 20, (case, binding)
        if knobs.stop_loss_pct is not None:
            assert spread_exits >= 3, spread_exits
