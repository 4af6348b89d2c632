"""Inputs built from bokeh-sampledata's real daily stocks, once per session.

`real_dir`: the whole source (2000-03-01 .. 2013-03-01, five tickers). `split_2005_dir`: AAPL,
IBM and MSFT from 2004-10-01 to 2005-06-01, around AAPL's 2:1 split on 2005-02-28 (small
enough for backtests that run in well under a second).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ml4t_pipeline.sample_data.real_stocks import write_real_inputs

#: The splits of these five stocks between 2000-03 and 2013-03, from the companies' own
#: announcements (new shares per old share at the ex-date); not derived from the data.
KNOWN_SPLITS = {
    ("AAPL", dt.date(2000, 6, 21)): 2.0,
    ("AAPL", dt.date(2005, 2, 28)): 2.0,
    ("MSFT", dt.date(2003, 2, 18)): 2.0,
}
SPLIT_2005_TICKERS = ("AAPL", "IBM", "MSFT")
SPLIT_2005_START = dt.date(2004, 10, 1)
SPLIT_2005_END = dt.date(2005, 6, 1)
AAPL_2005_SPLIT = dt.datetime(2005, 2, 28, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def real_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_real_inputs(tmp_path_factory.mktemp("real"), dividends=True)


@pytest.fixture(scope="session")
def split_2005_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_real_inputs(
        tmp_path_factory.mktemp("real-2005"),
        tickers=SPLIT_2005_TICKERS,
        start=SPLIT_2005_START,
        end=SPLIT_2005_END,
    )
