"""Reference replay of an order plan: the order book, bar by bar, from the spec below.

Zero imports from `ml4t_pipeline`. A plan is a list of orders, each submitted at the close of a
given bar; `run_plan` replays it over a prices table with plain loops and returns the fills and
the equity curve the engine must produce. `random_panel` and `random_plan` make the inputs of
the randomized comparisons.

The spec (bar t; a (bar, asset) row may be missing: that asset has no bar at t):

1. Working orders (submitted at an earlier close) are matched against bar t: market fills at
   the open; a buy limit fills if low <= limit at min(open, limit); a sell limit if
   high >= limit at max(open, limit); a sell stop if low <= stop at min(open, stop); a buy stop
   if high >= stop at max(open, stop); a stop-limit triggers as a stop and fills in the same
   bar only if the trigger price (min(open, stop) for a sell, max(open, stop) for a buy)
   honours the limit; otherwise it is a limit order from the next bar. An order whose asset
   has no bar at t: with `on_no_bar: wait` it keeps working; with `reject` a market order is
   rejected (`no_bar`) and the others keep working.
2. Booking order within a bar: (a) the fills at the open (price == open), sells before buys,
   by order id; (b) protective stop_loss exits of positions entered before bar t (level = the
   fill price that opened the position x (1 - pct) for a long, x (1 + pct) for a short; a long
   exits if low <= level at min(open, level), a short if high >= level at max(open, level));
   a position flattened in (a) has nothing to stop; (c) the intrabar fills (price != open),
   sells before buys by id, except that an order that would reduce a position an exit in (b)
   just closed (a long's sell, a short's buy) is cancelled (`stopped_out`). The orders still
   working that would reduce such a position are cancelled likewise.
3. Each fill meets the position and cash left by the fills before it. Slippage (fixed bps)
   moves the price against the order, buy x (1 + bps/1e4), sell x (1 - bps/1e4), but never
   past a limit order's limit (limit and triggered stop-limit: buy at min(slipped, limit),
   sell at max). Commission = |qty| x price x rate. Without `allow_short` a sell is clipped to
   what is held (rejected `short_not_allowed` if that is 0). Without `allow_negative_cash`, a
   buy that opens or adds to a position costs cost(q) = q x price + commission; if
   cost(q) > cash: with `on_insufficient_cash: resize` q is cut to the largest whole q with
   cost(q) <= cash (the part covering a short always fills), rejected (`insufficient_cash`)
   if nothing is left; with `reject` the whole order is rejected. Exits (stop_loss, delisted)
   always fill; cash may go negative.
4. The strategy's orders of the close of t are queued for t+1. A stop level is set from the
   fill price when a position opens (also the opening part of a flip); adding to a position
   leaves it; a closed position loses it.
5. Delisting: an asset whose last bar is before the file's last timestamp is delisted at its
   last bar. With `on_delist: close`, at that bar's close, after the strategy's orders are
   queued, its position is closed at that close (reason `delisted`; commission and slippage
   apply) and every working order for it (including the ones just submitted) is cancelled
   (`delisted`). With `hold` nothing happens: the position is valued at its last close.
6. Equity at each close = cash + sum(qty x last known close).
7. Volume (`max_participation` f): in each bar an asset's fills together take at most
   floor(f x volume) shares, consumed in booking order (2a, 2b, 2c); a bar with volume 0 fills
   nothing. What a strategy order could not take keeps working unchanged (`on_volume_limit:
   wait`) or is rejected (`volume_limit`); an exit's rest keeps working as a market order of
   the same exit (it closes what is held when it fills, at the open, capped again, booked with
   the fills at the open by id: an exit's id comes after every order submitted before its bar
   and before those of its bar's close). A protective level still crossed by what is left
   fires another exit. Without shorting, the part of a sell that would open a short is
   rejected (`short_not_allowed`) first and the cap bounds the rest; the cash rule meets what
   the cap left. Delisting closes are not capped.

Orders decided at the last bar never fill. A fill that flips a position is two fills, the
closing and the opening part, each with its own commission (the engine's representation).

Corporate actions (`replay_all(..., actions=...)`): a split (`split_ratio` new shares per old
one) and/or a cash dividend per share, at an ex-date. An action applies at the first bar whose
timestamp is at or after its ex-date (also when its asset has no bar there), before anything
else happens at that bar (step 0, before 1):

0. (a) Dividends first: cash += qty held x dividend (a short pays it), recorded with the
   previous close (the asset's last known close). (b) Then splits. The ratio is read as the
   fraction it stands for (0.333... is 1/3, 1.5 is 3/2), so |qty| x ratio is exact: its whole
   part is the new position (sign kept) and its fractional part is paid in cash at the previous
   close / ratio (a short pays it). If no whole share is left, the position is sold at the
   previous close (the split ends the trade; no commission, no slippage) and loses its stop
   level. A position that remains keeps its entry bar; its stop level becomes level / ratio.
   Every order still working for the asset is amended where it stands (its id and its place,
   so its priority, kept): floor(|qty| x ratio) shares, limit and stop / ratio, a stop-limit
   that fired still a limit order; one left with no whole share ends (`split`). The asset's
   last close becomes last close / ratio (the equity
   marks it until the asset's next bar). Nothing held: nothing is paid and no action row is
   recorded (the orders and the last close still change). Several actions of one bar: every
   dividend (by ex-date, then asset), then every split likewise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import polars as pl

from tests.oracle.synthetic import _ohlc, _tickers

OrderKind = Literal["market", "limit", "stop", "stop_limit"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Knobs:
    """The execution settings the replay depends on (legacy engine behaviour by default)."""

    initial_cash: float = 100_000.0
    commission_rate: float = 0.0  # a fraction of notional
    slippage_bps: float = 0.0
    allow_short: bool = False
    allow_negative_cash: bool = False
    stop_loss_pct: float | None = None
    on_insufficient_cash: Literal["reject", "resize"] = "reject"
    on_no_bar: Literal["reject", "wait"] = "reject"
    on_delist: Literal["hold", "close"] = "hold"
    max_participation: float | None = None  # of a bar's volume an asset's fills may take
    on_volume_limit: Literal["wait", "reject"] = "wait"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanOrder:
    """One order of a plan: submitted at the close of global bar `bar`."""

    bar: int
    asset: str
    qty: int  # signed: + buy
    type: OrderKind
    limit: float | None = None
    stop: float | None = None
    tif: str | None = None  # optional time in force, passed on only when given

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "bar": self.bar,
            "asset": self.asset,
            "qty": self.qty,
            "type": self.type,
            "limit": self.limit,
            "stop": self.stop,
        }
        if self.tif is not None:
            row["tif"] = self.tif
        return row


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    bar: int
    ts_us: int
    asset_id: str
    side: str  # buy | sell
    qty: int  # > 0
    price: float
    commission: float
    reason: str  # signal | stop_loss | delisted


@dataclass(frozen=True, slots=True, kw_only=True)
class EquityRow:
    bar: int
    ts_us: int
    cash: float
    positions_value: float
    equity: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    bar: int
    plan_index: int  # position of the order in the plan (-1: what is left of an exit)
    qty: int  # signed: what did not fill (the whole order, or the rest of a cut one)
    reason: str
    asset_id: str = ""


#: A split ratio is read as the nearest fraction with a denominator up to this (1/3, 3/2, 1/100).
RATIO_DENOMINATOR = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class CorporateAction:
    """One row of a corporate-actions input: a split and/or a dividend of `asset` at the
    ex-date `ts_us` (UTC epoch microseconds)."""

    ts_us: int
    asset: str
    split_ratio: float = 1.0  # new shares per old share
    dividend: float = 0.0  # cash per share held at the previous close

    def to_row(self) -> dict[str, Any]:
        return {
            "timestamp": datetime(1970, 1, 1) + timedelta(microseconds=self.ts_us),  # noqa: DTZ001
            "asset_id": self.asset,
            "split_ratio": None if self.split_ratio == 1.0 else self.split_ratio,
            "dividend": None if self.dividend == 0.0 else self.dividend,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRow:
    """What one action did to the account (only actions on a position held are recorded)."""

    bar: int
    ts_us: int  # the bar it applied at
    asset_id: str
    action: str  # split | dividend
    split_ratio: float  # 1.0 for a dividend
    dividend: float  # 0.0 for a split
    qty_before: int
    qty_after: int
    cash: float  # credited (+) or debited (-)
    ref_price: float  # the previous close


@dataclass(frozen=True, slots=True, kw_only=True)
class Replayed:
    """Everything a replay produced."""

    fills: list[Fill]
    equity: list[EquityRow]
    rejections: list[Rejection]
    actions: list[ActionRow]
    positions: dict[str, tuple[int, float]]  # per asset at the end: (qty, last close)


def new_shares(shares: int, ratio: float) -> tuple[int, Fraction]:
    """The whole new shares of `shares` (>= 0) old ones at `ratio`, and the fraction of a new
    share left over, exactly (the ratio read as the fraction it stands for)."""
    exact = shares * Fraction(ratio).limit_denominator(RATIO_DENOMINATOR)
    whole = math.floor(exact)
    return whole, exact - whole


@dataclass(slots=True, kw_only=True)
class _Working:
    oid: int  # submission order = the order's position in the plan
    asset: int
    qty: int
    type: OrderKind
    limit: float
    stop: float
    triggered: bool = False  # a stop-limit whose stop fired: a limit order now
    seq: int = -1  # the engine's order id order: plan orders and exits as they are created
    reason: str = "signal"  # or the exit whose rest this is (a market order)


@dataclass(slots=True, kw_only=True)
class _Bars:
    """The prices as bars x assets arrays (NaN: no bar), assets sorted by id."""

    ts_us: list[int]
    assets: list[str]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def has_bar(self, t: int, a: int) -> bool:
        return not math.isnan(self.open[t, a])


def _bars(prices: pl.DataFrame) -> _Bars:
    """The prices as bars x assets arrays."""
    dtype = prices.schema["timestamp"]
    assert isinstance(dtype, pl.Datetime)
    ts = pl.col("timestamp")
    utc = ts.dt.replace_time_zone("UTC") if dtype.time_zone is None else ts
    px = prices.with_columns(utc.dt.convert_time_zone("UTC").dt.epoch("us").alias("ts_us"))
    ts_us = sorted(set(px["ts_us"].to_list()))
    assets = sorted(set(px["asset_id"].to_list()))
    row = {t: i for i, t in enumerate(ts_us)}
    col = {a: j for j, a in enumerate(assets)}
    arrays = {
        k: np.full((len(ts_us), len(assets)), np.nan)
        for k in ("open", "high", "low", "close", "volume")
    }
    if "volume" not in px.columns:
        px = px.with_columns(volume=pl.lit(math.nan))
    for r in px.select("ts_us", "asset_id", *arrays).iter_rows(named=True):
        for k, values in arrays.items():
            values[row[r["ts_us"]], col[r["asset_id"]]] = float(r[k])
    return _Bars(ts_us=ts_us, assets=assets, **arrays)


bars_of = _bars


def _match(o: _Working, op: float, hi: float, lo: float) -> float | None:
    """The price at which `o` fills on a bar (open, high, low), or None; fires stop-limits."""
    buy = o.qty > 0
    if o.type == "market":
        return op
    if o.type == "limit" or (o.type == "stop_limit" and o.triggered):
        if buy:
            return min(op, o.limit) if lo <= o.limit else None
        return max(op, o.limit) if hi >= o.limit else None
    fired = lo <= o.stop if not buy else hi >= o.stop
    if not fired:
        return None
    trigger = max(op, o.stop) if buy else min(op, o.stop)
    if o.type == "stop":
        return trigger
    o.triggered = True  # a stop-limit: a limit order from now on
    honours = trigger <= o.limit if buy else trigger >= o.limit
    return trigger if honours else None


@dataclass(slots=True)
class _Replay:
    bars: _Bars
    knobs: Knobs
    cash: float
    pos: list[int]
    level: list[float]  # stop_loss level per asset, NaN when none
    entry_bar: list[int]  # bar at which the position opened, -1 when flat
    fills: list[Fill] = field(default_factory=list)
    equity: list[EquityRow] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    used: dict[int, int] = field(default_factory=dict)  # shares each asset traded this bar
    rests: list[_Working] = field(default_factory=list)  # what the volume left: working again
    actions: list[ActionRow] = field(default_factory=list)
    next_seq: int = 0

    def take_seq(self) -> int:
        self.next_seq += 1
        return self.next_seq - 1

    def room(self, t: int, a: int) -> int:
        """The shares asset `a` may still trade in bar t."""
        f = self.knobs.max_participation
        if f is None:
            return 2**62
        volume = float(self.bars.volume[t, a])
        if not volume > 0:
            return 0
        return max(math.floor(f * volume) - self.used.get(a, 0), 0)

    def capped(self, t: int, o: _Working, q: int) -> int:
        """The part of q (o's signed quantity the account allows) the bar's volume takes; the
        rest keeps working (an exit's as a market order) or is rejected `volume_limit`."""
        room = self.room(t, o.asset)
        if abs(q) <= room:
            return q
        rest = q - room if q > 0 else q + room
        if o.reason != "signal":
            self.rests.append(replace(o, qty=rest, type="market"))
        elif self.knobs.on_volume_limit == "wait":
            self.rests.append(replace(o, qty=rest))
        else:
            self.reject(t, o, "volume_limit", rest)
        return q - rest

    def reject(self, t: int, o: _Working, reason: str, qty: int | None = None) -> None:
        rest = o.qty if qty is None else qty
        self.rejections.append(
            Rejection(
                bar=t,
                plan_index=o.oid,
                qty=rest,
                reason=reason,
                asset_id=self.bars.assets[o.asset],
            )
        )

    def book(self, t: int, a: int, qty: int, price: float, reason: str) -> None:
        """One fill that never crosses zero; keeps the stop level in step."""
        commission = abs(qty) * price * self.knobs.commission_rate
        self.cash -= qty * price + commission
        old = self.pos[a]
        self.pos[a] = old + qty
        self.used[a] = self.used.get(a, 0) + abs(qty)
        if old == 0:
            self.entry_bar[a] = t
            pct = self.knobs.stop_loss_pct
            if pct is not None:
                self.level[a] = price * (1.0 - pct) if qty > 0 else price * (1.0 + pct)
        elif self.pos[a] == 0:
            self.entry_bar[a] = -1
            self.level[a] = math.nan
        self.fills.append(
            Fill(
                bar=t,
                ts_us=self.bars.ts_us[t],
                asset_id=self.bars.assets[a],
                side="buy" if qty > 0 else "sell",
                qty=abs(qty),
                price=price,
                commission=commission,
                reason=reason,
            )
        )

    def slipped(self, price: float, buy: bool) -> float:
        bps = self.knobs.slippage_bps
        if bps == 0:
            return price
        return price * (1.0 + (1 if buy else -1) * bps * 1e-4)

    def cost(self, q: int, price: float) -> float:
        return q * price + abs(q) * price * self.knobs.commission_rate

    def affordable(self, q: int, price: float) -> int:
        """The largest whole n in [0, q] with cost(n) <= cash."""
        if self.cash <= 0:
            return 0
        n = min(q, math.floor(self.cash / (price * (1.0 + self.knobs.commission_rate))))
        n = max(n, 0)
        while n > 0 and self.cost(n, price) > self.cash:
            n -= 1
        while n < q and self.cost(n + 1, price) <= self.cash:
            n += 1
        return n

    def fill_strategy_order(self, t: int, o: _Working, match_price: float) -> None:
        """A strategy order at its match price, against what the fills before it left."""
        k = self.knobs
        a, q = o.asset, o.qty
        held = self.pos[a]
        closing = _closing(q, held)
        if q - closing < 0 and not k.allow_short:
            q = closing
            if q == 0:
                self.reject(t, o, "short_not_allowed")
                return
            self.reject(t, o, "short_not_allowed", o.qty - q)  # the clipped part
        q = self.capped(t, o, q)
        if q == 0:
            return
        allowed = q  # what the account rules and the volume leave of the order
        closing = _closing(q, held)
        price = self.slipped(match_price, q > 0)
        if o.type == "limit" or o.type == "stop_limit":
            price = min(price, o.limit) if q > 0 else max(price, o.limit)
        opens = q > 0 and closing != q
        if opens and not k.allow_negative_cash and self.cost(q, price) > self.cash:
            if k.on_insufficient_cash == "reject":
                self.reject(t, o, "insufficient_cash", allowed)
                return
            q = max(self.affordable(q, price), closing)
            if q == 0:
                self.reject(t, o, "insufficient_cash", allowed)
                return
            self.reject(t, o, "insufficient_cash", allowed - q)  # the part cut
        if closing != 0 and closing != q:  # a flip: the closing part, then the opening part
            self.book(t, a, closing, price, "signal")
            self.book(t, a, q - closing, price, "signal")
        else:
            self.book(t, a, q, price, "signal")

    def close_position(
        self, t: int, a: int, match_price: float, reason: str, seq: int = -1, *, capped: bool
    ) -> None:
        """An exit: closes what is held (what the bar's volume takes of it, when `capped`),
        whatever the cash."""
        held = self.pos[a]
        q = -held
        if capped:
            exit_order = _Working(
                oid=-1, asset=a, qty=q, type="market", limit=math.nan, stop=math.nan
            )
            q = self.capped(t, replace(exit_order, seq=seq, reason=reason), q)
            if q == 0:
                return
        self.book(t, a, q, self.slipped(match_price, held < 0), reason)

    def fill_exit(self, t: int, o: _Working, match_price: float) -> None:
        """The rest of an exit, a market order: closes what is held now, or nothing."""
        if self.pos[o.asset] == 0:
            self.reject(t, o, "nothing_to_close")
            return
        self.close_position(t, o.asset, match_price, o.reason, o.seq, capped=True)

    def action_row(
        self, t: int, a: int, held: int, cash: float, ref_price: float, **kind: Any
    ) -> None:
        self.actions.append(
            ActionRow(
                bar=t,
                ts_us=self.bars.ts_us[t],
                asset_id=self.bars.assets[a],
                qty_before=held,
                qty_after=self.pos[a],
                cash=cash,
                ref_price=ref_price,
                **kind,
            )
        )

    def dividend(self, t: int, a: int, per_share: float, ref_price: float) -> None:
        """0a. `per_share` on the shares held at the previous close (a short pays it)."""
        held = self.pos[a]
        if held == 0:
            return
        cash = held * per_share
        self.cash += cash
        self.action_row(
            t, a, held, cash, ref_price, action="dividend", split_ratio=1.0, dividend=per_share
        )

    def split(self, t: int, a: int, ratio: float, ref_price: float) -> None:
        """0b. The position in the new shares, the fraction of a share paid at the previous
        close / ratio; no whole share left: the position sold at the previous close."""
        held = self.pos[a]
        if held == 0:
            return
        sign = 1 if held > 0 else -1
        whole, part = new_shares(abs(held), ratio)
        if whole == 0:
            cash = held * ref_price
            self.pos[a] = 0
            self.entry_bar[a] = -1
            self.level[a] = math.nan
        else:
            cash = sign * float(part) * (ref_price / ratio)
            self.pos[a] = sign * whole
            self.level[a] = self.level[a] / ratio
        self.cash += cash
        self.action_row(
            t, a, held, cash, ref_price, action="split", split_ratio=ratio, dividend=0.0
        )

    def split_orders(self, t: int, a: int, ratio: float, working: list[_Working]) -> list[_Working]:
        """0b. The orders working for `a` in the new shares, where they stand; those left
        without a whole share end (`split`)."""
        kept = []
        for o in working:
            if o.asset == a:
                shares, _ = new_shares(abs(o.qty), ratio)
                if not shares:
                    self.reject(t, o, "split")
                    continue
                o = replace(
                    o,
                    qty=shares if o.qty > 0 else -shares,
                    limit=o.limit / ratio,
                    stop=o.stop / ratio,
                )
            kept.append(o)
        return kept

    def mark(self, t: int, last_close: list[float]) -> None:
        value = 0.0
        for a, q in enumerate(self.pos):
            if q != 0:
                value += q * last_close[a]
        self.equity.append(
            EquityRow(
                bar=t,
                ts_us=self.bars.ts_us[t],
                cash=self.cash,
                positions_value=value,
                equity=self.cash + value,
            )
        )


def _closing(q: int, held: int) -> int:
    """The part of an order of q that reduces the position held."""
    if held != 0 and (q > 0) != (held > 0):
        return min(q, -held) if q > 0 else max(q, -held)
    return 0


def _sells_first(item: tuple[_Working, float]) -> tuple[bool, int]:
    return item[0].qty > 0, item[0].seq


def replay(
    prices: pl.DataFrame, plan: list[PlanOrder], knobs: Knobs
) -> tuple[list[Fill], list[EquityRow], list[Rejection]]:
    """Fills, equity curve and rejections (by position in the plan) of `plan` over `prices`."""
    done = replay_all(prices, plan, knobs)
    return done.fills, done.equity, done.rejections


def actions_by_bar(
    bars: _Bars, actions: list[CorporateAction]
) -> dict[int, list[tuple[int, CorporateAction]]]:
    """Each action at the first bar at or after its ex-date (none after the last bar, none
    for an asset not in the prices), in (ex-date, asset) order."""
    col = {asset: j for j, asset in enumerate(bars.assets)}
    by_bar: dict[int, list[tuple[int, CorporateAction]]] = {}
    for act in sorted(actions, key=lambda x: (x.ts_us, x.asset)):
        t = next((t for t, ts in enumerate(bars.ts_us) if ts >= act.ts_us), None)
        if t is not None and act.asset in col:
            by_bar.setdefault(t, []).append((col[act.asset], act))
    return by_bar


def replay_all(
    prices: pl.DataFrame,
    plan: list[PlanOrder],
    knobs: Knobs,
    actions: list[CorporateAction] | None = None,
) -> Replayed:
    """`replay`, with corporate actions (step 0 of the spec) and what they did."""
    bars = _bars(prices)
    at_bar = actions_by_bar(bars, actions or [])
    n_bars, n_assets = len(bars.ts_us), len(bars.assets)
    col = {asset: j for j, asset in enumerate(bars.assets)}
    book = _Replay(
        bars=bars,
        knobs=knobs,
        cash=knobs.initial_cash,
        pos=[0] * n_assets,
        level=[math.nan] * n_assets,
        entry_bar=[-1] * n_assets,
    )
    last_bar = [max(t for t in range(n_bars) if bars.has_bar(t, a)) for a in range(n_assets)]
    by_bar: dict[int, list[tuple[int, PlanOrder]]] = {}
    for i, p in enumerate(plan):
        by_bar.setdefault(p.bar, []).append((i, p))
    last_close = [math.nan] * n_assets
    working: list[_Working] = []

    for t in range(n_bars):
        book.used = {}
        # 0. corporate actions before the open: every dividend, then every split
        todays = at_bar.get(t, [])
        for a, act in todays:
            if act.dividend:
                book.dividend(t, a, act.dividend, last_close[a])
        for a, act in todays:
            if act.split_ratio != 1.0:
                book.split(t, a, act.split_ratio, last_close[a])
                last_close[a] = last_close[a] / act.split_ratio
                working = book.split_orders(t, a, act.split_ratio, working)

        # 1. match the working orders against bar t
        at_open: list[tuple[_Working, float]] = []
        intrabar: list[tuple[_Working, float]] = []
        still: list[_Working] = []
        for o in working:
            a = o.asset
            if not bars.has_bar(t, a):
                if o.type == "market" and knobs.on_no_bar == "reject":
                    book.reject(t, o, "no_bar")
                else:
                    still.append(o)
                continue
            op = float(bars.open[t, a])
            price = _match(o, op, float(bars.high[t, a]), float(bars.low[t, a]))
            if price is None:
                still.append(o)
            elif price == op:
                at_open.append((o, price))
            else:
                intrabar.append((o, price))
        working = still

        # 2a. the fills at the open, sells before buys, by id
        stopped: dict[int, bool] = {}  # asset -> the exit bought (it closed a short)
        for o, price in sorted(at_open, key=_sells_first):
            if o.reason == "signal":
                book.fill_strategy_order(t, o, price)
                continue
            held = book.pos[o.asset]
            book.fill_exit(t, o, price)
            if held != 0 and book.pos[o.asset] == 0:
                stopped[o.asset] = held < 0
        working += book.rests
        book.rests = []

        # 2b. stop_loss exits of positions entered before t (longs' sells before shorts' buys)
        if knobs.stop_loss_pct is not None:
            hits: list[tuple[int, float]] = []
            for a in range(n_assets):
                held = book.pos[a]
                if held == 0 or book.entry_bar[a] >= t or not bars.has_bar(t, a):
                    continue
                op, level = float(bars.open[t, a]), book.level[a]
                if held > 0 and bars.low[t, a] <= level:
                    hits.append((a, min(op, level)))
                elif held < 0 and bars.high[t, a] >= level:
                    hits.append((a, max(op, level)))
            seq = {a: book.take_seq() for a, _ in hits}  # exits take ids in asset order
            for a, price in sorted(hits, key=lambda h: (book.pos[h[0]] < 0, h[0])):
                stopped[a] = book.pos[a] < 0
                book.close_position(t, a, price, "stop_loss", seq[a], capped=True)
            working += book.rests
            book.rests = []

        def reduces_stopped(o: _Working, stopped: dict[int, bool] = stopped) -> bool:
            """`o` would reduce a position an exit just closed: a long's sell, a short's buy
            (or it is what is left of an exit of it)."""
            a = o.asset
            if a not in stopped or book.pos[a] != 0:
                return False
            return (o.qty > 0) == stopped[a] or o.reason != "signal"

        # 2c. the intrabar fills; what would reduce a stopped position is cancelled, judged
        # right after the exits (the orders still working likewise)
        kept: list[tuple[_Working, float]] = []
        for o, price in sorted(intrabar, key=_sells_first):
            if reduces_stopped(o):
                book.reject(t, o, "stopped_out")
            else:
                kept.append((o, price))
        for o in working:
            if reduces_stopped(o):
                book.reject(t, o, "stopped_out")
        working = [o for o in working if not reduces_stopped(o)]
        for o, price in kept:
            book.fill_strategy_order(t, o, price)
        working += book.rests
        book.rests = []

        for a in range(n_assets):
            if bars.has_bar(t, a):
                last_close[a] = float(bars.close[t, a])

        # 4. the strategy's orders of this close are queued for t + 1
        for i, p in by_bar.get(t, []):
            working.append(
                _Working(
                    oid=i,
                    asset=col[p.asset],
                    qty=p.qty,
                    type=p.type,
                    limit=math.nan if p.limit is None else p.limit,
                    stop=math.nan if p.stop is None else p.stop,
                    seq=book.take_seq(),
                )
            )

        # 5. delistings at this close
        if knobs.on_delist == "close":
            for a in range(n_assets):
                if last_bar[a] != t or t == n_bars - 1:
                    continue
                if book.pos[a] != 0:
                    book.close_position(
                        t, a, last_close[a], "delisted", book.take_seq(), capped=False
                    )
                for o in working:
                    if o.asset == a:
                        book.reject(t, o, "delisted")
                working = [o for o in working if o.asset != a]

        # 6. equity at the close
        book.mark(t, last_close)
    return Replayed(
        fills=book.fills,
        equity=book.equity,
        rejections=book.rejections,
        actions=book.actions,
        positions={asset: (book.pos[a], last_close[a]) for a, asset in enumerate(bars.assets)},
    )


def run_plan(
    prices: pl.DataFrame, plan: list[PlanOrder], knobs: Knobs
) -> tuple[list[Fill], list[EquityRow]]:
    """The fills (in booking order) and the equity curve of `plan` over `prices`."""
    fills, equity, _ = replay(prices, plan, knobs)
    return fills, equity


# -- random inputs --------------------------------------------------------------------------------


def random_panel(seed: int) -> pl.DataFrame:
    """3-6 assets x 40-80 daily bars with volume: holes of a few bars, one asset listed late
    and one delisted early (the other assets reach the last bar)."""
    rng = np.random.default_rng(seed)
    n_assets = int(rng.integers(3, 7))
    n_bars = int(rng.integers(40, 81))
    open_, high, low, close = _ohlc(rng, n_bars, n_assets)
    present = np.ones((n_bars, n_assets), dtype=bool)
    present[: int(rng.integers(5, n_bars // 3)), 0] = False  # listed late
    present[int(rng.integers(2 * n_bars // 3, n_bars - 3)) :, 1] = False  # delisted early
    for _ in range(int(rng.integers(2, 6))):  # holes, never at either end of the file
        a = int(rng.integers(0, n_assets))
        start = int(rng.integers(1, n_bars - 5))
        present[start : start + int(rng.integers(1, 4)), a] = False
    present[-1, 2:] = True  # the others trade on the last bar: only asset 1 is delisted
    present[-1, 0] = True
    present[0, 1:] = True
    stamps = [datetime(2023, 5, 1, 20) + timedelta(days=d) for d in range(n_bars)]  # noqa: DTZ001
    names = _tickers(rng, n_assets)
    rows_t, rows_a = np.nonzero(present)
    return pl.DataFrame(
        {
            "timestamp": [stamps[t] for t in rows_t.tolist()],
            "asset_id": [names[a] for a in rows_a.tolist()],
            "open": open_[rows_t, rows_a],
            "high": high[rows_t, rows_a],
            "low": low[rows_t, rows_a],
            "close": close[rows_t, rows_a],
            "volume": rng.integers(1_000, 100_000, rows_t.shape[0]),
        }
    ).sort("timestamp", "asset_id")


def thin_volume(prices: pl.DataFrame, seed: int, *, most: int = 2_000) -> pl.DataFrame:
    """`prices` with a volume of 0 to `most` shares a bar, 0 on about one bar in 15, so that a
    participation cap of a few tenths meets orders of a few hundred shares."""
    rng = np.random.default_rng(seed)
    volume = rng.integers(0, most + 1, prices.height)
    volume[rng.random(prices.height) < 1 / 15] = 0
    return prices.with_columns(volume=pl.Series(volume))


ALL_KINDS: tuple[OrderKind, ...] = ("market", "limit", "stop", "stop_limit")


def random_plan(
    prices: pl.DataFrame,
    seed: int,
    *,
    n_orders: int = 60,
    max_qty: int = 400,
    kinds: tuple[OrderKind, ...] = ALL_KINDS,
) -> list[PlanOrder]:
    """Buys and sells of `kinds`, limit and stop prices near the asset's last close (within
    about 4 %), at bars up to the asset's last bar (also before it lists)."""
    rng = np.random.default_rng(seed)
    bars = _bars(prices)
    n_bars = len(bars.ts_us)
    plan: list[PlanOrder] = []
    for _ in range(n_orders):
        a = int(rng.integers(0, len(bars.assets)))
        last = max(t for t in range(n_bars) if bars.has_bar(t, a))
        t = int(rng.integers(0, last + 1))
        known = [s for s in range(t + 1) if bars.has_bar(s, a)]
        ref = float(bars.close[known[-1], a]) if known else float(bars.open[last, a])
        kind = kinds[int(rng.integers(0, len(kinds)))]
        qty = int(rng.integers(1, max_qty + 1)) * (1 if rng.random() < 0.55 else -1)
        buy = qty > 0
        limit = stop = None
        if kind == "limit":  # mostly below the market for a buy, above for a sell
            limit = round(ref * (1 + (-1 if buy else 1) * rng.uniform(-0.01, 0.03)), 2)
        elif kind == "stop":  # above the market for a buy, below for a sell
            stop = round(ref * (1 + (1 if buy else -1) * rng.uniform(0.0, 0.03)), 2)
        elif kind == "stop_limit":
            stop = round(ref * (1 + (1 if buy else -1) * rng.uniform(0.0, 0.03)), 2)
            limit = round(stop * (1 + (1 if buy else -1) * rng.uniform(-0.01, 0.02)), 2)
        plan.append(
            PlanOrder(bar=t, asset=bars.assets[a], qty=qty, type=kind, limit=limit, stop=stop)
        )
    plan.sort(key=lambda p: p.bar)
    return plan


SPLIT_RATIOS: tuple[float, ...] = (2.0, 3.0, 1.5, 0.5, 0.1, 1 / 3, 0.01)
NOT_LISTED = "NOT_LISTED"  # an asset id that is in no random panel


def random_actions(
    prices: pl.DataFrame,
    seed: int,
    *,
    n_actions: int = 14,
    ratios: tuple[float, ...] = SPLIT_RATIOS,
    max_yield: float = 0.03,
) -> list[CorporateAction]:
    """Splits, dividends, and both on one ex-date, at bars >= 1 (a third of them where the
    asset has no bar), at most one per (asset, bar) and two splits per asset (the product of
    an asset's ratios within [0.01, 10]); the ex-date is the bar's timestamp, its day's
    midnight or an hour after the bar before (all apply at that bar). Dividends are up to
    `max_yield` of the asset's last close before the bar in the raw bars (`unadjust`). Plus actions the run must ignore:
    one before the first bar, one after the last, one of an asset not in the prices."""
    rng = np.random.default_rng(seed)
    bars = _bars(prices)
    n_bars, n_assets = len(bars.ts_us), len(bars.assets)
    holes = [(t, a) for t in range(1, n_bars) for a in range(n_assets) if not bars.has_bar(t, a)]
    taken: set[tuple[int, int]] = set()
    product = [1.0] * n_assets
    splits = [0] * n_assets
    out: list[CorporateAction] = []
    hour = 3_600_000_000
    for _ in range(4 * n_actions):
        if len(out) == n_actions:
            break
        if holes and rng.random() < 1 / 3:
            t, a = holes[int(rng.integers(0, len(holes)))]
        else:
            t, a = int(rng.integers(1, n_bars)), int(rng.integers(0, n_assets))
        if (t, a) in taken:
            continue
        kind = rng.choice(["split", "dividend", "both"], p=[0.5, 0.3, 0.2])
        ratio, dividend = 1.0, 0.0
        if kind != "dividend":
            ratio = float(ratios[int(rng.integers(0, len(ratios)))])
            if splits[a] == 2 or not 0.01 <= product[a] * ratio <= 10.0:
                continue
            splits[a] += 1
            product[a] *= ratio
        if kind != "split":
            if not any(bars.has_bar(s, a) for s in range(t)):
                continue
            dividend = float(rng.uniform(0.002, max_yield))  # a yield until the raw bars are known
        taken.add((t, a))
        ts = bars.ts_us[t]
        ex = (ts, ts - ts % (24 * hour), bars.ts_us[t - 1] + hour)[int(rng.integers(0, 3))]
        out.append(
            CorporateAction(ts_us=ex, asset=bars.assets[a], split_ratio=ratio, dividend=dividend)
        )
    raw = _bars(unadjust(prices, out))  # a dividend is cash per share of the raw bars
    for i, act in enumerate(out):
        if act.dividend:
            a = raw.assets.index(act.asset)
            t = next(t for t, ts in enumerate(raw.ts_us) if ts >= act.ts_us)
            ref = float(raw.close[max(s for s in range(t) if raw.has_bar(s, a)), a])
            out[i] = replace(act, dividend=round(act.dividend * ref, 4))
    first, last = bars.ts_us[0], bars.ts_us[-1]
    out += [
        CorporateAction(ts_us=first - 24 * hour, asset=bars.assets[-1], split_ratio=2.0),
        CorporateAction(ts_us=last + hour, asset=bars.assets[0], split_ratio=0.5, dividend=0.1),
        CorporateAction(ts_us=bars.ts_us[n_bars // 2], asset=NOT_LISTED, split_ratio=3.0),
    ]
    return out


def unadjust(prices: pl.DataFrame, actions: list[CorporateAction]) -> pl.DataFrame:
    """The raw bars `prices` (split-adjusted) were adjusted from: before each split's ex-date
    its asset's prices x ratio and volume / ratio."""
    px = prices.with_columns(pl.col("timestamp").dt.epoch("us").alias("_ts"))
    if px.schema["timestamp"] != pl.Datetime("us"):
        msg = "unadjust takes naive (UTC) microsecond timestamps"
        raise ValueError(msg)
    factor = pl.lit(1.0)
    for act in actions:
        if act.split_ratio != 1.0:
            before = (pl.col("asset_id") == act.asset) & (pl.col("_ts") < act.ts_us)
            factor = factor * pl.when(before).then(act.split_ratio).otherwise(1.0)
    px = px.with_columns(factor.alias("_f"))
    return px.with_columns(
        *[(pl.col(c) * pl.col("_f")).alias(c) for c in ("open", "high", "low", "close")],
        (pl.col("volume") / pl.col("_f")).alias("volume"),
    ).drop("_ts", "_f")


def actions_frame(actions: list[CorporateAction]) -> pl.DataFrame:
    """The actions as a corporate-actions input (naive UTC ex-dates; null: no such action)."""
    return pl.DataFrame(
        [act.to_row() for act in actions],
        schema={
            "timestamp": pl.Datetime("us"),
            "asset_id": pl.String,
            "split_ratio": pl.Float64,
            "dividend": pl.Float64,
        },
    )


def fills_frame(fills: list[Fill]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "bar": f.bar,
                "ts_us": f.ts_us,
                "asset_id": f.asset_id,
                "side": f.side,
                "qty": f.qty,
                "price": f.price,
                "commission": f.commission,
                "reason": f.reason,
            }
            for f in fills
        ],
        schema={
            "bar": pl.Int64,
            "ts_us": pl.Int64,
            "asset_id": pl.String,
            "side": pl.String,
            "qty": pl.Int64,
            "price": pl.Float64,
            "commission": pl.Float64,
            "reason": pl.String,
        },
    )
