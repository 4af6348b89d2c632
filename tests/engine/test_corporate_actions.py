"""Corporate actions (`data.corporate_actions`): splits and dividends applied at the ex-date.

Each case runs real Parquet inputs through `run_backtest` and checks the account against a
hand computation, and every result against the invariants (which count the actions' cash and
shares). The central property: N shares on raw prices plus the actions file are, bar by bar,
the account of the split-adjusted shares on split-adjusted prices.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.engine import BacktestResult, run_backtest
from ml4t_pipeline.engine.config import run_config_from_dict
from ml4t_pipeline.engine.feed.actions import read_corporate_actions
from ml4t_pipeline.errors import DataError
from tests.invariants import assert_backtest_invariants, assert_result_invariants

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
N_BARS = 30
EX = 15  # the ex-date bar of the cases


def _stamps(n: int = N_BARS) -> list[dt.datetime]:
    return [START + dt.timedelta(days=i) for i in range(n)]


def _closes(seed: int, n: int = N_BARS) -> np.ndarray:
    """A random walk of closes whose values are multiples of 1/64 (exact in float64), so
    that dividing or multiplying by a split ratio of 2 or 4 loses no bit."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(-96, 97, n)
    return (6400 + np.cumsum(steps)) / 64.0


def _bars(closes: dict[str, np.ndarray]) -> pl.DataFrame:
    """OHLCV: open = previous close (a flat gap), high/low 1 % around the bar."""
    frames = []
    for asset, close in closes.items():
        n = close.shape[0]
        open_ = np.r_[close[0], close[:-1]]
        frames.append(
            pl.DataFrame(
                {
                    "timestamp": _stamps(n),
                    "asset_id": [asset] * n,
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.01,
                    "low": np.minimum(open_, close) * 0.99,
                    "close": close,
                    "volume": np.full(n, 1e6),
                }
            )
        )
    return pl.concat(frames)


def _raw(adjusted: pl.DataFrame, ratio: float, ex: int = EX) -> pl.DataFrame:
    """The raw bars of a split of `ratio` at bar `ex`: before it, prices x ratio and volume /
    ratio (what the split-adjusted `adjusted` bars were adjusted from)."""
    before = pl.col("timestamp") < START + dt.timedelta(days=ex)
    return adjusted.with_columns(
        *[pl.when(before).then(pl.col(c) * ratio).otherwise(pl.col(c)).alias(c) for c in OHLC],
        pl.when(before).then(pl.col("volume") / ratio).otherwise(pl.col("volume")).alias("volume"),
    )


OHLC = ("open", "high", "low", "close")


def _write(folder: Path, name: str, frame: pl.DataFrame) -> Path:
    path = folder / f"{name}.parquet"
    frame.write_parquet(path)
    return path


def _actions(rows: Sequence[tuple[int, str, float | None, float | None]]) -> pl.DataFrame:
    """(bar, asset, split_ratio, dividend) rows."""
    return pl.DataFrame(
        {
            "timestamp": [START + dt.timedelta(days=b) for b, _, _, _ in rows],
            "asset_id": [a for _, a, _, _ in rows],
            "split_ratio": [r for _, _, r, _ in rows],
            "dividend": [d for _, _, _, d in rows],
        },
        schema={
            "timestamp": pl.Datetime("us", "UTC"),
            "asset_id": pl.String,
            "split_ratio": pl.Float64,
            "dividend": pl.Float64,
        },
    )


def _run(
    folder: Path,
    prices: pl.DataFrame,
    plan: list[dict[str, Any]],
    *,
    actions: pl.DataFrame | None = None,
    risk: list[dict[str, Any]] | None = None,
    execution: dict[str, Any] | None = None,
    tag: str = "run",
    check: bool = True,
) -> BacktestResult:
    """One run of a fixed order plan on Parquet inputs; the result's files pass the invariants."""
    folder = folder / tag
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"prices": str(_write(folder, "prices", prices))}
    if actions is not None:
        data["corporate_actions"] = str(_write(folder, "actions", actions))
    plan_file = folder / "plan.json"
    plan_file.write_text(json.dumps(plan))
    config = run_config_from_dict(
        {
            "data": data,
            "strategy": {
                "class": "tests.fixtures.plan_strategy:PlanStrategy",
                "params": {"plan": str(plan_file)},
            },
            "execution": {"commission_rate": 0.001, **(execution or {})},
            "risk": risk or [],
        }
    )
    result = run_backtest(config)
    if check:
        result.write(folder / "out")
        assert_backtest_invariants(folder / "out", prices=prices)
        assert_result_invariants(result, prices=prices)
    return result


