"""What the replay server streams: frames with just enough metadata to route, filter and fault them.

A ``FrameSource`` yields ``SourceFrame``s in stream order. Each frame carries its raw text (sent
verbatim whenever possible) plus what routing needs: its kind (Exchange ``type`` or Advanced Trade
``channel``), the products it concerns and the trades it contains, with the exact strings Coinbase
sent (the REST endpoint must return prices and sizes exactly as recorded, which a Decimal round
trip would not: ``Decimal("0.00000001")`` prints as ``1E-8``).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import orjson

from cryptopipe.contracts import Feed

# Frames the server answers itself instead of replaying: a recorded ack names the recorder's
# subscription, not the client's.
CONTROL_KINDS = frozenset({"subscriptions", "error"})


@dataclasses.dataclass(frozen=True, slots=True)
class TradeRef:
    """One trade inside a frame, fields as Coinbase sent them (side lower-cased, as REST sends it)."""

    product_id: str
    trade_id: int
    time: str
    price: str
    size: str
    side: str
    # Exchange last_match and Advanced Trade snapshot trades repeat earlier trades.
    snapshot: bool = False
    # Position among the source's non-snapshot trades (0, 1, 2, ...): "every k-th trade" counts these.
    ordinal: int = -1


@dataclasses.dataclass(frozen=True, slots=True)
class SourceFrame:
    index: int
    ts: float  # unix seconds, when the frame was (or would have been) received
    raw: str
    kind: str  # Exchange: the frame's type ("match", "heartbeat", ...); Advanced Trade: its channel
    products: tuple[str, ...] = ()  # () for frames naming no product (AT heartbeats, status)
    trades: tuple[TradeRef, ...] = ()
    sequence: int | None = None  # Exchange per-product sequence
    last_trade_id: int | None = None  # Exchange heartbeat


class FrameSource(Protocol):
    feed: Feed
    products: tuple[str, ...]
    start_ts: float  # ts of the first frame (acks sent before any frame carry it)
    # Whether the recorded acks carry Exchange "account_ids" / Advanced Trade "client_id".
    ack_style: dict[str, bool]

    # Every trade of the source, for the REST endpoint (a lazy source fills it as it generates).
    trade_book: TradeBook

    def frames(self, start: int = 0) -> Iterator[SourceFrame]:
        """Frames from index ``start`` on, in stream order."""
        ...

    @property
    def frame_count(self) -> int | None:
        """Number of frames, or None when not known up front (a lazy or endless source)."""
        ...


def describe_frame(raw: str, feed: Feed, ts: float, index: int = 0, obj: dict[str, Any] | None = None) -> SourceFrame:
    """Classify one raw frame. Unparseable frames get kind "unparseable" and are still streamed
    (a recording may legitimately contain one; the client must cope)."""
    if obj is None:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return SourceFrame(index, ts, raw, "unparseable")
    if type(obj) is not dict:
        return SourceFrame(index, ts, raw, "unparseable")
    if feed == "exchange":
        return _describe_exchange(raw, obj, ts, index)
    return _describe_advanced_trade(raw, obj, ts, index)


def feed_of_frame(obj: Any) -> Feed | None:
    """Tell the feed by a frame's shape: Advanced Trade envelopes have ``channel``, Exchange frames ``type``."""
    if type(obj) is not dict:
        return None
    if "channel" in obj:
        return "advanced_trade"
    if "type" in obj:
        return "exchange"
    return None


def feed_of_url(url: str) -> Feed | None:
    if "advanced-trade" in url:
        return "advanced_trade"
    if "ws-feed" in url:
        return "exchange"
    return None


def _describe_exchange(raw: str, obj: dict[str, Any], ts: float, index: int) -> SourceFrame:
    kind = str(obj.get("type", "unknown"))
    product = obj.get("product_id")
    products = (product,) if isinstance(product, str) else ()
    trades: tuple[TradeRef, ...] = ()
    if kind in ("match", "last_match") and isinstance(product, str):
        try:
            trades = (
                TradeRef(
                    product_id=product,
                    trade_id=int(obj["trade_id"]),
                    time=str(obj["time"]),
                    price=str(obj["price"]),
                    size=str(obj["size"]),
                    side=str(obj["side"]).lower(),
                    snapshot=kind == "last_match",
                ),
            )
        except (KeyError, ValueError, TypeError):
            trades = ()  # a broken match is streamed as recorded but never offered over REST
    sequence = obj.get("sequence")
    last_trade_id = obj.get("last_trade_id")
    return SourceFrame(
        index,
        ts,
        raw,
        kind,
        products,
        trades,
        sequence if type(sequence) is int else None,
        last_trade_id if type(last_trade_id) is int else None,
    )


