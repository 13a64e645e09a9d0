"""Subscribe parsing, acks and frame routing of the replay server, without sockets."""

from __future__ import annotations

import orjson
import pytest

from cryptopipe_dev.replay.source import describe_frame
from cryptopipe_dev.replay.subscriptions import SubscribeError, Subscriptions

PRODUCTS = ("BTC-USD", "ETH-USD")


def exchange(*messages: dict) -> Subscriptions:
    subs = Subscriptions("exchange", PRODUCTS)
    for message in messages:
        subs.apply(orjson.dumps(message))
    return subs


def test_exchange_string_and_object_channels():
    subs = exchange(
        {
            "type": "subscribe",
            "product_ids": ["BTC-USD"],
            "channels": ["matches", {"name": "heartbeat", "product_ids": ["ETH-USD", "BTC-USD"]}],
        }
    )
    assert subs.channels == {"matches": ["BTC-USD"], "heartbeat": ["ETH-USD", "BTC-USD"]}
    assert subs.exchange_ack(account_ids=True) == {
        "type": "subscriptions",
        "channels": [
            {"name": "matches", "product_ids": ["BTC-USD"], "account_ids": None},
            {"name": "heartbeat", "product_ids": ["ETH-USD", "BTC-USD"], "account_ids": None},
        ],
    }
    assert "account_ids" not in subs.exchange_ack(account_ids=False)["channels"][0]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["matchez"]}, "matchez is not a valid channel"),
        (
            {"type": "subscribe", "product_ids": ["DOGE-USD"], "channels": ["matches"]},
            "DOGE-USD is not a valid product",
        ),
        ({"type": "subscribe", "product_ids": ["BTC-USD"]}, "No channels provided"),
        ({"type": "subscribe", "channels": ["heartbeat"]}, "at least one product ID for channel heartbeat"),
        ({"type": "hello"}, "unknown message type"),
    ],
)
def test_exchange_invalid_subscribe_is_rejected_whole(message, reason):
    subs = exchange({"type": "subscribe", "product_ids": ["ETH-USD"], "channels": ["matches"]})
    bad = dict(message)
    if "channels" in bad and bad["channels"] == ["matchez"]:
        bad["channels"] = ["heartbeat", "matchez"]  # the valid channel in it must not be applied either
    with pytest.raises(SubscribeError) as caught:
        subs.apply(orjson.dumps(bad))
    assert reason in caught.value.reason
    assert subs.channels == {"matches": ["ETH-USD"]}
    frame = orjson.loads(caught.value.frame())
    assert frame["type"] == "error" and frame["message"] == "Failed to subscribe"


def test_malformed_client_frame():
    with pytest.raises(SubscribeError, match="malformed JSON"):
        Subscriptions("exchange", PRODUCTS).apply(b"{nope")


def test_unsubscribe():
    subs = exchange(
        {"type": "subscribe", "product_ids": list(PRODUCTS), "channels": ["matches", "heartbeat"]},
        {"type": "unsubscribe", "product_ids": ["BTC-USD"], "channels": ["matches"]},
        {"type": "unsubscribe", "channels": ["heartbeat"]},
    )
    assert subs.channels == {"matches": ["ETH-USD"]}


MATCH = orjson.dumps(
    {
        "type": "match",
        "trade_id": 5,
        "side": "buy",
        "size": "1",
        "price": "2",
        "product_id": "ETH-USD",
        "sequence": 9,
        "time": "2026-07-07T22:58:17.164892Z",
    }
).decode()


def test_exchange_routing_by_channel_and_product():
    frame = describe_frame(MATCH, "exchange", 0.0)
    assert exchange({"type": "subscribe", "product_ids": ["ETH-USD"], "channels": ["matches"]}).select(frame) == MATCH
    assert exchange({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["matches"]}).select(frame) is None
    assert exchange({"type": "subscribe", "product_ids": ["ETH-USD"], "channels": ["heartbeat"]}).select(frame) is None
    assert exchange({"type": "subscribe", "product_ids": ["ETH-USD"], "channels": ["full"]}).select(frame) == MATCH
    subs = exchange({"type": "subscribe", "product_ids": ["ETH-USD"], "channels": ["matches"]})
    assert subs.select(frame, withheld=frozenset({5})) is None


def at_trades_frame() -> str:
    trades = [
        {
            "product_id": p,
            "trade_id": str(i),
            "price": "1.5",
            "size": "0.1",
            "time": "2026-08-09T21:05:42.514318Z",
            "side": "SELL",
        }
        for i, p in enumerate(["BTC-USD", "ETH-USD", "BTC-USD", "ETH-USD"], start=10)
    ]
    return orjson.dumps(
        {
            "channel": "market_trades",
            "timestamp": "2026-08-09T21:05:48.228568804Z",
            "sequence_num": 7,
            "events": [{"type": "snapshot", "trades": trades}],
        }
    ).decode()


def advanced(products: list[str], channel: str = "market_trades") -> Subscriptions:
    subs = Subscriptions("advanced_trade", PRODUCTS)
    subs.apply(orjson.dumps({"type": "subscribe", "product_ids": products, "channel": channel}))
    return subs


def test_advanced_trade_filters_trades_inside_a_frame():
    raw = at_trades_frame()
    frame = describe_frame(raw, "advanced_trade", 0.0)
    assert frame.products == ("BTC-USD", "ETH-USD") and len(frame.trades) == 4
    assert advanced(list(PRODUCTS)).select(frame) == raw  # everything wanted: sent verbatim
    only_eth = advanced(["ETH-USD"]).select(frame)
    assert isinstance(only_eth, dict)
    assert [t["trade_id"] for t in only_eth["events"][0]["trades"]] == ["11", "13"]
    assert only_eth["channel"] == "market_trades" and only_eth["events"][0]["type"] == "snapshot"
    # a withheld trade is cut out of the frame; a frame left with no trade is not sent at all
    both = advanced(list(PRODUCTS)).select(frame, withheld=frozenset({10}))
    assert [t["trade_id"] for t in both["events"][0]["trades"]] == ["11", "12", "13"]
    assert advanced(["ETH-USD"]).select(frame, withheld=frozenset({11, 13})) is None
    assert advanced(list(PRODUCTS), channel="ticker").select(frame) is None


def test_advanced_trade_acks_and_productless_heartbeats():
    subs = advanced(list(PRODUCTS))
    subs.apply(orjson.dumps({"type": "subscribe", "channel": "heartbeats"}))
    assert subs.advanced_trade_ack_event() == {
        "subscriptions": {"heartbeats": ["heartbeats"], "market_trades": ["BTC-USD", "ETH-USD"]}
    }
    heartbeat = describe_frame(
        '{"channel":"heartbeats","timestamp":"2026-08-09T21:05:48.8Z","sequence_num":35,'
        '"events":[{"current_time":"x","heartbeat_counter":41691}]}',
        "advanced_trade",
        0.0,
    )
    assert subs.select(heartbeat) == heartbeat.raw
    with pytest.raises(SubscribeError, match="level3 is not a valid channel"):
        subs.apply(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level3"}))