def _buy(bar: int, asset: str, qty: int, **extra: Any) -> dict[str, Any]:
    return {"bar": bar, "asset": asset, "qty": qty, "type": "market"} | extra


# -- the central property ------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [2.0, 4.0])
def test_n_shares_on_raw_prices_are_ratio_n_on_adjusted_prices(
    tmp_path: Path, ratio: float
) -> None:
    adjusted = _closes(1)
    n = 100
    plan_raw = [_buy(2, "A", n), _buy(24, "A", -int(n * ratio))]  # the sell after the split
    plan_adj = [_buy(2, "A", int(n * ratio)), _buy(24, "A", -int(n * ratio))]
    raw = _run(
        tmp_path,
        _raw(_bars({"A": adjusted}), ratio),
        plan_raw,
        actions=_actions([(EX, "A", ratio, None)]),
        tag="raw",
    )
    adj = _run(tmp_path, _bars({"A": adjusted}), plan_adj, tag="adjusted")
    # bit for bit: scaling by a power of two is exact, so nothing may differ
    assert raw.equity["equity"].to_list() == adj.equity["equity"].to_list()
    assert raw.equity["cash"].to_list() == adj.equity["cash"].to_list()
    assert raw.final_equity == adj.final_equity
    # the trade is the adjusted run's trade: entry qty and price in the new shares
    keep = ["qty", "entry_price", "exit_price", "gross_pnl", "commission", "pnl", "return_pct"]
    assert raw.trades.select(keep).equals(adj.trades.select(keep))
    assert raw.trades["splits"].to_list() == [1]
    split = raw.actions.row(0, named=True)
    assert (split["action"], split["qty_before"], split["qty_after"]) == ("split", n, n * ratio)
    assert split["cash"] == 0.0
    assert raw.summary()["corporate_actions"]["splits"] == 1


def test_protective_levels_follow_the_split(tmp_path: Path) -> None:
    """A stop and a trailing stop set before a 2:1 split fire where they fire on adjusted
    prices: the levels and water marks are halved with the shares doubled."""
    adjusted = _closes(7)
    adjusted[EX + 3 :] *= 0.8  # a fall after the split that the stops must catch
    risk = [{"rule": "stop_loss", "pct": 0.05}, {"rule": "trailing_stop", "pct": 0.08}]
    raw = _run(
        tmp_path,
        _raw(_bars({"A": adjusted}), 2.0),
        [_buy(2, "A", 100)],
        actions=_actions([(EX, "A", 2.0, None)]),
        risk=risk,
        tag="raw",
    )
    adj = _run(tmp_path, _bars({"A": adjusted}), [_buy(2, "A", 200)], risk=risk, tag="adjusted")
    assert raw.equity["equity"].to_list() == adj.equity["equity"].to_list()
    exits = raw.trades.select("exit_bar", "exit_reason", "exit_price")
    assert exits.equals(adj.trades.select("exit_bar", "exit_reason", "exit_price"))
    assert raw.trades["exit_reason"][0] in {"stop_loss", "trailing_stop"}
    assert raw.trades["exit_bar"][0] > EX


def test_working_orders_are_amended_in_the_new_shares(tmp_path: Path) -> None:
    """A limit buy working across the ex-date is amended where it stands: qty x 2, limit / 2,
    the same id; it fills where the adjusted run's order does, and the orders table shows it
    in the new shares."""
    adjusted = _closes(3)
    adjusted[EX + 2 :] = adjusted[EX + 2 :] * 0.9  # comes down to the limit after the split
    limit = float(adjusted[EX + 2 : EX + 6].min()) * 1.005
    raw = _run(
        tmp_path,
        _raw(_bars({"A": adjusted}), 2.0),
        [_buy(5, "A", 50, type="limit", limit=limit * 2)],
        actions=_actions([(EX, "A", 2.0, None)]),
        tag="raw",
    )
    adj = _run(
        tmp_path, _bars({"A": adjusted}), [_buy(5, "A", 100, type="limit", limit=limit)], tag="adj"
    )
    assert raw.orders.select("order_id", "qty", "filled_qty", "limit_price", "status").rows() == [
        (0, 100, 100, limit, "filled")
    ]
    assert raw.rejections.height == 0
    assert raw.fills.select("timestamp", "qty", "price").equals(
        adj.fills.select("timestamp", "qty", "price")
    )
    assert raw.equity["equity"].to_list() == adj.equity["equity"].to_list()


