"""Small PNG charts for Dagster metadata, embedded as base64 Markdown images.

There is no plotting library here because every run process would pay for its import:
matplotlib's import and font setup took ~0.5 s of each run. The chart is drawn instead into a
numpy RGB array and encoded as a PNG with zlib, in about 10 ms (zlib takes 4 of them). Lines
and the drawdown area are anti-aliased (exact coverage down a pixel, four samples across it);
text uses the 5 x 7 pixel font of `raster.py`, the title at twice the size. The layout is the one the
matplotlib chart had: equity on top, drawdown below on a shared time axis, 640 x 360 px.
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from ml4t_pipeline.pipeline.raster import (
    CAP_PX,
    GLYPH_ROWS,
    MINUS,
    Canvas,
    Cells,
    Floats,
    Mask,
    px,
    text_width,
)

WIDTH, HEIGHT = 640, 360
TICK_PX = 4
MARGIN = 0.05  # data margin on each side, as a fraction of the span
LINE_PX = 1.6  # width of the equity line
POINT_PX = 2.0  # radius of a bar with no neighbour to join
DASH_PX = (5, 3)  # on, off
SUBCOLUMNS = 4  # horizontal samples per pixel for the anti-aliasing
DRAWDOWN_ALPHA = 0.4
EQUITY_COLOUR = (31, 119, 180)
DRAWDOWN_COLOUR = (214, 39, 40)
START_COLOUR = (128, 128, 128)
_NICE_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)
_DAY_S = 86_400
_SUB_DAY_STEPS_S = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 10800, 21600, 43200)
_DAY_STEPS = (1, 2, 3, 4, 7, 14)
_MONTH_STEPS = (1, 2, 3, 6)
_MAX_DATE_TICKS = 8


@dataclass(frozen=True, slots=True)
class _Axis:
    """A linear map from data [lo, hi] onto pixels [start, end]."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        return self.start + (value - self.lo) / (self.hi - self.lo) * (self.end - self.start)

    def array(self, values: Floats) -> Floats:
        return self.start + (values - self.lo) / (self.hi - self.lo) * (self.end - self.start)


def _limits(values: Floats, *, pad_singular: float) -> tuple[float, float]:
    """Data range with a 5% margin; a single value is widened by `pad_singular` of itself."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
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


def _label_width(labels: Sequence[tuple[float, str]]) -> int:
    return max((text_width(text) for _, text in labels), default=0)


def _frame(canvas: Canvas, x: _Axis, y: _Axis) -> tuple[int, int, int, int]:
    """The axes' box in 1 px lines; the pixel rows and columns [top, bottom) x [left, right)
    inside it."""
    left, right, top, bottom = px(x.start), px(x.end), px(y.end), px(y.start)
    canvas.fill(top, left, top + 1, right + 1)
    canvas.fill(bottom, left, bottom + 1, right + 1)
    canvas.fill(top, left, bottom + 1, left + 1)
    canvas.fill(top, right, bottom + 1, right + 1)
    return top + 1, left + 1, bottom, right


def _lone(finite: Mask) -> Mask:
    """Finite points with no finite neighbour: nothing to join, so drawn as a dot."""
    joined = finite[:-1] & finite[1:]
    return finite & ~np.r_[False, joined] & ~np.r_[joined, False]


def _spans(xs: Floats, ys: Floats, left: int, right: int) -> tuple[Floats, Floats]:
    """Lowest and highest y of the line through (xs, ys) in each sub-column of the pixel
    columns [left, right): +inf and -inf where it does not pass. `xs` ascend; a NaN y breaks
    the line, and a point left with no neighbour is not part of it.

    The line's y-range in a sub-column is that of its points inside and of where it crosses
    the sub-column's two edges."""
    count = (right - left) * SUBCOLUMNS
    lo, hi = np.full(count, np.inf), np.full(count, -np.inf)
    finite = np.isfinite(ys)
    joined = finite & ~_lone(finite)
    if not joined.any():
        return lo, hi
    u = (xs - left) * SUBCOLUMNS
    column = np.floor(u[joined]).astype(np.int64)
    inside = (column >= 0) & (column < count)
    column, y = column[inside], ys[joined][inside]
    if column.size:
        starts = np.flatnonzero(np.r_[True, column[1:] != column[:-1]])
        lo[column[starts]] = np.minimum.reduceat(y, starts)
        hi[column[starts]] = np.maximum.reduceat(y, starts)
    edges = np.arange(count + 1, dtype=np.float64)
    crossing = np.interp(edges, u, ys)  # NaN inside a gap: a segment to a NaN point is NaN
    crossing[(edges < u[0]) | (edges > u[-1])] = np.nan
    lo = np.fmin(lo, np.fmin(crossing[:-1], crossing[1:]))
    hi = np.fmax(hi, np.fmax(crossing[:-1], crossing[1:]))
    return lo, hi


