"""A client's subscriptions on either Coinbase feed: parse (un)subscribe frames, answer acks,
and decide which frames (and which trades inside a frame) the client receives.

Exchange: ``{"type": "subscribe", "product_ids": [...], "channels": ["matches", {"name": "heartbeat",
"product_ids": [...]}]}``; one ack ``{"type": "subscriptions", "channels": [...]}`` listing everything
subscribed. Advanced Trade: one channel per frame ``{"type": "subscribe", "product_ids": [...],
"channel": "market_trades"}``; the ack is an envelope on channel ``subscriptions``.
A subscribe frame that names an unknown channel or product is rejected whole with Coinbase's
error frame, as the real feed does.
"""

from __future__ import annotations

from typing import Any

import orjson

from cryptopipe.contracts import Feed
from cryptopipe_dev.replay.source import AT_PRODUCT_LISTS, SourceFrame

# Exchange frame type -> the channels that deliver it.
EXCHANGE_ROUTES: dict[str, frozenset[str]] = {
    "match": frozenset({"matches", "full"}),
    "last_match": frozenset({"matches"}),
    "heartbeat": frozenset({"heartbeat"}),
    "ticker": frozenset({"ticker", "ticker_batch"}),
    "snapshot": frozenset({"level2", "level2_batch", "level2_50"}),
    "l2update": frozenset({"level2", "level2_batch", "level2_50"}),
    "status": frozenset({"status"}),
    "received": frozenset({"full"}),
    "open": frozenset({"full"}),
    "done": frozenset({"full"}),
    "change": frozenset({"full"}),
    "activate": frozenset({"full"}),
    "auction": frozenset({"auctionfeed"}),
}
EXCHANGE_CHANNELS = frozenset().union(*EXCHANGE_ROUTES.values()) | {"user", "rfq_matches", "balance"}
PRODUCTLESS_EXCHANGE_CHANNELS = frozenset({"status", "balance", "rfq_matches"})

# Advanced Trade frame channel -> subscription channel (they differ only for level2).
AT_ROUTES = {"l2_data": "level2"}
AT_CHANNELS = frozenset(
    {
        "heartbeats",
        "candles",
        "status",
        "ticker",
        "ticker_batch",
        "level2",
        "market_trades",
        "user",
        "futures_balance_summary",
    }
)
PRODUCTLESS_AT_CHANNELS = frozenset({"heartbeats", "status", "user", "futures_balance_summary"})


class SubscribeError(Exception):
    def __init__(self, message: str, reason: str) -> None:
        super().__init__(f"{message}: {reason}")
        self.message = message
        self.reason = reason

    def frame(self) -> str:
        return orjson.dumps({"type": "error", "message": self.message, "reason": self.reason}).decode()


