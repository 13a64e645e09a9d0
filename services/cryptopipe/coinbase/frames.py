"""What parsing one WebSocket frame yields. Pure data; the parsers live in exchange.py / advtrade.py."""

from __future__ import annotations

import dataclasses

from cryptopipe.contracts import Tick, Trade, quick_frozen_init

FEED_URLS = {
    "exchange": "wss://ws-feed.exchange.coinbase.com",
    "advanced_trade": "wss://advanced-trade-ws.coinbase.com",
}
REST_BASE_URL = "https://api.exchange.coinbase.com"


@quick_frozen_init  # one per frame
@dataclasses.dataclass(frozen=True, slots=True)
class FrameResult:
    """The outcome of parsing one raw frame.

    - ``error`` set: the frame is malformed or breaks the contract; it goes to the dead-letter
      topic with this reason (which names the field) and ingestion goes on.
    - ``server_error`` set: Coinbase sent an ``error`` frame (a valid frame saying something failed).
    - ``trades`` / ``ticks``: records to produce. ``is_snapshot`` marks frames that repeat trades
      already seen (Exchange ``last_match``, Advanced Trade ``snapshot`` events).
    - ``subscribed``: channel -> product ids, from a ``subscriptions`` acknowledgement.
    """

    frame_type: str
    trades: tuple[Trade, ...] = ()
    ticks: tuple[Tick, ...] = ()
    error: str | None = None
    server_error: str | None = None
    subscribed: dict[str, tuple[str, ...]] | None = None
    is_snapshot: bool = False
