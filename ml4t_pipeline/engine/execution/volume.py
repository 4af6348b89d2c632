"""How much of a bar's volume fills may take: the participation cap, per asset per bar.

The broker asks `room` before each fill bound by volume and tells `took` what the fill took;
the book forgets the shares taken when the bar changes. It is the only owner of that count.
"""

from __future__ import annotations

import math

from ml4t_pipeline.engine.execution.orders import MAX_QTY


class VolumeBook:
    """Shares each asset's fills took in the current bar, against `max_participation`."""

    __slots__ = ("_bar", "_share", "_used")

    def __init__(self, max_participation: float | None) -> None:
        self._share = max_participation  # None: the whole volume of a bar
        self._used: dict[int, int] = {}  # asset -> shares its fills took in `_bar`
        self._bar = -1

    def room(self, bar: int, asset: int, volume: float) -> int:
        """The shares `asset` may still trade in `bar`: `max_participation` of its volume
        (all of it without a cap) less what its fills of the bar took; nothing on a bar
        whose volume is zero or unknown (so no fill ever comes at zero impact)."""
        if self._bar != bar:
            self._used.clear()
            self._bar = bar
        if not volume > 0:
            return 0
        room = MAX_QTY if self._share is None else math.floor(self._share * volume)
        return max(room - self._used.get(asset, 0), 0)

    def took(self, asset: int, shares: int) -> None:
        """A fill of `asset` in the current bar took `shares` (unsigned)."""
        self._used[asset] = self._used.get(asset, 0) + shares
