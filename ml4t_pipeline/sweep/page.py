"""The sweep page (`sweep.html`): overfitting figures, metric heatmaps, ranks, the variants.

One self-contained page like the tear sheet (`report.html`, whose helpers it uses): the PBO
and deflated Sharpe with what they mean, a heat table per metric over the grid's two heatmap
axes (with more than two swept paths, each cell shows the best variant of that cell by the
selection metric), the CSCV chart (`charts.overfitting_chart`) and the variants ranked by the
selection metric. The same sweep gives the same bytes.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ml4t_pipeline.report import charts
from ml4t_pipeline.report.html import FORMATS, NONE, heat_colour, image, page, table
from ml4t_pipeline.sweep.run import Sweep

#: the metric heat tables: label, figure, format
HEAT_METRICS = (
    ("Sharpe ratio", "sharpe", "ratio"),
    ("Total return", "total_return", "percent"),
    ("Max drawdown", "max_drawdown", "percent"),
)
#: the variants table's figures
VARIANT_COLUMNS = (
    ("Sharpe", "sharpe", "ratio"),
    ("Sortino", "sortino", "ratio"),
    ("Total return", "total_return", "percent"),
    ("Max drawdown", "max_drawdown", "percent"),
    ("Final equity", "final_equity", "money"),
    ("Trades", "trades", "count"),
)
MAX_ROWS = 50  # variants listed on the page (variants.parquet holds them all)
_LABELS = {key: label for label, key, _ in (*HEAT_METRICS, *VARIANT_COLUMNS)}


def value_text(value: Any) -> str:
    """A swept value as the page shows it (YAML-like: numbers plain, mappings as JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return json.dumps(value, sort_keys=True)


def render_sweep(sweep: Sweep) -> str:
    grid = sweep.grid
    best = sweep.variants[sweep.best]
    bars = int(sweep.outcomes[0].equity.shape[0]) if sweep.outcomes else 0
    swept = ", ".join(f"{p} ({len(grid.values[p])})" for p in grid.paths)
    meta = (
        f"{len(sweep.variants)} variants ({grid.mode}) of {swept}; {bars:,} bars each; "
        f"best by {_LABELS.get(grid.select, grid.select)}: variant {best.number} "
        f"({best.label()})"
    )
    parts = [
        "<h1>Parameter sweep</h1>",
        f'<p class="meta">{html.escape(meta)}</p>',
        '<p><a href="best/report.html">The best variant\'s tear sheet</a> · its config: '
        "best.yaml · every variant: variants.parquet, equity.parquet</p>",
        "<h2>Selection luck</h2>",
        _overfitting_table(sweep),
        "<h2>Metrics over the grid</h2>",
        _heat_tables(sweep),
    ]
    if sweep.pbo is not None:
        result = sweep.pbo
        periods = float(sweep.best_result.metrics.get("periods_per_year", 252.0))
        scale = math.sqrt(periods)
        n = len(sweep.variants)
        # relative ranks in (0, 1]: 1 is the best of the N in that half
        is_rank = _relative_ranks(result.is_sharpe) / n
        oos_rank = _relative_ranks(result.oos_sharpe) / n
        png = charts.overfitting_chart(
            is_rank,
            oos_rank,
            np.asarray(result.is_sharpe_best) * scale,
            np.asarray(result.oos_sharpe_best) * scale,
            np.asarray(result.logits),
        )
        parts += [
            "<h2>In sample vs out of sample</h2>",
            '<p class="note">Each of the '
            f"{result.n_splits} splits of the bars into {result.n_blocks} blocks ranks every "
            "variant on one half (in sample) and on the other (out of sample). Ranks that "
            "keep to the diagonal mean the grid has real structure; a flat cloud means the "
            "best in-sample variant is a lottery ticket out of sample.</p>",
            image(png, "CSCV ranks and the in-sample pick out of sample"),
        ]
    parts += ["<h2>Variants</h2>", _variants_table(sweep)]
    return page("Parameter sweep", "".join(parts))


def _overfitting_table(sweep: Sweep) -> str:
    periods = float(sweep.best_result.metrics.get("periods_per_year", 252.0))
    rows: list[tuple[str, str]] = [("Trials (variants)", f"{len(sweep.variants):,}")]
    if sweep.pbo is not None:
        rows += [
            ("Probability of backtest overfitting (PBO)", FORMATS["percent"](sweep.pbo.pbo)),
            ("The pick loses out of sample", FORMATS["percent"](sweep.pbo.prob_oos_loss)),
            ("CSCV blocks / splits", f"{sweep.pbo.n_blocks} / {sweep.pbo.n_splits}"),
        ]
    else:
        rows.append(("PBO", f"{NONE} ({sweep.pbo_note})"))
    dsr = sweep.deflated
    if dsr is not None:
        scale = math.sqrt(periods)
        rows += [
            (
                "Deflated Sharpe ratio (P[true Sharpe > luck])",
                FORMATS["ratio"](dsr.deflated_sharpe),
            ),
            ("Probabilistic Sharpe ratio vs 0", FORMATS["ratio"](dsr.psr_zero)),
            ("Best Sharpe (annualised)", FORMATS["ratio"](dsr.sharpe * scale)),
            (
                "Expected best of the trials by luck",
                FORMATS["ratio"](dsr.expected_max_sharpe * scale),
            ),
        ]
    else:
        rows.append(("Deflated Sharpe ratio", f"{NONE} ({sweep.deflated_note})"))
    note = (
        '<p class="note">PBO near 50% means the in-sample winner is no better than a coin '
        "flip out of sample; near 0% the ranking holds. A deflated Sharpe ratio under 0.95 "
        "means the best Sharpe is within what picking the best of this many trials gives by "
        "luck.</p>"
    )
    return table(["", "Value"], rows) + note


def _heat_tables(sweep: Sweep) -> str:
    grid = sweep.grid
    axes = grid.heatmap
    if len(axes) < 2:  # one swept path: one row
        axes = (grid.paths[0],)
    rows_path = axes[0]
    cols_path = axes[1] if len(axes) > 1 else None
    row_values = list(grid.values[rows_path])
    col_values = list(grid.values[cols_path]) if cols_path else [None]
    cells = _cells(sweep, rows_path, cols_path)
    out = []
    for label, key, kind in HEAT_METRICS:
        found = [
            v
            for v in (sweep.outcomes[n].figures.get(key) for n in cells.values() if n is not None)
            if isinstance(v, int | float) and math.isfinite(v)
        ]
        scale = max((abs(float(v)) for v in found), default=0.0)
        centre = float(np.median(found)) if key == "sharpe" and found else 0.0
        body = []
        for r in row_values:
            line = [f"<td>{html.escape(value_text(r))}</td>"]
            for c in col_values:
                number = cells.get((_key(r), _key(c)))
                value = sweep.outcomes[number].figures.get(key) if number is not None else None
                text = FORMATS[kind](value)
                if isinstance(value, int | float) and math.isfinite(value):
                    shade = heat_colour(float(value) - centre, max(scale, 1e-12))
                    mark = " ★" if number == sweep.best else ""
                    line.append(f'<td style="background:{shade}">{text}{mark}</td>')
                else:
                    line.append(f"<td>{text}</td>")
            body.append(line)
        header = [f"{rows_path} \\ {cols_path}" if cols_path else rows_path]
        header += [value_text(c) for c in col_values] if cols_path else [label]
        out.append(
            f"<div><h3>{html.escape(label)}</h3>{table(header, body, cls='heat', raw=True)}</div>"
        )
    note = ""
    if len(grid.paths) > len(axes):
        note = (
            '<p class="note">More paths are swept than the two axes show: each cell is the '
            f"best variant of that cell by {_LABELS.get(grid.select, grid.select)}.</p>"
        )
    return f'<div class="cols">{"".join(out)}</div>{note}<p class="note">★ the best variant.</p>'


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _cells(sweep: Sweep, rows_path: str, cols_path: str | None) -> dict[tuple[str, str], int]:
    """The variant shown in each (row value, column value) cell: the best by the selection
    metric among the variants there (the lowest number on a tie)."""
    select = sweep.grid.select
    found: dict[tuple[str, str], int] = {}
    for variant in sweep.variants:
        cell = (
            _key(variant.values[rows_path]),
            _key(variant.values[cols_path]) if cols_path else _key(None),
        )
        if cell not in found or _score(sweep, variant.number, select) > _score(
            sweep, found[cell], select
        ):
            found[cell] = variant.number
    return found


def _score(sweep: Sweep, number: int, select: str) -> float:
    value = sweep.outcomes[number].figures.get(select)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return -math.inf


def _relative_ranks(sharpes: np.ndarray) -> np.ndarray:
    """Per split (row), each variant's rank by Sharpe, N for the best and 1 for the worst
    (ties in column order: the chart needs positions, not the tie rule of PBO)."""
    order = np.argsort(np.asarray(sharpes), axis=1, kind="stable")
    return np.asarray(np.argsort(order, axis=1, kind="stable") + 1, dtype=np.float64)


def _variants_table(sweep: Sweep) -> str:
    order = sorted(
        range(len(sweep.variants)), key=lambda n: (-_score(sweep, n, sweep.grid.select), n)
    )
    header = ["Variant", *sweep.grid.paths, *(label for label, _, _ in VARIANT_COLUMNS)]
    rows: list[Sequence[str]] = []
    for n in order[:MAX_ROWS]:
        variant, figures = sweep.variants[n], sweep.outcomes[n].figures
        rows.append(
            [
                f"{n}{' ★' if n == sweep.best else ''}",
                *(value_text(variant.values[p]) for p in sweep.grid.paths),
                *(FORMATS[kind](figures.get(key)) for _, key, kind in VARIANT_COLUMNS),
            ]
        )
    more = len(order) - MAX_ROWS
    note = f'<p class="note">{more:,} more in variants.parquet.</p>' if more > 0 else ""
    return table(header, rows) + note
