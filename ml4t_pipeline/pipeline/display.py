"""How numbers read in the Dagster UI: percentages, ratios and money, rounded for people.

The UI prints a float metadata value as JavaScript prints the number (`-0.058825600150055335`)
and plots int and float values across partitions and materializations. Headline values are
therefore floats rounded here, once, with the unit in the key's name (`return_pct: -5.88`,
`sharpe: -4.22`, `final_equity: 941174.4` in cents); Markdown tables format the same numbers
as text (`-5.88 %`, `941,174.40`). Only what is shown is rounded: the stored tables,
`summary.json` and the check results keep every digit. A value that is not finite (a ratio
of a flat curve, a return over no bars) is shown as null, never as a made-up number.
"""

import base64
import math

import dagster as dg

PERCENT_DECIMALS = 2
"""Returns and drawdowns in per cent, two decimals (-5.88 means -5.88 %)."""
RATIO_DECIMALS = 2
"""Sharpe, Sortino and the other dimensionless ratios."""
MONEY_DECIMALS = 2
"""Cash, equity and P&L to the cent."""


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _rounded(value: float | None, decimals: int) -> dg.MetadataValue:
    finite = _finite(value)
    if finite is None:
        return dg.MetadataValue.null()
    # + 0.0 turns a rounded -0.0 into 0.0
    return dg.MetadataValue.float(round(finite, decimals) + 0.0)


def percent(fraction: float | None) -> dg.MetadataValue:
    """A fraction (0.05) as a float in per cent (5.0), to `PERCENT_DECIMALS`."""
    finite = _finite(fraction)
    return _rounded(None if finite is None else 100.0 * finite, PERCENT_DECIMALS)


def ratio(value: float | None) -> dg.MetadataValue:
    return _rounded(value, RATIO_DECIMALS)


def money(value: float | None) -> dg.MetadataValue:
    return _rounded(value, MONEY_DECIMALS)


def percent_text(fraction: float | None) -> str:
    """`-5.88 %` for -0.0588..., `n/a` when not finite (for Markdown tables)."""
    finite = _finite(fraction)
    return "n/a" if finite is None else f"{100.0 * finite + 0.0:,.{PERCENT_DECIMALS}f} %"


def money_text(value: float | None) -> str:
    """`941,174.40`, `n/a` when not finite (for Markdown tables)."""
    finite = _finite(value)
    return "n/a" if finite is None else f"{round(finite, MONEY_DECIMALS) + 0.0:,.{MONEY_DECIMALS}f}"


def performance_metadata(
    *, final_equity: float, metrics: dict[str, float]
) -> dict[str, dg.MetadataValue]:
    """The headline of a track record, as `backtest` and `performance_summary` show it:
    final equity in cents, total return and max drawdown in per cent, Sharpe and Sortino to
    two decimals, closed trades and win rate (per cent). `metrics` is `compute_metrics`'s
    dictionary (fractions); a metric it lacks (no bars) shows as null."""
    return {
        "final_equity": money(final_equity),
        "return_pct": percent(metrics.get("total_return")),
        "max_drawdown_pct": percent(metrics.get("max_drawdown")),
        "sharpe": ratio(metrics.get("sharpe")),
        "sortino": ratio(metrics.get("sortino")),
        "trades_closed": dg.MetadataValue.int(int(metrics.get("n_trades", 0.0))),
        "win_rate_pct": percent(metrics.get("win_rate")),
    }


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown showing `png` inline (Dagster renders it in the asset's metadata)."""
    encoded = base64.b64encode(png).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"
