"""parse_frame and subscribe_frames on single frames: shared fixtures, malformed frames, decimals."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from cryptopipe.coinbase import FrameResult, parse_frame, subscribe_frames
from cryptopipe.contracts import Tick, Trade, decode_record
from tests.support.paths import COINBASE_DATA

DATA = COINBASE_DATA
PRO_NODE = DATA / "coinbase-pro-node"
JKORF = DATA / "jkorf-coinbase-net"
RECEIVED = 1_700_000_000_000_000


def us(*args: int) -> int:
    return (datetime(*args, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // datetime.resolution


def jkorf_frames(name: str) -> list[str]:
    """Frames the server sent in a JKorf test script: ``< reply`` lines and bare pushed-frame lines."""
    frames = []
    for line in (JKORF / name).read_text().splitlines():
        if line.startswith("< "):
            frames.append(line[2:])
        elif line.startswith("{"):
            frames.append(line)
    return frames


# A real Exchange match (2026-07-07 recording) and a real Advanced Trade update (JKorf fixture),
# as templates for malformed variants.
MATCH: dict[str, Any] = {
    "type": "match",
    "trade_id": 1052119289,
    "maker_order_id": "15bc13f2-e38c-4693-8c0b-e8c6152b9c1d",
    "taker_order_id": "13d7d08f-7396-421b-9dba-94eac92f3d78",
    "side": "sell",
    "size": "0.2",
    "price": "63514.6",
    "product_id": "BTC-USD",
    "sequence": 132235026010,
    "time": "2026-07-07T22:58:17.164892Z",
}
HEARTBEAT: dict[str, Any] = {
    "type": "heartbeat",
    "last_trade_id": 1052119293,
    "product_id": "BTC-USD",
    "sequence": 132235026653,
    "time": "2026-07-07T22:58:18.000000Z",
}
MARKET_TRADES: dict[str, Any] = orjson.loads(jkorf_frames("AdvancedTrade_Trades.txt")[1])
AT_SUBSCRIPTIONS: dict[str, Any] = orjson.loads(jkorf_frames("AdvancedTrade_Trades.txt")[0])
EX_SUBSCRIPTIONS: dict[str, Any] = orjson.loads((PRO_NODE / "ws_ticker_subscribe-success.json").read_bytes())

MISSING = object()


def with_value(frame: dict[str, Any], path: tuple[str | int, ...], value: Any) -> bytes:
    """``frame`` with the field at ``path`` set to ``value`` (or deleted, for MISSING), as JSON."""
    changed = copy.deepcopy(frame)
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    if value is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return orjson.dumps(changed)


def path_name(path: tuple[str | int, ...]) -> str:
    """("events", 0, "trades", 1, "price") -> "events[0].trades[1].price", as errors spell it."""
    name = ""
    for key in path:
        name += f"[{key}]" if isinstance(key, int) else (f".{key}" if name else key)
    return name


# --- shared fixtures -------------------------------------------------------------------------


def test_pro_node_match():
    result = parse_frame((PRO_NODE / "ws_matches_BTC-USD.json").read_bytes(), "exchange", RECEIVED)
    assert result == FrameResult(
        "match",
        trades=(
            Trade(
                "BTC-USD",
                9713921,
                Decimal("9692.53"),
                Decimal("2.2285"),
                "sell",
                us(2020, 2, 24, 7, 20, 0, 716579),
                RECEIVED,
                "exchange",
                "ws",
                122107997,
            ),
        ),
    )


def test_pro_node_heartbeat_of_a_product_that_never_traded():
    result = parse_frame((PRO_NODE / "ws_heartbeat_ETH-EUR.json").read_text(), "exchange", RECEIVED)
    assert result == FrameResult(
        "heartbeat", ticks=(Tick("ETH-EUR", us(2019, 5, 10, 21, 21, 26, 519588), RECEIVED, "exchange", 0),)
    )


def test_pro_node_error_frame_is_a_server_error_not_a_bad_frame():
    result = parse_frame((PRO_NODE / "ws_ticker_unsubscribe-error.json").read_bytes(), "exchange", RECEIVED)
    assert result == FrameResult("error", server_error="Failed to unsubscribe: No channels provided")


def test_pro_node_subscriptions():
    assert parse_frame(orjson.dumps(EX_SUBSCRIPTIONS), "exchange", RECEIVED).subscribed == {
        "ticker": ("BTC-USD", "ETH-EUR")
    }
    empty = parse_frame((PRO_NODE / "ws_empty-subscriptions.json").read_bytes(), "exchange", RECEIVED)
    assert (empty.frame_type, empty.subscribed, empty.error) == ("subscriptions", {}, None)


@pytest.mark.parametrize(
    ("name", "frame_type"), [("ws_ticker_BTC-USD.json", "ticker"), ("ws_status_status.json", "status")]
)
def test_pro_node_frames_without_records(name, frame_type):
    assert parse_frame((PRO_NODE / name).read_bytes(), "exchange", RECEIVED) == FrameResult(frame_type)


def test_jkorf_market_trades_are_returned_oldest_first():
    result = parse_frame(orjson.dumps(MARKET_TRADES), "advanced_trade", RECEIVED)
    common = {
        "product_id": "ETH-USDT",
        "price": Decimal("2375.56"),
        "size": Decimal("0.5"),
        "side": "buy",
        "receive_time_us": RECEIVED,
        "feed": "advanced_trade",
        "sequence": 2,
    }
    assert result == FrameResult(
        "market_trades",
        trades=(
            Trade(trade_id=22381690, event_time_us=us(2024, 10, 4, 7, 13, 31, 84859), **common),
            Trade(trade_id=22381691, event_time_us=us(2024, 10, 4, 7, 13, 31, 88388), **common),
        ),
    )


def test_jkorf_subscriptions_acks():
    assert parse_frame(orjson.dumps(AT_SUBSCRIPTIONS), "advanced_trade", RECEIVED).subscribed == {
        "market_trades": ("ETH-USDT",)
    }
    ack = jkorf_frames("AdvancedTrade_Heartbeat.txt")[0]
    assert parse_frame(ack, "advanced_trade", RECEIVED).subscribed == {"heartbeats": ("heartbeats",)}


def test_jkorf_heartbeat_ticks_every_subscribed_product():
    frame = jkorf_frames("AdvancedTrade_Heartbeat.txt")[1]
    at = us(2024, 10, 4, 7, 4, 40, 820713)  # current_time "2024-10-04 07:04:40.820713045 +0000 UTC m=+..."
    result = parse_frame(frame, "advanced_trade", RECEIVED, ("BTC-USD", "ETH-USD"))
    assert result.ticks == (
        Tick("BTC-USD", at, RECEIVED, "advanced_trade"),
        Tick("ETH-USD", at, RECEIVED, "advanced_trade"),
    )
    assert parse_frame(frame, "advanced_trade", RECEIVED) == FrameResult("heartbeats")


def test_advtrade_heartbeat_falls_back_to_the_frame_timestamp():
    frame = orjson.loads(jkorf_frames("AdvancedTrade_Heartbeat.txt")[1])
    frame["events"][0]["current_time"] = "sometime on Friday"
    result = parse_frame(orjson.dumps(frame), "advanced_trade", RECEIVED, ("BTC-USD",))
    assert result.ticks[0].event_time_us == us(2024, 10, 4, 7, 4, 40, 825062)  # "timestamp"
    frame["timestamp"] = "later"
    result = parse_frame(orjson.dumps(frame), "advanced_trade", RECEIVED, ("BTC-USD",))
    assert result.ticks == () and "current_time" in result.error and "timestamp" in result.error


def test_advtrade_snapshot_event_marks_the_frame():
    frame = copy.deepcopy(MARKET_TRADES)
    frame["events"][0]["type"] = "snapshot"
    result = parse_frame(orjson.dumps(frame), "advanced_trade", RECEIVED)
    assert result.is_snapshot and len(result.trades) == 2
    assert not parse_frame(orjson.dumps(MARKET_TRADES), "advanced_trade", RECEIVED).is_snapshot


def test_exchange_last_match_is_a_snapshot():
    result = parse_frame(orjson.dumps(MATCH | {"type": "last_match"}), "exchange", RECEIVED)
    assert (result.frame_type, result.is_snapshot, result.trades[0].trade_id) == ("last_match", True, 1052119289)


def test_exchange_heartbeat():
    assert parse_frame(orjson.dumps(HEARTBEAT), "exchange", RECEIVED).ticks == (
        Tick("BTC-USD", us(2026, 7, 7, 22, 58, 18), RECEIVED, "exchange", 1052119293),
    )


def test_advtrade_error_frame():
    raw = b'{"type":"error","message":"failure to subscribe"}'
    assert parse_frame(raw, "advanced_trade", RECEIVED) == FrameResult("error", server_error="failure to subscribe")


@pytest.mark.parametrize("channel", ["ticker", "candles", "l2_data", "level2", "status"])
def test_advtrade_other_channels_yield_nothing(channel):
    raw = orjson.dumps({"channel": channel, "timestamp": "2026-08-09T21:05:48.2Z", "sequence_num": 3, "events": []})
    assert parse_frame(raw, "advanced_trade", RECEIVED, ("BTC-USD",)) == FrameResult(channel)


def test_str_and_bytes_frames_parse_alike():
    text = orjson.dumps(MATCH).decode()
    assert parse_frame(text, "exchange", RECEIVED) == parse_frame(text.encode(), "exchange", RECEIVED)


# --- decimals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "0.00000001",
        "9999999999.99999999",
        "999999999999999.99999999",  # the largest size (a micro-priced token's trade)
        "63514.6",
        "1.50000000000",
        "1",
        "0.10",
        "1E-8",
        "2.5e-7",
        "1E2",
    ],
)
def test_exact_decimals_stay_exact(value):
    # a micro-token's price, so that every size here keeps price*size below MAX_TRADE_NOTIONAL
    trade = parse_frame(orjson.dumps(MATCH | {"price": "0.000001", "size": value}), "exchange", RECEIVED).trades[0]
    assert trade.size == Decimal(value)
    on_the_wire = orjson.loads(trade.to_json())["size"]
    assert Decimal(on_the_wire) == Decimal(value) and "E" not in on_the_wire


def test_smallest_increment_is_not_written_in_exponent_form():
    trade = parse_frame(orjson.dumps(MATCH | {"size": "0.00000001"}), "exchange", RECEIVED).trades[0]
    assert orjson.loads(trade.to_json())["size"] == "0.00000001"


@pytest.mark.parametrize("value", ["0.000000000001", "1E-12", "0.000012345678", "9999999999.999999999999"])
def test_prices_to_twelve_decimals_stay_exact(value):
    trade = parse_frame(orjson.dumps(MATCH | {"price": value, "size": "1"}), "exchange", RECEIVED).trades[0]
    on_the_wire = orjson.loads(trade.to_json())["price"]
    assert Decimal(on_the_wire) == Decimal(value) and "E" not in on_the_wire


@pytest.mark.parametrize("value", ["1e-9", "0.000000001", "1000000000000000", "1E15"])
def test_sizes_past_their_type_are_rejected(value):
    result = parse_frame(orjson.dumps(MATCH | {"size": value}), "exchange", RECEIVED)
    assert result.trades == () and result.error.startswith("size "), result.error


@pytest.mark.parametrize(("price", "size"), [("1000000000", "1000"), ("63514.6", "999999999999999")])
def test_a_notional_not_below_the_bound_is_rejected(price, size):
    result = parse_frame(orjson.dumps(MATCH | {"price": price, "size": size}), "exchange", RECEIVED)
    assert result.trades == () and result.error.startswith("price*size "), result.error


@pytest.mark.parametrize(
    "value",
    [
        "1e-13",
        "1.5E-12",
        "1E99",
        "0.0000000000001",
        "10000000000",
        "0",
        "0.00000000",
        "-1",
        "+1",
        "NaN",
        "Infinity",
        "1_000",
        " 1",
        "1 ",
        "١٢",
        "1.2.3",
        ".",
        "",
        "0x10",
    ],
)
def test_inexact_or_foreign_decimals_are_rejected(value):
    result = parse_frame(orjson.dumps(MATCH | {"price": value}), "exchange", RECEIVED)
    assert result.trades == () and result.error.startswith("price "), result.error


# --- malformed frames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("feed", "raw", "names"),
    [
        ("exchange", b'{"type":"match","trade_id":', "not JSON"),
        ("exchange", b"", "not JSON"),
        ("exchange", b"\xff\xfe", "not JSON"),
        ("exchange", b"[1, 2]", "not a JSON object"),
        ("exchange", b'{"product_id":"BTC-USD"}', "type"),
        ("exchange", b'{"type":7}', "type"),
        ("exchange", orjson.dumps(MATCH | {"trade_id": "1052119289"}), "trade_id"),
        ("exchange", orjson.dumps(MATCH | {"trade_id": 1.5}), "trade_id"),
        ("exchange", orjson.dumps(MATCH | {"trade_id": True}), "trade_id"),
        ("exchange", orjson.dumps(MATCH | {"trade_id": 0}), "trade_id"),
        ("exchange", orjson.dumps(MATCH | {"trade_id": 2**63}), "trade_id"),
        ("exchange", orjson.dumps(MATCH | {"price": 63514.6}), "price"),
        ("exchange", orjson.dumps(MATCH | {"size": "-0.2"}), "size"),
        ("exchange", orjson.dumps(MATCH | {"side": "hold"}), "side"),
        ("exchange", orjson.dumps(MATCH | {"time": "2026-07-07T22:58:17"}), "time"),
        ("exchange", orjson.dumps(MATCH | {"time": "yesterday"}), "time"),
        ("exchange", orjson.dumps(MATCH | {"time": 1783465097}), "time"),
        ("exchange", orjson.dumps(MATCH | {"product_id": ""}), "product_id"),
        ("exchange", orjson.dumps(MATCH | {"sequence": "132235026010"}), "sequence"),
        ("exchange", orjson.dumps(HEARTBEAT | {"last_trade_id": -1}), "last_trade_id"),
        ("exchange", orjson.dumps({"type": "subscriptions", "channels": {"matches": ["BTC-USD"]}}), "channels"),
        (
            "exchange",
            orjson.dumps({"type": "subscriptions", "channels": [{"name": "matches", "product_ids": [1]}]}),
            "channels[0].product_ids[0]",
        ),
        ("advanced_trade", b"not json", "not JSON"),
        ("advanced_trade", b'{"events":[]}', "channel"),
        (
            "advanced_trade",
            with_value(MARKET_TRADES, ("events", 0, "trades", 0, "trade_id"), "22381691a"),
            "events[0].trades[0].trade_id",
        ),
        (
            "advanced_trade",
            with_value(MARKET_TRADES, ("events", 0, "trades", 1, "trade_id"), 22381690),
            "events[0].trades[1].trade_id",
        ),
        (
            "advanced_trade",
            with_value(MARKET_TRADES, ("events", 0, "trades", 1, "trade_id"), "9" * 5000),
            "events[0].trades[1].trade_id",
        ),
        (
            "advanced_trade",
            with_value(MARKET_TRADES, ("events", 0, "trades", 1, "trade_id"), str(2**63)),
            "events[0].trades[1].trade_id",
        ),
        (
            "advanced_trade",
            with_value(MARKET_TRADES, ("events", 0, "trades", 1, "side"), "UNKNOWN_ORDER_SIDE"),
            "events[0].trades[1].side",
        ),
        (
            "advanced_trade",
            with_value(MARKET_TRADES, ("events", 0, "trades", 1, "time"), "2024-10-04 07:13:31"),
            "events[0].trades[1].time",
        ),
        ("advanced_trade", with_value(MARKET_TRADES, ("events", 0, "trades", 1), ["22381690"]), "events[0].trades[1]"),
        ("advanced_trade", with_value(MARKET_TRADES, ("events", 0, "type"), "delta"), "events[0].type"),
        ("advanced_trade", with_value(MARKET_TRADES, ("events", 0, "trades"), None), "events[0].trades"),
        ("advanced_trade", with_value(MARKET_TRADES, ("sequence_num",), MISSING), "sequence_num"),
        (
            "advanced_trade",
            with_value(AT_SUBSCRIPTIONS, ("events", 0, "subscriptions", "market_trades"), "ETH-USDT"),
            "events[0].subscriptions.market_trades",
        ),
    ],
)
def test_malformed_frames_are_errors_naming_the_field(feed, raw, names):
    result = parse_frame(raw, feed, RECEIVED, ("ETH-USDT",))
    assert result.error is not None and names in result.error, result.error
    assert (result.trades, result.ticks, result.subscribed) == ((), (), None)


def test_one_bad_trade_fails_the_whole_advtrade_frame():
    raw = with_value(MARKET_TRADES, ("events", 0, "trades", 1, "size"), "0.0000000001")
    result = parse_frame(raw, "advanced_trade", RECEIVED)
    assert result.frame_type == "market_trades"
    assert result.error.startswith("events[0].trades[1].size has more than 8 decimal places")
    assert result.trades == ()


def test_bad_value_is_shown_but_capped():
    result = parse_frame(orjson.dumps(MATCH | {"side": "x" * 10_000}), "exchange", RECEIVED)
    assert result.error.startswith("side must be buy or sell: 'xxx") and len(result.error) < 200


# Every value here is wrong for every field mutated below. (An empty list or object can be valid,
# hence {"x": 1}: an object lacking the fields an object must have, or a non-list channel entry.)
BAD_VALUES = [MISSING, None, True, 1.5, -1, "", {"x": 1}]
MUTATIONS = [
    ("exchange", MATCH, ("product_id",)),
    ("exchange", MATCH, ("trade_id",)),
    ("exchange", MATCH, ("price",)),
    ("exchange", MATCH, ("size",)),
    ("exchange", MATCH, ("side",)),
    ("exchange", MATCH, ("time",)),
    ("exchange", MATCH, ("sequence",)),
    ("exchange", HEARTBEAT, ("product_id",)),
    ("exchange", HEARTBEAT, ("time",)),
    ("exchange", HEARTBEAT, ("last_trade_id",)),
    ("exchange", EX_SUBSCRIPTIONS, ("channels",)),
    ("exchange", EX_SUBSCRIPTIONS, ("channels", 0)),
    ("exchange", EX_SUBSCRIPTIONS, ("channels", 0, "name")),
    ("exchange", EX_SUBSCRIPTIONS, ("channels", 0, "product_ids")),
    ("advanced_trade", MARKET_TRADES, ("sequence_num",)),
    ("advanced_trade", MARKET_TRADES, ("events",)),
    ("advanced_trade", MARKET_TRADES, ("events", 0)),
    ("advanced_trade", MARKET_TRADES, ("events", 0, "type")),
    ("advanced_trade", MARKET_TRADES, ("events", 0, "trades")),
    *[
        ("advanced_trade", MARKET_TRADES, ("events", 0, "trades", 1, field))
        for field in ("product_id", "trade_id", "price", "size", "time", "side")
    ],
    ("advanced_trade", AT_SUBSCRIPTIONS, ("events",)),
    ("advanced_trade", AT_SUBSCRIPTIONS, ("events", 0)),
    ("advanced_trade", AT_SUBSCRIPTIONS, ("events", 0, "subscriptions")),
    ("advanced_trade", AT_SUBSCRIPTIONS, ("events", 0, "subscriptions", "market_trades")),
]


MUTATION_IDS = [f"{frame.get('type', frame.get('channel'))}:{path_name(path)}" for _, frame, path in MUTATIONS]


@pytest.mark.parametrize(("feed", "frame", "path"), MUTATIONS, ids=MUTATION_IDS)
def test_every_field_ill_typed_or_missing_is_an_error_naming_it(feed, frame, path):
    for value in BAD_VALUES:
        if value is MISSING and (isinstance(path[-1], int) or path[-2:-1] == ("subscriptions",)):
            continue  # a list element or a channel -> products map entry is never required
        result = parse_frame(with_value(frame, path, value), feed, RECEIVED, ("ETH-USDT",))
        assert result.error is not None and path_name(path) in result.error, (value, result)
        assert (result.trades, result.ticks) == ((), ())


def all_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [prefix] * bool(prefix) + [path for key, child in children for path in all_paths(child, (*prefix, key))]


HOSTILE = [
    None,
    True,
    0,
    -1,
    2**63,
    2**64 - 1,
    1e308,
    "",
    "9" * 5000,
    "\x00",
    "٣",
    [],
    {},
    [[]],
    {"": None},
    "2026-99-99T99:99:99Z",
    "NaN",
    "1" * 40,
    "0.1" + "0" * 4000 + "1",
]


def test_damaged_frames_never_make_parse_frame_raise():
    """Byte damage and hostile values anywhere in real frames: always a FrameResult, and any
    records it returns survive the Kafka encoding unchanged."""
    rng = random.Random(20260707)
    templates = [
        ("exchange", MATCH),
        ("exchange", HEARTBEAT),
        ("exchange", EX_SUBSCRIPTIONS),
        ("advanced_trade", MARKET_TRADES),
        ("advanced_trade", AT_SUBSCRIPTIONS),
        ("advanced_trade", orjson.loads(jkorf_frames("AdvancedTrade_Heartbeat.txt")[1])),
    ]
    for _ in range(3000):
        feed, frame = rng.choice(templates)
        raw = bytearray(orjson.dumps(frame))
        damage = rng.randrange(3)
        if damage == 0:
            del raw[rng.randrange(len(raw)) :]
        elif damage == 1:
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        else:
            raw = bytearray(with_value(frame, rng.choice(all_paths(frame)), rng.choice(HOSTILE)))
        result = parse_frame(bytes(raw), feed, RECEIVED, ("BTC-USD",))
        assert isinstance(result, FrameResult)
        assert result.error is None or (result.trades, result.ticks) == ((), ())
        for record in (*result.trades, *result.ticks):
            assert decode_record(record.to_json()) == record


def test_unknown_feed_is_a_programming_error():
    with pytest.raises(ValueError, match="feed"):
        parse_frame(orjson.dumps(MATCH), "kraken", RECEIVED)  # type: ignore[arg-type]


# --- subscribe frames ------------------------------------------------------------------------


def test_exchange_subscribe_frame():
    assert [orjson.loads(f) for f in subscribe_frames("exchange", ["BTC-USD", "ETH-USD"])] == [
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channels": ["matches", "heartbeat"]}
    ]


def test_advtrade_subscribe_frames_one_per_channel():
    assert [orjson.loads(f) for f in subscribe_frames("advanced_trade", ("BTC-USD",))] == [
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "market_trades"},
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "heartbeats"},
    ]


def test_subscribing_to_nothing_is_refused():
    with pytest.raises(ValueError, match="no products"):
        subscribe_frames("exchange", [])
