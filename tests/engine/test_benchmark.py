"""The benchmark (`benchmark:`): each kind against a hand computation, corporate actions,
gaps and delistings, runs chained bar by bar, and the config and data errors.

The markets are tiny and their prices chosen so that every value below is exact in float64:
the expected numbers are the hand computation itself, compared with ==.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.engine import BacktestResult, EngineState, run_backtest, run_config_from_dict
from ml4t_pipeline.engine.benchmark import Benchmark
from ml4t_pipeline.engine.config import BenchmarkConfig, RunConfig
from ml4t_pipeline.engine.enums import BenchmarkKind
from ml4t_pipeline.engine.feed import Panel
from ml4t_pipeline.errors import ConfigError, DataError, StateError
from tests.engine.conftest import Bar, Scripted, context, flat, panel, stamp

CASH = 1000.0


def _config(tmp_path: Path, benchmark: Any = None, **top: Any) -> RunConfig:
    raw: dict[str, Any] = {
        "data": {"prices": "unused.parquet"},
        "execution": {"initial_cash": CASH},
        "strategy": {"name": "signal_threshold"},
        **top,
    }
    if benchmark is not None:
        raw["benchmark"] = benchmark
    return run_config_from_dict(raw, base_dir=tmp_path, check_files=False)


def _run(
    cfg: RunConfig,
    prices: pl.DataFrame,
    *,
    ctx: pl.DataFrame | None = None,
    actions: pl.DataFrame | None = None,
    **window: Any,
) -> BacktestResult:
    """A run that trades nothing: the account stays cash, the benchmark is all there is."""
    return run_backtest(
        cfg,
        strategy=Scripted({}),
        prices=prices,
        signals=None,
        context=ctx,
        corporate_actions=actions,
        **window,
    )


def _closes(*closes: float | None) -> list[Bar]:
    return [None if c is None else flat(c) for c in closes]


def _actions(*rows: tuple[int, str, float, float]) -> pl.DataFrame:
    """(bar, asset, split_ratio, dividend) rows of a corporate-actions frame."""
    return pl.DataFrame(
        {
            "timestamp": [stamp(b) for b, *_ in rows],
            "asset_id": [a for _, a, *_ in rows],
            "split_ratio": [r for *_, r, _ in rows],
            "dividend": [d for *_, d in rows],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )


TWO = panel(A=_closes(10, 11, 12), B=_closes(20, 18, 22))


def test_equal_weight_two_assets_three_bars_by_hand(tmp_path: Path) -> None:
    result = _run(_config(tmp_path), TWO)  # (the default)
    # 500 in each at the first close: A 500 / 10 = 50 shares, B 500 / 20 = 25 shares
    assert result.equity["benchmark"].to_list() == [
        50 * 10 + 25 * 20,
        50 * 11 + 25 * 18,
        50 * 12 + 25 * 22,
    ]
    assert result.equity.schema["benchmark"] == pl.Float64
    section = result.summary()["benchmark"]
    assert section["kind"] == "equal_weight"
    assert section["inception"] == stamp(0).isoformat()
    assert section["inception_value"] == CASH
    assert section["final_value"] == 1150.0
    assert section["total_return"] == 1150.0 / CASH - 1.0
    assert section["excess_return"] == 0.0 - (1150.0 / CASH - 1.0)  # the strategy held cash
    holdings = result.final_state.benchmark
    assert holdings["assets"] == ["A", "B"]
    assert holdings["units"] == [50.0, 25.0]
    assert holdings["cash"] == 0.0


def test_gaps_late_listing_and_delisting_carry_the_last_close(tmp_path: Path) -> None:
    prices = panel(
        A=_closes(10, None, 12, 13),  # no bar at 1: valued at 10
        B=_closes(20, 18),  # delisted after bar 1: valued at 18 from then on
        C=_closes(None, 5, 6, 7),  # lists after the first bar: not in the basket
    )
    result = _run(_config(tmp_path), prices)
    assert result.equity["benchmark"].to_list() == [
        50 * 10 + 25 * 20,
        50 * 10 + 25 * 18,
        50 * 12 + 25 * 18,
        50 * 13 + 25 * 18,
    ]
    assert result.final_state.benchmark["assets"] == ["A", "B"]


def test_one_asset_bought_and_held(tmp_path: Path) -> None:
    result = _run(_config(tmp_path, {"asset": "B"}), TWO)
    assert result.equity["benchmark"].to_list() == [50 * 20, 50 * 18, 50 * 22]  # 1000 / 20
    section = result.summary()["benchmark"]
    assert (section["kind"], section["asset"]) == ("asset", "B")
    assert "column" not in section


def test_a_context_level(tmp_path: Path) -> None:
    levels = context(spx=[100.0, 110.0, None, 99.0])  # bar 2 has no row: as of bar 1
    prices = panel(A=_closes(10, 11, 12, 13))
    result = _run(_config(tmp_path, {"context": "spx"}), prices, ctx=levels)
    assert result.equity["benchmark"].to_list() == [1000.0, 1100.0, 1100.0, 990.0]
    assert result.summary()["benchmark"]["column"] == "spx"


def test_none_has_no_column_and_a_bare_section(tmp_path: Path) -> None:
    result = _run(_config(tmp_path, {"kind": "none"}), TWO)
    assert "benchmark" not in result.equity.columns
    assert result.summary()["benchmark"] == {"kind": "none"}
    assert result.final_state.benchmark == {}
    assert "benchmark" not in json.loads(result.final_state.to_json())


def test_dividends_become_cash_and_splits_multiply_the_shares(tmp_path: Path) -> None:
    prices = panel(A=_closes(10, 11, 6, 6.5), B=_closes(20, 18, 22, 21))
    actions = _actions(
        (0, "A", 1.0, 0.25),  # at the first bar, before the benchmark buys: not its dividend
        (1, "B", 1.0, 0.5),  # 25 shares x 0.5 = 12.5 of cash
        (2, "A", 2.0, 0.0),  # 2:1 -> 100 shares
    )
    result = _run(_config(tmp_path), prices, actions=actions)
    assert result.equity["benchmark"].to_list() == [
        50 * 10 + 25 * 20,
        50 * 11 + 25 * 18 + 12.5,
        100 * 6 + 25 * 22 + 12.5,
        100 * 6.5 + 25 * 21 + 12.5,
    ]
    assert result.final_state.benchmark["units"] == [100.0, 25.0]
    assert result.final_state.benchmark["cash"] == 12.5


def test_a_split_on_a_bar_without_a_close_keeps_the_value(tmp_path: Path) -> None:
    prices = panel(A=_closes(10, 11, None, 6), B=_closes(20, 18, 22, 21))
    result = _run(_config(tmp_path), prices, actions=_actions((2, "A", 2.0, 0.0)))
    # at bar 2, A's last close 11 is 5.5 in the new shares: 100 x 5.5 = 50 x 11
    assert result.equity["benchmark"].to_list() == [
        50 * 10 + 25 * 20,
        50 * 11 + 25 * 18,
        100 * 5.5 + 25 * 22,
        100 * 6 + 25 * 21,
    ]


# -- chained runs -------------------------------------------------------------------------------


def _market() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Eight bars of irregular prices: gaps, a late listing, a delisting, two actions."""
    rng = np.random.default_rng(3)

    def walk(n: int) -> list[float]:
        return (50.0 * np.cumprod(1.0 + rng.normal(0.0, 0.03, n))).tolist()

    a, b, c = walk(8), walk(8), walk(8)
    prices = panel(
        A=_closes(*a[:3], None, *a[4:]),
        B=_closes(*b[:5]),
        C=_closes(None, *c[1:]),
        D=_closes(*walk(8)),
    )
    actions = _actions((2, "D", 3.0, 0.0), (4, "A", 1.0, 0.37), (6, "B", 2.0, 0.1))
    levels = context(spx=[float(x) for x in walk(8)])
    return prices, actions, levels


