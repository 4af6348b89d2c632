"""Every float tolerance of the project lives here."""

from __future__ import annotations

#: Relative tolerance when comparing money amounts computed in a different order.
MONEY_RTOL = 1e-9
#: Absolute tolerance (currency units) for the same comparisons near zero.
MONEY_ATOL = 1e-6
#: Fill prices may exceed the bar range by this relative amount (float round-off only).
PRICE_RTOL = 1e-12
