"""`run_contract` answers "nothing broken" with one polars query before it imports pandera
(validation/contract.py `_passes_everything`). That shortcut must agree with pandera: on
frames with every kind of damage the contracts know (nulls, NaN, infinities, negative or
inverted prices, wrong dtypes, missing and extra columns, look-ahead), the shortcut passes a
frame exactly when pandera finds no failure."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml4t_pipeline.keys import ASSET_ID, AVAILABLE_AT, TIMESTAMP
from ml4t_pipeline.validation.contract import (
    Contract,
    _passes_everything,
    pandera_failures,
    usable_columns,
)
from ml4t_pipeline.validation.schemas import (
    _KEY_SPECS,
    POINT_IN_TIME_CONTRACT,
    PRICES_CONTRACT,
    _values_contract,
)

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
ROWS = 6
DAMAGE = (
    "none",
    "null",
    "nan",
    "inf",
    "negative",
    "zero",
    "to_text",
    "to_int",
    "drop",
    "extra",
    "null_key",
    "naive_time",
)


def _prices() -> pl.DataFrame:
    days = [START + dt.timedelta(days=i // 2) for i in range(ROWS)]
    return pl.DataFrame(
        {
            TIMESTAMP: days,
            ASSET_ID: ["A", "B"] * (ROWS // 2),
            "open": [10.0, 20.0, 10.5, 20.5, 11.0, 21.0],
            "high": [10.8, 20.9, 11.0, 21.0, 11.4, 21.3],
            "low": [9.9, 19.8, 10.2, 20.1, 10.8, 20.7],
            "close": [10.4, 20.4, 10.9, 20.9, 11.2, 21.1],
            "volume": [1000.0, 2000.0, 1500.0, 2500.0, 1200.0, 2200.0],
        },
        schema_overrides={TIMESTAMP: pl.Datetime("us", "UTC")},
    )


def _features() -> pl.DataFrame:
    frame = _prices().select(TIMESTAMP, ASSET_ID, score="close")
    return frame.with_columns(pl.col(TIMESTAMP).alias(AVAILABLE_AT))


def _damage(df: pl.DataFrame, column: str, row: int, how: str) -> pl.DataFrame:
    values = df[column]
    if how == "none":
        return df
    if how == "drop":
        return df.drop(column)
    if how == "extra":
        return df.with_columns(pl.lit(1).alias("unrelated"))
    if how == "to_text":
        return df.with_columns(values.cast(pl.String))
    if how == "naive_time":
        return df.with_columns(pl.col(c).dt.replace_time_zone(None) for c in (TIMESTAMP,))
    if how == "null_key":
        column = TIMESTAMP
        values = df[column]
    if how in ("null", "null_key"):
        return df.with_columns(values.scatter(row, None))
    if not values.dtype.is_float():
        return df
    if how == "to_int":
        return df.with_columns(values.cast(pl.Int64, strict=False))
    bad = {"nan": float("nan"), "inf": float("inf"), "negative": -1.0, "zero": 0.0}[how]
    return df.with_columns(values.scatter(row, bad))


def _agree(df: pl.DataFrame, contract: Contract) -> None:
    usable = usable_columns(df, contract.columns)
    failures = pandera_failures(df, contract, usable, file="f.parquet")
    assert _passes_everything(df, contract, usable) == (not failures), (df, failures)


damages = st.lists(
    st.tuples(
        st.sampled_from(("open", "high", "low", "close", "volume", ASSET_ID)),
        st.integers(0, ROWS - 1),
        st.sampled_from(DAMAGE),
    ),
    min_size=0,
    max_size=2,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damages)
def test_prices_shortcut_agrees_with_pandera(hurt: list[tuple[str, int, str]]) -> None:
    df = _prices()
    for column, row, how in hurt:
        if column in df.columns:
            df = _damage(df, column, row, how)
    _agree(df, PRICES_CONTRACT)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(("score", AVAILABLE_AT, ASSET_ID)),
    st.integers(0, ROWS - 1),
    st.sampled_from(DAMAGE),
    st.integers(-2, 2),
)
def test_feature_contracts_agree_with_pandera(
    column: str, row: int, how: str, shift_days: int
) -> None:
    """The point-in-time contract (the Dagster check) and the signals contract."""
    df = _features()
    df = df.with_columns(
        df[AVAILABLE_AT].scatter(row, START + dt.timedelta(days=row // 2 + shift_days))
    )
    df = _damage(df, column, row, how) if column in df.columns else df
    _agree(df, POINT_IN_TIME_CONTRACT)
    values = [c for c in df.columns if c not in (TIMESTAMP, ASSET_ID, AVAILABLE_AT)]
    _agree(df, _values_contract(df, _KEY_SPECS, values))


@pytest.mark.parametrize("frame", [_prices, _features])
def test_a_clean_frame_needs_no_pandera(frame: object) -> None:
    df = frame()  # type: ignore[operator]
    contract = PRICES_CONTRACT if frame is _prices else POINT_IN_TIME_CONTRACT
    assert _passes_everything(df, contract, usable_columns(df, contract.columns))
