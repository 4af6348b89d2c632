"""Built-in strategies, written only with the public `Strategy` API.

Their parameters are checked on construction (see `engine.params`): a wrong type, a value out
of range or a non-finite number is a `ConfigError` naming `strategy.params.<name>`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ml4t_pipeline.engine.params import (
    ANY_NUMBER,
    COUNT,
    NAME,
    NON_NEGATIVE_COUNT,
    Check,
    Number,
    unknown_keys,
)
from ml4t_pipeline.engine.strategy.base import Strategy
from ml4t_pipeline.engine.strategy.views import Batch, ContextView, MarketEvent
from ml4t_pipeline.errors import ConfigError

WHERE = "strategy.params"
#: a target weight of equity per asset
WEIGHT = Number(low=0, high=1, low_open=True, noun="a fraction of equity", meaning="0.04 for 4 %")
VIX_LEVEL = Number(optional=True, meaning="omit it (or null) for no vix filter")


def _param(params: dict[str, Any], name: str, check: Check, default: Any) -> Any:
    return check.check(f"{WHERE}.{name}", params.get(name, default))


class SignalThreshold(Strategy):
    """Flat and score > entry_above: buy `qty`; long and score < exit_below: sell all."""

    PARAMS = frozenset({"score", "entry_above", "exit_below", "qty"})
    uses_volume = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        unknown_keys(WHERE, params, self.PARAMS)
        self.score: str = _param(params, "score", NAME, "ml_score")
        self.entry_above: float = _param(params, "entry_above", ANY_NUMBER, 0.6)
        self.exit_below: float = _param(params, "exit_below", ANY_NUMBER, 0.4)
        self.qty: int = _param(params, "qty", COUNT, 100)
        if self.exit_below > self.entry_above:
            msg = (
                f"{WHERE}.exit_below ({self.exit_below!r}) must be <= {WHERE}.entry_above "
                f"({self.entry_above!r}): a score between them would buy and sell at every bar"
            )
            raise ConfigError(msg)

    def required_signals(self) -> Sequence[str]:
        return (self.score,)

    def on_market_event(self, event: MarketEvent, context: ContextView) -> None:
        score = event.signals[self.score]
        position = self.get_position(event.asset_id)
        if position == 0 and score > self.entry_above:
            self.buy(event.asset_id, self.qty)
        elif position > 0 and score < self.exit_below:
            self.close_position(event.asset_id)


class TopKRotation(Strategy):
    """Every `rebalance_every` bars after `warmup_bars`, hold the top_k scores at `weight` each.

    Skips a rebalance when the market-wide `vix` exceeds `max_vix` (or is unknown).
    Ties in the score are broken by asset order.
    """

    PARAMS = frozenset(
        {"score", "top_k", "weight", "rebalance_every", "warmup_bars", "max_vix", "vix"}
    )
    uses_volume = False
    history_bars = 0  # reads no History: the engine keeps no past bars for it

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        unknown_keys(WHERE, params, self.PARAMS)
        self.score: str = _param(params, "score", NAME, "ml_score")
        self.top_k: int = _param(params, "top_k", COUNT, 25)
        self.weight: float = _param(params, "weight", WEIGHT, 0.04)
        self.rebalance_every: int = _param(params, "rebalance_every", COUNT, 5)
        self.warmup_bars: int = _param(params, "warmup_bars", NON_NEGATIVE_COUNT, 20)
        max_vix = _param(params, "max_vix", VIX_LEVEL, None)
        self.max_vix: float = math.inf if max_vix is None else max_vix
        self.vix: str = _param(params, "vix", NAME, "vix")

    def required_signals(self) -> Sequence[str]:
        return (self.score,)

    def required_context(self) -> Sequence[str]:
        return (self.vix,) if math.isfinite(self.max_vix) else ()

    def on_timestamp_batch(
        self, timestamp: dt.datetime, batch: Batch, context: ContextView
    ) -> None:
        i = batch.bar_index
        if i < self.warmup_bars or i % self.rebalance_every != 0:
            return
        if math.isfinite(self.max_vix):
            if self.vix not in context:
                msg = (
                    f"strategy.params.max_vix needs a market-wide context column {self.vix!r} "
                    f"(context has {sorted(context)})"
                )
                raise ConfigError(msg)
            vix = float(context[self.vix])
            if not vix <= self.max_vix:
                return
        scores = np.where(batch.has_bar, batch.signals[self.score], np.nan)
        ranked = top_k_indices(scores, self.top_k)
        weights = np.zeros(scores.shape[0])
        weights[ranked] = self.weight
        self.rebalance_to_weights(weights)


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first; ties broken by index; NaN never chosen.

    Same answer as a stable sort of -scores, in O(n): partition to find the k-th value, then
    sort only the candidates at or above it.
    """
    valid = np.flatnonzero(~np.isnan(scores))
    if valid.shape[0] <= k:
        return valid[np.argsort(-scores[valid], kind="stable")]
    kth = np.partition(scores[valid], valid.shape[0] - k)[valid.shape[0] - k]
    candidates = valid[scores[valid] >= kth]  # ascending index order
    return candidates[np.argsort(-scores[candidates], kind="stable")][:k]


BUILTIN_STRATEGIES: dict[str, type[Strategy]] = {
    "signal_threshold": SignalThreshold,
    "top_k_rotation": TopKRotation,
}
