"""Fills bounded by the bar's volume: `execution.max_participation` and `volume_share` slippage.

Hand-built bars (`tests.engine.conftest`), the answer worked out by hand:
- an asset's fills in one bar take at most `max_participation` x its volume, shared by all its
  orders of that bar; the rest keeps working (`on_volume_limit: wait`) or is rejected
  (`reject`, reason `volume_limit`); an exit's rest always waits, as a market order;
- a bar with no volume fills nothing: `volume_share` never prices a fill at zero impact;
- a cap without a volume column is an error, a cap outside (0, 1] a config error.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from ml4t_pipeline.engine import run_backtest
from ml4t_pipeline.errors import ConfigError, DataError
from tests.engine.conftest import Order, Scripted, bars, col, config, flat, rows, run


def _market(volumes: list[float], price: float = 10.0) -> pl.DataFrame:
    """One asset at a flat price, with the volume of each bar given."""
    frame = bars("A", [flat(price)] * len(volumes))
    return frame.with_columns(volume=pl.Series(volumes, dtype=pl.Float64))


def test_a_capped_order_fills_over_several_bars(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_participation=0.1)
    prices = _market([1_000.0] * 5)
    result = run(cfg, Scripted({0: [Order(asset="A", qty=250)]}), prices, tmp_path / "o")
    assert rows(result.fills, "bar", "order_id", "qty") == [(1, 0, 100), (2, 0, 100), (3, 0, 50)]
    assert rows(result.orders, "qty", "filled_qty", "status") == [(250, 250, "filled")]
    assert result.rejections.height == 0


def test_the_rest_is_rejected_by_policy(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_participation=0.1, on_volume_limit="reject")
    prices = _market([1_000.0] * 5)
    result = run(cfg, Scripted({0: [Order(asset="A", qty=-250)]}), prices, tmp_path / "o")
    # long only: nothing held, so the sell is refused before the cap matters
    assert rows(result.rejections, "qty", "reason") == [(250, "short_not_allowed")]
    result = run(cfg, Scripted({0: [Order(asset="A", qty=250)]}), prices, tmp_path / "p")
    assert rows(result.fills, "bar", "qty") == [(1, 100)]
    assert rows(result.rejections, "order_id", "qty", "reason") == [(0, 150, "volume_limit")]
    assert rows(result.orders, "filled_qty", "status") == [(100, "partially_filled")]


def test_the_orders_of_one_bar_share_the_cap(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_participation=0.1)
    prices = _market([1_000.0, 1_000.0, 500.0, 1_000.0])
    orders = [Order(asset="A", qty=80), Order(asset="A", qty=80)]
    result = run(cfg, Scripted({0: orders}), prices, tmp_path / "o")
    # bar 1: 80 + 20 of 100; bar 2 (volume 500): 50 of the second's 60; bar 3: the last 10
    assert rows(result.fills, "bar", "order_id", "qty") == [
        (1, 0, 80),
        (1, 1, 20),
        (2, 1, 50),
        (3, 1, 10),
    ]


def test_nothing_fills_on_a_bar_without_volume(tmp_path: Path) -> None:
    slippage = {"model": "volume_share", "impact": 0.1}
    prices = _market([1_000.0, 0.0, 0.0, 400.0])
    result = run(
        config(tmp_path, slippage=slippage),
        Scripted({0: [Order(asset="A", qty=100)]}),
        prices,
        tmp_path / "o",
    )
    # bars 1 and 2 traded nothing: the order waits; at bar 3 it takes 1/4 of the volume
    assert rows(result.fills, "bar", "qty") == [(3, 100)]
    assert col(result.fills, "price") == [pytest.approx(10.0 * (1 + 0.1 * 0.25))]


def test_a_capped_exit_waits_as_a_market_order(tmp_path: Path) -> None:
    prices = bars("A", [flat(100.0), flat(100.0), (96.0, 97.0, 90.0, 92.0), flat(95.0), flat(95.0)])
    prices = prices.with_columns(volume=pl.Series([1e6, 1e6, 2_000.0, 2_000.0, 1e6]))
    cfg = config(tmp_path, max_participation=0.1, risk=[{"rule": "stop_loss", "pct": 0.05}])
    result = run(cfg, Scripted({0: [Order(asset="A", qty=300)]}), prices, tmp_path / "o")
    # the stop at 95 is crossed at bar 2 (open 96): 200 of 300 at 95; the rest at the next
    # open (95), as a market order of the same exit
    assert rows(result.fills, "bar", "qty", "price", "reason") == [
        (1, 300, 100.0, "signal"),
        (2, 200, 95.0, "stop_loss"),
        (3, 100, 95.0, "stop_loss"),
    ]
    assert result.final_state.per_asset["ledger.qty"] == [0]


def test_volume_bounds_need_a_volume_column_and_a_fraction(tmp_path: Path) -> None:
    prices = _market([1_000.0] * 3).drop("volume")
    with pytest.raises(DataError, match="column 'volume' is needed"):
        run_backtest(
            config(tmp_path, max_participation=0.1),
            strategy=Scripted({}),
            prices=prices,
        )
    with pytest.raises(ConfigError, match=r"max_participation must be a fraction .* got 10.0"):
        config(tmp_path, max_participation=10)
