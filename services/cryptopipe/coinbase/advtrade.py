"""The Coinbase Advanced Trade feed (wss://advanced-trade-ws.coinbase.com): subscribe frames and parser.

Every frame is an envelope ``{"channel", "timestamp", "sequence_num", "events": [...]}``.
Channels used: ``market_trades`` (events of type ``snapshot`` — the latest 100 trades per product on
subscribe, so they repeat trades already seen after a reconnect — or ``update``) and ``heartbeats``
(one frame per second for the whole connection, naming no product and no trade id).
Unlike the Exchange feed, ``trade_id`` is a string and a frame can carry many trades, newest first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import orjson

from cryptopipe.coinbase.frames import FrameResult
from cryptopipe.coinbase.parse import (
    INT64_MAX,
    POSITIVE_INT64_DIGITS,
    check_object,
    decode_object,
    plain_trade_fields,
    read_decimal,
    read_digits,
    read_int,
    read_list,
    read_object,
    read_product_ids,
    read_side,
    read_str,
    read_time_us,
    server_error_text,
    shown,
)
from cryptopipe.contracts import ContractError, Tick, Trade, parse_time_us

CHANNELS = ("market_trades", "heartbeats")
_EVENT_TYPES = frozenset({"snapshot", "update"})
_OLDEST_FIRST = attrgetter("event_time_us", "trade_id")


def subscribe_frames(products: Sequence[str]) -> list[str]:
    # The feed takes one channel per subscribe message.
    return [
        orjson.dumps({"type": "subscribe", "product_ids": list(products), "channel": channel}).decode()
        for channel in CHANNELS
    ]


def parse_advanced_trade_frame(raw: str | bytes, receive_time_us: int, products: Sequence[str] = ()) -> FrameResult:
    """Parse one Advanced Trade frame. Never raises: a bad frame comes back with ``error`` set.

    ``products`` are the subscribed products: a ``heartbeats`` frame names none, so it yields one
    Tick for each of them.
    """
    try:
        frame = decode_object(raw)
    except ContractError as exc:
        return FrameResult("unknown", error=str(exc))
    channel = frame.get("channel")
    if channel is None and frame.get("type") == "error":
        # A rejected subscription comes back as {"type":"error","message":...}, outside any channel.
        return FrameResult("error", server_error=server_error_text(frame))
    if type(channel) is not str:
        return FrameResult("unknown", error=f"channel must be a string: {shown(channel)}")
    reader = _READERS.get(channel)
    if reader is None:
        # ticker, candles, l2_data, status, ...: valid frames that yield no records
        return FrameResult(channel)
    try:
        return reader(frame, receive_time_us, products)
    except ContractError as exc:
        return FrameResult(channel, error=str(exc))


def _trade(item: dict[str, Any], sequence: int, receive_time_us: int) -> Trade:
    return Trade(
        product_id=read_str(item, "product_id"),
        trade_id=read_digits(item, "trade_id"),
        price=read_decimal(item, "price"),
        size=read_decimal(item, "size"),
        # "BUY"/"SELL" is the maker's side, as on the Exchange feed
        side=read_side(item, "side"),
        event_time_us=read_time_us(item, "time"),
        receive_time_us=receive_time_us,
        feed="advanced_trade",
        sequence=sequence,
    )


def _common_trade(item: dict[str, Any], sequence: int, receive_time_us: int) -> Trade | None:
    """``_trade`` for the shape nearly every trade has (checked in one pass, no reader calls), or None
    for any other item, which ``_trade`` then reads field by field: the same Trade for what both
    accept, and the reason for what it refuses. Only ``time`` may raise here, and only when every
    other field is valid -- where ``_trade`` raises the same error, as it reads ``time`` last."""
    trade_id = item.get("trade_id")
    if type(trade_id) is not str or not POSITIVE_INT64_DIGITS.fullmatch(trade_id):
        return None
    fields = plain_trade_fields(item)
    if fields is None:
        return None
    product_id, price, size, side, time = fields
    return Trade(
        product_id,
        int(trade_id),
        price,
        size,
        side,
        parse_time_us("time", time),
        receive_time_us,
        "advanced_trade",
        "ws",
        sequence,
    )


def _market_trades(frame: dict[str, Any], receive_time_us: int, products: Sequence[str]) -> FrameResult:
    # (this runs once per frame: the readers, which word the reason, are called only for a bad value)
    sequence = frame.get("sequence_num")
    if type(sequence) is not int or not 0 <= sequence <= INT64_MAX:
        sequence = read_int(frame, "sequence_num", 0)
    events = frame.get("events")
    if type(events) is not list:
        events = read_list(frame, "events")
    trades: list[Trade] = []
    is_snapshot = False
    for i, event in enumerate(events):
        if type(event) is not dict:
            check_object(event, f"events[{i}]")
        event_type, items = event.get("type"), event.get("trades")
        if type(event_type) is not str or event_type not in _EVENT_TYPES or type(items) is not list:
            try:
                event_type = read_str(event, "type")
                if event_type not in _EVENT_TYPES:
                    raise ContractError(f"type must be snapshot or update: {shown(event_type)}")
                items = read_list(event, "trades")
            except ContractError as exc:
                raise ContractError(f"events[{i}].{exc}") from None
        is_snapshot = is_snapshot or event_type == "snapshot"
        for j, item in enumerate(items):
            # One bad trade fails the whole frame, which goes to the dead-letter topic whole:
            # never half-produced, so the DLQ record alone says everything that frame carried.
            if type(item) is not dict:
                check_object(item, f"events[{i}].trades[{j}]")
            try:
                trade = _common_trade(item, sequence, receive_time_us)
                trades.append(trade if trade is not None else _trade(item, sequence, receive_time_us))
            except ContractError as exc:
                raise ContractError(f"events[{i}].trades[{j}].{exc}") from None
    # The feed lists trades newest first; downstream (and gap detection) wants them in trade order.
    if len(trades) > 1:
        trades.sort(key=_OLDEST_FIRST)
    return FrameResult("market_trades", trades=tuple(trades), is_snapshot=is_snapshot)


def _heartbeats(frame: dict[str, Any], receive_time_us: int, products: Sequence[str]) -> FrameResult:
    event_time_us = _heartbeat_time_us(frame)
    ticks = tuple(
        Tick(product_id=product_id, event_time_us=event_time_us, receive_time_us=receive_time_us, feed="advanced_trade")
        for product_id in products
    )
    return FrameResult("heartbeats", ticks=ticks)


def _heartbeat_time_us(frame: dict[str, Any]) -> int:
    """The server's clock at the heartbeat: ``events[0].current_time``, else the frame ``timestamp``.

    current_time is Go's ``time.Time.String()``, e.g.
    ``2026-08-09 21:05:48.854840045 +0000 UTC m=+41691.260485341`` (date, time, offset, zone name,
    monotonic clock). That is a debugging format rather than a documented field, hence the fallback.
    """
    events = frame.get("events")
    if type(events) is list and events and type(events[0]) is dict:
        current_time = events[0].get("current_time")
        if type(current_time) is str:
            date, _, rest = current_time.partition(" ")
            clock, _, rest = rest.partition(" ")
            offset = rest.partition(" ")[0]
            try:
                return parse_time_us("events[0].current_time", f"{date}T{clock}{offset}")
            except ContractError:
                pass
    try:
        return read_time_us(frame, "timestamp")
    except ContractError as exc:
        raise ContractError(f"events[0].current_time is missing or not a time, and {exc}") from None


def _subscriptions(frame: dict[str, Any], receive_time_us: int, products: Sequence[str]) -> FrameResult:
    # events: [{"subscriptions": {"market_trades": ["BTC-USD", "ETH-USD"]}}]; the heartbeats channel
    # is acknowledged as {"heartbeats": ["heartbeats"]}, which is passed on as the server sent it.
    subscribed: dict[str, tuple[str, ...]] = {}
    for i, event in enumerate(read_list(frame, "events")):
        if type(event) is not dict:  # (the path is formatted only for the error: this runs per frame)
            check_object(event, f"events[{i}]")
        try:
            channels = read_object(event, "subscriptions")
        except ContractError as exc:
            raise ContractError(f"events[{i}].{exc}") from None
        for channel in channels:
            try:
                subscribed[channel] = read_product_ids(channels, channel)
            except ContractError as exc:
                raise ContractError(f"events[{i}].subscriptions.{exc}") from None
    return FrameResult("subscriptions", subscribed=subscribed)


_READERS: dict[str, Callable[[dict[str, Any], int, Sequence[str]], FrameResult]] = {
    "market_trades": _market_trades,
    "heartbeats": _heartbeats,
    "subscriptions": _subscriptions,
}
