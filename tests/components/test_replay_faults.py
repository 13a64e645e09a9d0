"""Every fault hook of the replay server, observed from the client side over real sockets."""

from __future__ import annotations

import time
import urllib.request

import orjson
import pytest
import websocket

from cryptopipe_dev.replay import RecordingSource, ReplayServer, load_recording, recording_trades
from cryptopipe_dev.replay.client import ReplayClient
from tests.support.paths import COINBASE_DATA

DATA = COINBASE_DATA
EXCHANGE = DATA / "derived" / "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"
ADVTRADE = DATA / "derived" / "advtrade_2026-08-09_BTC-ETH_no-l2.jsonl"
PRODUCTS = ["BTC-USD", "ETH-USD"]
TRADES = recording_trades(load_recording(EXCHANGE))
ALL_IDS = {(p, t.trade_id) for p, trades in TRADES.items() for t in trades}
DATA_FRAMES = 555  # 2 last_match + 435 match + 118 heartbeat


def subscribe(server: ReplayServer) -> ReplayClient:
    client = ReplayClient(server.url)
    client.subscribe_exchange(PRODUCTS, ["matches", "heartbeat"])
    assert client.recv_json()["type"] == "subscriptions"
    return client


def trade_ids(messages: list[str]) -> list[tuple[str, int]]:
    out = []
    for message in messages:
        frame = orjson.loads(message)
        if frame.get("type") in ("match", "last_match"):
            out.append((frame["product_id"], frame["trade_id"]))
    return out


def data_of(client: ReplayClient) -> list[str]:
    return client.received[1:]  # after the ack


@pytest.mark.parametrize("close_code", [None, 4000])
def test_drop_after_n_frames_once(close_code):
    with ReplayServer([EXCHANGE], faults={"drop_after": 50, "drop_close_code": close_code}) as server:
        with subscribe(server) as client:
            client.read_until_closed(timeout=5)
            assert len(data_of(client)) == 50
            assert client.close_code == close_code  # None: no close frame, the TCP connection just died
        assert server.status()["faults_fired"] == {"drop_after": 1}
        assert server.status()["connections"][0]["state"] == "dropped"
        # fires once: the reconnecting client is not dropped again and resumes where the first stopped
        with subscribe(server) as client:
            client.read_sent(server)
            resumed = data_of(client)
        assert len(resumed) == DATA_FRAMES - 50 + 2  # + a last_match per product, as on a real subscribe
        first_two = [orjson.loads(m) for m in resumed[:2]]
        assert [f["type"] for f in first_two] == ["last_match", "last_match"]


def test_drop_lose_loses_frames_for_the_websocket_but_not_for_rest():
    with ReplayServer([EXCHANGE], faults={"drop_after": 100, "drop_lose": 40}) as server:
        with subscribe(server) as first:
            first.read_until_closed(timeout=5)
        with subscribe(server) as second:
            second.read_sent(server)
        seen = set(trade_ids(data_of(first))) | set(trade_ids(data_of(second)))
        lost = ALL_IDS - seen
        assert 10 < len(lost) <= 40  # 40 source frames, some of them heartbeats
        for product, trade_id in lost:
            rest = orjson.loads(
                urllib.request.urlopen(
                    f"{server.rest_url}/products/{product}/trades?limit=1&after={trade_id + 1}"
                ).read()
            )
            assert rest[0]["trade_id"] == trade_id


def test_stall_keeps_the_socket_open_and_silent_then_resumes():
    with ReplayServer([EXCHANGE], faults={"stall_after": 30, "stall_seconds": 0.8}) as server:
        with subscribe(server) as client:
            for _ in range(30):
                client.recv()
            started = time.monotonic()
            with pytest.raises(websocket.WebSocketTimeoutException):
                client.recv(timeout=0.4)
            assert server.status()["connections"][0]["state"] == "stalled"
            client.recv(timeout=3)  # the 31st frame, after the stall
            assert time.monotonic() - started >= 0.75
            client.read_sent(server)
            assert len(data_of(client)) == DATA_FRAMES


