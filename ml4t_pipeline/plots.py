"""Small PNG charts for Dagster metadata: rendered off-screen (Agg), embedded as base64 markdown.

matplotlib is imported on first use, so loading the Dagster definitions does not pay for it.
No pyplot: each chart is its own `Figure`, so nothing global is shared between runs.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import polars as pl


def equity_drawdown_png(
    equity: pl.DataFrame, *, start_equity: float, title: str, peak_before: float | None = None
) -> bytes:
    """Equity curve (top) and drawdown from the running peak (bottom) as PNG bytes.

    `peak_before` is the equity peak reached before the first bar (a continued month), so the
    drawdown is measured from the true running peak; defaults to `start_equity`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    stamps = equity["timestamp"].dt.replace_time_zone(None).to_numpy()
    values = equity["equity"].to_numpy()
    peak = np.maximum.accumulate(np.r_[peak_before or start_equity, values])[1:]
    drawdown = values / peak - 1.0

    fig = Figure(figsize=(8, 4.5), dpi=80)  # a fixed layout: constrained layout doubles the cost
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.13, right=0.98, top=0.93, bottom=0.11, hspace=0.08)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    top.plot(stamps, values, color="tab:blue", linewidth=1.2)
    top.axhline(start_equity, color="grey", linewidth=0.6, linestyle="--")
    top.set_ylabel("equity")
    top.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    top.set_title(title)
    bottom.fill_between(stamps, drawdown * 100.0, 0.0, color="tab:red", alpha=0.4, linewidth=0)
    bottom.set_ylabel("drawdown %")
    dates = ConciseDateFormatter(bottom.xaxis.get_major_locator())  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_formatter(dates)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown showing `png` inline (Dagster renders it in the asset's metadata)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