# -- fractions, reverse splits, dividends ------------------------------------------------------------


def test_three_for_two_pays_the_fraction_in_cash(tmp_path: Path) -> None:
    closes = _closes(4)
    result = _run(
        tmp_path,
        _bars({"A": closes}),
        [_buy(2, "A", 101)],
        actions=_actions([(EX, "A", 1.5, None)]),
    )
    prev_close = float(closes[EX - 1])
    row = result.actions.row(0, named=True)
    assert (row["qty_before"], row["qty_after"]) == (101, 151)
    assert row["cash"] == pytest.approx(0.5 * prev_close / 1.5, rel=1e-15)
    assert row["ref_price"] == prev_close
    # cash before the ex-date plus the fraction's cash, nothing else moves at that bar
    cash = result.equity["cash"].to_numpy()
    assert cash[EX] == cash[EX - 1] + row["cash"]
    trade = result.trades.row(0, named=True)
    assert trade["cash_in_lieu"] == row["cash"]
    assert trade["qty"] == 151  # 101 bought, 50 added by the split
    assert result.final_state.per_asset["ledger.qty"] == [151]


def test_reverse_split_one_for_ten(tmp_path: Path) -> None:
    closes = _closes(5)
    result = _run(
        tmp_path,
        _bars({"A": closes}),
        [_buy(2, "A", 105)],
        actions=_actions([(EX, "A", 0.1, None)]),
    )
    row = result.actions.row(0, named=True)
    assert (row["qty_before"], row["qty_after"]) == (105, 10)
    assert row["cash"] == pytest.approx(0.5 * float(closes[EX - 1]) / 0.1, rel=1e-12)
    # the position is worth the same at the previous close, less the fraction paid out
    assert result.final_state.per_asset["ledger.avg_price"][0] == pytest.approx(
        result.fills["price"][0] / 0.1, rel=1e-12
    )


def test_ratio_noise_is_not_a_lost_share(tmp_path: Path) -> None:
    """1:3 given as 0.333...: 300 shares become 100, not 99 and a fraction."""
    result = _run(
        tmp_path,
        _bars({"A": _closes(6)}),
        [_buy(2, "A", 300)],
        actions=_actions([(EX, "A", 1 / 3, None)]),
    )
    row = result.actions.row(0, named=True)
    assert (row["qty_after"], row["cash"]) == (100, 0.0)


def test_an_order_left_without_a_whole_share_ends(tmp_path: Path) -> None:
    closes = _closes(17)
    result = _run(
        tmp_path,
        _bars({"A": closes}),
        [_buy(5, "A", 5, type="limit", limit=float(closes.min()) * 0.5)],
        actions=_actions([(EX, "A", 0.1, None)]),
    )
    assert result.orders["status"].to_list() == ["cancelled"]
    assert result.rejections.select("reason", "qty").rows() == [("split", 5)]


def test_a_reverse_split_below_one_share_ends_the_trade(tmp_path: Path) -> None:
    closes = _closes(8)
    result = _run(
        tmp_path,
        _bars({"A": closes}),
        [_buy(2, "A", 40)],
        actions=_actions([(EX, "A", 0.01, None)]),
    )
    row = result.actions.row(0, named=True)
    assert (row["qty_before"], row["qty_after"]) == (40, 0)
    assert row["cash"] == 40 * float(closes[EX - 1])
    trade = result.trades.row(0, named=True)
    assert (trade["exit_reason"], trade["exit_bar"]) == ("split", EX)
    assert trade["exit_price"] == float(closes[EX - 1])
    assert result.fills.height == 1  # the cash-out is the action's row, not a fill


