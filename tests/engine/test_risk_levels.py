"""The protective levels (`engine/risk/levels.py`): what triggers, against a brute-force oracle.

`ProtectiveLevels` keeps derived arrays (the live assets, the level a low or a high reaches)
in step with the levels so that a bar without a hit is cheap. Whatever sequence of entries,
tightenings and closes came before, `triggered` must find exactly what a scan of every asset
over the raw levels finds.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ml4t_pipeline.engine import OrderReason
from ml4t_pipeline.engine.risk.levels import ProtectiveLevels, Triggered
from ml4t_pipeline.engine.risk.state import RiskState

N_ASSETS = 4
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None)
price = st.integers(90, 110).map(float)  # levels and bars that cross each other often
Hit = tuple[int, float, int, int]  # (asset, price, reason, rule)


def oracle(
    s: RiskState, bar: int, qty: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray
) -> list[Hit]:
    """Every asset scanned over the raw levels: the W2 rule for stops and take-profits."""
    found: list[Hit] = []
    for a in range(qty.shape[0]):
        q, stop, target = int(qty[a]), float(s.stop[a]), float(s.take_profit[a])
        if q == 0 or s.armed_from[a] > bar:
            continue
        if q > 0 and lo[a] <= stop:
            found.append((a, min(o[a], stop), int(s.stop_reason[a]), int(s.stop_rule[a])))
        elif q < 0 and h[a] >= stop:
            found.append((a, max(o[a], stop), int(s.stop_reason[a]), int(s.stop_rule[a])))
        elif q > 0 and h[a] >= target:
            found.append((a, max(o[a], target), int(s.tp_reason[a]), int(s.tp_rule[a])))
        elif q < 0 and lo[a] <= target:
            found.append((a, min(o[a], target), int(s.tp_reason[a]), int(s.tp_rule[a])))
    return found


def as_hits(hit: Triggered | None) -> list[Hit]:
    if hit is None:
        return []
    return list(zip(hit.asset, hit.price, hit.reason, hit.rule, strict=True))


#: (what happens, asset, price, side or rule, the bar's (open, high, low) per asset)
Step = tuple[str, int, float, int, list[tuple[float, float, float]]]
steps = st.lists(
    st.tuples(
        st.sampled_from(["open", "stop", "take_profit", "close", "bar"]),
        st.integers(0, N_ASSETS - 1),
        price,
        st.integers(0, 2),
        st.lists(st.tuples(price, price, price), min_size=N_ASSETS, max_size=N_ASSETS),
    ),
    min_size=10,
    max_size=40,
)


@PROPERTY
@given(script=steps)
def test_triggered_equals_a_scan_of_every_asset(script: list[Step]) -> None:
    state = RiskState.empty(N_ASSETS)
    levels = ProtectiveLevels(state)
    qty = np.zeros(N_ASSETS, dtype=np.int64)
    bar = 0
    for kind, a, value, k, ohlc in script:
        at = np.array([a])
        if kind == "open":  # a new position at `value` (a flip: the old one's levels go)
            side = 1 if k % 2 == 0 else -1
            qty[a] = 10 * side
            levels.open(at, armed_from=bar + 1)
            stop = np.array([value * (1 - 0.05 * side)])
            levels.tighten(at, stop, int(OrderReason.STOP_LOSS), 0, qty, is_stop=True)
        elif kind in ("stop", "take_profit") and qty[a] != 0:  # rule `k` proposes a level
            is_stop = kind == "stop"
            reason = int(OrderReason.TRAILING_STOP if is_stop else OrderReason.TAKE_PROFIT)
            levels.tighten(at, np.array([value]), reason, k, qty, is_stop=is_stop)
        elif kind == "close" and qty[a] != 0:
            qty[a] = 0
            levels.clear(at)
        # after every step, the bar (a query); a "bar" step then books the hits and moves on
        o, h, lo = (np.array(c, dtype=np.float64) for c in zip(*ohlc, strict=True))
        h, lo = np.maximum(h, o), np.minimum(lo, o)
        expected = oracle(state, bar, qty, o, h, lo)
        assert as_hits(levels.triggered(bar, qty, o, h, lo)) == expected
        if kind == "bar":
            if expected:
                hit = np.array([x[0] for x in expected], dtype=np.int64)
                qty[hit] = 0
                levels.clear(hit)
            bar += 1


def test_levels_only_tighten_for_either_side() -> None:
    state = RiskState.empty(2)
    levels = ProtectiveLevels(state)
    qty = np.array([10, -10])
    both = np.array([0, 1])
    reason = int(OrderReason.TRAILING_STOP)
    levels.tighten(both, np.array([95.0, 105.0]), reason, 0, qty, is_stop=True)
    levels.tighten(both, np.array([90.0, 110.0]), reason, 1, qty, is_stop=True)  # looser
    assert state.stop.tolist() == [95.0, 105.0]
    assert state.stop_rule.tolist() == [0, 0]
    levels.tighten(both, np.array([97.0, np.nan]), reason, 1, qty, is_stop=True)
    assert state.stop.tolist() == [97.0, 105.0]
    assert state.stop_rule.tolist() == [1, 0]
    levels.tighten(both, np.array([120.0, 80.0]), reason, 2, qty, is_stop=False)
    levels.tighten(both, np.array([125.0, 75.0]), reason, 1, qty, is_stop=False)  # looser
    assert state.take_profit.tolist() == [120.0, 80.0]


def test_levels_restored_from_a_saved_state_trigger() -> None:
    """A chained run starts from the saved columns: their levels are live from the start."""
    state = RiskState.empty(3)
    state.stop[0], state.stop_rule[0] = 95.0, 0
    state.take_profit[2], state.tp_rule[2] = 90.0, 1
    state.stop[2], state.stop_rule[2] = 110.0, 0
    state.tp_reason[2] = int(OrderReason.TAKE_PROFIT)
    levels = ProtectiveLevels(state)
    qty = np.array([10, 10, -10])
    crash = np.array([100.0, 100.0, 100.0]), np.array([101.0] * 3), np.array([85.0] * 3)
    hit = levels.triggered(4, qty, *crash)
    assert as_hits(hit) == [
        (0, 95.0, int(OrderReason.SIGNAL), 0),  # (stop_reason was left at its default)
        (2, 90.0, int(OrderReason.TAKE_PROFIT), 1),
    ]
