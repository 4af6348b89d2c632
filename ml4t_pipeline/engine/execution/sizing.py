"""What an order may ask for, and how target weights become share counts.

Pure functions of their arguments; a request that cannot be represented or lacks a price its
order type needs is a `ConfigError` naming the asset, never a wrapped quantity or a warning.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ml4t_pipeline.engine.enums import OrderType
from ml4t_pipeline.engine.execution.orders import MAX_QTY
from ml4t_pipeline.errors import ConfigError

_NEEDS: dict[OrderType, tuple[str, ...]] = {
    OrderType.MARKET: (),
    OrderType.LIMIT: ("limit_price",),
    OrderType.STOP: ("stop_price",),
    OrderType.STOP_LIMIT: ("limit_price", "stop_price"),
    OrderType.TRAILING_STOP: ("trail_pct",),
}


def qty_error(asset_id: Any, qty: int) -> ConfigError:
    """The error for an order asking for more than `MAX_QTY` shares."""
    msg = f"order for asset_id={asset_id!r}: {qty} shares is beyond the +-{MAX_QTY} an order may ask for"
    return ConfigError(msg)


def check_prices(
    order_type: OrderType,
    limit_price: float | None,
    stop_price: float | None,
    trail_pct: float | None,
) -> None:
    """An order type's prices are given (a limit order needs its limit, and so on)."""
    given = {"limit_price": limit_price, "stop_price": stop_price, "trail_pct": trail_pct}
    missing = [name for name in _NEEDS[order_type] if given[name] is None]
    if missing:
        msg = f"{order_type.label} order needs {', '.join(missing)}"
        raise ConfigError(msg)


def target_positions(
    weights: np.ndarray,
    equity: float,
    close: np.ndarray,
    held: np.ndarray,
    asset_ids: list[Any],
) -> np.ndarray:
    """floor(|w| x equity / close) shares, signed like w, for every priced asset; `held` where
    an asset has no price. A weight that is not a finite number, or a size beyond `MAX_QTY`
    shares (a tiny price, a huge equity), is a `ConfigError` naming the asset."""
    priced = close > 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        target = np.sign(weights) * np.floor(np.abs(weights) * equity / close)
    unsized = priced & ~(np.abs(target) <= MAX_QTY)  # NaN, inf or too many shares
    if unsized.any():
        a = int(np.flatnonzero(unsized)[0])
        msg = (
            f"target weights: {int(np.count_nonzero(unsized))} asset(s) cannot be sized, "
            f"e.g. asset_id={asset_ids[a]!r}: weight {weights.item(a)!r} x equity "
            f"{equity!r} / close {close.item(a)!r} is not a whole number of shares "
            f"within +-{MAX_QTY}"
        )
        raise ConfigError(msg)
    return np.where(priced, target, held).astype(np.int64)
