"""Signals with a knowledge time: at bar t an asset's values are those of the row with the latest
`timestamp` among the rows known by t (known at max(timestamp, available_at)), in its latest
known version, and they stay current until a newer row is known. The key is (timestamp,
asset_id, available_at), in the engine as in `validate`. Hand-built markets, answers by hand
or by a brute-force reading of the rule."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.engine import (
    Batch,
    EngineState,
    MarketData,
    Strategy,
    run_backtest,
    run_config_from_dict,
)
from ml4t_pipeline.engine.strategy.views import ContextView
from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import Rule
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data
from ml4t_pipeline.validation import validate_signals
from tests.engine.conftest import config, flat, panel, stamp

Row = tuple[int, int, float | None]
"""(bar stamped, bar known, score) of asset A."""


class Recorder(Strategy):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        self.seen.append(float(batch.signals["score"][0]))


def _signals(rows: list[Row], *, timed: bool = True) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "timestamp": [stamp(b) for b, _, _ in rows],
            "asset_id": ["A"] * len(rows),
            "available_at": [stamp(k) for _, k, _ in rows],
            "score": [s for _, _, s in rows],
        },
        schema_overrides={
            "timestamp": pl.Datetime("us", "UTC"),
            "available_at": pl.Datetime("us", "UTC"),
            "score": pl.Float64,
        },
    )
    return frame if timed else frame.drop("available_at")


def _seen(tmp_path: Path, signals: pl.DataFrame | Path, n_bars: int = 5) -> list[float]:
    strategy = Recorder()
    prices = panel(A=[flat(10.0)] * n_bars)
    run_backtest(config(tmp_path), strategy=strategy, prices=prices, signals=signals)
    return strategy.seen


NAN = float("nan")


def _expect(seen: list[float], expected: list[float]) -> None:
    np.testing.assert_array_equal(seen, expected)


def test_rows_known_at_the_same_bar_are_versions_not_duplicates(tmp_path: Path) -> None:
    # the rows stamped 0 and 1 are published at bar 3, the row stamped 2 at bar 2: from bar 2
    # on the latest timestamp known is 2 (the two late rows are older and replace nothing)
    rows: list[Row] = [(0, 3, 0.1), (1, 3, 0.2), (2, 2, 0.3)]
    _expect(_seen(tmp_path, _signals(rows)), [NAN, NAN, 0.3, 0.3, 0.3])
    # two late rows that land together: the later timestamp wins, whatever the file order
    rows = [(1, 2, 0.2), (0, 2, 0.1)]
    _expect(_seen(tmp_path, _signals(rows)), [NAN, NAN, 0.2, 0.2, 0.2])
    # two versions of one timestamp known at the same bar: the later available_at wins
    versions = _signals([(1, 1, 0.5), (1, 1, 0.6)]).with_columns(
        pl.Series("available_at", [stamp(1) + dt.timedelta(hours=h) for h in (3, 1)])
    )
    _expect(_seen(tmp_path, versions), [NAN, NAN, 0.5, 0.5, 0.5])


def test_a_late_older_row_never_replaces_a_newer_one_but_a_revision_does(tmp_path: Path) -> None:
    # bar 1's row is published at bar 3, after bar 2's: bar 3 still shows bar 2's value
    rows: list[Row] = [(0, 0, 0.1), (1, 3, 0.5), (2, 2, 0.7)]
    _expect(_seen(tmp_path, _signals(rows)), [0.1, 0.1, 0.7, 0.7, 0.7])
    # a revision of bar 2 (published at bar 4) replaces it from bar 4
    rows = [(0, 0, 0.1), (2, 2, 0.7), (2, 4, 0.8)]
    _expect(_seen(tmp_path, _signals(rows)), [0.1, 0.1, 0.7, 0.7, 0.8])


def test_a_value_stays_current_until_a_newer_row_is_known(tmp_path: Path) -> None:
    rows: list[Row] = [(0, 0, 0.1), (3, 3, 0.4)]
    _expect(_seen(tmp_path, _signals(rows)), [0.1, 0.1, 0.1, 0.4, 0.4])
    # a newer row without a value is current too: its missing value is not the older one
    rows = [(0, 0, 0.1), (2, 2, None)]
    _expect(_seen(tmp_path, _signals(rows)), [0.1, 0.1, NAN, NAN, NAN])


def test_without_available_at_a_row_counts_at_its_own_bar_only(tmp_path: Path) -> None:
    rows: list[Row] = [(0, 0, 0.1), (3, 3, 0.4)]
    _expect(_seen(tmp_path, _signals(rows, timed=False)), [0.1, NAN, NAN, 0.4, NAN])


def test_the_same_version_twice_is_a_duplicate_key_under_its_own_timestamp(
    tmp_path: Path,
) -> None:
    frame = _signals([(0, 0, 0.1), (1, 3, 0.2), (1, 3, 0.3), (2, 3, 0.4)])
    path = tmp_path / "signals.parquet"
    frame.write_parquet(path)
    with pytest.raises(DataError) as caught:
        _seen(tmp_path, path)
    message = str(caught.value)
    assert f"{path}, rule duplicate_key: 2 rows, 1 repeated key" in message
    assert "(timestamp, asset_id, available_at)" in message
    # the row's own timestamp (bar 1), not the bar it became known at (bar 3)
    own = "timestamp=2024-01-02 00:00:00+00:00 asset_id=A available_at=2024-01-04 00:00:00+00:00"
    assert f"e.g. {own} rows=2" in message


def _repeated_keys(frame: pl.DataFrame) -> list[str]:
    report = validate_signals(frame, file="signals")
    return [f.detail for f in report.failures if f.rule == Rule.DUPLICATE_KEY]


@pytest.mark.parametrize(
    ("rows", "duplicate"),
    [
        ([(0, 3, 0.1), (1, 3, 0.2), (2, 2, 0.3)], False),
        ([(0, 0, 0.1), (2, 2, 0.7), (2, 4, 0.8)], False),
        ([(0, 0, 0.1), (1, 3, 0.2), (1, 3, 0.3)], True),
    ],
    ids=["landing_together", "revision", "same_version"],
)
def test_validate_and_the_backtest_agree_on_the_key(
    tmp_path: Path, rows: list[Row], duplicate: bool
) -> None:
    frame = _signals(rows)
    if duplicate:
        assert _repeated_keys(frame) == ["1 repeated key (timestamp, asset_id, available_at)"]
        with pytest.raises(
            DataError, match=r"duplicate_key.*\(timestamp, asset_id, available_at\)"
        ):
            _seen(tmp_path, frame)
    else:
        assert _repeated_keys(frame) == []
        _seen(tmp_path, frame)


# -- chunks, windows and chained runs ----------------------------------------------------------

DAYS = [dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=d) for d in range(91)]


def _market() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Three months of daily bars for A, B, C (B listed from February) and signals published
    with lags of up to 20 days, revised, some known before the first bar, some of an asset
    without prices."""
    rng = np.random.default_rng(7)
    prices = pl.DataFrame(
        [
            {"timestamp": t, "asset_id": a, "open": 10.0, "high": 10.0, "low": 10.0, "close": 10.0}
            for a in ("A", "B", "C")
            for t in DAYS
            if a != "B" or t.month > 1
        ]
    )
    rows = []
    start = DAYS[0] - dt.timedelta(days=10)
    for asset in ("A", "B", "C", "Z"):
        for day in range(0, 101, 3):
            stamped = start + dt.timedelta(days=day, hours=int(rng.integers(0, 24)))
            for version in range(int(rng.integers(1, 4))):
                lag = dt.timedelta(hours=int(rng.integers(0, 480)) + version * 100)
                rows.append((stamped, asset, stamped + lag, float(rng.random())))
    order = rng.permutation(len(rows))
    signals = pl.DataFrame(
        [rows[k] for k in order],
        schema={
            "timestamp": pl.Datetime("us", "UTC"),
            "asset_id": pl.String,
            "available_at": pl.Datetime("us", "UTC"),
            "score": pl.Float64,
        },
        orient="row",
    )
    return prices, signals