def _stroke(lo: Floats, hi: Floats, radius: float) -> tuple[Floats, Floats]:
    """The spans widened by a round pen of `radius` px: each sub-column takes its neighbours'
    spans within the radius, grown by the pen's half-height there. A gap in the line narrower
    than the pen closes, as it would look anyway."""
    out_lo, out_hi = lo - radius, hi + radius
    for k in range(1, math.floor(radius * SUBCOLUMNS) + 1):
        half = math.sqrt(radius**2 - (k / SUBCOLUMNS) ** 2)
        out_lo[k:] = np.minimum(out_lo[k:], lo[:-k] - half)
        out_lo[:-k] = np.minimum(out_lo[:-k], lo[k:] - half)
        out_hi[k:] = np.maximum(out_hi[k:], hi[:-k] + half)
        out_hi[:-k] = np.maximum(out_hi[:-k], hi[k:] + half)
    return out_lo, out_hi


def _ranges(
    starts: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For ranges [start, start + count): which range each member is in, and the members."""
    which = np.repeat(np.arange(len(counts)), counts)
    shift = np.repeat(starts - np.cumsum(counts) + counts, counts)
    return which, shift + np.arange(len(which))


def _cells(lo: Floats, hi: Floats, top: int, bottom: int, left: int) -> Cells:
    """The pixels the spans [lo, hi] cover in rows [top, bottom) from column `left` on, with
    how much of each they cover: exact vertically, SUBCOLUMNS samples across.

    Rows that every sub-column covers whole are 1 without more ado; only the rows at the ends
    of the spans are measured, so the cost follows the line, not the area."""
    height = bottom - top
    lo = np.clip(lo - top, 0, height).reshape(-1, SUBCOLUMNS)  # an empty span becomes [h, 0]
    hi = np.clip(hi - top, 0, height).reshape(-1, SUBCOLUMNS)
    outer_lo = np.floor(lo.min(axis=1)).astype(np.int64)
    outer_hi = np.maximum(np.ceil(hi.max(axis=1)).astype(np.int64), outer_lo)
    inner_lo = np.ceil(lo.max(axis=1)).astype(np.int64)
    inner_hi = np.floor(hi.min(axis=1)).astype(np.int64)
    solid = inner_hi > inner_lo
    inner_lo = np.where(solid, inner_lo, outer_hi)
    inner_hi = np.where(solid, inner_hi, outer_hi)
    ends = np.r_[outer_lo, inner_hi], np.r_[inner_lo - outer_lo, outer_hi - inner_hi]
    which, rows = _ranges(*ends)
    columns = np.r_[np.arange(len(lo)), np.arange(len(lo))][which]
    row = rows[:, None].astype(np.float64)
    sampled = np.minimum(hi[columns], row + 1) - np.maximum(lo[columns], row)
    coverage = np.clip(sampled, 0.0, 1.0).mean(axis=1)
    full_columns, full_rows = _ranges(inner_lo, inner_hi - inner_lo)
    rows, columns = np.r_[rows, full_rows], np.r_[columns, full_columns]
    coverage = np.r_[coverage, np.ones(len(full_rows))]
    kept = coverage > 0
    return rows[kept] + top, columns[kept] + left, coverage[kept]


def _dots(xs: Floats, ys: Floats, top: int, bottom: int, left: int, right: int) -> Cells:
    """Anti-aliased dots of radius POINT_PX at (xs, ys), inside [top, bottom) x [left, right)."""
    reach = math.ceil(POINT_PX) + 1
    offsets = np.arange(-reach, reach + 1)
    cols = np.floor(xs).astype(np.int64)[:, None, None] + offsets[None, None, :]
    rows = np.floor(ys).astype(np.int64)[:, None, None] + offsets[None, :, None]
    distance = np.hypot(cols + 0.5 - xs[:, None, None], rows + 0.5 - ys[:, None, None])
    coverage = np.clip(POINT_PX + 0.5 - distance, 0.0, 1.0)
    rows, cols = np.broadcast_arrays(rows, cols)
    kept = (coverage > 0) & (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    return rows[kept], cols[kept], coverage[kept]


def _y_ticks(
    canvas: Canvas, y: _Axis, x_start: float, labels: Sequence[tuple[float, str]], title: str
) -> None:
    """Tick marks and labels left of the axis, and the axis title turned upright."""
    axis = px(x_start)
    for value, text in labels:
        row = px(y(value))
        canvas.fill(row, axis - TICK_PX, row + 1, axis)
        canvas.text(axis - TICK_PX - 3, px(y(value) - CAP_PX / 2 + 0.5), text, anchor="end")
    baseline = max(axis - TICK_PX - 3 - _label_width(labels) - 6, CAP_PX + 2)
    canvas.upright_text(baseline, (y.start + y.end) / 2, title)


def equity_drawdown_png(
    equity: pl.DataFrame, *, start_equity: float, title: str, peak_before: float | None = None
) -> bytes:
    """Equity curve (top) and drawdown from the running peak (bottom) as a PNG image.

    `peak_before` is the equity peak reached before the first bar (a continued month), so the
    drawdown is measured from the true running peak; defaults to `start_equity`. Null or NaN
    equity leaves a gap in both curves.
    """
    if not equity["timestamp"].is_sorted():
        equity = equity.sort("timestamp")
    stamps = equity["timestamp"].dt.epoch("us").cast(pl.Float64).to_numpy() / 1e6
    values = equity["equity"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    peak = np.fmax.accumulate(np.r_[peak_before or start_equity, values])[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = (values / peak - 1.0) * 100.0

    equity_lo, equity_hi = _limits(np.r_[values, start_equity], pad_singular=0.05)
    equity_ticks = _nice_ticks(equity_lo, equity_hi, 8)
    equity_labels = [(v, _number(v, _decimals(equity_ticks), grouped=True)) for v in equity_ticks]
    dd_lo, dd_hi = _limits(np.r_[drawdown, 0.0], pad_singular=0.05)
    dd_ticks = _nice_ticks(dd_lo, dd_hi, 5)
    dd_labels = [(v, _number(v, _decimals(dd_ticks), grouped=False)) for v in dd_ticks]

    widest = max(_label_width(equity_labels), _label_width(dd_labels))
    left = max(0.13 * WIDTH, widest + TICK_PX + 3 + 6 + GLYPH_ROWS + 6)
    right, top, bottom = 0.98 * WIDTH, 0.07 * HEIGHT, 0.89 * HEIGHT
    unit = (bottom - top) / 3.12  # axes heights 2:1 with a gap of 8% of their mean height
    split = top + 2 * unit
    x = _Axis(*_time_limits(stamps), left, right)
    y_top = _Axis(equity_lo, equity_hi, split, top)
    y_bottom = _Axis(dd_lo, dd_hi, bottom, split + 0.12 * unit)
    xs = x.array(stamps)

    canvas = Canvas(WIDTH, HEIGHT)
    scale = 2 if text_width(title, 2) <= WIDTH - 8 else 1  # a long title in small print
    half = text_width(title, scale) / 2
    centre = max(min((left + right) / 2, WIDTH - half - 1), half + 1)  # cut at the right
    canvas.text(centre, px(top) - 6 - scale * CAP_PX, title, anchor="middle", scale=scale)
    r0, c0, r1, c1 = _frame(canvas, x, y_top)
    baseline = px(y_top(start_equity))
    if r0 <= baseline < r1:
        dashes = np.arange(c1 - c0) % sum(DASH_PX) < DASH_PX[0]
        canvas.paint(baseline, c0, dashes[None, :], START_COLOUR)
    ys = y_top.array(values)
    canvas.blend(_cells(*_stroke(*_spans(xs, ys, c0, c1), LINE_PX / 2), r0, r1, c0), EQUITY_COLOUR)
    alone = _lone(np.isfinite(ys))
    if alone.any():  # a bar between two gaps: a dot, not a speck
        canvas.blend(_dots(xs[alone], ys[alone], r0, r1, c0, c1), EQUITY_COLOUR)

    r0, c0, r1, c1 = _frame(canvas, x, y_bottom)
    lo, hi = _spans(xs, y_bottom.array(drawdown), c0, c1)
    zero = y_bottom(0.0)
    passed = np.isfinite(lo)
    lo, hi = np.where(passed, np.minimum(lo, zero), lo), np.where(passed, np.maximum(hi, zero), hi)
    canvas.blend(_cells(lo, hi, r0, r1, c0), DRAWDOWN_COLOUR, DRAWDOWN_ALPHA)
    _y_ticks(canvas, y_top, left, equity_labels, "equity")
    _y_ticks(canvas, y_bottom, left, dd_labels, "drawdown %")

    ticks, label, offset = _date_ticks(x.lo, x.hi) if len(stamps) else ([], str, "")
    label_top = px(bottom) + TICK_PX + 4
    for t in ticks:
        column = px(x(t))
        for axis_bottom in (y_top.start, y_bottom.start):
            canvas.fill(px(axis_bottom) + 1, column, px(axis_bottom) + 1 + TICK_PX, column + 1)
        text = label(dt.datetime.fromtimestamp(t, dt.UTC))
        half = text_width(text) / 2  # keep a label at either edge inside the image
        centre = min(max(x(t), half + 1), WIDTH - half - 1)
        canvas.text(centre, label_top, text, anchor="middle")
    if offset:
        canvas.text(right, label_top + GLYPH_ROWS + 4, offset, anchor="end")
    return canvas.png()


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown showing `png` inline (Dagster renders it in the asset's metadata)."""
    encoded = base64.b64encode(png).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"
