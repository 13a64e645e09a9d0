"""The Coinbase Exchange feed (wss://ws-feed.exchange.coinbase.com): subscribe frames and frame parser.

Channels used: ``matches`` (one ``match`` frame per trade, plus one ``last_match`` on subscribe that
repeats the latest trade) and ``heartbeat`` (one frame per product per second carrying the
product's ``last_trade_id``). Trade ids rise by exactly 1 per product, which is what makes gap
detection (gaps.py) and REST backfill (rest.py) exact on this feed.

Speed matters: ingestion aims at >= 50,000 trades/s on one core including the Kafka produce, so a
``match`` frame is one ``orjson.loads`` plus direct dict reads, no validation framework, and a fast
path for the common shape (plain decimals, digit ids, a cached second) before the full readers:
4.2 µs a trade on the 2-core dev machine (5.5 µs without the fast path, measured side by side; see
docs/benchmarks.md, "The parse and the record on the hot path"). The benchmark is the comment above
parse_exchange_frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from cryptopipe.coinbase.frames import FrameResult
from cryptopipe.coinbase.parse import (
    INT64_MAX,
    check_object,
    decode_object,
    plain_trade_fields,
    read_decimal,
    read_int,
    read_list,
    read_product_ids,
    read_side,
    read_str,
    read_time_us,
    server_error_text,
    shown,
)
from cryptopipe.contracts import ContractError, Tick, Trade, parse_time_us

CHANNELS = ("matches", "heartbeat")


def subscribe_frames(products: Sequence[str]) -> list[str]:
    return [orjson.dumps({"type": "subscribe", "product_ids": list(products), "channels": list(CHANNELS)}).decode()]


# Micro-benchmark, to paste into a Python shell:
#   import timeit
#   from cryptopipe.coinbase.exchange import parse_exchange_frame
#   frame = (b'{"type":"match","trade_id":1052119289,"side":"sell","size":"0.2","price":"63514.6",'
#            b'"product_id":"BTC-USD","sequence":132235026010,"time":"2026-07-07T22:58:17.164892Z"}')
#   print(timeit.timeit(lambda: parse_exchange_frame(frame, 0), number=100_000) * 10, "µs per frame")
def parse_exchange_frame(raw: str | bytes, receive_time_us: int) -> FrameResult:
    """Parse one Exchange feed frame. Never raises: a bad frame comes back with ``error`` set."""
    try:
        frame = decode_object(raw)
    except ContractError as exc:
        return FrameResult("unknown", error=str(exc))
    frame_type = frame.get("type")
    if type(frame_type) is not str:
        return FrameResult("unknown", error=f"type must be a string: {shown(frame_type)}")
    reader = _READERS.get(frame_type)
    if reader is None:
        # ticker, l2update, snapshot, status, ...: valid frames that yield no records
        return FrameResult(frame_type)
    try:
        return reader(frame, receive_time_us)
    except ContractError as exc:
        return FrameResult(frame_type, error=str(exc))


def _trade(frame: dict[str, Any], receive_time_us: int) -> Trade:
    return Trade(
        product_id=read_str(frame, "product_id"),
        trade_id=read_int(frame, "trade_id", 1),
        price=read_decimal(frame, "price"),
        size=read_decimal(frame, "size"),
        side=read_side(frame, "side"),
        event_time_us=read_time_us(frame, "time"),
        receive_time_us=receive_time_us,
        feed="exchange",
        sequence=read_int(frame, "sequence", 0),
    )


def _common_trade(frame: dict[str, Any], receive_time_us: int) -> Trade | None:
    """``_trade`` for the shape nearly every match has (checked in one pass, no reader calls), or
    None for any other frame, which ``_trade`` then reads field by field: the same Trade for what
    both accept, and the reason for what it refuses. Only ``time`` may raise here, and only when
    every other field is valid -- where ``_trade`` raises the same error (``sequence``, read after
    ``time`` there, is checked before it here)."""
    trade_id, sequence = frame.get("trade_id"), frame.get("sequence")
    if not (
        type(trade_id) is int and 1 <= trade_id <= INT64_MAX and type(sequence) is int and 0 <= sequence <= INT64_MAX
    ):
        return None
    fields = plain_trade_fields(frame)
    if fields is None:
        return None
    product_id, price, size, side, time = fields
    return Trade(
        product_id,
        trade_id,
        price,
        size,
        side,
        parse_time_us("time", time),
        receive_time_us,
        "exchange",
        "ws",
        sequence,
    )


def _match(frame: dict[str, Any], receive_time_us: int) -> FrameResult:
    trade = _common_trade(frame, receive_time_us)
    return FrameResult("match", trades=(trade if trade is not None else _trade(frame, receive_time_us),))


def _last_match(frame: dict[str, Any], receive_time_us: int) -> FrameResult:
    # Sent once per product on subscribe: the latest trade, which may already have been produced.
    return FrameResult("last_match", trades=(_trade(frame, receive_time_us),), is_snapshot=True)


def _heartbeat(frame: dict[str, Any], receive_time_us: int) -> FrameResult:
    tick = Tick(
        product_id=read_str(frame, "product_id"),
        event_time_us=read_time_us(frame, "time"),
        receive_time_us=receive_time_us,
        feed="exchange",
        # 0 means the product has never traded (seen on the sandbox), so >= 0 rather than > 0
        last_trade_id=read_int(frame, "last_trade_id", 0),
    )
    return FrameResult("heartbeat", ticks=(tick,))


def _subscriptions(frame: dict[str, Any], receive_time_us: int) -> FrameResult:
    subscribed: dict[str, tuple[str, ...]] = {}
    for i, entry in enumerate(read_list(frame, "channels")):
        channel = check_object(entry, f"channels[{i}]")
        try:
            subscribed[read_str(channel, "name")] = read_product_ids(channel, "product_ids")
        except ContractError as exc:
            raise ContractError(f"channels[{i}].{exc}") from None
    return FrameResult("subscriptions", subscribed=subscribed)


def _error(frame: dict[str, Any], receive_time_us: int) -> FrameResult:
    return FrameResult("error", server_error=server_error_text(frame))


_READERS: dict[str, Callable[[dict[str, Any], int], FrameResult]] = {
    "match": _match,
    "last_match": _last_match,
    "heartbeat": _heartbeat,
    "subscriptions": _subscriptions,
    "error": _error,
}
