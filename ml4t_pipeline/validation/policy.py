"""How much missing coverage a run tolerates, and which asset ids two files can share."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.validation.report import Severity


@dataclass(frozen=True, slots=True, kw_only=True)
class CoveragePolicy:
    """How much missing coverage is tolerated, and how loudly it is reported.

    `max_gap_bars`: longest tolerated run of consecutive missing bars (a price gap inside an
    asset's life, or price bars without a signal after an asset's first signal).
    `max_context_staleness_bars`: how many bars a context value may be carried forward.
    Severities may be given as strings ("error"/"warning"), e.g. from a YAML config.
    """

    max_gap_bars: int = 5
    max_context_staleness_bars: int = 3
    signal_without_price: Severity = Severity.WARNING
    large_gap: Severity = Severity.WARNING
    stale_context: Severity = Severity.WARNING

    def __post_init__(self) -> None:
        for name in ("max_gap_bars", "max_context_staleness_bars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                msg = f"coverage policy '{name}' must be an integer >= 0, got {value!r}"
                raise ConfigError(msg)
        for name in ("signal_without_price", "large_gap", "stale_context"):
            value = getattr(self, name)
            try:
                severity = Severity(value)
            except ValueError:
                choices = ", ".join(s.value for s in Severity)
                msg = f"coverage policy '{name}' must be one of {choices}, got {value!r}"
                raise ConfigError(msg) from None
            object.__setattr__(self, name, severity)


DEFAULT_POLICY = CoveragePolicy()
"""The policy used when a caller passes none."""


def common_asset_id_dtype(left: pl.DataType, right: pl.DataType) -> pl.DataType | None:
    """The dtype both asset_id columns can be compared in, or None if ids can never match."""
    if left.is_integer() and right.is_integer():
        return pl.Int64()
    text = (pl.String, pl.Categorical, pl.Enum)
    if isinstance(left, text) and isinstance(right, text):
        return pl.String()
    return None
