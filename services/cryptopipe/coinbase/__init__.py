"""The Coinbase protocol, as pure functions: subscribe frames, frame -> records, gap detection,
and REST backfill (the one module that does I/O)."""

from __future__ import annotations

from collections.abc import Sequence

from cryptopipe.coinbase import advtrade, exchange
from cryptopipe.coinbase.advtrade import parse_advanced_trade_frame
from cryptopipe.coinbase.exchange import parse_exchange_frame
from cryptopipe.coinbase.frames import FEED_URLS, REST_BASE_URL, FrameResult
from cryptopipe.coinbase.gaps import Gap, GapTracker
from cryptopipe.coinbase.rest import (
    BackfillError,
    FetchedRange,
    RejectedRow,
    fetch_trades,
    fetch_trades_range,
    parse_trades_page,
)
from cryptopipe.contracts import Feed

__all__ = [
    "FEED_URLS",
    "REST_BASE_URL",
    "BackfillError",
    "FetchedRange",
    "FrameResult",
    "Gap",
    "GapTracker",
    "RejectedRow",
    "fetch_trades",
    "fetch_trades_range",
    "parse_frame",
    "parse_trades_page",
    "subscribe_frames",
]


def parse_frame(raw: str | bytes, feed: Feed, receive_time_us: int, products: Sequence[str] = ()) -> FrameResult:
    """Parse one raw WebSocket frame of ``feed`` into records.

    Never raises for anything in the frame: a malformed frame comes back with ``error`` set, naming
    the field. ``products`` (the subscribed products) is used by Advanced Trade heartbeats, which
    name no product. An unknown ``feed`` is a programming error and raises ValueError.
    """
    if feed == "exchange":
        return parse_exchange_frame(raw, receive_time_us)
    if feed == "advanced_trade":
        return parse_advanced_trade_frame(raw, receive_time_us, products)
    raise ValueError(f"unknown feed {feed!r}")


def subscribe_frames(feed: Feed, products: Sequence[str]) -> list[str]:
    """The frames to send after connecting, in order."""
    if not products:
        raise ValueError("no products to subscribe to")
    if feed == "exchange":
        return exchange.subscribe_frames(products)
    if feed == "advanced_trade":
        return advtrade.subscribe_frames(products)
    raise ValueError(f"unknown feed {feed!r}")