@pytest.mark.parametrize("kind", ["truncated", "garbage", "bad_price"])
def test_malformed_frame_is_inserted_after_n_frames(kind):
    with ReplayServer([EXCHANGE], faults={"malformed_after": 20, "malformed_kind": kind}) as server:
        with subscribe(server) as client:
            client.read_sent(server)
    data = data_of(client)
    assert len(data) == DATA_FRAMES + 1, "inserted, nothing replaced"
    bad, before = data[20], data[19]
    if kind == "bad_price":
        frame = orjson.loads(bad)
        assert frame["price"] == "not-a-price" and frame["type"] in ("match", "last_match")
        assert frame["trade_id"] in [orjson.loads(m).get("trade_id") for m in data[:20]]
    else:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(bad)
        if kind == "truncated":
            assert before.startswith(bad) and len(bad) < len(before)
    assert all(orjson.loads(m) for i, m in enumerate(data) if i != 20)


def run_with(faults: dict) -> list[str]:
    with ReplayServer([EXCHANGE], faults=faults) as server, subscribe(server) as client:
        client.read_sent(server)
        return data_of(client)


def test_duplicates_are_seeded_and_reproducible():
    faults = {"seed": 5, "duplicate_rate": 0.1}
    first = run_with(faults)
    assert first == run_with(faults), "same seed, same stream"
    assert first != run_with({**faults, "seed": 6})
    ids = trade_ids(first)
    repeats = len(ids) - len(set(ids))
    assert 15 < repeats < 80 and set(ids) == ALL_IDS  # ~10% of 437 trade frames, nothing lost
    assert len(first) > DATA_FRAMES
    assert any(a == b for a, b in zip(first, first[1:], strict=False)), "a duplicate follows its original"


def test_reorder_swaps_adjacent_frames_and_loses_nothing():
    data = run_with({"seed": 1, "reorder_rate": 0.1})
    assert len(data) == DATA_FRAMES
    ids = trade_ids(data)
    assert set(ids) == ALL_IDS
    inversions = 0
    for product in PRODUCTS:
        seq = [i for p, i in ids if p == product]
        inversions += sum(1 for a, b in zip(seq, seq[1:], strict=False) if b < a)
    assert inversions > 5


def test_skip_trade_ids_are_withheld_from_the_websocket_and_revealed_by_heartbeats():
    btc = [t.trade_id for t in TRADES["BTC-USD"]]
    skipped = {btc[50], btc[51], btc[200]}
    with ReplayServer([EXCHANGE], faults={"skip_trade_ids": sorted(skipped)}) as server:
        with subscribe(server) as client:
            client.read_sent(server)
        seen = {i for p, i in trade_ids(data_of(client)) if p == "BTC-USD"}
        assert seen == set(btc) - skipped
        # heartbeats still name the latest trade, withheld or not: that is how a client finds the gap
        heartbeats = [m for m in data_of(client) if '"type":"heartbeat"' in m]
        recorded = [raw for _, raw in load_recording(EXCHANGE).frames if '"type":"heartbeat"' in raw]
        assert heartbeats == recorded
        for trade_id in skipped:
            page = orjson.loads(
                urllib.request.urlopen(f"{server.rest_url}/products/BTC-USD/trades?limit=1&after={trade_id + 1}").read()
            )
            assert page[0]["trade_id"] == trade_id


def test_skip_every_kth_match():
    data = run_with({"skip_every": 10})
    matches = [orjson.loads(m) for m in data if '"type":"match"' in m]
    assert len(matches) == 435 - 435 // 10
    assert len(trade_ids(data)) == 437 - 435 // 10  # last_match frames are never skipped