# Lists inside Advanced Trade events whose items each name a product.
AT_PRODUCT_LISTS = ("trades", "tickers", "candles")


def _describe_advanced_trade(raw: str, obj: dict[str, Any], ts: float, index: int) -> SourceFrame:
    kind = str(obj.get("channel", obj.get("type", "unknown")))
    products: dict[str, None] = {}
    trades: list[TradeRef] = []
    events = obj.get("events")
    for event in events if isinstance(events, list) else ():
        if not isinstance(event, dict):
            continue
        if isinstance(event.get("product_id"), str):
            products[event["product_id"]] = None
        for key in AT_PRODUCT_LISTS:
            for item in event.get(key) or ():
                if isinstance(item, dict) and isinstance(item.get("product_id"), str):
                    products[item["product_id"]] = None
        if kind == "market_trades":
            snapshot = event.get("type") == "snapshot"
            for item in event.get("trades") or ():
                try:
                    trades.append(
                        TradeRef(
                            product_id=item["product_id"],
                            trade_id=int(item["trade_id"]),
                            time=str(item["time"]),
                            price=str(item["price"]),
                            size=str(item["size"]),
                            side=str(item["side"]).lower(),
                            snapshot=snapshot,
                        )
                    )
                except (KeyError, ValueError, TypeError):
                    continue
    return SourceFrame(index, ts, raw, kind, tuple(products), tuple(trades))


def number_trades(frames: Iterable[SourceFrame]) -> list[SourceFrame]:
    """Re-index frames 0..n-1 and give every non-snapshot trade its ordinal."""
    out: list[SourceFrame] = []
    ordinal = 0
    for index, frame in enumerate(frames):
        trades = []
        for trade in frame.trades:
            if not trade.snapshot:
                trade = dataclasses.replace(trade, ordinal=ordinal)
                ordinal += 1
            trades.append(trade)
        out.append(dataclasses.replace(frame, index=index, trades=tuple(trades)))
    return out


class TradeBook:
    """Every trade of a source by product, sorted by trade_id: what the REST endpoint pages through.

    ``capacity`` bounds the trades kept per product (oldest dropped first) for endless sources.
    """

    def __init__(self, products: Iterable[str] = (), capacity: int | None = None) -> None:
        self._ids: dict[str, list[int]] = {p: [] for p in products}
        self._rows: dict[str, dict[int, TradeRef]] = {p: {} for p in self._ids}
        self._capacity = capacity

    def products(self) -> tuple[str, ...]:
        return tuple(self._ids)

    def add(self, trade: TradeRef) -> None:
        ids = self._ids.setdefault(trade.product_id, [])
        rows = self._rows.setdefault(trade.product_id, {})
        if trade.trade_id in rows:
            return  # the first sighting wins: a repeat (snapshot, last_match) is the same trade
        rows[trade.trade_id] = trade
        if not ids or trade.trade_id > ids[-1]:
            ids.append(trade.trade_id)
        else:
            bisect.insort(ids, trade.trade_id)
        if self._capacity is not None and len(ids) > 2 * self._capacity:
            # trim in bulk so appends stay amortised O(1)
            for old in ids[: len(ids) - self._capacity]:
                del rows[old]
            del ids[: len(ids) - self._capacity]

    def add_frames(self, frames: Iterable[SourceFrame]) -> None:
        for frame in frames:
            for trade in frame.trades:
                self.add(trade)

    def __contains__(self, product_id: str) -> bool:
        return product_id in self._ids

    def trades(self, product_id: str) -> list[TradeRef]:
        """All kept trades of a product, oldest first."""
        rows = self._rows.get(product_id, {})
        return [rows[i] for i in self._ids.get(product_id, [])]

    def page(self, product_id: str, limit: int, after: int | None = None, before: int | None = None) -> list[TradeRef]:
        """Coinbase Exchange paging, newest first: no cursor -> the newest ``limit`` trades;
        ``after=X`` -> the newest ``limit`` trades with id < X; ``before=X`` -> the ``limit``
        trades just above X (ids > X, closest to X)."""
        ids = self._ids[product_id]
        rows = self._rows[product_id]
        if before is not None:
            lo = bisect.bisect_right(ids, before)
            chosen = ids[lo : lo + limit]
        else:
            hi = len(ids) if after is None else bisect.bisect_left(ids, after)
            chosen = ids[max(0, hi - limit) : hi]
        return [rows[i] for i in reversed(chosen)]
