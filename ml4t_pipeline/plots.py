"""Small SVG charts for Dagster metadata, embedded as base64 markdown images.

The SVG is written directly, without a plotting library: a chart takes a few milliseconds,
where matplotlib took ~0.5 s of every run process (its import, font setup and PNG encoding).
The browser draws the text, so labels stay sharp at any zoom. The layout is the one the
matplotlib chart had: equity on top, drawdown below on a shared time axis, 640 x 360 px.
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
import numpy.typing as npt
import polars as pl

WIDTH, HEIGHT = 640, 360
FONT_PX = 11.0  # 10 pt at 80 dpi
TITLE_PX = 13.0
TICK_PX = 3.5
MARGIN = 0.05  # data margin on each side, as a fraction of the span
EQUITY_COLOUR = "#1f77b4"
DRAWDOWN_COLOUR = "#d62728"
FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
MINUS = "\u2212"
_NICE_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)
_DAY_S = 86_400
_SUB_DAY_STEPS_S = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 10800, 21600, 43200)
_DAY_STEPS = (1, 2, 3, 4, 7, 14)
_MONTH_STEPS = (1, 2, 3, 6)
_MAX_DATE_TICKS = 8

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class _Axis:
    """A linear map from data [lo, hi] onto pixels [start, end]."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        return self.start + (value - self.lo) / (self.hi - self.lo) * (self.end - self.start)


def _limits(values: Sequence[float] | Floats, *, pad_singular: float) -> tuple[float, float]:
    """Data range with a 5% margin; a single value is widened by `pad_singular` of itself."""
    finite = [float(v) for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1.0):
        pad = pad_singular * abs(lo) or pad_singular
        lo, hi = lo - pad, hi + pad
    span = hi - lo
    return lo - MARGIN * span, hi + MARGIN * span


def _time_limits(stamps: Floats) -> tuple[float, float]:
    """Time range (epoch seconds) with a 5% margin; one bar gets a day either side."""
    if not len(stamps):
        return 0.0, float(_DAY_S)
    lo, hi = float(stamps.min()), float(stamps.max())
    if hi == lo:
        return lo - _DAY_S, hi + _DAY_S
    return lo - MARGIN * (hi - lo), hi + MARGIN * (hi - lo)


def _nice_ticks(lo: float, hi: float, max_ticks: int) -> list[float]:
    """Round tick values inside [lo, hi]: steps of 1, 2, 2.5 or 5 times a power of ten."""
    raw = (hi - lo) / max(max_ticks - 1, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in _NICE_STEPS if m * magnitude >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9)
    count = math.floor(hi / step + 1e-9) - first + 1
    return [(first + k) * step + 0.0 for k in range(count)]


