"""Execution: orders and their matching (`orders`), the pure fill function (`fills`), order
entry (`order_desk`; what an order may ask for in `sizing`), the order book (`broker`), cash
and positions (`ledger`, the only writer), the account's marks and the read-only view
strategies get (`account`), trades derived from the fill book (`trades`), and commission /
slippage models (`costs`)."""