@pytest.mark.parametrize(
    "benchmark", [{"kind": "equal_weight"}, {"asset": "D"}, {"context": "spx"}]
)
def test_runs_chained_bar_by_bar_give_the_same_benchmark_bit_for_bit(
    tmp_path: Path, benchmark: dict[str, Any]
) -> None:
    prices, actions, levels = _market()
    cfg = _config(tmp_path, benchmark)
    full = _run(cfg, prices, ctx=levels, actions=actions)
    state: EngineState | None = None
    parts = []
    for bar in range(8):
        month = run_backtest(
            cfg,
            strategy=Scripted({}),
            prices=prices,
            signals=None,
            context=levels,
            corporate_actions=actions,
            start=stamp(bar),
            end=stamp(bar + 1),
            initial_state=state,
        )
        state = EngineState.from_json(month.final_state.to_json())
        parts.append(month.equity["benchmark"])
        # each run's figures start from the value the run before it ended at
        assert month.summary()["benchmark"]["inception"] == stamp(0).isoformat()
    chained = pl.concat(parts)
    assert chained.to_numpy().tobytes() == full.equity["benchmark"].to_numpy().tobytes()
    assert state is not None
    assert state.benchmark == full.final_state.benchmark


def test_the_other_assets_of_the_universe_change_no_bit(tmp_path: Path) -> None:
    # the basket's columns are gathered out of a wider universe, or read as the panel itself
    rng = np.random.default_rng(5)
    basket = {
        f"A{k:02d}": _closes(*(20.0 * np.cumprod(1.0 + rng.normal(0, 0.02, 30))).tolist())
        for k in range(0, 40, 2)
    }
    later = {f"A{k:02d}": _closes(None, *[7.0] * 29) for k in range(1, 40, 2)}  # list at bar 1
    alone = _run(_config(tmp_path), panel(**basket))
    wider = _run(_config(tmp_path), panel(**basket, **later))
    assert wider.final_state.benchmark["assets"] == sorted(basket)
    assert alone.equity["benchmark"].to_numpy().tobytes() == (
        wider.equity["benchmark"].to_numpy().tobytes()
    )