def _decimals(ticks: Sequence[float]) -> int:
    """Fewest decimals that tell every tick apart (at most 6)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(ticks[0]) or 1.0
    for decimals in range(7):
        if abs(round(step, decimals) - step) <= 1e-9 * step:
            return decimals
    return 6


def _number(value: float, decimals: int, *, grouped: bool) -> str:
    text = f"{abs(value):,.{decimals}f}" if grouped else f"{abs(value):.{decimals}f}"
    negative = value < 0 and float(text.replace(",", "")) != 0.0
    return f"{MINUS}{text}" if negative else text


def _runs(xs: Floats, ys: Floats) -> Iterator[list[tuple[float, float]]]:
    """Runs of consecutive finite points (a NaN or null breaks the line, as in matplotlib)."""
    run: list[tuple[float, float]] = []
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        if math.isfinite(y):
            run.append((x, y))
        elif run:
            yield run
            run = []
    if run:
        yield run


def _path(points: Sequence[tuple[float, float]]) -> str:
    return "M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in points)


def _add_months(day: dt.date, months: int) -> dt.date:
    year, month = divmod(day.month - 1 + months, 12)
    return dt.date(day.year + year, month + 1, 1)


def _epoch_s(day: dt.date) -> float:
    return float(calendar.timegm(day.timetuple()))


def _spaced(ticks: Sequence[float], lo: float, hi: float, step_s: float) -> list[float]:
    """Ticks inside [lo, hi]; where a calendar restart (the 1st of a month) comes too close
    after the previous tick, the restart wins."""
    kept: list[float] = []
    for tick in ticks:
        if not lo <= tick <= hi:
            continue
        if kept and tick - kept[-1] < 0.6 * step_s:
            kept.pop()
        kept.append(tick)
    return kept


def _date_ticks(lo: float, hi: float) -> tuple[list[float], Callable[[dt.datetime], str], str]:
    """Tick instants (epoch seconds, UTC) inside [lo, hi], their label format and the offset
    label, in the spirit of matplotlib's AutoDateLocator with ConciseDateFormatter."""
    span = hi - lo
    first_day = dt.datetime.fromtimestamp(lo, dt.UTC).date()
    last_day = dt.datetime.fromtimestamp(hi, dt.UTC).date()
    ticks: list[float]
    if span <= _SUB_DAY_STEPS_S[-1] * _MAX_DATE_TICKS:
        step_s = next((s for s in _SUB_DAY_STEPS_S if span / s <= _MAX_DATE_TICKS), _DAY_S)
        ticks = [k * step_s for k in range(math.ceil(lo / step_s), math.floor(hi / step_s) + 1)]
        start = dt.datetime.fromtimestamp(ticks[0] if ticks else lo, dt.UTC)
        return (
            ticks,
            lambda t: f"{t:%b-%d}" if t.hour == t.minute == t.second == 0 else f"{t:%H:%M}",
            f"{start:%Y-%b-%d}",
        )
    if span <= _DAY_STEPS[-1] * _DAY_S * _MAX_DATE_TICKS:
        step = next(s for s in _DAY_STEPS if span / (s * _DAY_S) <= _MAX_DATE_TICKS)
        days = (first_day + dt.timedelta(days=k) for k in range((last_day - first_day).days + 1))
        picked = [d for d in days if (d.day - 1) % step == 0]
        ticks = _spaced([_epoch_s(d) for d in picked], lo, hi, step * _DAY_S)
        start = dt.datetime.fromtimestamp(ticks[0] if ticks else lo, dt.UTC)
        return ticks, lambda t: f"{t:%b}" if t.day == 1 else f"{t:%d}", f"{start:%Y-%b}"
    month_s = 30.44 * _DAY_S
    if span <= _MONTH_STEPS[-1] * month_s * _MAX_DATE_TICKS:
        step = next(s for s in _MONTH_STEPS if span / (s * month_s) <= _MAX_DATE_TICKS)
        first_month = first_day.replace(day=1)
        count = (last_day.year - first_day.year) * 12 + last_day.month - first_day.month + 1
        months = (_add_months(first_month, k) for k in range(count))
        picked = [m for m in months if (m.month - 1) % step == 0]
        ticks = _spaced([_epoch_s(m) for m in picked], lo, hi, step * month_s)
        start = dt.datetime.fromtimestamp(ticks[0] if ticks else lo, dt.UTC)
        return ticks, lambda t: f"{t:%Y}" if t.month == 1 else f"{t:%b}", f"{start:%Y}"
    year_s = 365.25 * _DAY_S
    steps = (m * 10**e for e in range(6) for m in (1, 2, 5))
    step = next(s for s in steps if span / (s * year_s) <= _MAX_DATE_TICKS)
    years = range(first_day.year, last_day.year + 1)
    ticks = [_epoch_s(dt.date(y, 1, 1)) for y in years if y % step == 0]
    return [t for t in ticks if lo <= t <= hi], lambda t: f"{t:%Y}", ""


class _Svg:
    def __init__(self) -> None:
        self.parts: list[str] = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{FONT}" font-size="{FONT_PX:g}">',
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        ]

    def add(self, element: str) -> None:
        self.parts.append(element)

    def text(self, x: float, y: float, text: str, **attributes: str) -> None:
        extra = "".join(
            f' {name.replace("_", "-")}="{value}"' for name, value in attributes.items()
        )
        self.add(f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(text)}</text>')

    def close(self) -> str:
        return "".join([*self.parts, "</svg>"])


def _label_width(labels: Sequence[tuple[float, str]]) -> float:
    """Rough width in px of the longest label (DejaVu Sans digits are ~0.64 em wide)."""
    return max((len(text) for _, text in labels), default=0) * FONT_PX * 0.64


def _frame(svg: _Svg, x: _Axis, y: _Axis) -> None:
    width, height = x.end - x.start, y.start - y.end
    svg.add(
        f'<rect x="{x.start:.1f}" y="{y.end:.1f}" width="{width:.1f}" height="{height:.1f}" '
        'fill="none" stroke="#000000" stroke-width="0.9"/>'
    )


def _y_ticks(
    svg: _Svg, y: _Axis, x_start: float, labels: Sequence[tuple[float, str]], title: str
) -> None:
    """Tick marks and labels left of the axis, and the axis title turned upright."""
    marks = "".join(f"M{x_start:.1f},{y(v):.1f}h{-TICK_PX}" for v, _ in labels)
    svg.add(f'<path d="{marks}" stroke="#000000" stroke-width="0.9"/>')
    for value, text in labels:
        svg.text(x_start - TICK_PX - 3, y(value) + FONT_PX * 0.35, text, text_anchor="end")
    label_x = max(x_start - TICK_PX - 8 - _label_width(labels) - FONT_PX * 0.4, FONT_PX)
    middle = (y.start + y.end) / 2
    svg.text(
        label_x,
        middle,
        title,
        text_anchor="middle",
        transform=f"rotate(-90 {label_x:.1f} {middle:.1f})",
    )


