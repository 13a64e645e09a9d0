"""The replay server over real sockets on 127.0.0.1, with websocket-client (ingestion's client)."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest
import websocket

from cryptopipe_dev.replay import ReplayServer, load_recording, recording_trades
from cryptopipe_dev.replay.client import ReplayClient
from tests.support.paths import COINBASE_DATA

DATA = COINBASE_DATA
EXCHANGE = DATA / "derived" / "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"
EXCHANGE_2021 = DATA / "derived" / "exchange_2021-04-17_matches-ticker-subs.jsonl"
ADVTRADE = DATA / "derived" / "advtrade_2026-08-09_BTC-ETH_no-l2.jsonl"
PRODUCTS = ["BTC-USD", "ETH-USD"]
PRODUCTS_2021 = [
    "SKL-USD",
    "SKL-BTC",
    "BAND-GBP",
    "NMR-EUR",
    "BAND-BTC",
    "YFI-BTC",
    "DASH-BTC",
    "NU-GBP",
    "CRV-EUR",
    "SKL-GBP",
]


def frames(messages: list[str]) -> list[dict]:
    return [orjson.loads(m) for m in messages]


def types_of(messages: list[str]) -> Counter:
    return Counter(f.get("type") or f.get("channel") for f in frames(messages))


def at_trades(messages: list[str]) -> list[dict]:
    return [
        t for f in frames(messages) if f.get("channel") == "market_trades" for e in f["events"] for t in e["trades"]
    ]


@pytest.fixture(scope="module")
def exchange_server():
    with ReplayServer([EXCHANGE], on_connect="restart") as server:
        yield server


@pytest.mark.parametrize(
    ("recording", "products", "expected"),
    [
        (EXCHANGE, PRODUCTS, {"subscriptions": 1, "last_match": 2, "match": 435, "heartbeat": 118}),
        (EXCHANGE_2021, PRODUCTS_2021, {"subscriptions": 1, "last_match": 10, "match": 97}),
    ],
)
def test_exchange_recordings_stream_every_match(recording, products, expected):
    with ReplayServer([recording]) as server, ReplayClient(server.url) as client:
        client.subscribe_exchange(products, ["matches", "heartbeat"])
        received = client.read_sent(server)
    assert types_of(received) == expected
    ack = orjson.loads(received[0])
    assert ack["type"] == "subscriptions" and [c["name"] for c in ack["channels"]] == ["matches", "heartbeat"]
    # matches arrive in recorded order: per product, trade ids rise by one
    for product in products:
        ids = [f["trade_id"] for f in frames(received) if f.get("product_id") == product and "trade_id" in f]
        assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_advanced_trade_recording_streams_every_trade_with_contiguous_sequence_num():
    with ReplayServer([ADVTRADE]) as server, ReplayClient(server.url) as client:
        client.subscribe_advanced_trade(PRODUCTS, ["market_trades", "heartbeats"])
        received = client.read_sent(server)
    counts = types_of(received)
    assert counts == {"subscriptions": 2, "market_trades": 59, "heartbeats": 25}
    envelopes = frames(received)
    # one connection's sequence_num counts every message it was sent, acks included, like the real feed
    # (the recording's own numbers have gaps where other channels' frames were)
    assert [f["sequence_num"] for f in envelopes] == list(range(len(envelopes)))
    assert envelopes[1]["events"] == [{"subscriptions": {"heartbeats": ["heartbeats"], "market_trades": PRODUCTS}}]
    expected = recording_trades(load_recording(ADVTRADE))
    for product in PRODUCTS:
        seen = {int(t["trade_id"]) for t in at_trades(received) if t["product_id"] == product}
        assert seen == {t.trade_id for t in expected[product]}


def test_product_filtering(exchange_server):
    with ReplayClient(exchange_server.url) as client:
        client.subscribe_exchange(["ETH-USD"], ["matches", "heartbeat"])
        received = client.read_sent(exchange_server)
    data = frames(received)[1:]
    assert {f["product_id"] for f in data} == {"ETH-USD"}
    assert Counter(f["type"] for f in data) == {"last_match": 1, "match": 91, "heartbeat": 59}


def test_channel_filtering(exchange_server):
    with ReplayClient(exchange_server.url) as client:
        client.subscribe_exchange(PRODUCTS, [{"name": "heartbeat", "product_ids": ["BTC-USD"]}])
        received = client.read_sent(exchange_server)
    assert types_of(received) == {"subscriptions": 1, "heartbeat": 59}
    assert {f.get("product_id") for f in frames(received)[1:]} == {"BTC-USD"}


def test_ticker_channel_of_the_2021_recording():
    with ReplayServer([EXCHANGE_2021]) as server, ReplayClient(server.url) as client:
        client.subscribe_exchange(["SKL-USD"], ["ticker"])
        received = client.read_sent(server)
    data = frames(received)[1:]
    assert data and {(f["type"], f["product_id"]) for f in data} == {("ticker", "SKL-USD")}


def test_advanced_trade_snapshot_is_filtered_to_the_subscribed_product():
    with ReplayServer([ADVTRADE]) as server, ReplayClient(server.url) as client:
        client.subscribe_advanced_trade(["ETH-USD"], ["market_trades"])
        received = client.read_sent(server)
    envelopes = [f for f in frames(received) if f.get("channel") == "market_trades"]
    snapshots = [f for f in envelopes if f["events"][0]["type"] == "snapshot"]
    assert len(snapshots) == 1, "the BTC-only snapshot frame is dropped, not sent empty"
    assert len(snapshots[0]["events"][0]["trades"]) == 100
    trades = at_trades(received)
    assert {t["product_id"] for t in trades} == {"ETH-USD"}
    assert {int(t["trade_id"]) for t in trades} == set(range(833140679, 833140811))
    assert all(e["trades"] for f in envelopes for e in f["events"]), "no frame is sent with its trades emptied"


def test_unknown_channel_and_product_get_coinbase_error_frames_and_the_connection_stays_usable(exchange_server):
    with ReplayClient(exchange_server.url) as client:
        client.subscribe_exchange(PRODUCTS, ["matches", "level3"])
        assert client.recv_json() == {
            "type": "error",
            "message": "Failed to subscribe",
            "reason": "level3 is not a valid channel",
        }
        client.subscribe_exchange(["DOGE-USD"], ["matches"])
        assert client.recv_json()["reason"] == "DOGE-USD is not a valid product"
        client.subscribe_exchange(["BTC-USD"], ["heartbeat"])
        assert client.recv_json()["type"] == "subscriptions"
        assert client.recv_json()["type"] == "heartbeat"


def test_no_subscribe_within_the_timeout_gets_an_error_and_the_connection_is_closed():
    with ReplayServer([EXCHANGE], subscribe_timeout=0.3) as server, ReplayClient(server.url) as client:
        started = time.monotonic()
        error = client.recv_json(timeout=3)
        assert error["type"] == "error" and error["message"] == "Failed to subscribe"
        assert "0.3 seconds" in error["reason"]
        assert 0.25 < time.monotonic() - started < 2.5
        client.read_until_closed(timeout=3)  # raises TimeoutError if the server keeps it open
        assert server.status()["connections"][-1]["state"] == "subscribe_timeout"


def test_paced_replay_takes_recorded_time_over_speed():
    # the recording spans 60.7 s; at x40 that is >= 1.5 s (an upper bound would only measure the CPU)
    with ReplayServer([EXCHANGE], speed=40) as server, ReplayClient(server.url) as client:
        client.subscribe_exchange(["BTC-USD"], ["matches"])
        started = time.monotonic()
        client.read_sent(server, timeout=20)
        elapsed = time.monotonic() - started
    assert 1.45 < elapsed < 15


def test_heartbeats_after_the_end_advance_time_and_name_the_last_trade():
    with (
        ReplayServer([EXCHANGE], heartbeat_after_end=True, end_heartbeat_interval=0.01) as server,
        ReplayClient(server.url) as client,
    ):
        client.subscribe_exchange(PRODUCTS, ["matches", "heartbeat"])
        assert server.wait_done(10)
        received = frames(client.read_sent(server))  # includes the first after-end heartbeats
        while len(received) < 1 + 555 + 10:
            received.append(client.recv_json())
    after_end = received[1 + 555 :]
    assert {f["type"] for f in after_end} == {"heartbeat"}
    btc = [f for f in after_end if f["product_id"] == "BTC-USD"]
    assert {f["last_trade_id"] for f in btc} == {1052119632}
    seconds = [f["time"] for f in btc]
    assert seconds == sorted(seconds) and len(set(seconds)) == len(seconds)
    assert seconds[0] == "2026-07-07T22:59:17.000000Z"  # the whole second after the recording's last frame


def test_restart_replays_from_the_start_on_every_connection(exchange_server):
    for _ in range(2):
        with ReplayClient(exchange_server.url) as client:
            client.subscribe_exchange(["BTC-USD"], ["matches"])
            assert types_of(client.read_sent(exchange_server)) == {"subscriptions": 1, "last_match": 1, "match": 344}


def test_synthetic_source_is_served_with_rest():
    from cryptopipe_dev.replay import SyntheticConfig, SyntheticSource

    source = SyntheticSource(SyntheticConfig(rate=200, duration=5, seed=2))
    with ReplayServer(source) as server, ReplayClient(server.url) as client:
        client.subscribe_exchange(["ETH-USD"], ["matches"])
        received = frames(client.read_sent(server))[1:]
        assert server.status()["frames_total"] is None
        matches = [f for f in received if f["type"] == "match"]
        assert len(matches) > 300 and all(f["synthetic"] is True and f["product_id"] == "ETH-USD" for f in matches)
        from urllib.request import urlopen

        page = orjson.loads(urlopen(f"{server.rest_url}/products/ETH-USD/trades?limit=5").read())
        assert [row["trade_id"] for row in page] == [m["trade_id"] for m in matches[-5:]][::-1]


def test_websocket_client_sees_a_closed_server_as_a_closed_connection():
    server = ReplayServer([EXCHANGE], speed=1).start()
    with ReplayClient(server.url) as client:
        client.subscribe_exchange(["BTC-USD"], ["matches"])
        assert client.recv_json()["type"] == "subscriptions"
        server.stop()
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            for _ in range(1000):  # whatever was already in flight, then the close
                client.recv(timeout=3)