@pytest.mark.parametrize("side", [1, -1])
def test_dividend_on_the_shares_held_at_the_previous_close(tmp_path: Path, side: int) -> None:
    closes = _closes(9)
    # a position opened at the ex-date's open is not entitled; the one held before is
    plan = [_buy(2, "A", 100 * side), _buy(EX - 1, "B", 100)]
    result = _run(
        tmp_path,
        _bars({"A": closes, "B": closes[::-1].copy()}),
        plan,
        actions=_actions([(EX, "A", None, 0.75), (EX, "B", None, 0.5)]),
        execution={"allow_short": True, "allow_negative_cash": True},
    )
    assert result.actions.height == 1
    row = result.actions.row(0, named=True)
    assert (row["asset_id"], row["action"], row["cash"]) == ("A", "dividend", 75.0 * side)
    trades = result.trades.filter(pl.col("asset_id") == "A")
    assert trades["dividends"].to_list() == [75.0 * side]
    # the trade's P&L counts the dividend, so trade P&L still sums to the equity change
    total = float(result.trades["pnl"].sum())
    assert total == pytest.approx(result.final_equity - result.start_equity, rel=1e-12)
    summary = result.summary()["corporate_actions"]
    assert (summary["dividends"], summary["dividend_cash"]) == (1, 75.0 * side)


def test_actions_on_assets_not_held_change_nothing(tmp_path: Path) -> None:
    closes = {"A": _closes(10), "B": _closes(11)}
    plan = [_buy(2, "A", 100)]
    with_actions = _run(
        tmp_path,
        _bars(closes),
        plan,
        actions=_actions([(EX, "B", 2.0, 1.0), (EX + 1, "ZZZ", 3.0, None)]),  # ZZZ: not in prices
        tag="with",
    )
    without = _run(tmp_path, _bars(closes), plan, tag="without")
    # (the equal-weight benchmark holds B: B's split and dividend are the benchmark's own)
    account = ["timestamp", "cash", "positions_value", "equity"]
    assert with_actions.equity.select(account).equals(without.equity.select(account))
    assert with_actions.actions.height == 0
    assert with_actions.summary()["corporate_actions"]["splits"] == 0
    assert "corporate_actions" not in without.summary()


def test_action_on_the_first_bar(tmp_path: Path) -> None:
    """On a fresh run's first bar nothing is held: the action has nothing to act on. A chained
    run whose first bar is the ex-date applies it to the shares carried in."""
    adjusted = _closes(12)
    prices = _raw(_bars({"A": adjusted}), 2.0)
    fresh = _run(
        tmp_path, prices, [_buy(0, "A", 10)], actions=_actions([(0, "A", 2.0, None)]), tag="fresh"
    )
    assert fresh.actions.height == 0
    whole = _run(
        tmp_path, prices, [_buy(2, "A", 100)], actions=_actions([(EX, "A", 2.0, None)]), tag="w"
    )
    assert whole.actions.height == 1
    # the same inputs run in two parts split at the ex-date
    chained = _chain(tmp_path, prices, [_buy(2, "A", 100)], _actions([(EX, "A", 2.0, None)]), EX)
    assert chained[1].actions["bar"].to_list() == [EX]
    equity = pl.concat([r.equity for r in chained])
    assert equity.equals(whole.equity)


def test_chained_runs_apply_an_action_between_them_once(tmp_path: Path) -> None:
    """An ex-date with no bar (a weekend between two runs) applies at the next run's first bar,
    exactly once, and chained runs equal one run whatever the boundary."""
    adjusted = _closes(13)
    prices = _raw(_bars({"A": adjusted}), 2.0).filter(
        pl.col("timestamp") != START + dt.timedelta(days=EX)  # the ex-date has no bar
    )
    actions = _actions([(EX, "A", 2.0, 0.25)])
    plan = [_buy(2, "A", 101)]
    whole = _run(tmp_path, prices, plan, actions=actions, tag="whole")
    assert whole.actions["action"].to_list() == ["dividend", "split"]
    for cut in (EX - 1, EX, EX + 1, EX + 5):
        parts = _chain(tmp_path, prices, plan, actions, cut)
        assert pl.concat([p.equity for p in parts]).equals(whole.equity), cut
        assert pl.concat([p.actions for p in parts]).equals(whole.actions), cut


