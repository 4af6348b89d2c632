"""Every float tolerance of the project lives here."""

from __future__ import annotations

#: Relative tolerance when comparing money amounts computed in a different order.
MONEY_RTOL = 1e-9
#: Absolute tolerance (currency units) for the same comparisons near zero.
MONEY_ATOL = 1e-6
#: Fill prices may exceed the bar range by this relative amount (float round-off only).
PRICE_RTOL = 1e-12
#: A split's new share count within this relative distance of a whole number is that number
#: (a 1:3 reverse split given as 0.333... leaves 100 of 300 shares, not 99 and cash).
SPLIT_SHARES_RTOL = 1e-9
