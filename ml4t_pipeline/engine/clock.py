"""Where the run is in time. The loop is the only writer: nothing else advances time.

The broker, the market views handed to strategies and the risk context read the clock; the
loop moves it one bar at a time (`Engine._run_chunk`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ml4t_pipeline.engine.feed import Panel

Decision = tuple[Mapping[str, np.ndarray], int]  # signal arrays (bars x assets) and a row


def _no_chunk() -> Panel:
    """The clock's chunk before the first one: no bars, no assets."""
    empty = np.empty((0, 0))
    return Panel(
        timestamps=np.empty(0, np.int64),
        open=empty,
        high=empty,
        low=empty,
        close=empty,
        volume=empty,
        has_bar=np.empty((0, 0), dtype=bool),
        signals={},
        context={},
    )


class Clock:
    """The current chunk of bars, the current bar within it, and the close the last
    decisions were made at."""

    __slots__ = ("bar", "decision", "panel", "row")

    def __init__(self, *, bar: int = 0) -> None:
        self.panel: Panel = _no_chunk()  # the chunk being run (set by the loop per chunk)
        self.row = 0  # the current bar's row in `panel`
        self.bar = bar  # the current bar's global index (counted across chained runs)
        # the signals of the last close: fills booked now were decided on them (the orders
        # filled at an open were decided at the close before it)
        self.decision: Decision = ({}, 0)
