"""Coverage between files (signals vs prices, context vs prices) and their policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.validation import (
    CoveragePolicy,
    Failure,
    Rule,
    Severity,
    ValidationReport,
    read_input,
    validate_context,
    validate_inputs,
    validate_signals,
)
from ml4t_pipeline.validation.coverage import signal_failures

START = datetime(2024, 1, 1, tzinfo=UTC)
ERRORS = CoveragePolicy(
    signal_without_price=Severity.ERROR, large_gap=Severity.ERROR, stale_context=Severity.ERROR
)


def day(n: int) -> datetime:
    return START + timedelta(days=n)


def make_prices(days: int = 12, assets: tuple[str, ...] = ("A", "B")) -> pl.DataFrame:
    rows = [(day(d), asset, 10.0, 11.0, 9.0, 10.5, 1_000) for asset in assets for d in range(days)]
    return pl.DataFrame(
        rows,
        schema=["timestamp", "asset_id", "open", "high", "low", "close", "volume"],
        orient="row",
    )


def scores(keys: list[tuple[int, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "timestamp": [day(d) for d, _ in keys],
            "asset_id": [asset for _, asset in keys],
            "ml_score": [0.5] * len(keys),
        }
    )


def full_scores(days: int = 12, assets: tuple[str, ...] = ("A", "B")) -> list[tuple[int, str]]:
    return [(d, asset) for asset in assets for d in range(days)]


def only(report: ValidationReport, rule: Rule) -> Failure:
    found = [f for f in report.failures if f.rule is rule]
    assert len(found) == 1, report.summary()
    return found[0]


def test_signal_for_asset_without_prices_warns_or_fails_by_policy(tmp_path: Path) -> None:
    paths = {"prices": tmp_path / "prices.parquet", "signals": tmp_path / "signals.parquet"}
    make_prices().write_parquet(paths["prices"])
    scores([*full_scores(), (3, "GHOST"), (4, "GHOST")]).write_parquet(paths["signals"])
    warned = validate_inputs(prices=paths["prices"], signals=paths["signals"])
    failure = only(warned, Rule.SIGNAL_WITHOUT_PRICE)
    assert warned.ok
    assert (failure.file, failure.column) == (str(paths["signals"]), "asset_id")
    assert (failure.severity, failure.n_rows) == (Severity.WARNING, 2)
    assert "1 asset with no prices at all" in failure.detail
    assert failure.examples[0] == "timestamp=2024-01-04 00:00:00+00:00 asset_id=GHOST"

    failed = validate_inputs(prices=paths["prices"], signals=paths["signals"], policy=ERRORS)
    assert not failed.ok
    assert only(failed, Rule.SIGNAL_WITHOUT_PRICE).severity is Severity.ERROR


def test_run_of_bars_without_signal_is_a_large_gap() -> None:
    keys = [k for k in full_scores() if not (k[1] == "B" and 2 <= k[0] <= 8)]
    report = validate_signals(scores(keys), file="signals.parquet", prices=make_prices())
    failure = only(report, Rule.LARGE_GAP)
    assert (failure.severity, failure.n_rows, failure.column) == (Severity.WARNING, 7, None)
    assert failure.examples == (
        "asset_id=B from=2024-01-03 00:00:00+00:00 to=2024-01-09 00:00:00+00:00 bars=7",
    )
    strict = validate_signals(scores(keys), file="s", prices=make_prices(), policy=ERRORS)
    assert not strict.ok
    relaxed = CoveragePolicy(max_gap_bars=7)
    assert validate_signals(scores(keys), file="s", prices=make_prices(), policy=relaxed).ok
    assert (
        validate_signals(scores(keys), file="s", prices=make_prices(), policy=relaxed).failures
        == ()
    )


def test_signals_that_stop_early_leave_a_trailing_gap_but_late_starts_do_not() -> None:
    keys = [k for k in full_scores() if not (k[1] == "A" and k[0] >= 4)]
    keys = [k for k in keys if not (k[1] == "B" and k[0] < 9)]
    failure = only(validate_signals(scores(keys), file="s", prices=make_prices()), Rule.LARGE_GAP)
    assert failure.n_rows == 8
    assert failure.examples[0].startswith("asset_id=A from=2024-01-05")


def test_context_that_stops_updating_is_stale() -> None:
    context = pl.DataFrame(
        {
            "timestamp": [day(d) for d in (1, 2, 3, 4)],
            "vix": [20.0, 21.0, 22.0, float("nan")],
            "rates": [1.0, 1.0, 1.0, 1.0],
        }
    )
    report = validate_context(context, file="context.parquet", prices=make_prices(days=9))
    stale = [f for f in report.failures if f.rule is Rule.STALE_CONTEXT]
    assert [(f.column, f.n_rows) for f in stale] == [("vix", 3), ("rates", 2)]
    vix = stale[0]
    assert vix.severity is Severity.WARNING
    assert vix.detail == "value older than 3 bars; no value yet at 1 bar before the first value"
    assert vix.examples[0] == (
        "timestamp=2024-01-01 00:00:00+00:00 vix_last_seen=null bars_stale=null"
    )
    assert vix.examples[1] == (
        "timestamp=2024-01-08 00:00:00+00:00 vix_last_seen=2024-01-04 00:00:00+00:00 bars_stale=4"
    )
    assert only(report, Rule.NON_FINITE_VALUE).column == "vix"
    assert report.ok
    strict = validate_context(context, file="c", prices=make_prices(days=9), policy=ERRORS)
    assert not strict.ok


def test_context_known_late_is_stale_from_when_it_is_known() -> None:
    context = pl.DataFrame(
        {
            "timestamp": [day(d) for d in range(6)],
            "available_at": [day(d) for d in range(5)] + [day(9)],
            "vix": [20.0] * 6,
        }
    )
    report = validate_context(
        context,
        file="c",
        prices=make_prices(days=10),
        policy=CoveragePolicy(max_context_staleness_bars=2),
    )
    failure = only(report, Rule.STALE_CONTEXT)
    assert failure.n_rows == 2
    assert failure.examples[0].startswith("timestamp=2024-01-08 00:00:00+00:00")


def test_asset_ids_that_can_never_match_prices() -> None:
    signals = scores(full_scores()).with_columns(pl.lit(7).alias("asset_id"))
    failure = only(validate_signals(signals, file="s", prices=make_prices()), Rule.WRONG_DTYPE)
    assert failure.column == "asset_id"
    assert "Int32 here but String in the prices" in failure.detail


def test_integer_asset_ids_of_different_widths_match() -> None:
    prices = make_prices(assets=("1", "2")).with_columns(pl.col("asset_id").cast(pl.Int64))
    signals = scores(full_scores(assets=("1", "2"))).with_columns(pl.col("asset_id").cast(pl.Int16))
    assert validate_signals(signals, file="s", prices=prices).failures == ()


def test_feature_rules() -> None:
    signals = scores(full_scores()).with_columns(
        atr=pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(1.0),
        ratio=pl.when(pl.int_range(pl.len()) == 5).then(float("inf")).otherwise(1.0),
        sector=pl.lit("tech"),
    )
    report = validate_signals(signals, file="s")
    assert {(f.rule, f.column, f.severity, f.n_rows) for f in report.failures} == {
        (Rule.WRONG_DTYPE, "sector", Severity.ERROR, 24),
        (Rule.NON_FINITE_VALUE, "ratio", Severity.WARNING, 1),
    }
    no_features = validate_signals(signals.select("timestamp", "asset_id"), file="s")
    assert [(f.rule, f.column) for f in no_features.failures] == [(Rule.MISSING_COLUMN, None)]


def test_context_duplicate_timestamps() -> None:
    context = pl.DataFrame({"timestamp": [day(0), day(1), day(1)], "vix": [1.0, 2.0, 3.0]})
    failure = only(validate_context(context, file="c"), Rule.DUPLICATE_KEY)
    assert failure.n_rows == 2
    assert failure.examples == ("timestamp=2024-01-02 00:00:00+00:00 rows=2",)


def test_policy_is_validated_and_accepts_severity_strings() -> None:
    policy = CoveragePolicy(large_gap="error")  # type: ignore[arg-type]
    assert policy.large_gap is Severity.ERROR
    with pytest.raises(ConfigError, match="'stale_context' must be one of error, warning"):
        CoveragePolicy(stale_context="fatal")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'max_gap_bars' must be an integer >= 0, got -1"):
        CoveragePolicy(max_gap_bars=-1)
    with pytest.raises(ConfigError, match="max_context_staleness_bars"):
        CoveragePolicy(max_context_staleness_bars=True)


@pytest.mark.parametrize("seed", [11, 12])
def test_grid_and_sorted_cell_counting_agree_for_signals(seed: int) -> None:
    rng = np.random.default_rng(seed)
    prices = make_prices(days=40, assets=tuple("ABCDEFGH"))
    prices = prices.filter(pl.Series(rng.random(prices.height) > 0.2))
    keys = [
        (d, a) for d, a in full_scores(days=42, assets=tuple("ABCDEFGHX")) if rng.random() > 0.3
    ]
    lags = pl.Series("lag", rng.integers(0, 60, len(keys)))
    signals = scores(keys).with_columns(
        available_at=pl.col("timestamp") + pl.duration(hours=pl.lit(lags))
    )
    policy = CoveragePolicy(max_gap_bars=2)
    on_grid = signal_failures(signals, file="s", prices=prices, policy=policy)
    sorted_cells = signal_failures(
        signals, file="s", prices=prices, policy=policy, max_grid_cells=0
    )
    assert {f.rule for f in on_grid} == {Rule.SIGNAL_WITHOUT_PRICE, Rule.LARGE_GAP}
    assert on_grid == sorted_cells


def test_categorical_price_ids_match_string_signal_ids(tmp_path: Path) -> None:
    prices = make_prices().with_columns(pl.col("asset_id").cast(pl.Categorical))
    path = tmp_path / "prices.parquet"
    prices.write_parquet(path)
    signals = scores([*full_scores(), (2, "GHOST")])
    report = validate_signals(signals, file="s", prices=read_input(path, role="prices"))
    failure = only(report, Rule.SIGNAL_WITHOUT_PRICE)
    assert failure.n_rows == 1
    assert failure.examples == ("timestamp=2024-01-03 00:00:00+00:00 asset_id=GHOST",)