def _chain(
    folder: Path, prices: pl.DataFrame, plan: list[dict[str, Any]], actions: pl.DataFrame, cut: int
) -> list[BacktestResult]:
    folder = folder / f"chain{cut}"
    folder.mkdir(parents=True, exist_ok=True)
    plan_file = folder / "plan.json"
    plan_file.write_text(json.dumps(plan))
    config = run_config_from_dict(
        {
            "data": {
                "prices": str(_write(folder, "prices", prices)),
                "corporate_actions": str(_write(folder, "actions", actions)),
            },
            "strategy": {
                "class": "tests.fixtures.plan_strategy:PlanStrategy",
                "params": {"plan": str(plan_file)},
            },
            "execution": {"commission_rate": 0.001},
        }
    )
    boundary = START + dt.timedelta(days=cut)
    first = run_backtest(config, end=boundary)
    second = run_backtest(config, start=boundary, initial_state=first.final_state)
    return [first, second]


# -- the input is checked ------------------------------------------------------------------------


def _bad(tmp_path: Path, frame: pl.DataFrame) -> str:
    path = _write(tmp_path, "bad_actions", frame)
    with pytest.raises(DataError) as caught:
        read_corporate_actions(path)
    message = str(caught.value)
    assert str(path) in message
    return message


def test_bad_action_files_are_refused_naming_column_and_rule(tmp_path: Path) -> None:
    good = _actions([(EX, "A", 2.0, 0.5)])
    assert "split_ration" in _bad(tmp_path, good.rename({"split_ratio": "split_ration"}))
    assert "'split_ratio'" in _bad(tmp_path, good.with_columns(pl.lit(0.0).alias("split_ratio")))
    assert "'split_ratio'" in _bad(
        tmp_path, good.with_columns(pl.lit(float("inf")).alias("split_ratio"))
    )
    assert "'dividend'" in _bad(tmp_path, good.with_columns(pl.lit(-0.5).alias("dividend")))
    assert "duplicate_key" in _bad(tmp_path, pl.concat([good, good]))
    assert "split_ratio" in _bad(tmp_path, good.select("timestamp", "asset_id"))
    assert "asset_id" in _bad(
        tmp_path, good.with_columns(pl.lit(None, pl.String).alias("asset_id"))
    )


def test_an_empty_actions_file_is_no_action(tmp_path: Path) -> None:
    closes = {"A": _closes(16)}
    empty = _actions([]).select("timestamp", "asset_id", "split_ratio")
    assert read_corporate_actions(_write(tmp_path, "empty", empty)).height == 0
    with_empty = _run(tmp_path, _bars(closes), [_buy(2, "A", 10)], actions=empty, tag="e")
    without = _run(tmp_path, _bars(closes), [_buy(2, "A", 10)], tag="none")
    assert with_empty.equity.equals(without.equity)
    assert with_empty.actions.height == 0


def test_a_dividend_in_cents_is_refused(tmp_path: Path) -> None:
    closes = _closes(14)
    with pytest.raises(DataError, match=r"dividend.*previous close.*cents"):
        _run(
            tmp_path,
            _bars({"A": closes}),
            [_buy(2, "A", 10)],
            actions=_actions([(EX, "A", None, float(closes[EX - 1]) * 100)]),
            check=False,
        )


def test_date_typed_ex_dates_and_integer_ids(tmp_path: Path) -> None:
    adjusted = _closes(15)
    prices = _raw(_bars({"A": adjusted}), 2.0).with_columns(pl.lit(7, pl.Int64).alias("asset_id"))
    actions = pl.DataFrame(
        {"timestamp": [(START + dt.timedelta(days=EX)).date()], "asset_id": [7], "split_ratio": [2]}
    )
    plan = [{"bar": 2, "asset": 7, "qty": 100, "type": "market"}]
    result = _run(tmp_path, prices, plan, actions=actions)
    assert result.actions["qty_after"].to_list() == [200]
    text_ids = actions.with_columns(pl.lit("7").alias("asset_id"))
    with pytest.raises(DataError, match="holds text ids but the prices holds integer ids"):
        _run(tmp_path, prices, plan, actions=text_ids, tag="mixed", check=False)
