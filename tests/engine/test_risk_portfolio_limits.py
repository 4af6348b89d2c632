"""The two portfolio limits that count over time: `max_positions` and `daily_loss_limit`.

`max_positions` counts a position until its exit has filled: an exit decided at a close (the
strategy's own sell, a limit exit, a rule's exit queued for the next open) frees no slot at that
close. `daily_loss_limit` works per UTC calendar date: the loss is measured from the equity at
the close of the previous date's last bar, and once reached it blocks entries for the rest of
the date. The markets are hand-built intraday bars (four a day) written as Parquet files; every
expectation is worked out by hand in the comments.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest

from ml4t_pipeline.engine import BacktestResult, EngineState, OrderType, run_backtest
from tests.engine.conftest import Order, Scripted, config, flat, panel, rows
from tests.invariants import assert_result_invariants

DAY0 = dt.datetime(2024, 3, 4, 14, 30, tzinfo=dt.UTC)
BARS_PER_DAY = 4


def intraday_stamp(bar: int) -> dt.datetime:
    """Bar `bar` of four a day, an hour apart, from 14:30 UTC on consecutive dates."""
    day, k = divmod(bar, BARS_PER_DAY)
    return DAY0 + dt.timedelta(days=day, hours=k)


def write_intraday(path: Path, **closes: Sequence[float]) -> Path:
    """Flat bars (open = high = low = close) of each asset at the given closes, as Parquet."""
    frames = [
        pl.DataFrame(
            {
                "timestamp": [intraday_stamp(k) for k in range(len(values))],
                "asset_id": [asset] * len(values),
                "open": [float(v) for v in values],
                "high": [float(v) for v in values],
                "low": [float(v) for v in values],
                "close": [float(v) for v in values],
                "volume": [1_000_000.0] * len(values),
            },
            schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
        )
        for asset, values in closes.items()
    ]
    pl.concat(frames).write_parquet(path)
    return path


# -- daily_loss_limit ------------------------------------------------------------------------
# 500 A bought at 100 on 100,000 (commission 0): equity = 50,000 + 500 x A (+ B's 10 x 10 once
# bought, which leaves equity unchanged). Four dates of four bars; the limit is 2 %.
A_CLOSES = [
    *(100, 100, 100, 100),  # date 0 (bars 0-3): 100,000 at every close
    *(100, 95, 100, 100),  # date 1 (4-7): starts from 100,000; -2.5 % at bar 5, then recovers
    *(99.5, 98.5, 97, 95.5),  # date 2 (8-11): starts from 100,000; -0.25, -0.75, -1.5, -2.25 %
    *(95.5, 95.5, 95.5, 95.5),  # date 3 (12-15): starts from 97,750 (close 11): 0 %
]
LOSS_SCRIPT = {
    0: [Order(asset="A", qty=500)],  # id 0, fills at bar 1
    5: [Order(asset="B", qty=10)],  # id 1: -2.5 % at this close: rejected
    6: [Order(asset="B", qty=10)],  # id 2: back to 0 %, but the date's limit was hit: rejected
    7: [Order(asset="B", qty=10)],  # id 3: rejected (the rest of the date)
    8: [Order(asset="B", qty=10)],  # id 4: a new date, -0.25 %: fills at bar 9
    11: [Order(asset="B", qty=10)],  # id 5: -2.25 % since the date began (-0.76 % bar to bar)
    12: [Order(asset="B", qty=10)],  # id 6: a new date, 0 %: fills at bar 13
}
LOSS_RISK = [{"rule": "daily_loss_limit", "max_loss": 0.02}]


def loss_market(tmp_path: Path) -> Path:
    return write_intraday(tmp_path / "prices.parquet", A=A_CLOSES, B=[10.0] * len(A_CLOSES))


def test_a_loss_blocks_entries_for_the_rest_of_its_utc_date_only(tmp_path: Path) -> None:
    prices = loss_market(tmp_path)
    cfg = config(tmp_path, risk=LOSS_RISK, commission_rate=0.0)
    result = run_backtest(cfg, strategy=Scripted(LOSS_SCRIPT), prices=prices)
    assert_result_invariants(result, prices=prices)
    assert rows(result.fills, "bar", "asset_id", "side", "qty") == [
        (1, "A", "buy", 500),
        (9, "B", "buy", 10),
        (13, "B", "buy", 10),
    ]
    assert rows(result.rejections, "timestamp", "order_id", "reason", "rule") == [
        (intraday_stamp(5), 1, "risk_daily_loss", "daily_loss_limit"),
        (intraday_stamp(6), 2, "risk_daily_loss", "daily_loss_limit"),
        (intraday_stamp(7), 3, "risk_daily_loss", "daily_loss_limit"),
        (intraday_stamp(11), 5, "risk_daily_loss", "daily_loss_limit"),
    ]


def run_chained(
    tmp_path: Path, prices: Path, bounds: Sequence[dt.datetime]
) -> tuple[list[BacktestResult], BacktestResult]:
    """Runs over [bounds[k], bounds[k + 1]), each from the state the one before saved (through
    JSON, as stored), and the one run over the whole period."""
    cfg = config(tmp_path, risk=LOSS_RISK, commission_rate=0.0)
    full = run_backtest(cfg, strategy=Scripted(LOSS_SCRIPT), prices=prices)
    parts: list[BacktestResult] = []
    state: EngineState | None = None
    for start, end in itertools.pairwise(bounds):
        part = run_backtest(
            cfg,
            strategy=Scripted(LOSS_SCRIPT),
            prices=prices,
            start=start,
            end=end,
            initial_state=state,
        )
        state = EngineState.from_json(part.final_state.to_json())
        parts.append(part)
    return parts, full


@pytest.mark.parametrize(
    "split_bars",
    [
        [0, 4, 8, 12, 16],  # by date
        [0, 6, 16],  # inside date 1, after its loss: the block carries into the next run
        [0, 10, 11, 16],  # inside date 2: its start equity and lowest close carry
    ],
    ids=["by_date", "after_the_loss", "mid_date"],
)
def test_chained_runs_equal_one_run(tmp_path: Path, split_bars: list[int]) -> None:
    prices = loss_market(tmp_path)
    bounds = [intraday_stamp(k) for k in split_bars]
    parts, full = run_chained(tmp_path, prices, bounds)
    assert pl.concat([p.equity for p in parts]).equals(full.equity)
    assert pl.concat([p.fills for p in parts]).equals(full.fills)
    assert pl.concat([p.rejections for p in parts]).equals(full.rejections)
    assert rows(full.rejections, "order_id") == [(1,), (2,), (3,), (5,)]


def test_on_daily_bars_the_date_is_the_bar(tmp_path: Path) -> None:
    # one bar a date: the loss since the previous date's close is the loss since the previous
    # bar's close; 500 A at 100: closes 100, 100, 97 (-1.5 %), 94 (-1.52 %), 94, 90 (-2.06 %)
    prices = panel(A=[flat(c) for c in (100, 100, 97, 94, 94, 90, 90)], B=[flat(10)] * 7)
    script = {0: [Order(asset="A", qty=500)]} | {k: [Order(asset="B", qty=1)] for k in (2, 3, 5)}
    cfg = config(tmp_path, risk=[{"rule": "daily_loss_limit", "max_loss": 0.02}])
    result = run_backtest(cfg, strategy=Scripted(script), prices=prices)
    assert rows(result.fills, "bar", "asset_id") == [(1, "A"), (3, "B"), (4, "B")]
    assert rows(result.rejections, "order_id", "reason") == [(3, "risk_daily_loss")]


# -- max_positions ---------------------------------------------------------------------------
def run_limited(tmp_path: Path, script: Scripted, n: int, **risk: object) -> BacktestResult:
    prices = panel(A=[flat(100)] * 3 + [(100, 110, 100, 110)] + [flat(110)] * 2, B=[flat(50)] * 6)
    rules = [{"rule": "max_positions", "n": n}, *([risk] if risk else [])]
    result = run_backtest(config(tmp_path, risk=rules), strategy=script, prices=prices)
    assert_result_invariants(result, prices=prices)
    return result


def test_a_sell_decided_at_the_same_close_frees_no_slot(tmp_path: Path) -> None:
    script = Scripted(
        {
            0: [Order(asset="A", qty=1)],
            # A is still held at this close (its sell fills at the open of bar 3): B is rejected
            2: [Order(asset="A", qty=-1), Order(asset="B", qty=1)],
            3: [Order(asset="B", qty=1)],  # A was sold at the open: room for B
        }
    )
    result = run_limited(tmp_path, script, n=1)
    assert rows(result.fills, "bar", "asset_id", "side") == [
        (1, "A", "buy"),
        (3, "A", "sell"),
        (4, "B", "buy"),
    ]
    assert rows(result.rejections, "order_id", "reason") == [(2, "risk_max_positions")]


#: A's sell limit at 110: it works from bar 2 and fills inside bar 3 (high 110).
EXIT_A = Order(asset="A", qty=-1, order_type=OrderType.LIMIT, limit_price=110.0)


def test_a_working_limit_exit_keeps_the_slot_until_it_fills(tmp_path: Path) -> None:
    # (the code before #13 counted this one right already: A is held while its exit works)
    script = Scripted(
        {
            0: [Order(asset="A", qty=1)],
            1: [EXIT_A],
            2: [Order(asset="B", qty=1)],  # the limit works, A is held: rejected
            3: [Order(asset="B", qty=1)],  # the limit filled in bar 3: B admitted
        }
    )
    result = run_limited(tmp_path, script, n=1)
    assert rows(result.fills, "bar", "asset_id", "side", "price") == [
        (1, "A", "buy", 100.0),
        (3, "A", "sell", 110.0),
        (4, "B", "buy", 50.0),
    ]
    assert rows(result.rejections, "order_id", "reason") == [(2, "risk_max_positions")]


def test_a_limit_exit_decided_at_the_same_close_frees_no_slot(tmp_path: Path) -> None:
    script = Scripted(
        {
            0: [Order(asset="A", qty=1)],
            1: [EXIT_A, Order(asset="B", qty=1)],  # decided together: B rejected
            3: [Order(asset="B", qty=1)],
        }
    )
    result = run_limited(tmp_path, script, n=1)
    assert rows(result.fills, "bar", "asset_id", "side") == [
        (1, "A", "buy"),
        (3, "A", "sell"),
        (4, "B", "buy"),
    ]
    assert rows(result.rejections, "order_id", "reason") == [(2, "risk_max_positions")]


def test_a_rule_exit_queued_for_the_next_open_frees_no_slot(tmp_path: Path) -> None:
    # time_exit: A entered at bar 1 is due at close 2 (held 1 bar); its exit fills at open 3
    script = Scripted(
        {0: [Order(asset="A", qty=1)], 2: [Order(asset="B", qty=1)], 3: [Order(asset="B", qty=1)]}
    )
    result = run_limited(tmp_path, script, n=1, rule="time_exit", max_bars=1)
    assert rows(result.fills, "bar", "asset_id", "reason") == [
        (1, "A", "signal"),
        (3, "A", "time_exit"),
        (4, "B", "signal"),
    ]
    assert rows(result.rejections, "order_id", "reason") == [(1, "risk_max_positions")]


def test_orders_for_one_new_asset_take_one_slot(tmp_path: Path) -> None:
    # two resting buys for B (a ladder) and one for A with room for two positions: B takes one
    # slot, A the other
    ladder = [
        Order(asset="B", qty=1, order_type=OrderType.LIMIT, limit_price=50.0),
        Order(asset="B", qty=1, order_type=OrderType.LIMIT, limit_price=49.0),
        Order(asset="A", qty=1),
    ]
    result = run_limited(tmp_path, Scripted({0: ladder}), n=2)
    assert rows(result.fills, "bar", "asset_id") == [(1, "B"), (1, "A")]  # in order-id order
    assert result.rejections.height == 0
