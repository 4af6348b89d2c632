"""The equity + drawdown chart: a well-formed SVG with its title, axes and curves, for a month,
for many months, and for the awkward cases (gaps, one bar, no bars, a flat line)."""

import base64
import datetime as dt
import xml.etree.ElementTree as ET

import numpy as np
import polars as pl
import pytest

from ml4t_pipeline.plots import equity_drawdown_svg, svg_markdown

SVG = "{http://www.w3.org/2000/svg}"
START = 1_000_000.0


def _equity(days: int, *, seed: int = 0, start: dt.date = dt.date(2024, 1, 1)) -> pl.DataFrame:
    first = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)
    stamps = pl.datetime_range(
        first, first + dt.timedelta(days=days - 1), "1d", time_zone="UTC", eager=True
    )
    walk = np.cumsum(np.random.default_rng(seed).standard_normal(days)) * 5_000.0
    return pl.DataFrame({"timestamp": stamps, "equity": START + walk})


def _texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_a_month_has_title_axes_ticks_and_both_curves() -> None:
    svg = equity_drawdown_svg(_equity(31), start_equity=START, title="core 2024-01")
    root = ET.fromstring(svg)
    assert (root.get("width"), root.get("height")) == ("640", "360")
    texts = _texts(svg)
    assert texts[0] == "core 2024-01"
    assert {"equity", "drawdown %", "Jan", "2024-Jan"} <= set(texts)
    assert "1,000,000" in texts  # the start equity line sits on a round tick here
    paths = [p.get("d") or "" for p in root.iter(f"{SVG}path")]
    assert any(p.count("L") == 30 for p in paths)  # the equity line through all 31 bars
    assert any(p.endswith("Z") for p in paths)  # the drawdown area


def test_many_months_are_labelled_by_month() -> None:
    svg = equity_drawdown_svg(_equity(300), start_equity=START, title="core, all months")
    assert {"2024", "Mar", "May"} <= set(_texts(svg))


def test_a_drawdown_is_measured_from_the_peak_before_the_month() -> None:
    flat = _equity(10).with_columns(pl.lit(START).alias("equity"))
    svg = equity_drawdown_svg(flat, start_equity=START, title="t", peak_before=2 * START)
    assert "\u221240" in _texts(svg)  # the axis reaches 50% below the earlier peak
    alone = equity_drawdown_svg(flat, start_equity=START, title="t")
    assert "\u221240" not in _texts(alone)  # never below its own start


@pytest.mark.parametrize(
    "equity",
    [
        _equity(31).with_columns(
            pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise("equity").alias("equity")
        ),
        _equity(31).with_columns(
            pl.when(pl.int_range(pl.len()) == 5).then(np.nan).otherwise("equity").alias("equity")
        ),
        _equity(1),
        _equity(0),
        _equity(31).with_columns(pl.lit(START).alias("equity")),
    ],
    ids=["null", "nan", "one bar", "no bars", "flat"],
)
def test_awkward_curves_still_draw(equity: pl.DataFrame) -> None:
    svg = equity_drawdown_svg(equity, start_equity=START, title="awkward")
    assert "nan" not in svg.lower()
    assert "inf" not in svg.lower()
    assert _texts(svg)[0] == "awkward"


def test_the_markdown_embeds_the_svg() -> None:
    svg = equity_drawdown_svg(_equity(5), start_equity=START, title="<a & b>")
    markdown = svg_markdown(svg, "equity 2024-01-01|core")
    prefix = "![equity 2024-01-01|core](data:image/svg+xml;base64,"
    assert markdown.startswith(prefix)
    assert markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix) : -1]).decode() == svg
    assert _texts(svg)[0] == "<a & b>"  # escaped in the document, read back intact