class Subscriptions:
    """channel -> subscribed products, in subscription order."""

    def __init__(self, feed: Feed, valid_products: tuple[str, ...]) -> None:
        self.feed = feed
        self.valid_products = frozenset(valid_products)
        self.channels: dict[str, list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self.channels)

    @property
    def _productless(self) -> frozenset[str]:
        return PRODUCTLESS_EXCHANGE_CHANNELS if self.feed == "exchange" else PRODUCTLESS_AT_CHANNELS

    def products(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for products in self.channels.values():
            seen.update(dict.fromkeys(products))
        return tuple(seen)

    def apply(self, raw: str | bytes) -> str:
        """Apply one client frame; return its type ("subscribe"/"unsubscribe"). Raises SubscribeError
        and changes nothing when the frame is invalid."""
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise SubscribeError("Failed to subscribe", "malformed JSON") from None
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind not in ("subscribe", "unsubscribe"):
            raise SubscribeError("Failed to subscribe", f"unknown message type {kind!r}")
        verb = "Failed to subscribe" if kind == "subscribe" else "Failed to unsubscribe"
        wanted = self._requested(msg, verb)
        for channel, products in wanted.items():
            if kind == "subscribe":
                current = self.channels.setdefault(channel, [])
                current.extend(p for p in products if p not in current)
            elif channel in self.channels:
                current = self.channels[channel]
                current[:] = [p for p in current if p not in products]
                if not products or not current:
                    del self.channels[channel]
        return kind

    def _requested(self, msg: dict[str, Any], verb: str) -> dict[str, list[str]]:
        top_products = msg.get("product_ids") or []
        if not isinstance(top_products, list) or not all(isinstance(p, str) for p in top_products):
            raise SubscribeError(verb, "product_ids must be a list of strings")
        if self.feed == "exchange":
            entries = msg.get("channels")
            if not entries:
                raise SubscribeError(verb, "No channels provided")
        else:
            entries = [msg["channel"]] if msg.get("channel") else []
            if not entries:
                raise SubscribeError(verb, "No channel provided")
        known = EXCHANGE_CHANNELS if self.feed == "exchange" else AT_CHANNELS
        wanted: dict[str, list[str]] = {}
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict):
                name, products = entry.get("name"), entry.get("product_ids") or top_products
            else:
                name, products = entry, top_products
            if not isinstance(name, str) or name not in known:
                raise SubscribeError(verb, f"{name} is not a valid channel")
            for product in products:
                if product not in self.valid_products:
                    raise SubscribeError(verb, f"{product} is not a valid product")
            if not products and name not in self._productless and verb == "Failed to subscribe":
                raise SubscribeError(verb, f"You need to specify at least one product ID for channel {name}")
            wanted.setdefault(name, [])
            wanted[name].extend(p for p in products if p not in wanted[name])
        return wanted

    def exchange_ack(self, account_ids: bool) -> dict[str, Any]:
        channels = []
        for name, products in self.channels.items():
            entry: dict[str, Any] = {"name": name, "product_ids": list(products)}
            if account_ids:
                entry["account_ids"] = None
            channels.append(entry)
        return {"type": "subscriptions", "channels": channels}

    def advanced_trade_ack_event(self) -> dict[str, Any]:
        # As recorded: keys sorted, and the heartbeats channel lists the literal "heartbeats".
        subs = {
            name: (["heartbeats"] if name == "heartbeats" else list(products))
            for name, products in sorted(self.channels.items())
        }
        return {"subscriptions": subs}

    # -- routing -------------------------------------------------------------------------------

    def select(self, frame: SourceFrame, withheld: frozenset[int] = frozenset()) -> str | dict[str, Any] | None:
        """What of ``frame`` this client receives: the raw text unchanged (the common case), a
        filtered Advanced Trade envelope as a dict (the caller serialises it), or None.
        ``withheld`` are trade ids a fault keeps off the WebSocket stream."""
        if self.feed == "exchange":
            return self._select_exchange(frame, withheld)
        return self._select_advanced_trade(frame, withheld)

    def _select_exchange(self, frame: SourceFrame, withheld: frozenset[int]) -> str | None:
        routes = EXCHANGE_ROUTES.get(frame.kind)
        if routes is None:
            return frame.raw if frame.kind == "unparseable" and self else None
        if frame.trades and frame.trades[0].trade_id in withheld:
            return None
        for channel in routes:
            products = self.channels.get(channel)
            if products is None:
                continue
            if not frame.products or frame.products[0] in products:
                return frame.raw
        return None

    def _select_advanced_trade(self, frame: SourceFrame, withheld: frozenset[int]) -> str | dict[str, Any] | None:
        if frame.kind == "unparseable":
            return frame.raw if self else None
        wanted = self.channels.get(AT_ROUTES.get(frame.kind, frame.kind))
        if wanted is None:
            return None
        touches_withheld = any(t.trade_id in withheld for t in frame.trades)
        if not frame.products or (set(frame.products).issubset(wanted) and not touches_withheld):
            return frame.raw
        if not set(frame.products) & set(wanted):
            return None
        return _filter_envelope(orjson.loads(frame.raw), frozenset(wanted), withheld)


def _filter_envelope(
    envelope: dict[str, Any], wanted: frozenset[str], withheld: frozenset[int]
) -> dict[str, Any] | None:
    """Keep only the subscribed products' items (and no withheld trade); None if nothing is left.
    A market_trades frame carries several products' trades at once, so this is per item."""
    events = []
    for event in envelope.get("events") or ():
        if not isinstance(event, dict):
            continue
        if isinstance(event.get("product_id"), str):
            if event["product_id"] in wanted:
                events.append(event)
            continue
        lists = [key for key in AT_PRODUCT_LISTS if isinstance(event.get(key), list)]
        if not lists:
            events.append(event)
            continue
        kept = dict(event)
        for key in lists:
            kept[key] = [
                item
                for item in event[key]
                if isinstance(item, dict)
                and item.get("product_id") in wanted
                and not (key == "trades" and _trade_id(item) in withheld)
            ]
        if any(kept[key] for key in lists):
            events.append(kept)
    if not events:
        return None
    return {**envelope, "events": events}


def _trade_id(item: dict[str, Any]) -> int | None:
    try:
        return int(item.get("trade_id"))
    except (TypeError, ValueError):
        return None
