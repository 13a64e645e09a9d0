"""The replay's per-feed dialects and per-connection fault decisions, without sockets."""

from __future__ import annotations

import orjson

from cryptopipe_dev.replay.dialect_advanced_trade import AdvancedTradeDialect
from cryptopipe_dev.replay.dialect_exchange import ExchangeDialect
from cryptopipe_dev.replay.faults import Faults, FaultState
from cryptopipe_dev.replay.injector import Drop, FaultInjector, SendMalformed, Stall
from cryptopipe_dev.replay.source import describe_frame
from cryptopipe_dev.replay.subscriptions import Subscriptions

PRODUCTS = ("BTC-USD", "ETH-USD")


def subscribed(feed, *messages: dict) -> Subscriptions:
    subs = Subscriptions(feed, PRODUCTS)
    for message in messages:
        subs.apply(orjson.dumps(message))
    return subs


def match(trade_id: int, product: str = "BTC-USD", index: int = 0):
    raw = orjson.dumps(
        {
            "type": "match",
            "trade_id": trade_id,
            "sequence": 100 + trade_id,
            "product_id": product,
            "price": "1.5",
            "size": "0.1",
            "side": "buy",
            "time": "2026-07-07T00:00:01.000000Z",
        }
    ).decode()
    return describe_frame(raw, "exchange", 1.0 + trade_id, index)


def at_trade(trade_id: int, sequence_num: int = 7):
    raw = orjson.dumps(
        {
            "channel": "market_trades",
            "timestamp": "2026-08-09T21:05:48.228568804Z",
            "sequence_num": sequence_num,
            "events": [
                {
                    "type": "update",
                    "trades": [
                        {
                            "product_id": "BTC-USD",
                            "trade_id": str(trade_id),
                            "price": "1.5",
                            "size": "0.1",
                            "time": "2026-08-09T21:05:42.514318Z",
                            "side": "SELL",
                        }
                    ],
                }
            ],
        }
    ).decode()
    return describe_frame(raw, "advanced_trade", 0.0)


def test_exchange_resumes_matches_with_one_last_match_per_subscribed_product_and_heartbeats_carry_on():
    subs = subscribed(
        "exchange", {"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["matches", "heartbeat"]}
    )
    dialect = ExchangeDialect(subs, {"account_ids": False})
    frames = {"BTC-USD": match(5), "ETH-USD": match(6, "ETH-USD")}
    [(text, frame)] = list(dialect.resumed(frames))
    assert frame is frames["BTC-USD"] and orjson.loads(text)["type"] == "last_match"
    assert dialect.select(frame, frozenset()) == frame.raw
    dialect.observe(match(9))
    [beat] = dialect.end_heartbeats(1_783_382_400)
    assert orjson.loads(beat) == {
        "type": "heartbeat",
        "last_trade_id": 9,
        "product_id": "BTC-USD",
        "sequence": 109,
        "time": "2026-07-07T00:00:00.000000Z",
    }
    assert orjson.loads(dialect.ack(0.0)) == {
        "type": "subscriptions",
        "channels": [
            {"name": "matches", "product_ids": ["BTC-USD"]},
            {"name": "heartbeat", "product_ids": ["BTC-USD"]},
        ],
    }


def test_advanced_trade_numbers_each_connection_from_zero_and_leaves_the_gap_of_a_withheld_frame():
    subs = subscribed("advanced_trade", {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "market_trades"})
    dialect = AdvancedTradeDialect(subs, {})
    assert orjson.loads(dialect.ack(1_786_309_548.5))["sequence_num"] == 0
    assert list(dialect.resumed({})) == []
    assert orjson.loads(dialect.select(at_trade(1), frozenset()))["sequence_num"] == 1
    assert dialect.select(at_trade(2), frozenset({2})) is None  # withheld: the real feed numbered it
    assert orjson.loads(dialect.select(at_trade(3), frozenset()))["sequence_num"] == 3
    assert dialect.end_heartbeats(1_786_309_549) == []  # no heartbeats subscription


def test_counted_faults_are_taken_one_at_a_time_as_the_session_acts_on_them():
    state = FaultState(Faults(malformed_after=1, malformed_kind="truncated", stall_after=1, stall_seconds=2.0))
    injector = FaultInjector(state, connection_id=3)
    assert list(injector.due(0)) == []
    injector.sent('{"type":"match"}', match(1))
    due = injector.due(1)
    assert next(due) == SendMalformed('{"type":', "truncated")  # its first half
    assert state.fired == {"malformed_after": 3}  # the client went away here: the stall stays armed
    assert list(FaultInjector(state, connection_id=4).due(1)) == [Stall(2.0)]
    assert state.fired == {"malformed_after": 3, "stall_after": 4}

    state.arm(Faults(drop_after=0, drop_lose=5, skip_trade_ids=frozenset({7})))
    injector = FaultInjector(state, connection_id=5)
    assert list(injector.due(0)) == [Drop(lose=5, close_code=None)]
    assert injector.withheld(match(7)) == frozenset({7}) and injector.withheld(match(8)) == frozenset()
