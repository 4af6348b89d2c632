"""Real daily stocks as engine inputs: bokeh-sampledata's AAPL, FB, GOOG, IBM and MSFT.

The source (`bokeh_sampledata.stocks`, Quandl WIKI prices, public domain) has unadjusted daily
open, high, low, close and volume from 2000-03-01 (GOOG from 2004-08-19, FB from 2012-05-18)
to 2013-03-01, plus `adj_close`, the source's split- and dividend-adjusted close. From it:

- **prices**: the unadjusted bars in the engine's layout (timestamp as UTC midnight,
  asset_id, open, high, low, close, volume), as traded on the day.
- **splits**: where the adjustment factor `close / adj_close` steps down between two
  consecutive bars of an asset, the step `r = factor[t-1] / factor[t]` is a corporate action
  at `t` (the ex-date). The split ratio (new shares per old share) is the largest common
  ratio (`COMMON_SPLIT_RATIOS`) at or below `r`, and what is left, `r / split_ratio`, is a
  dividend's factor, which must lie in [1, 1 + `MAX_DIVIDEND_YIELD`); a step that no common
  ratio explains is a `DataError` naming the asset, the date and the step. In this data:
  AAPL 2:1 on 2000-06-21 and 2005-02-28, MSFT 2:1 on 2003-02-18 (the known history).
- **dividends** (optional, approximate): with the usual adjustment `1 - D / C` (C the close
  before the ex-date, in post-split shares), the cash per share is `D = C * (1 - 1 / q)`
  for the dividend factor q, rounded to the cent. The source's adjustment does not follow
  that formula exactly (it also folds in adjustments made after 2013), so a derived dividend
  can be off by a few cents from the one declared: MSFT's 2004-11-15 special dividend of
  3.00 plus 0.08 is derived as 3.03.
- **split-adjusted prices**: the unadjusted bars divided by the product of the split ratios
  whose ex-date comes later in the written period (volume multiplied, rounded to whole shares
  where that product is not an integer). Not `adj_close`: these divide by the very ratios of
  the actions file, so N shares on the unadjusted prices with the actions file are exactly
  N x ratio shares here (exactly in float64 for ratios that are powers of two).
- **signals**: `momentum_20`, the 20-bar return of the split-adjusted close,
  `close[t] / close[t-20] - 1`, known at the close of t (null during the first 20 bars of
  an asset); the same values serve runs on either price file.
- **context**: `market_momentum_20`, the mean of `momentum_20` over the assets that have it
  at each bar.

`write_real_inputs(out_dir)` writes them under the names the CLI configs and the Dagster data
directory read (`FILE_NAMES`), staged and renamed into place like `write_sample_data`.
`bokeh-sampledata` is a dev dependency (`pip install -e '.[dev]'`), imported only when the
data is loaded.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

import polars as pl

from ml4t_pipeline.engine.tolerances import ADJUSTMENT_FACTOR_RTOL
from ml4t_pipeline.errors import ConfigError, DataError
from ml4t_pipeline.keys import ASSET_ID, PRICE_FILE_COLUMNS, TIMESTAMP
from ml4t_pipeline.sample_data.write import Writer, parquet_writer, publish_files, text_writer

TICKERS: Final = ("AAPL", "FB", "GOOG", "IBM", "MSFT")
"""Every series of the source."""
_RATIOS: Final = (2.0, 3.0, 1.5, 4.0, 5.0, 10.0)
COMMON_SPLIT_RATIOS: Final = tuple(sorted({*_RATIOS, *(1.0 / r for r in _RATIOS)}))
"""Split ratios (new shares per old share) a step of the adjustment factor may stand for."""
MAX_DIVIDEND_YIELD: Final = 0.25
"""A step left after the split that is larger than this (as a fraction of the close) is not
taken for a dividend: it is an error."""
MOMENTUM_WINDOW: Final = 20
SIGNAL: Final = f"momentum_{MOMENTUM_WINDOW}"
MARKET_SIGNAL: Final = f"market_{SIGNAL}"
DEV_EXTRA_HINT: Final = "install the dev extra: pip install -e '.[dev]' (or make venv)"

FILE_NAMES: Final = {
    "prices": "prices.parquet",
    "corporate_actions": "corporate_actions.parquet",
    "prices_split_adjusted": "prices_split_adjusted.parquet",
    "dividends_split_adjusted": "dividends_split_adjusted.parquet",
    "signals": "signals.parquet",
    "context": "context.parquet",
    "provenance": "real_stocks.json",
}
_UTC_US: Final = pl.Datetime("us", "UTC")
_SOURCE_FIELDS: Final = ("open", "high", "low", "close", "volume", "adj_close")


def _stocks_module() -> Any:
    try:
        return importlib.import_module("bokeh_sampledata.stocks")
    except ModuleNotFoundError as exc:
        msg = f"the real-stocks data needs the package bokeh-sampledata ({exc}); {DEV_EXTRA_HINT}"
        raise ConfigError(msg) from None


def source_version() -> str:
    """The installed bokeh-sampledata version (recorded with the written files)."""
    _stocks_module()
    return str(importlib.import_module("bokeh_sampledata").__version__)


def load_stocks(tickers: Sequence[str] = TICKERS) -> pl.DataFrame:
    """The source rows of `tickers`: timestamp (UTC midnight of the trading day), asset_id,
    the unadjusted open, high, low, close and volume, and adj_close; sorted by
    (asset_id, timestamp). Read through the package's own loader (plain lists, no pandas)."""
    unknown = sorted(set(tickers) - set(TICKERS))
    if unknown or not tickers:
        msg = f"tickers {unknown or list(tickers)}: expected some of {', '.join(TICKERS)}"
        raise ConfigError(msg)
    stocks = _stocks_module()
    frames = []
    for ticker in dict.fromkeys(tickers):
        series = getattr(stocks, ticker)
        frames.append(
            pl.DataFrame(
                {
                    TIMESTAMP: series["date"],
                    **{name: series[name] for name in _SOURCE_FIELDS},
                },
                schema_overrides={"volume": pl.Int64},
            ).with_columns(pl.lit(ticker).alias(ASSET_ID))
        )
    return (
        pl.concat(frames)
        .select(
            pl.col(TIMESTAMP)
            .str.to_date("%Y-%m-%d")
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC"),
            ASSET_ID,
            *[pl.col(name).cast(pl.Float64) for name in _SOURCE_FIELDS if name != "volume"],
            pl.col("volume"),
        )
        .select(TIMESTAMP, ASSET_ID, "open", "high", "low", "close", "volume", "adj_close")
        .sort(ASSET_ID, TIMESTAMP)
    )


