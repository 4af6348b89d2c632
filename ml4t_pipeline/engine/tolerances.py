"""Every float tolerance of the project lives here."""

from __future__ import annotations

#: Relative tolerance when comparing money amounts computed in a different order.
MONEY_RTOL = 1e-9
#: Absolute tolerance (currency units) for the same comparisons near zero.
MONEY_ATOL = 1e-6
#: Fill prices may exceed the bar range by this relative amount (float round-off only).
PRICE_RTOL = 1e-12
#: The OHLC relations of a bar (high >= open, close, low; low <= open, close) accept a
#: difference up to this fraction of the price compared with: split-adjusted prices
#: (open, high, low scaled by adj_close / close) differ from the close in the 15th digit.
#: The feed widens a tolerated bar (high := max(high, open, close), low := min(...)), so a
#: fill may lie outside the bar as written in the file by at most this fraction.
OHLC_RTOL = 1e-9
#: A fill compared with the bar as written in the file (before the feed widened it) lies
#: inside [low, high] up to this fraction of its price: the OHLC tolerance plus round-off.
FILL_BAR_RTOL = OHLC_RTOL + PRICE_RTOL
#: An overnight price ratio matches a split ratio s when |ratio * s - 1| <= this
#: (validation's split detection, and matching a corporate action to the prices).
SPLIT_RTOL = 0.03
#: A split's new share count within this relative distance of a whole number is that number
#: (a 1:3 reverse split given as 0.333... leaves 100 of 300 shares, not 99 and cash).
SPLIT_SHARES_RTOL = 1e-9
#: Two adjustment factors (close / adj_close) of a source agree to this relative amount: the
#: bokeh-sampledata stocks store adj_close to about 13 significant digits, and a factor step
#: on a day without a corporate action is 1 to within 1e-12 (`sample_data.real_stocks`).
ADJUSTMENT_FACTOR_RTOL = 1e-9