def test_a_state_saved_before_benchmarks_starts_one_at_the_next_runs_first_bar(
    tmp_path: Path,
) -> None:
    prices, actions, levels = _market()
    cfg = _config(tmp_path)
    first = _run(cfg, prices, ctx=levels, actions=actions, end=stamp(3))
    payload = json.loads(first.final_state.to_json())
    del payload["benchmark"]  # as written before this field existed
    old = EngineState.from_json(json.dumps(payload))
    assert old.benchmark == {}
    later = _run(cfg, prices, ctx=levels, actions=actions, start=stamp(3), initial_state=old)
    section = later.summary()["benchmark"]
    assert section["inception"] == stamp(3).isoformat()
    assert section["inception_value"] == first.final_equity
    # bought at bar 3's close with the start equity: worth it, to rounding, at that close
    assert later.equity["benchmark"][0] == pytest.approx(first.final_equity, rel=1e-15)
    # the basket: the assets with a bar at bar 3 (A has none there)
    assert later.final_state.benchmark["assets"] == ["B", "C", "D"]


def test_a_chain_keeps_one_benchmark(tmp_path: Path) -> None:
    first = _run(_config(tmp_path), TWO, end=stamp(1))
    with pytest.raises(StateError, match=r"benchmark is equal_weight.*config's is asset"):
        _run(
            _config(tmp_path, {"asset": "A"}), TWO, start=stamp(1), initial_state=first.final_state
        )
    # dropping the benchmark is allowed: the next run has none
    dropped = _run(
        _config(tmp_path, {"kind": "none"}), TWO, start=stamp(1), initial_state=first.final_state
    )
    assert "benchmark" not in dropped.equity.columns


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("benchmark", "message"),
    [
        ("none", r"benchmark must be \{kind: equal_weight\} \(the default\), \{asset: "),
        ({}, r"benchmark must be"),
        ({"kind": "asset"}, r"benchmark.kind must be equal_weight or none"),
        ({"kind": "spy"}, r"benchmark.kind must be equal_weight or none"),
        ({"kind": "equal_weight", "asset": "A"}, r"benchmark must be"),
        ({"column": "spx"}, r"unknown key\(s\) benchmark.column"),
        ({"asset": ""}, r"benchmark.asset must be an asset id"),
        ({"asset": True}, r"benchmark.asset must be an asset id"),
        ({"asset": ["A"]}, r"benchmark.asset must be an asset id"),
        ({"context": 3}, r"benchmark.context must be a non-empty name"),
    ],
)
def test_bad_benchmark_sections_name_the_key(tmp_path: Path, benchmark: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, benchmark)