def factor_steps(stocks: pl.DataFrame) -> pl.DataFrame:
    """Every bar where the adjustment factor close / adj_close changes from the asset's bar
    before: timestamp (the ex-date), asset_id, prev_close (unadjusted) and step
    (factor before / factor at the bar)."""
    factor = pl.col("close") / pl.col("adj_close")
    steps = stocks.sort(ASSET_ID, TIMESTAMP).with_columns(
        (factor.shift(1) / factor).over(ASSET_ID).alias("step"),
        pl.col("close").shift(1).over(ASSET_ID).alias("prev_close"),
    )
    return steps.filter(
        pl.col("step").is_not_null() & ((pl.col("step") - 1.0).abs() > ADJUSTMENT_FACTOR_RTOL)
    ).select(TIMESTAMP, ASSET_ID, "prev_close", "step")


def _split_of(step: float, *, where: str) -> float:
    """The largest common split ratio at or below `step` that leaves a dividend's factor."""
    candidates = [1.0, *COMMON_SPLIT_RATIOS]
    fitting = [r for r in candidates if step >= r * (1.0 - ADJUSTMENT_FACTOR_RTOL)]
    ratio = max(fitting, default=None)
    if ratio is None or step / ratio >= 1.0 + MAX_DIVIDEND_YIELD:
        msg = (
            f"bokeh_sampledata stocks, {where}: the adjustment factor close/adj_close steps by "
            f"{step!r}, which no common split ratio ({', '.join(map(str, COMMON_SPLIT_RATIOS))}) "
            f"with a dividend below {MAX_DIVIDEND_YIELD:.0%} explains"
        )
        raise DataError(msg)
    return ratio


def classify_steps(stocks: pl.DataFrame) -> pl.DataFrame:
    """`factor_steps` with `split_ratio` (1.0 when none) and `dividend` (cash per post-split
    share, rounded to the cent; 0.0 when none)."""
    steps = factor_steps(stocks)
    ratios: list[float] = []
    dividends: list[float] = []
    for when, asset, prev_close, step in steps.iter_rows():
        ratio = _split_of(step, where=f"{asset} on {when:%Y-%m-%d}")
        rest = step / ratio
        ratios.append(ratio)
        dividends.append(
            0.0
            if rest <= 1.0 + ADJUSTMENT_FACTOR_RTOL
            else round(prev_close / ratio * (1.0 - 1.0 / rest), 2)
        )
    return steps.with_columns(
        pl.Series("split_ratio", ratios, dtype=pl.Float64),
        pl.Series("dividend", dividends, dtype=pl.Float64),
    )