def _by_the_rule(signals: pl.DataFrame, bars: list[dt.datetime]) -> np.ndarray:
    """The rule read literally: per bar and asset, of the rows known by the bar, the latest
    timestamp, then the latest available_at."""
    out = np.full((len(bars), 3), np.nan)
    rows = signals.rows(named=True)
    for t, bar in enumerate(bars):
        for a, asset in enumerate(("A", "B", "C")):
            known = [
                r
                for r in rows
                if r["asset_id"] == asset and max(r["timestamp"], r["available_at"]) <= bar
            ]
            if known:
                out[t, a] = max(known, key=lambda r: (r["timestamp"], r["available_at"]))["score"]
    return out


def _scores(md: MarketData) -> np.ndarray:
    return np.vstack([chunk.signals["score"] for chunk in md.chunks()])


def test_chunks_and_windows_read_the_rule(tmp_path: Path) -> None:
    prices, signals = _market()
    path = tmp_path / "signals.parquet"
    signals.write_parquet(path, row_group_size=50)
    whole = MarketData(prices, path)
    np.testing.assert_array_equal(_scores(whole), _by_the_rule(signals, DAYS))
    in_time_order = signals.sort("timestamp", "available_at")  # the common layout
    np.testing.assert_array_equal(_scores(MarketData(prices, in_time_order)), _scores(whole))
    monthly = MarketData(prices, path, max_chunk_cells=1)
    assert monthly.n_chunks == 3
    np.testing.assert_array_equal(_scores(monthly), _scores(MarketData(prices, path)))
    # a window: the values at its first bar come from rows known before it
    window = MarketData(prices, path, start="2024-02-01", end="2024-03-01")
    february = [t for t in DAYS if t.month == 2]
    np.testing.assert_array_equal(_scores(window), _by_the_rule(signals, february))
    assert not np.isnan(_scores(window)[0]).any()


