"""The research report as one self-contained HTML page (inline CSS and PNG images, no script).

`render_report` gives the full tear sheet, `render_summary` the small view a notebook shows
(headline table and equity chart). Both are pure functions of `ReportInputs`: the same tables
and summary give the same bytes. Returns and drawdowns read in per cent, ratios to two
decimals, money to the cent; a figure that is undefined (no benchmark, a flat curve) reads "—".
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from ml4t_pipeline.engine.results.metrics import bar_returns, drawdowns
from ml4t_pipeline.report import charts, stats
from ml4t_pipeline.report.drawing import Drawing, Drawn, InProcess
from ml4t_pipeline.report.inputs import ReportInputs

NONE = "—"
TOP_ASSETS = 10  # attribution by asset: the best and the worst this many
ROLLING_POINTS = 800  # the rolling windows drawn: about one per pixel of the chart
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: the headline rows: label, key of the headline figures, format
HEADLINE_ROWS = (
    ("Total return", "total_return", "percent"),
    ("CAGR", "cagr", "percent"),
    ("Volatility (annualised)", "volatility", "percent"),
    ("Sharpe ratio", "sharpe", "ratio"),
    ("Sortino ratio", "sortino", "ratio"),
    ("Max drawdown", "max_drawdown", "percent"),
)
#: the benchmark-relative rows (summary.json's benchmark section)
RELATIVE_ROWS = (
    ("Excess return", "excess_return", "percent"),
    ("Beta", "beta", "ratio"),
    ("Alpha (annualised)", "alpha", "percent"),
    ("Tracking error", "tracking_error", "percent"),
    ("Information ratio", "information_ratio", "ratio"),
    ("Correlation", "correlation", "ratio"),
)
CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;font-size:14px;
color:#222;max-width:960px;margin:24px auto;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:16px 0 6px}.meta{color:#666;margin-top:0}
table{border-collapse:collapse;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{padding:3px 9px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#f6f6f6;font-weight:600}
table.heat td{min-width:44px;font-size:12px}.cols{display:flex;flex-wrap:wrap;gap:28px}
img{max-width:100%;height:auto}.note{color:#666;font-size:12px}
"""


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def percent(value: Any) -> str:
    """0.1234 -> "12.34%"; "—" when undefined."""
    finite = _finite(value)
    return NONE if finite is None else f"{100.0 * finite + 0.0:,.2f}%"


def ratio(value: Any) -> str:
    """Two decimals; "∞" for a ratio without a loss, "—" when undefined."""
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    finite = _finite(value)
    return NONE if finite is None else f"{round(finite, 2) + 0.0:,.2f}"


def money(value: Any) -> str:
    """To the cent with thousands separators; "—" when undefined."""
    finite = _finite(value)
    return NONE if finite is None else f"{round(finite, 2) + 0.0:,.2f}"


def count(value: Any) -> str:
    return f"{int(value):,}"


def bars(value: Any) -> str:
    finite = _finite(value)
    return NONE if finite is None else f"{finite:,.1f}"


FORMATS: Mapping[str, Callable[[Any], str]] = {
    "percent": percent,
    "ratio": ratio,
    "money": money,
    "count": count,
    "bars": bars,
}