def corporate_actions(stocks: pl.DataFrame, *, dividends: bool = False) -> pl.DataFrame:
    """The actions file's rows: timestamp (ex-date), asset_id, split_ratio and, with
    `dividends`, dividend (approximate, see the module docstring)."""
    steps = classify_steps(stocks)
    if dividends:
        rows = steps.filter((pl.col("split_ratio") != 1.0) | (pl.col("dividend") > 0.0))
        return rows.select(TIMESTAMP, ASSET_ID, "split_ratio", "dividend").sort(TIMESTAMP, ASSET_ID)
    rows = steps.filter(pl.col("split_ratio") != 1.0)
    return rows.select(TIMESTAMP, ASSET_ID, "split_ratio").sort(TIMESTAMP, ASSET_ID)


def split_factor(prices: pl.DataFrame, actions: pl.DataFrame) -> pl.DataFrame:
    """`prices` with `split_factor`: the product of the split ratios of `actions` whose ex-date
    comes after the bar (1.0 from the last split on)."""
    ratios = actions.select(TIMESTAMP, ASSET_ID, pl.col("split_ratio").alias("_ratio"))
    joined = prices.join(ratios, on=[TIMESTAMP, ASSET_ID], how="left").sort(ASSET_ID, TIMESTAMP)
    later = pl.col("_ratio").fill_null(1.0).shift(-1, fill_value=1.0)
    factor = later.reverse().cum_prod().reverse().over(ASSET_ID)
    return joined.with_columns(factor.alias("split_factor")).drop("_ratio")


def split_adjusted(prices: pl.DataFrame, actions: pl.DataFrame) -> pl.DataFrame:
    """Prices divided by the split factor (volume multiplied by it), same layout and order."""
    with_factor = split_factor(prices, actions)
    factor = pl.col("split_factor")
    volume = pl.col("volume") * factor
    return with_factor.select(
        TIMESTAMP,
        ASSET_ID,
        *[(pl.col(name) / factor).alias(name) for name in ("open", "high", "low", "close")],
        volume.round(0).cast(pl.Int64).alias("volume"),
    ).sort(TIMESTAMP, ASSET_ID)


def split_adjusted_dividends(prices: pl.DataFrame, actions: pl.DataFrame) -> pl.DataFrame:
    """The dividends of `actions` per split-adjusted share (divided by the split factor at the
    ex-date), for runs on the split-adjusted prices: timestamp, asset_id, dividend."""
    if "dividend" not in actions.columns:
        return pl.DataFrame(
            schema={TIMESTAMP: _UTC_US, ASSET_ID: pl.String, "dividend": pl.Float64}
        )
    factors = split_factor(prices, actions).select(TIMESTAMP, ASSET_ID, "split_factor")
    paid = actions.filter(pl.col("dividend") > 0.0).join(factors, on=[TIMESTAMP, ASSET_ID])
    return paid.select(
        TIMESTAMP, ASSET_ID, (pl.col("dividend") / pl.col("split_factor")).alias("dividend")
    ).sort(TIMESTAMP, ASSET_ID)


def momentum_signals(adjusted: pl.DataFrame, window: int = MOMENTUM_WINDOW) -> pl.DataFrame:
    """`momentum_<window>` = close[t] / close[t - window] - 1 over each asset's own bars of the
    split-adjusted prices, known at the close of t (null for its first `window` bars)."""
    close = pl.col("close")
    return (
        adjusted.sort(ASSET_ID, TIMESTAMP)
        .select(
            TIMESTAMP,
            ASSET_ID,
            (close / close.shift(window) - 1.0).over(ASSET_ID).alias(f"momentum_{window}"),
        )
        .sort(TIMESTAMP, ASSET_ID)
    )


def market_context(signals: pl.DataFrame) -> pl.DataFrame:
    """`market_momentum_20` at each timestamp of `signals`: the mean over the assets that have
    a value there (no row where none has: the first 20 bars of the source)."""
    means = signals.group_by(TIMESTAMP).agg(pl.col(SIGNAL).mean().alias(MARKET_SIGNAL))
    return means.drop_nulls(MARKET_SIGNAL).sort(TIMESTAMP)


