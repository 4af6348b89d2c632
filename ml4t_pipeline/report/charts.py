"""The report's charts: matplotlib figures (Agg) encoded as PNG bytes, byte-identical per input.

matplotlib is imported inside the functions that draw (its import costs a good part of a
second), never when this module is imported, so the engine and a `--no-report` backtest never
load it. Only the object API is used (`Figure` + `FigureCanvasAgg`, no pyplot and no global
backend). Each chart is one figure with several axes, laid out with fixed margins (no
`tight_layout`), a few ticks per axis, simple date locators, the bundled DejaVu Sans font and
no PNG metadata, so the same numbers give the same bytes on every machine with this matplotlib.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
WIDTH_IN = 8.0
STRATEGY_COLOUR = "#1f77b4"
BENCHMARK_COLOUR = "#7f7f7f"
DRAWDOWN_COLOUR = "#d62728"
BAR_COLOUR = "#9467bd"
RC: dict[Any, Any] = {  # matplotlib types the keys as a Literal of every rc name
    "font.family": "DejaVu Sans",  # bundled with matplotlib: the same glyphs everywhere
    "font.size": 8.0,
    "axes.titlesize": 9.0,
    "axes.titlelocation": "left",
    "axes.titley": 1.0,  # a fixed title position: matplotlib's automatic one measures every axis
    "axes.titlepad": 4.0,
    "axes.grid.axis": "y",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e5e5",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.1,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "svg.hashsalt": "ml4t-report",  # fixed ids should a figure ever be saved as SVG
    "path.simplify": True,
}
MAX_TICKS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Curve:
    """A time series to draw: bar times (us since the epoch, UTC) and values."""

    times_us: np.ndarray
    values: np.ndarray
    label: str


def _days(times_us: np.ndarray) -> np.ndarray:
    """matplotlib date numbers (days since its epoch) of us timestamps."""
    from matplotlib import dates

    days = dates.date2num(times_us.astype("datetime64[us]"))  # type: ignore[no-untyped-call]
    return np.asarray(days, dtype=np.float64)


@contextmanager
def _figure(height_in: float, rows: Sequence[float]) -> Iterator[tuple[Figure, list[Axes]]]:
    """A figure of `rows` axes stacked on one time axis, heights in the given ratios."""
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with mpl.rc_context(RC):
        fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI)
        FigureCanvasAgg(fig)
        top = 1.0 - 0.32 / height_in
        bottom = 0.3 / height_in
        fig.subplots_adjust(left=0.1, right=0.98, top=top, bottom=bottom, hspace=0.45)
        axes = fig.subplots(len(rows), 1, gridspec_kw={"height_ratios": rows})
        yield fig, list(np.atleast_1d(axes))


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def _time_axes(axes: Sequence[Axes], first: float, last: float) -> None:
    """One time range for every axes; dates under the last one only (the others get no x
    ticks at all: ticks are most of what a figure costs to draw)."""
    from matplotlib import ticker

    span = max(last - first, 1.0)
    for ax in axes[:-1]:
        ax.xaxis.set_major_locator(ticker.NullLocator())
        ax.set_xlim(first - 0.01 * span, last + 0.01 * span)
    _date_axis(axes[-1], first, last)


def _date_axis(axes: Axes, first: float, last: float) -> None:
    """Year, month or day ticks by the span, at most about eight."""
    from matplotlib import dates

    span = max(last - first, 1.0)
    locator: dates.DateLocator
    # matplotlib.dates is untyped
    if span > 3 * 365:
        step = max(1, round(span / 365 / 8))
        locator, fmt = dates.YearLocator(step), "%Y"  # type: ignore[no-untyped-call]
    elif span > 62:
        step = max(1, math.ceil(span / 30.4 / 8))
        locator, fmt = dates.MonthLocator(interval=step), "%Y-%m"  # type: ignore[no-untyped-call]
    else:
        step = max(1, math.ceil(span / 8))
        locator, fmt = dates.DayLocator(interval=step), "%m-%d"  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(dates.DateFormatter(fmt))  # type: ignore[no-untyped-call]
    pad = 0.01 * span
    axes.set_xlim(first - pad, last + pad)


def _y_format(axes: Axes, kind: str) -> None:
    from matplotlib import ticker

    axes.yaxis.set_major_locator(ticker.MaxNLocator(MAX_TICKS))
    if kind == "percent":
        axes.yaxis.set_major_formatter(ticker.PercentFormatter(xmax=1.0))
    elif kind == "money":
        axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    else:
        axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.1f}"))


def _log_axis(axes: Axes, values: np.ndarray) -> None:
    """A log scale with a few round linear ticks (a run rarely spans a decade)."""
    from matplotlib import ticker

    axes.set_yscale("log")
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.shape[0] == 0:
        return
    lo, hi = float(finite.min()), float(finite.max())
    ticks = [t for t in ticker.MaxNLocator(MAX_TICKS).tick_values(lo, hi) if lo <= t <= hi]
    axes.yaxis.set_major_locator(ticker.FixedLocator(ticks or [lo, hi]))
    axes.yaxis.set_minor_locator(ticker.NullLocator())
    axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))


def equity_chart(
    strategy: Curve,
    drawdown: np.ndarray,
    *,
    benchmark: Curve | None = None,
    log_panel: bool = True,
    height_in: float = 6.2,
    title: str = "",
) -> bytes:
    """Equity against the benchmark (linear, then log when `log_panel`) and the strategy's
    underwater curve (drawdown from its running peak, a fraction <= 0), as a PNG."""
    rows = [2.0, 2.0, 1.3] if log_panel else [2.0, 1.0]
    x = _days(strategy.times_us)
    with _figure(height_in, rows) as (fig, axes):
        panels = axes[:2] if log_panel else axes[:1]
        for k, ax in enumerate(panels):
            if benchmark is not None:
                ax.plot(x, benchmark.values, color=BENCHMARK_COLOUR, label=benchmark.label)
            ax.plot(x, strategy.values, color=STRATEGY_COLOUR, label=strategy.label)
            if k == 0:
                ax.set_title(title or "Equity")
                _y_format(ax, "money")
                if benchmark is not None:
                    ax.legend(loc="upper left")
            else:
                ax.set_title("Equity, log scale")
                both = (
                    strategy.values
                    if benchmark is None
                    else np.r_[strategy.values, benchmark.values]
                )
                _log_axis(ax, both)
        under = axes[-1]
        under.fill_between(x, drawdown, 0.0, color=DRAWDOWN_COLOUR, alpha=0.35, linewidth=0)
        under.plot(x, drawdown, color=DRAWDOWN_COLOUR, linewidth=0.8)
        under.set_title("Drawdown from the running peak")
        _y_format(under, "percent")
        if x.shape[0]:
            _time_axes(axes, float(x[0]), float(x[-1]))
        return _png(fig)


def rolling_chart(
    times_us: np.ndarray,
    *,
    window: int,
    rolling_us: np.ndarray,
    sharpe: np.ndarray,
    volatility: np.ndarray,
    exposure: np.ndarray,
    month_starts_us: np.ndarray,
    turnover: np.ndarray,
    benchmark_volatility: np.ndarray | None = None,
) -> bytes:
    """Rolling Sharpe and volatility over `window` bars (at the times `rolling_us`), exposure
    per bar (at `times_us`) and turnover per month, on one time axis, as a PNG."""
    x = _days(times_us)
    at = _days(rolling_us)
    with _figure(6.4, [1.0, 1.0, 1.0, 1.0]) as (fig, axes):
        ax = axes[0]
        ax.axhline(0.0, color="#999999", linewidth=0.7)
        ax.plot(at, sharpe, color=STRATEGY_COLOUR)
        ax.set_title(f"Rolling Sharpe ratio ({window} bars)")
        _y_format(ax, "ratio")
        ax = axes[1]
        if benchmark_volatility is not None:
            ax.plot(at, benchmark_volatility, color=BENCHMARK_COLOUR, label="benchmark")
        ax.plot(at, volatility, color=STRATEGY_COLOUR, label="strategy")
        if benchmark_volatility is not None:
            ax.legend(loc="upper left")
        ax.set_title(f"Rolling volatility, annualised ({window} bars)")
        _y_format(ax, "percent")
        ax = axes[2]
        ax.plot(x, exposure, color=STRATEGY_COLOUR)
        ax.set_title("Exposure: |positions value| / equity")
        _y_format(ax, "percent")
        ax = axes[3]
        months = _days(month_starts_us)
        if months.shape[0]:  # one filled step per month (one artist, not a bar per month)
            edges = np.r_[months, max(float(x[-1]), float(months[-1])) + 1.0]
            ax.stairs(turnover, edges, fill=True, color=BAR_COLOUR, linewidth=0)
        ax.set_title("Turnover per month: notional traded / mean equity")
        _y_format(ax, "percent")
        if x.shape[0]:
            first = min(x[0], months[0]) if months.shape[0] else x[0]
            _time_axes(axes, float(first), float(x[-1]))
        return _png(fig)


def overfitting_chart(
    is_rank: np.ndarray,
    oos_rank: np.ndarray,
    is_pick: np.ndarray,
    oos_pick: np.ndarray,
    logits: np.ndarray,
) -> bytes:
    """Three panels of a sweep's CSCV splits, as a PNG: every variant's relative rank in and
    out of sample (counts per cell of a grid over (0, 1]), the in-sample pick's Sharpe in and
    out of sample per split, and the pick's out-of-sample logits (<= 0: overfit)."""
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with mpl.rc_context({**RC, "axes.grid": False}):
        fig = Figure(figsize=(WIDTH_IN, 2.9), dpi=DPI)
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.07, right=0.98, top=0.88, bottom=0.17, wspace=0.38)
        ranks, picks, spread = fig.subplots(1, 3)
        cells = int(min(20, max(2, round(math.sqrt(is_rank.size / 4)))))
        counts, _, _ = np.histogram2d(
            is_rank.ravel(), oos_rank.ravel(), bins=cells, range=[[0.0, 1.0], [0.0, 1.0]]
        )
        ranks.imshow(
            counts.T,
            origin="lower",
            extent=(0.0, 1.0, 0.0, 1.0),
            cmap="Blues",
            aspect="auto",
            interpolation="nearest",
        )
        ranks.plot([0, 1], [0, 1], color="#999999", linewidth=0.7)
        ranks.set_title("Rank in vs out of sample")
        ranks.set_xlabel("in-sample rank (1 = best)")
        ranks.set_ylabel("out-of-sample rank")
        picks.axhline(0.0, color="#999999", linewidth=0.7)
        picks.scatter(is_pick, oos_pick, s=6, color=STRATEGY_COLOUR, alpha=0.5, linewidths=0)
        picks.set_title("The pick's Sharpe, per split")
        picks.set_xlabel("in sample (annualised)")
        picks.set_ylabel("out of sample")
        finite = logits[np.isfinite(logits)]
        lo = float(min(finite.min(), -1.0)) if finite.shape[0] else -1.0
        hi = float(max(finite.max(), 1.0)) if finite.shape[0] else 1.0
        bins = np.linspace(lo, hi, 21)
        spread.axvspan(lo, 0.0, color=DRAWDOWN_COLOUR, alpha=0.12, linewidth=0)
        spread.hist(finite, bins=bins, color=BAR_COLOUR)
        spread.set_title("The pick's logit out of sample")
        spread.set_xlabel("logit (<= 0: below the median)")
        for ax in (ranks, picks, spread):
            ax.xaxis.set_major_locator(_max_ticks())
            ax.yaxis.set_major_locator(_max_ticks())
        return _png(fig)


def _max_ticks() -> Any:
    from matplotlib import ticker

    return ticker.MaxNLocator(MAX_TICKS)


def warm_up() -> None:
    """Import what drawing needs and draw a throwaway figure (the font file, text layout and
    PNG writer load on a first draw): for a helper process waiting for the real charts."""
    with _figure(1.0, [1.0]) as (fig, axes):
        axes[0].plot([0.0, 1.0], [0.0, 1.0])
        axes[0].set_title("warm-up")
        _date_axis(axes[0], 0.0, 1.0)
        _png(fig)
