"""The oracle and the invariant checker, tested on their own before they judge the engine.

Hand-worked examples pin the oracle to the words of WORKLOADS.md; corrupted copies of a correct
result show that every invariant in tests/invariants.py can fail.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from tests.invariants import check_backtest_tables
from tests.oracle.synthetic import (
    MarketSpec,
    hand_rotation_market,
    hand_threshold_market,
    make_market,
    stop_boundary_market,
    write_market,
)
from tests.oracle.workloads import (
    AssetId,
    OracleResult,
    equity_frame,
    fills_frame,
    load_panel,
    signal_threshold,
    top_k_rotation,
)


def fill_tuples(result: OracleResult) -> list[tuple[int, AssetId, str, int, float, str]]:
    return [(f.bar, f.asset_id, f.side, f.qty, f.price, f.reason) for f in result.fills]


def test_oracle_w1_w2_by_hand(tmp_path: Path) -> None:
    paths = hand_threshold_market(tmp_path / "a")
    panel = load_panel(*paths.files())
    w1 = signal_threshold(panel, entry_above=0.6, exit_below=0.4, qty=100)
    # the last bar's buy decision never fills
    assert fill_tuples(w1) == [
        (1, "X", "buy", 100, 100.0, "signal"),
        (5, "X", "sell", 100, 97.0, "signal"),
    ]
    assert w1.final_equity == pytest.approx(1e6 - 10_000 - 10 + 9_700 - 9.7, rel=1e-12)
    w2 = signal_threshold(panel, entry_above=0.6, exit_below=0.4, qty=100, stop_pct=0.05)
    # bar 1: low 90 is below the stop but it is the entry bar; bar 2: stop 95 < open 99 fills at
    # 95 and the strategy re-enters at that close; bar 4: gap open 90 < stop 93.1 fills at the open
    assert fill_tuples(w2) == [
        (1, "X", "buy", 100, 100.0, "signal"),
        (2, "X", "sell", 100, 100.0 * (1 - 0.05), "stop_loss"),
        (3, "X", "buy", 100, 98.0, "signal"),
        (4, "X", "sell", 100, 90.0, "stop_loss"),
    ]
    assert w2.final_equity == pytest.approx(1e6 - 1_300 - 38.3, rel=1e-12)

    # a null score takes no action: the exit decided at bar 4 disappears
    paths = hand_threshold_market(tmp_path / "b", null_exit_score=True)
    w1_null = signal_threshold(load_panel(*paths.files()), entry_above=0.6, exit_below=0.4, qty=100)
    assert fill_tuples(w1_null) == [(1, "X", "buy", 100, 100.0, "signal")]
    assert w1_null.final_equity == pytest.approx(1e6 - 10_010 + 9_700, rel=1e-12)


def test_oracle_w3_by_hand(tmp_path: Path) -> None:
    paths = hand_rotation_market(tmp_path)
    result = top_k_rotation(
        load_panel(*paths.files()),
        top_k=1,
        weight=0.5,
        rebalance_every=2,
        warmup_bars=2,
        max_vix=30,
    )
    # bar 2: ABC and ZED tie, ABC wins on asset order; bar 4: MID leads but vix 40 > 30 skips;
    # bar 6: equity 494,495 + 5,000 * 110 -> ZED target floor(0.5 * 1,044,495 / 50) = 10,444
    assert fill_tuples(result) == [
        (3, "ABC", "buy", 5000, 101.0, "signal"),
        (7, "ABC", "sell", 5000, 111.0, "signal"),
        (7, "ZED", "buy", 10444, 51.0, "signal"),
    ]
    assert result.equity[3].equity == pytest.approx(494_495 + 500_000, rel=1e-12)
    assert result.final_equity == pytest.approx(515_763.356 + 10_444 * 52, rel=1e-12)


@pytest.fixture(scope="module")
def stop_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[OracleResult, pl.DataFrame]:
    market = make_market(MarketSpec(seed=808, n_assets=2, n_bars=400, tz="America/Chicago"))
    paths = write_market(market, tmp_path_factory.mktemp("stop_run"), seed=808)
    result = signal_threshold(
        load_panel(*paths.files()), entry_above=0.6, exit_below=0.4, qty=100, stop_pct=0.03
    )
    assert any(f.reason == "stop_loss" for f in result.fills)
    return result, market.prices


def test_invariants_accept_the_oracle(stop_run: tuple[OracleResult, pl.DataFrame]) -> None:
    result, prices = stop_run
    check_backtest_tables(
        fills=fills_frame(result),
        equity=equity_frame(result),
        prices=prices,
        initial_cash=1e6,
        final_cash=result.final_cash,
        summary={"fills": len(result.fills), "final_equity": result.final_equity},
    )


def _nudge(df: pl.DataFrame, column: str, row: int, delta: float) -> pl.DataFrame:
    values = df[column].to_list()
    values[row] += delta
    return df.with_columns(pl.Series(column, values, dtype=df.schema[column]))


@pytest.mark.parametrize(
    ("table", "column", "delta", "message"),
    [
        ("fills", "price", 1e3, "outside [low, high]"),
        ("fills", "commission", -1e3, "commission negative"),
        ("fills", "qty", 1, "cash at"),
        ("equity", "cash", 1.0, "equity vs cash + positions_value"),
        ("equity", "positions_value", 1.0, "positions_value at"),
        ("equity", "equity", float("nan"), "NaN in the equity curve"),
    ],
)
def test_invariants_catch_corruption(
    stop_run: tuple[OracleResult, pl.DataFrame], table: str, column: str, delta: float, message: str
) -> None:
    result, prices = stop_run
    fills, equity = fills_frame(result), equity_frame(result)
    if table == "fills":
        fills = _nudge(fills, column, len(result.fills) // 2, delta)
    else:
        equity = _nudge(equity, column, equity.height // 2, delta)
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_backtest_tables(fills=fills, equity=equity, prices=prices, initial_cash=1e6)


@pytest.mark.parametrize(("stop_price", "ok"), [(99.0, True), (100.0, True), (101.0, False)])
def test_invariants_catch_a_stop_filled_above_the_open(stop_price: float, ok: bool) -> None:
    """A long stop exit at 101 is inside [90, 110] yet worse than the open of 100."""
    stamps = [datetime(2022, 1, 3, tzinfo=UTC), datetime(2022, 1, 4, tzinfo=UTC)]
    prices = pl.DataFrame(
        {
            "timestamp": stamps,
            "asset_id": ["X", "X"],
            "open": [100.0, 100.0],
            "high": [110.0, 110.0],
            "low": [90.0, 90.0],
            "close": [100.0, 100.0],
        }
    )
    fills = pl.DataFrame(
        {
            "timestamp": stamps,
            "asset_id": ["X", "X"],
            "side": ["buy", "sell"],
            "qty": [10, 10],
            "price": [100.0, stop_price],
            "commission": [0.0, 0.0],
            "reason": ["signal", "stop_loss"],
        }
    )
    cash = [1e6 - 1000.0, 1e6 - 1000.0 + 10 * stop_price]
    equity = pl.DataFrame(
        {
            "timestamp": stamps,
            "cash": cash,
            "positions_value": [1000.0, 0.0],
            "equity": [1e6, cash[1]],
        }
    )
    if ok:
        check_backtest_tables(fills=fills, equity=equity, prices=prices, initial_cash=1e6)
    else:
        with pytest.raises(AssertionError, match="beyond the open") as caught:
            check_backtest_tables(fills=fills, equity=equity, prices=prices, initial_cash=1e6)
        assert "outside" not in str(caught.value)
        assert "cash" not in str(caught.value)


def test_invariants_catch_a_summary_that_disagrees(
    stop_run: tuple[OracleResult, pl.DataFrame],
) -> None:
    result, prices = stop_run
    with pytest.raises(AssertionError, match="summary fills"):
        check_backtest_tables(
            fills=fills_frame(result),
            equity=equity_frame(result),
            prices=prices,
            initial_cash=1e6,
            summary={"fills": len(result.fills) + 1},
        )


@pytest.mark.parametrize(("low", "stopped"), [(95.96, False), (95.95, False), (95.94, True)])
def test_oracle_stop_level_is_entry_times_one_minus_pct(
    tmp_path: Path, low: float, stopped: bool
) -> None:
    panel = load_panel(*stop_boundary_market(tmp_path, low_after_entry=low).files())
    result = signal_threshold(panel, entry_above=0.6, exit_below=0.4, qty=100, stop_pct=0.05)
    stops = [f for f in result.fills if f.reason == "stop_loss"]
    assert [(f.bar, f.price) for f in stops] == ([(2, 101.0 * (1 - 0.05))] if stopped else [])


@pytest.mark.parametrize(("slippage", "ok"), [(0.5, True), (0.0, False)])
def test_invariants_judge_the_price_before_slippage(slippage: float, ok: bool) -> None:
    """A buy of 10 at 110.05 on a bar topping at 110 is fine only if slippage explains it."""
    stamp = [datetime(2022, 1, 3, tzinfo=UTC)]
    prices = pl.DataFrame(
        {
            "timestamp": stamp,
            "asset_id": ["X"],
            "open": [110.0],
            "high": [110.0],
            "low": [90.0],
            "close": [100.0],
        }
    )
    fills = pl.DataFrame(
        {
            "timestamp": stamp,
            "asset_id": ["X"],
            "side": ["buy"],
            "qty": [10],
            "price": [110.05],
            "commission": [0.0],
            "slippage": [slippage],
            "reason": ["signal"],
        }
    )
    cash = 1e6 - 1100.5
    equity = pl.DataFrame(
        {"timestamp": stamp, "cash": [cash], "positions_value": [1000.0], "equity": [cash + 1000.0]}
    )
    if ok:
        check_backtest_tables(fills=fills, equity=equity, prices=prices, initial_cash=1e6)
    else:
        with pytest.raises(AssertionError, match=re.escape("outside [low, high]")):
            check_backtest_tables(fills=fills, equity=equity, prices=prices, initial_cash=1e6)