def _utc(day: dt.date | None) -> dt.datetime | None:
    return None if day is None else dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _in_period(frame: pl.DataFrame, start: dt.date | None, end: dt.date | None) -> pl.DataFrame:
    first, last = _utc(start), _utc(end)
    keep = pl.lit(True)
    if first is not None:
        keep &= pl.col(TIMESTAMP) >= first
    if last is not None:
        keep &= pl.col(TIMESTAMP) < last
    return frame.filter(keep)


def real_inputs(
    *,
    tickers: Sequence[str] = TICKERS,
    start: dt.date | None = None,
    end: dt.date | None = None,
    dividends: bool = False,
) -> dict[str, pl.DataFrame]:
    """The input tables by key of `FILE_NAMES` (all but provenance; the split-adjusted
    dividends only with `dividends`), rows in [start, end).

    Splits and dividends are derived from the whole history, then kept in the period; the
    split factor counts the splits of the period only, so both price files agree from the
    period's first bar on. Signals are computed before the period is cut (a 20-bar return at
    the period's first bar uses the bars before it, all known by then).
    """
    if start is not None and end is not None and not start < end:
        msg = f"real stocks period: start {start} must come before end {end}"
        raise ConfigError(msg)
    stocks = load_stocks(tickers)
    every_action = corporate_actions(stocks, dividends=dividends)
    everything = split_adjusted(stocks.select(PRICE_FILE_COLUMNS), every_action)
    signals = _in_period(momentum_signals(everything), start, end)
    prices = _in_period(stocks.select(PRICE_FILE_COLUMNS), start, end).sort(TIMESTAMP, ASSET_ID)
    if prices.is_empty():
        msg = f"real stocks {list(tickers)}: no bars in [{start}, {end})"
        raise ConfigError(msg)
    actions = _in_period(every_action, start, end)
    tables = {
        "prices": prices,
        "corporate_actions": actions,
        "prices_split_adjusted": split_adjusted(prices, actions),
        "signals": signals,
        "context": market_context(signals),
    }
    if dividends:
        tables["dividends_split_adjusted"] = split_adjusted_dividends(prices, actions)
    return tables


def _provenance(
    tables: Mapping[str, pl.DataFrame],
    *,
    tickers: Sequence[str],
    start: dt.date | None,
    end: dt.date | None,
    dividends: bool,
) -> str:
    actions = tables["corporate_actions"]
    splits = actions.filter(pl.col("split_ratio") != 1.0)
    summary = {
        "source": "bokeh-sampledata (bokeh_sampledata.stocks, Quandl WIKI prices)",
        "source_version": source_version(),
        "generator": __name__,
        "tickers": list(dict.fromkeys(tickers)),
        "period": [
            None if start is None else start.isoformat(),
            None if end is None else end.isoformat(),
        ],
        "splits": [
            {"asset_id": a, "ex_date": f"{t:%Y-%m-%d}", "split_ratio": r}
            for t, a, r in splits.select(TIMESTAMP, ASSET_ID, "split_ratio").iter_rows()
        ],
        "dividends": "derived from adj_close, approximate (rounded to the cent)"
        if dividends
        else None,
        "rows": {key: frame.height for key, frame in tables.items()},
    }
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def write_real_inputs(
    out_dir: pathlib.Path,
    *,
    tickers: Sequence[str] = TICKERS,
    start: dt.date | None = None,
    end: dt.date | None = None,
    dividends: bool = False,
) -> dict[str, pathlib.Path]:
    """Write the tables of `real_inputs` and `real_stocks.json` into `out_dir`.

    Every file is written to a temporary file in `out_dir` first; only when all are complete
    are they renamed into place, so a failure leaves earlier files untouched. Returns the paths
    by key of `FILE_NAMES`. The same arguments and package version give byte-identical files.
    """
    tables = real_inputs(tickers=tickers, start=start, end=end, dividends=dividends)
    provenance = _provenance(tables, tickers=tickers, start=start, end=end, dividends=dividends)
    writers: dict[str, Writer] = {key: parquet_writer(frame) for key, frame in tables.items()}
    writers["provenance"] = text_writer(provenance)
    return publish_files(out_dir, writers, FILE_NAMES)


__all__ = [
    "COMMON_SPLIT_RATIOS",
    "FILE_NAMES",
    "MARKET_SIGNAL",
    "SIGNAL",
    "TICKERS",
    "classify_steps",
    "corporate_actions",
    "factor_steps",
    "load_stocks",
    "market_context",
    "momentum_signals",
    "real_inputs",
    "split_adjusted",
    "split_adjusted_dividends",
    "split_factor",
    "write_real_inputs",
]