def test_a_null_benchmark_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"benchmark must be .*got None"):
        run_config_from_dict(
            {
                "data": {"prices": "p.parquet"},
                "strategy": {"name": "signal_threshold"},
                "benchmark": None,
            },
            base_dir=tmp_path,
            check_files=False,
        )


def test_the_python_api_checks_the_benchmark_too() -> None:
    with pytest.raises(ConfigError, match=r"benchmark.asset must be an asset id"):
        BenchmarkConfig(kind=BenchmarkKind.ASSET)
    with pytest.raises(ConfigError, match=r"benchmark.context must be left out for kind"):
        BenchmarkConfig(column="spx")
    with pytest.raises(ConfigError, match=r"benchmark.kind must be one of"):
        BenchmarkConfig(kind="spy")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"periods_per_year": 0}, r"metrics.periods_per_year must be bars per year > 0"),
        ({"periods_per_year": "252"}, r"metrics.periods_per_year must be bars per year"),
        ({"periods_per_year": float("nan")}, r"metrics.periods_per_year must be finite"),
        ({"periods_per_year": True}, r"metrics.periods_per_year must be"),
        ({"annualization": 252}, r"unknown key\(s\) metrics.annualization"),
        ([252], r"metrics must be a mapping"),
    ],
)
def test_bad_metrics_sections_name_the_key(tmp_path: Path, metrics: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, metrics=metrics)


def test_an_unknown_asset_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"benchmark.asset 'SPY' is not an asset of the prices \(2 assets, e.g. 'A', 'B'\)",
    ):
        _run(_config(tmp_path, {"asset": "SPY"}), TWO)


def test_an_unknown_context_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"benchmark.context 'spy' is not a column of the context; available: \['spx'\]",
    ):
        _run(_config(tmp_path, {"context": "spy"}), TWO, ctx=context(spx=[1.0, 2.0, 3.0]))
    with pytest.raises(ConfigError, match=r"none \(no context file\)"):
        _run(_config(tmp_path, {"context": "spx"}), TWO)


def test_a_level_unknown_at_the_first_bar_is_named(tmp_path: Path) -> None:
    levels = context(spx=[None, 100.0, 101.0])
    with pytest.raises(
        DataError,
        match=r"column 'spx' \(benchmark.context\) is nan at the run's first bar 2024-01-01",
    ):
        _run(_config(tmp_path, {"context": "spx"}), TWO, ctx=levels)


def test_an_asset_without_a_first_bar_is_named(tmp_path: Path) -> None:
    prices = panel(A=_closes(10, 11, 12), C=_closes(None, 5, 6))
    with pytest.raises(
        DataError, match=r"benchmark.asset 'C' has no bar at the run's first bar 2024-01-01"
    ):
        _run(_config(tmp_path, {"asset": "C"}), prices)


def test_a_first_close_that_is_not_a_price_is_named() -> None:
    # (the feed refuses such bars; the benchmark does not rely on it)
    close = np.array([[10.0, 0.0], [11.0, 12.0]])
    chunk = Panel(
        timestamps=np.array([0, 86_400_000_000], dtype=np.int64),
        open=close,
        high=close,
        low=close,
        close=close,
        volume=close,
        has_bar=np.ones((2, 2), dtype=bool),
        signals={},
        context={},
    )
    benchmark = Benchmark(
        BenchmarkConfig(), assets=np.array(["A", "B"], dtype=object), start_value=CASH, saved=None
    )
    with pytest.raises(
        DataError, match=r"asset 'B' has close 0.0 at the run's first bar 1970-01-01"
    ):
        benchmark.mark(chunk, {})