def equity_drawdown_svg(
    equity: pl.DataFrame, *, start_equity: float, title: str, peak_before: float | None = None
) -> str:
    """Equity curve (top) and drawdown from the running peak (bottom) as an SVG document.

    `peak_before` is the equity peak reached before the first bar (a continued month), so the
    drawdown is measured from the true running peak; defaults to `start_equity`. Null or NaN
    equity leaves a gap in both curves.
    """
    stamps = equity["timestamp"].dt.epoch("us").cast(pl.Float64).to_numpy() / 1e6
    values = equity["equity"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    peak = np.fmax.accumulate(np.r_[peak_before or start_equity, values])[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = (values / peak - 1.0) * 100.0

    equity_lo, equity_hi = _limits([*values.tolist(), start_equity], pad_singular=0.05)
    equity_ticks = _nice_ticks(equity_lo, equity_hi, 8)
    equity_labels = [(v, _number(v, _decimals(equity_ticks), grouped=True)) for v in equity_ticks]
    dd_lo, dd_hi = _limits([*drawdown.tolist(), 0.0], pad_singular=0.05)
    dd_ticks = _nice_ticks(dd_lo, dd_hi, 5)
    dd_labels = [(v, _number(v, _decimals(dd_ticks), grouped=False)) for v in dd_ticks]

    widest = max(_label_width(equity_labels), _label_width(dd_labels))
    left = max(0.13 * WIDTH, widest + TICK_PX + 8 + FONT_PX * 2.2)
    right, top, bottom = 0.98 * WIDTH, 0.07 * HEIGHT, 0.89 * HEIGHT
    unit = (bottom - top) / 3.12  # axes heights 2:1 with a gap of 8% of their mean height
    split = top + 2 * unit
    x = _Axis(*_time_limits(stamps), left, right)
    y_top = _Axis(equity_lo, equity_hi, split, top)
    y_bottom = _Axis(dd_lo, dd_hi, bottom, split + 0.12 * unit)
    xs = np.array([x(s) for s in stamps.tolist()])

    svg = _Svg()
    svg.text((left + right) / 2, top - 7, title, text_anchor="middle", font_size=f"{TITLE_PX:g}")
    baseline = y_top(start_equity)
    svg.add(
        f'<path d="M{left:.1f},{baseline:.1f}H{right:.1f}" stroke="#808080" '
        'stroke-width="0.7" stroke-dasharray="3,1.5"/>'
    )
    for run in _runs(xs, values):
        points = [(px, y_top(v)) for px, v in run]
        if len(points) == 1:  # a lone bar would be an invisible zero-length line
            (cx, cy), colour = points[0], EQUITY_COLOUR
            svg.add(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2" fill="{colour}"/>')
            continue
        svg.add(
            f'<path d="{_path(points)}" fill="none" stroke="{EQUITY_COLOUR}" stroke-width="1.3" '
            'stroke-linejoin="round"/>'
        )
    zero = y_bottom(0.0)
    for run in _runs(xs, drawdown):
        outline = [(run[0][0], zero), *((px, y_bottom(v)) for px, v in run), (run[-1][0], zero)]
        svg.add(f'<path d="{_path(outline)}Z" fill="{DRAWDOWN_COLOUR}" fill-opacity="0.4"/>')
    for y in (y_top, y_bottom):
        _frame(svg, x, y)
    _y_ticks(svg, y_top, left, equity_labels, "equity")
    _y_ticks(svg, y_bottom, left, dd_labels, "drawdown %")

    ticks, label, offset = _date_ticks(x.lo, x.hi) if len(stamps) else ([], str, "")
    for axis_bottom in (y_top.start, y_bottom.start):
        marks = "".join(f"M{x(t):.1f},{axis_bottom:.1f}v{TICK_PX}" for t in ticks)
        svg.add(f'<path d="{marks}" stroke="#000000" stroke-width="0.9"/>')
    for t in ticks:
        text = label(dt.datetime.fromtimestamp(t, dt.UTC))
        half = len(text) * FONT_PX * 0.32  # keep a label at the right edge inside the image
        centre = min(x(t), WIDTH - half - 1)
        svg.text(centre, bottom + TICK_PX + FONT_PX + 2, text, text_anchor="middle")
    if offset:
        svg.text(right, bottom + TICK_PX + 2 * FONT_PX + 6, offset, text_anchor="end")
    return svg.close()


def svg_markdown(svg: str, alt: str) -> str:
    """Markdown showing `svg` inline (Dagster renders it in the asset's metadata)."""
    encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f"![{alt}](data:image/svg+xml;base64,{encoded})"
