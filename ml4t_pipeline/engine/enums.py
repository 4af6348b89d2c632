"""Every mode, side, status and reason of the engine, as string enums.

Free text goes in a separate `detail` field that nothing parses.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(IntEnum):
    """Stored as int8 in the columnar order book; `label` gives the table value."""

    MARKET = 0
    LIMIT = 1
    STOP = 2
    STOP_LIMIT = 3
    TRAILING_STOP = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class FillAt(StrEnum):
    NEXT_OPEN = "next_open"
    SAME_CLOSE = "same_close"


class OrderStatus(StrEnum):
    FILLED = "filled"
    REJECTED = "rejected"
    OPEN = "open"  # still working when the run (or month) ended
    PARTIALLY_FILLED = "partially_filled"  # part filled; the rest will not (resized, clipped)
    CANCELLED = "cancelled"  # by the strategy, or because its asset was delisted
    EXPIRED = "expired"  # its time in force ran out


class CashPolicy(StrEnum):
    """`execution.on_insufficient_cash`: a buy the cash cannot pay (negative cash disallowed)."""

    RESIZE = "resize"  # cut to the whole shares the cash pays, commission included
    REJECT = "reject"  # refuse the whole order


class NoBarPolicy(StrEnum):
    """`execution.on_no_bar`: an order whose asset has no bar when it would fill."""

    WAIT = "wait"  # keep working until the asset's next bar
    REJECT = "reject"  # refuse a market order (`no_bar`)


class DelistPolicy(StrEnum):
    """`execution.on_delist`: a position in an asset whose bars end before the input's do."""

    CLOSE = "close"  # closed at its last close (reason `delisted`), its orders cancelled
    HOLD = "hold"  # kept, valued at its last close


class VolumePolicy(StrEnum):
    """`execution.on_volume_limit`: what the participation cap left unfilled of an order."""

    WAIT = "wait"  # keeps working on the next bars
    REJECT = "reject"  # the rest is refused (`volume_limit`)


class BenchmarkKind(StrEnum):
    """`benchmark:` what the run is compared with (`engine.benchmark`)."""

    EQUAL_WEIGHT = "equal_weight"  # the cash split equally over the first bar's assets, held
    ASSET = "asset"  # one asset bought and held
    CONTEXT = "context"  # a price level column of the context
    NONE = "none"  # no benchmark


class RejectReason(StrEnum):
    NO_BAR = "no_bar"  # market order for an asset with no bar at the fill time
    INSUFFICIENT_CASH = "insufficient_cash"
    SHORT_NOT_ALLOWED = "short_not_allowed"
    END_OF_DATA = "end_of_data"  # decided at the last bar; nothing left to fill it
    UNKNOWN_ASSET = "unknown_asset"
    INVALID_ORDER = "invalid_order"
    STOPPED_OUT = "stopped_out"  # a working exit order whose position a protective stop closed
    REPLACED_BY_EXIT = "replaced_by_exit"  # a strategy order a same-bar risk exit replaced
    RISK_MAX_POSITIONS = "risk_max_positions"
    RISK_GROSS_EXPOSURE = "risk_gross_exposure"
    RISK_DRAWDOWN_HALT = "risk_drawdown_halt"
    RISK_DAILY_LOSS = "risk_daily_loss"
    RISK_REGIME_BLOCK = "risk_regime_block"
    RISK_UNDECIDABLE = "risk_undecidable"  # a rule lacked the data to decide: it rejects
    NOTHING_TO_CLOSE = "nothing_to_close"  # an exit whose position was already flat at its fill
    DELISTED = "delisted"  # its asset has no bar after this one (cancelled at the delisting)
    CANCELLED = "cancelled"  # the strategy cancelled it (`cancel_order`)
    EXPIRED = "expired"  # its time in force ran out
    VOLUME_LIMIT = "volume_limit"  # the participation cap left this much unfilled
    SPLIT = "split"  # a working order a (reverse) split left without a whole share


class OrderReason(IntEnum):
    """Why an order exists: the strategy decided, or which protective rule made it.

    Stored as int8 in the order and fill records. A trade's exit reason is the reason of the
    order that closed it, or "open" (`TRADE_STILL_OPEN`) while it is open. `SPLIT` and
    `DIVIDEND` mark the book rows of corporate actions (`Ledger.split`, `Ledger.dividend`).
    """

    SIGNAL = 0  # the strategy decided
    STOP_LOSS = 1
    TAKE_PROFIT = 2
    TRAILING_STOP = 3
    VOLATILITY_STOP = 4
    TIME_EXIT = 5
    REGIME_EXIT = 6
    RISK_HALT = 7
    DELISTED = 8  # the asset's bars ended: closed at its last close
    # rows a corporate action writes into the fill book (not orders; never in the fills table)
    SPLIT = 9  # shares added or removed by a split; one that leaves no whole share is an exit
    DIVIDEND = 10  # cash credited (long) or debited (short) per share held at the previous close

    @property
    def label(self) -> str:
        return self.name.lower()


#: The exit reason of a trade still open at the end of the run (the trade table's label).
TRADE_STILL_OPEN = "open"
