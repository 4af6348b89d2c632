"""Deterministic synthetic market data in the input layout of shared/WORKLOADS.md.

`generate(SampleSpec(...))` returns three polars frames; `write_sample_data` writes them as
`prices.parquet`, `signals.parquet` and `context.parquet` (plus `sample.json` with the spec).
Rows are ordered by (timestamp, asset_id); timestamps are business days (Mon-Fri, holidays
ignored) at UTC midnight, starting at ``start`` rolled forward to a weekday.

The model, per bar t and asset i (arrays are bars x assets; nothing loops over assets):

- A market factor: log return ``m_t = drift_t + sigma_t * z_t``. Its volatility follows the
  scenario's regime (smoothed across regime switches) times ``exp(h_t)``, an AR(1) in log
  volatility that rises after down days (leverage effect). The factor's shocks are centred
  over the sample, so the realised market drift is exactly the scenario's drift.
- Asset log returns: ``beta_i * m_t`` plus idiosyncratic noise with a per-asset volatility
  (dispersed across assets, scaled with the regime). Each bar's move is split into an
  overnight gap (close[t-1] -> open[t], with occasional jumps) and an intraday part
  (open[t] -> close[t]), so gap-aware stops matter.
- Scenario dynamics turn those innovations into log closes: a random walk; a momentum AR(1)
  on returns plus a persistent drift per asset (``trending``); or an Ornstein-Uhlenbeck pull of
  the log price toward its starting level (``mean_reverting``).
- high/low extend max/min(open, close) by exponential draws; volume grows with |return|.
- vix: 100 x (floor + premium x the market volatility expected for the next bar), times a fear
  term that spikes after large down days. It follows the regime in ``mixed``.
- ml_score: a noisy function of the realised forward ``horizon``-bar return. Its side is that
  return's sign, flipped with probability ``1 - skill``, so `measured_skill` is close to
  ``skill``; its distance from 0.5 (a logistic squash into (0, 1)) grows with the size of the
  standardised forward return plus exponential noise. The last ``horizon`` bars have no
  forward return and get a pure-noise score. The score looks ahead on purpose: that is how
  the skill is planted.
- atr: Wilder's average true range over ``atr_window`` bars, point-in-time (`wilder_atr`).

Every random draw comes from a `numpy.random.Generator(PCG64)` stream spawned from ``seed``,
one stream per model part, so the prices do not depend on ``skill`` or ``horizon`` and the
parts can run on two threads without changing the result. Element-wise work runs in blocks
of rows to keep temporaries small: memory is the output plus a few megabytes.

Modules, in the order the model runs: `spec` (`SampleSpec`), `scenarios` (regimes and
dynamics per scenario), `market` (market factor, volatility, vix), `prices` (assets, sessions,
OHLCV), `signals` (ml_score, ATR, `measured_skill`), `keys` (timestamps, asset ids), `model`
(`generate`), `write` (`write_sample_data`); `arrays` holds the shared array helpers.
"""

from __future__ import annotations

from ml4t_pipeline.sample_data.arrays import BARS_PER_YEAR, FloatArray
from ml4t_pipeline.sample_data.keys import asset_ids, business_days
from ml4t_pipeline.sample_data.model import SampleData, generate
from ml4t_pipeline.sample_data.scenarios import SCENARIOS
from ml4t_pipeline.sample_data.signals import measured_skill, wilder_atr
from ml4t_pipeline.sample_data.spec import SampleSpec
from ml4t_pipeline.sample_data.write import (
    FILE_NAMES,
    PARQUET_COMPRESSION,
    PARQUET_ROW_GROUP_SIZE,
    write_sample_data,
)

__all__ = [
    "BARS_PER_YEAR",
    "FILE_NAMES",
    "PARQUET_COMPRESSION",
    "PARQUET_ROW_GROUP_SIZE",
    "SCENARIOS",
    "FloatArray",
    "SampleData",
    "SampleSpec",
    "asset_ids",
    "business_days",
    "generate",
    "measured_skill",
    "wilder_atr",
    "write_sample_data",
]
