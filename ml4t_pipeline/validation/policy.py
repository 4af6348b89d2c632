"""How much missing coverage a run tolerates, and which asset ids two files can share."""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.keys import ASSET_ID, TIMESTAMP
from ml4t_pipeline.validation.report import Failure, Rule, Severity, describe_rows

_SEVERITIES = (
    "signal_without_price",
    "large_gap",
    "stale_context",
    "data_ends",
    "possible_split",
    "split_not_in_prices",
    "price_jump",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CoveragePolicy:
    """How much missing coverage and how many suspicious prices are tolerated, and how loudly
    each is reported.

    `max_gap_bars`: longest tolerated run of consecutive missing bars (a price gap inside an
    asset's life, or price bars without a signal after an asset's first signal).
    `max_context_staleness_bars`: how many bars a context value may be carried forward.
    `jump_threshold`: an overnight move (previous close -> open, or previous close -> close)
    with |ln(ratio)| above this is a PRICE_JUMP (0.35: a fall beyond ~30 % or a rise beyond
    ~42 %); it is below ln(1.5 / (1 + SPLIT_RTOL)), so every move that looks like a split
    is reported, as POSSIBLE_SPLIT or as PRICE_JUMP, unless the corporate actions explain it.
    Severities (error or warning; strings such as "error" are accepted, e.g. from a YAML
    config): `signal_without_price`, `large_gap`, `stale_context`, `data_ends` (an asset's
    bars end before the file's last timestamp: it is delisted there), `possible_split`,
    `split_not_in_prices` (a split in the actions file the prices do not show: applying it
    would adjust twice) and `price_jump`. `STRICT_SPLITS` makes the split rules errors.
    """

    max_gap_bars: int = 5
    max_context_staleness_bars: int = 3
    jump_threshold: float = 0.35
    signal_without_price: Severity = Severity.WARNING
    large_gap: Severity = Severity.WARNING
    stale_context: Severity = Severity.WARNING
    data_ends: Severity = Severity.WARNING
    possible_split: Severity = Severity.WARNING
    split_not_in_prices: Severity = Severity.WARNING
    price_jump: Severity = Severity.WARNING

    def __post_init__(self) -> None:
        for name in ("max_gap_bars", "max_context_staleness_bars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                msg = f"coverage policy '{name}' must be an integer >= 0, got {value!r}"
                raise ConfigError(msg)
        threshold = self.jump_threshold
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
            or threshold <= 0
        ):
            msg = (
                "coverage policy 'jump_threshold' must be a number > 0 (|ln(ratio)| of an "
                f"overnight move, e.g. 0.35), got {threshold!r}"
            )
            raise ConfigError(msg)
        object.__setattr__(self, "jump_threshold", float(threshold))
        allowed = (Severity.ERROR, Severity.WARNING)
        for name in _SEVERITIES:
            value = getattr(self, name)
            try:
                severity = Severity(value)
            except ValueError:
                severity = None
            if severity not in allowed:
                choices = ", ".join(s.value for s in allowed)
                msg = f"coverage policy '{name}' must be one of {choices}, got {value!r}"
                raise ConfigError(msg)
            object.__setattr__(self, name, severity)


DEFAULT_POLICY = CoveragePolicy()
"""The policy used when a caller passes none."""
STRICT_SPLITS = CoveragePolicy(possible_split=Severity.ERROR, split_not_in_prices=Severity.ERROR)
"""A split the prices show and the actions file does not (or the reverse) blocks a run."""


def common_asset_id_dtype(left: pl.DataType, right: pl.DataType) -> pl.DataType | None:
    """The dtype both asset_id columns can be compared in, or None if ids can never match."""
    if left.is_integer() and right.is_integer():
        return pl.Int64()
    text = (pl.String, pl.Categorical, pl.Enum)
    if isinstance(left, text) and isinstance(right, text):
        return pl.String()
    return None


def asset_id_mismatch(frame: pl.DataFrame, *, file: str, prices_dtype: pl.DataType) -> Failure:
    """WRONG_DTYPE on `frame`'s asset_id: its ids can never match the prices' ids
    (`common_asset_id_dtype` is None), so no row of it would ever meet a price bar."""
    return Failure(
        file=file,
        column=ASSET_ID,
        rule=Rule.WRONG_DTYPE,
        severity=Severity.ERROR,
        n_rows=frame.height,
        examples=describe_rows(frame.head(3), [TIMESTAMP, ASSET_ID]),
        detail=(
            f"asset_id is {frame.schema[ASSET_ID]} here but {prices_dtype} in the prices, so "
            "no id can match"
        ),
    )