def test_monthly_chain_with_revised_signals_equals_one_run(tmp_path: Path) -> None:
    spec = SampleSpec(assets=12, days=100, scenario="mixed", seed=5, start=dt.date(2024, 1, 1))
    market = write_sample_data(spec, tmp_path / "data")
    rng = np.random.default_rng(3)
    plain = pl.read_parquet(market["signals"])
    lags = rng.integers(0, 96, plain.height)  # hours: most rows land on the next bars
    first = plain.with_columns(available_at=pl.col("timestamp") + pl.duration(hours=pl.lit(lags)))
    revised = first.sample(fraction=0.3, seed=1).with_columns(
        pl.col("available_at") + pl.duration(days=2), pl.col("ml_score") * 0.5
    )
    signals = tmp_path / "signals.parquet"
    pl.concat([first, revised]).sample(fraction=1.0, shuffle=True, seed=2).write_parquet(signals)
    cfg = run_config_from_dict(
        {
            "data": {"prices": str(market["prices"]), "signals": str(signals)},
            "execution": {"commission_rate": 0.001, "allow_negative_cash": True},
            "strategy": {"name": "signal_threshold", "params": {"qty": 10}},
        }
    )
    full = run_backtest(cfg)
    state: EngineState | None = None
    equity, fills = [], []
    months = ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01", "2024-05-01", "2024-06-01"]
    for start, end in itertools.pairwise(months):
        month = run_backtest(cfg, start=start, end=end, initial_state=state)
        state = EngineState.from_json(month.final_state.to_json())
        equity.append(month.equity)
        fills.append(month.fills)
    assert pl.concat(equity).equals(full.equity)
    assert pl.concat(fills).equals(full.fills)
    assert full.fills.height > 20