def table(
    header: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "", raw: bool = False
) -> str:
    """An HTML table of text cells (escaped unless `raw`: then each cell is (attrs, html))."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = row if raw else [f"<td>{html.escape(c)}</td>" for c in row]
        body.append(f"<tr>{''.join(cells)}</tr>")
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _stamp_format(times: pl.Series) -> str:
    """Dates for daily or coarser bars, date and time for intraday ones."""
    midnight = times.dt.hour().eq(0).all() and times.dt.minute().eq(0).all()
    return "%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M"


class _Run:
    """The inputs and the numbers several sections share."""

    def __init__(self, inputs: ReportInputs) -> None:
        self.inputs = inputs
        equity = inputs.equity.sort("timestamp") if inputs.equity.height else inputs.equity
        self.times = equity["timestamp"]
        self.times_us = self.times.dt.epoch("us").to_numpy()
        self.values = equity["equity"].to_numpy()
        self.start = inputs.start_equity
        self.periods = stats.annualization(self.times)
        self.returns = bar_returns(self.values, self.start)
        self.drawdown = drawdowns(self.values, self.start)
        column = inputs.benchmark_values
        self.benchmark = None if column is None else column.cast(pl.Float64).to_numpy()
        self.labels = self.times.dt.strftime(_stamp_format(self.times)).to_list()
        self.equity = equity

    def label(self, bar: int | None) -> str:
        if bar is None:
            return "not recovered"
        return "start" if bar < 0 else self.labels[bar]


def _headline_table(run: _Run) -> str:
    mine = stats.headline(run.values, run.start, run.periods)
    theirs: Mapping[str, Any] = {}
    if run.benchmark is not None:
        computed = stats.headline(run.benchmark, run.start, run.periods)
        theirs = {key: getattr(computed, key) for _, key, _ in HEADLINE_ROWS}
    section = run.inputs.benchmark_summary
    theirs = {**theirs, **{k: section[k] for _, k, _ in HEADLINE_ROWS if k in section}}
    rows = [
        (label, FORMATS[kind](getattr(mine, key)), FORMATS[kind](theirs.get(key)))
        for label, key, kind in HEADLINE_ROWS
    ]
    rows += [(label, NONE, FORMATS[kind](section.get(key))) for label, key, kind in RELATIVE_ROWS]
    header = ["", "Strategy", "Benchmark"]
    if isinstance(section.get("kind"), str):
        header[2] = f"Benchmark ({section['kind']})"
    return table(header, rows)


def _overview(run: _Run) -> str:
    summary = run.inputs.summary
    final = run.values[-1] if run.values.shape[0] else math.nan
    parts = [
        f"{run.labels[0]} to {run.labels[-1]}" if run.labels else "no bars",
        f"{run.values.shape[0]:,} bars ({run.periods:g} a year)",
        f"start equity {money(run.start)}",
        f"final equity {money(final)}",
    ]
    if isinstance(summary.get("fills"), int):
        parts.append(f"{summary['fills']:,} fills")
    return f'<p class="meta">{html.escape(" · ".join(parts))}</p>'


def _drawdown_table(run: _Run) -> str:
    periods = stats.drawdown_periods(run.values, run.start)
    if not periods:
        return '<p class="note">The equity never fell below its running peak.</p>'
    rows = [
        (
            str(k),
            run.label(p.start),
            run.label(p.trough),
            run.label(p.recovery),
            percent(p.depth),
            count(p.length),
        )
        for k, p in enumerate(periods, start=1)
    ]
    header = ["#", "Peak", "Trough", "Recovery", "Depth", "Length (bars)"]
    return table(header, rows)


def heat_colour(value: float, scale: float) -> str:
    """White at 0, green for gains and red for losses, saturating at `scale`."""
    share = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    target = (26, 152, 80) if value >= 0 else (215, 48, 39)
    mix = [round(255 + (c - 255) * share * 0.75) for c in target]
    return "#{:02x}{:02x}{:02x}".format(*mix)


def _returns_section(run: _Run) -> str:
    monthly = stats.period_returns(run.times, run.values, run.start, "month")
    annual = stats.period_returns(run.times, run.values, run.start, "year")
    by_month = dict(zip(monthly["period"].to_list(), monthly["return"].to_list(), strict=True))
    finite = [abs(v) for v in by_month.values() if math.isfinite(v)]
    scale = max(finite) if finite else 0.0
    years = annual["period"].to_list()
    yearly = dict(zip(years, annual["return"].to_list(), strict=True))
    rows = []
    for year in years:
        cells = [f"<td>{year}</td>"]
        for m in range(1, 13):
            value = by_month.get(f"{year}-{m:02d}")
            if value is None:
                cells.append("<td></td>")
            else:
                colour = heat_colour(value, scale) if math.isfinite(value) else "#ffffff"
                cells.append(f'<td style="background:{colour}">{percent(value)}</td>')
        cells.append(f"<td><b>{percent(yearly[year])}</b></td>")
        rows.append(cells)
    heat = table(["Year", *MONTHS, "Year"], rows, cls="heat", raw=True)
    header = ["Year", "Strategy"]
    bench_yearly: dict[str, float] = {}
    if run.benchmark is not None:
        header.append("Benchmark")
        bench = stats.period_returns(run.times, run.benchmark, run.start, "year")
        bench_yearly = dict(zip(bench["period"].to_list(), bench["return"].to_list(), strict=True))
    annual_rows = [
        [year, percent(yearly[year])] + ([percent(bench_yearly.get(year))] if bench_yearly else [])
        for year in years
    ]
    return (
        "<h3>Monthly returns</h3>" + heat + "<h3>Annual returns</h3>" + table(header, annual_rows)
    )


def _submit_charts(run: _Run, drawing: Drawing) -> tuple[Drawn, Drawn]:
    """The two figures, submitted to `drawing` (their numbers are computed here)."""
    bench = None
    if run.benchmark is not None:
        bench = charts.Curve(times_us=run.times_us, values=run.benchmark, label="benchmark")
    strategy = charts.Curve(times_us=run.times_us, values=run.values, label="strategy")
    equity = drawing.submit(charts.equity_chart, strategy, run.drawdown, benchmark=bench)
    every = max(1, run.values.shape[0] // ROLLING_POINTS)
    mine = stats.rolling(run.returns, run.periods, every=every)
    bench_vol = None
    if run.benchmark is not None:
        bench_returns = bar_returns(run.benchmark, run.start)
        bench_vol = stats.rolling(bench_returns, run.periods, every=every).volatility
    turnover = stats.monthly_turnover(run.equity, run.inputs.fills)
    month_starts = (
        turnover["period"].str.to_datetime("%Y-%m", time_zone="UTC").dt.epoch("us").to_numpy()
    )
    rolling = drawing.submit(
        charts.rolling_chart,
        run.times_us,
        window=mine.window,
        rolling_us=run.times_us[mine.bars],
        sharpe=mine.sharpe,
        volatility=mine.volatility,
        exposure=stats.exposure(run.equity),
        month_starts_us=month_starts,
        turnover=turnover["turnover"].to_numpy(),
        benchmark_volatility=bench_vol,
    )
    return equity, rolling


def _trade_table(trades: pl.DataFrame) -> str:
    s = stats.trade_stats(trades)
    rows = [
        ("Closed trades", count(s.closed)),
        ("Open at the end", count(s.open)),
        ("Win rate", percent(s.win_rate)),
        ("Payoff ratio (mean win / mean loss)", ratio(s.payoff_ratio)),
        ("Profit factor (gross wins / gross losses)", ratio(s.profit_factor)),
        ("Mean P&L per trade", money(s.avg_pnl)),
        ("Mean holding time (bars)", bars(s.avg_bars_held)),
        ("Best trade", f"{money(s.best_pnl)} ({s.best_asset})" if s.best_asset else NONE),
        ("Worst trade", f"{money(s.worst_pnl)} ({s.worst_asset})" if s.worst_asset else NONE),
    ]
    return table(["", "Closed trades"], rows)


ATTRIBUTION_HEADER = ("Trades", "Win rate", "P&L", "Costs", "Mean return")


def _attribution_rows(frame: pl.DataFrame) -> list[list[str]]:
    return [
        [
            str(r["key"]),
            count(r["trades"]),
            percent(r["win_rate"]),
            money(r["pnl"]),
            money(r["costs"]),
            percent(r["avg_return_pct"]),
        ]
        for r in frame.iter_rows(named=True)
    ]


def _attribution_section(attribution: pl.DataFrame) -> str:
    parts = [
        '<p class="note">P&amp;L of every trade, open ones at their last mark; costs are '
        "commission and slippage.</p>"
    ]
    titles = (("exit_reason", "Exit reason"), ("exit_rule", "Rule"), ("month", "Exit month"))
    for dim, title in titles:
        part = attribution.filter(pl.col("dimension") == dim)
        parts.append(f"<h3>By {title.lower()}</h3>")
        parts.append(table([title, *ATTRIBUTION_HEADER], _attribution_rows(part)))
    assets = attribution.filter(pl.col("dimension") == "asset_id").sort(
        ["pnl", "key"], descending=[True, False]
    )
    if assets.height > 2 * TOP_ASSETS:
        best, worst = assets.head(TOP_ASSETS), assets.tail(TOP_ASSETS)
        parts.append(f"<h3>By asset: the {TOP_ASSETS} best and the {TOP_ASSETS} worst</h3>")
        rows = [*_attribution_rows(best), ["…"] * 6, *_attribution_rows(worst)]
        parts.append(table(["Asset", *ATTRIBUTION_HEADER], rows))
    else:
        parts.append("<h3>By asset</h3>")
        parts.append(table(["Asset", *ATTRIBUTION_HEADER], _attribution_rows(assets)))
    return "".join(parts)


def _rejections_section(rejections: pl.DataFrame) -> str:
    if rejections.height == 0:
        return '<p class="note">No order was rejected.</p>'
    by_reason = stats.rejections_by_reason(rejections)
    rows = [
        (str(r["reason"]), count(r["rows"]), count(r["shares"]))
        for r in by_reason.iter_rows(named=True)
    ]
    return table(["Reason", "Rejections", "Shares refused"], rows)


def page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
        f"<body>{body}</body></html>\n"
    )


@dataclass(frozen=True, slots=True)
class PendingReport:
    """A tear sheet whose figures are being drawn; `html()` waits for them and renders it."""

    run: _Run
    figures: tuple[Drawn, Drawn] | None

    def html(self) -> str:
        run, inputs = self.run, self.run.inputs
        # the tables first: the figures may still be drawing meanwhile
        headline, drawdowns, returns = (
            _headline_table(run),
            _drawdown_table(run),
            _returns_section(run),
        )
        trades = _trade_table(inputs.trades)
        attribution = _attribution_section(inputs.attribution)
        rejections = _rejections_section(inputs.rejections)
        equity_img = rolling_img = ""
        if self.figures is not None:
            equity_png, rolling_png = (f.result() for f in self.figures)
            equity_img = image(equity_png, "equity, log equity and drawdown")
            rolling_img = image(rolling_png, "rolling Sharpe, volatility, exposure and turnover")
        sections = [
            f"<h1>{html.escape(inputs.title)}</h1>",
            _overview(run),
            '<section id="headline"><h2>Headline</h2>',
            headline,
            "</section>",
            '<section id="equity"><h2>Equity and drawdown</h2>',
            equity_img,
            "<h3>Top drawdowns</h3>",
            drawdowns,
            "</section>",
            '<section id="returns"><h2>Returns by month and year</h2>',
            returns,
            "</section>",
            '<section id="rolling"><h2>Rolling risk, exposure and turnover</h2>',
            rolling_img,
            "</section>",
            '<section id="trades"><h2>Trades</h2>',
            trades,
            "</section>",
            '<section id="attribution"><h2>P&amp;L attribution</h2>',
            attribution,
            "</section>",
            '<section id="rejections"><h2>Rejections by reason</h2>',
            rejections,
            "</section>",
            '<p class="note">Written by ml4t-pipeline from the run\'s tables and summary.json.</p>',
        ]
        return page(inputs.title, "\n".join(sections))


def start_report(inputs: ReportInputs, drawing: Drawing | None = None) -> PendingReport:
    """Submit the tear sheet's figures to `drawing` (default: draw here, now) and return what
    renders the page once they are drawn."""
    run = _Run(inputs)
    figures = _submit_charts(run, drawing or InProcess()) if run.values.shape[0] else None
    return PendingReport(run, figures)


def render_report(inputs: ReportInputs, drawing: Drawing | None = None) -> str:
    """The full tear sheet of one run."""
    return start_report(inputs, drawing).html()


def render_summary(inputs: ReportInputs) -> str:
    """A notebook's view of a run: the headline table and a small equity + drawdown chart."""
    run = _Run(inputs)
    parts = [_overview(run), _headline_table(run)]
    if run.values.shape[0]:
        parts.append(equity_image(inputs, height_in=3.4))
    return f"<div>{''.join(parts)}</div>"


def equity_png(inputs: ReportInputs, *, height_in: float = 3.6, title: str = "") -> bytes:
    """Equity (against the benchmark when there is one) and drawdown: a small PNG."""
    run = _Run(inputs)
    bench = None
    if run.benchmark is not None:
        bench = charts.Curve(times_us=run.times_us, values=run.benchmark, label="benchmark")
    strategy = charts.Curve(times_us=run.times_us, values=run.values, label="strategy")
    return charts.equity_chart(
        strategy, run.drawdown, benchmark=bench, log_panel=False, height_in=height_in, title=title
    )


def equity_image(inputs: ReportInputs, *, height_in: float = 3.6) -> str:
    return image(equity_png(inputs, height_in=height_in), "equity and drawdown")