def test_advanced_trade_skip_cuts_the_trade_out_of_its_frame_and_leaves_a_sequence_gap():
    updates = [
        [t.trade_id for t in f.trades if t.product_id == "ETH-USD"]
        for f in RecordingSource([load_recording(ADVTRADE)]).all_frames
        if f.kind == "market_trades" and not any(t.snapshot for t in f.trades)
    ]
    alone = next(ids[0] for ids in updates if len(ids) == 1)  # its frame goes: a sequence_num gap
    shared = next(ids[0] for ids in updates if len(ids) >= 2)  # cut out, the frame still goes
    eth = {t.trade_id for t in recording_trades(load_recording(ADVTRADE))["ETH-USD"]}
    with ReplayServer([ADVTRADE], faults={"skip_trade_ids": [alone, shared]}) as server:
        with ReplayClient(server.url) as client:
            client.subscribe_advanced_trade(["ETH-USD"], ["market_trades"])
            envelopes = [orjson.loads(m) for m in client.read_sent(server)]
    seen = {
        int(t["trade_id"])
        for f in envelopes
        if f["channel"] == "market_trades"
        for e in f["events"]
        for t in e["trades"]
    }
    assert seen == eth - {alone, shared}
    numbers = [f["sequence_num"] for f in envelopes]
    assert numbers == sorted(numbers) and numbers[-1] + 1 - len(numbers) == 1, "exactly one number left out"


def test_faults_change_at_runtime_through_the_control_endpoint_and_the_python_api():
    with ReplayServer([EXCHANGE], on_connect="restart") as server:
        request = urllib.request.Request(
            f"{server.control_url}/_replay/faults", data=b'{"drop_after": 5}', method="POST"
        )
        assert urllib.request.urlopen(request).status == 200
        with subscribe(server) as client:
            client.read_until_closed(timeout=5)
            assert len(data_of(client)) == 5
        server.set_faults({"skip_every": 2})
        with subscribe(server) as client:
            client.read_sent(server)
            assert len([m for m in data_of(client) if '"type":"match"' in m]) == 435 - 435 // 2
        server.set_faults(None)
        with subscribe(server) as client:
            client.read_sent(server)
            assert len(data_of(client)) == DATA_FRAMES


def test_a_synthetic_feed_resumes_after_a_drop_where_it_stopped():
    from cryptopipe_dev.replay import SyntheticConfig, SyntheticSource

    source = SyntheticSource(SyntheticConfig(rate=100, duration=20, seed=4))
    with ReplayServer(source, faults={"drop_after": 300}) as server:
        with subscribe(server) as first:
            first.read_until_closed(timeout=5)
        with subscribe(server) as second:
            second.read_sent(server)
    before, after = trade_ids(data_of(first)), trade_ids(data_of(second))
    assert len(before) < 300 and len(after) > 1000
    resumed = [orjson.loads(m) for m in data_of(second)[:2]]
    assert [f["type"] for f in resumed] == ["last_match", "last_match"]
    # no trade lost or repeated across the reconnect, except the last_match repeats
    for product in PRODUCTS:
        ids = [i for p, i in before + after[2:] if p == product]
        assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_error_frame_is_inserted_after_n_frames_and_the_stream_goes_on():
    with ReplayServer([EXCHANGE], faults={"error_after": 20, "error_message": "boom"}) as server:
        with subscribe(server) as client:
            client.read_sent(server)
        assert server.status()["faults_fired"] == {"error_after": 1}
    data = data_of(client)
    assert len(data) == DATA_FRAMES + 1, "inserted, nothing replaced"
    assert orjson.loads(data[20])["type"] == "error" and orjson.loads(data[20])["message"] == "boom"


def test_rest_missing_ids_are_never_served_and_rest_delay_s_slows_every_answer():
    product, trades = "BTC-USD", TRADES["BTC-USD"]
    missing = trades[len(trades) // 2].trade_id
    faults = {"skip_trade_ids": [missing], "rest_missing_ids": [missing], "rest_delay_s": 0.3}
    with ReplayServer([EXCHANGE], faults=faults) as server:
        url = f"{server.rest_url}/products/{product}/trades?limit=3&after={missing + 2}"
        page = orjson.loads(urllib.request.urlopen(url).read())  # answered after the delay, not lost
        assert [t["trade_id"] for t in page] == [missing + 1, missing - 1]  # the page around it, without it
        assert server.status()["faults"]["rest_missing_ids"] == [missing]
        assert server.status()["faults"]["rest_delay_s"] == 0.3
