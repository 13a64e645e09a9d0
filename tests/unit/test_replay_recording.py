"""Loading every recording format; the counts are the ones the data README states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryptopipe_dev.replay.recording import (
    RecordingError,
    RecordingSource,
    load_recording,
    recording_products,
    recording_trades,
)
from tests.support.paths import COINBASE_DATA

DATA = COINBASE_DATA
DERIVED_EXCHANGE = DATA / "derived" / "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"
DERIVED_EXCHANGE_2021 = DATA / "derived" / "exchange_2021-04-17_matches-ticker-subs.jsonl"
DERIVED_AT = DATA / "derived" / "advtrade_2026-08-09_BTC-ETH_no-l2.jsonl"


def kinds(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for frame in RecordingSource([load_recording(path)]).all_frames:
        counts[frame.kind] = counts.get(frame.kind, 0) + 1
    return counts


def assert_contiguous(trades) -> None:
    ids = [t.trade_id for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_replay_rows_with_url():
    recording = load_recording(DERIVED_EXCHANGE)
    assert recording.feed == "exchange"
    assert len(recording.frames) == 556 and recording.sent == []
    # the recorded ack is not streamed: the server answers each client's own subscription
    assert kinds(DERIVED_EXCHANGE) == {"last_match": 2, "match": 435, "heartbeat": 118}
    trades = recording_trades(recording)
    assert {p: len(t) for p, t in trades.items()} == {"BTC-USD": 345, "ETH-USD": 92}
    for product_trades in trades.values():
        assert_contiguous(product_trades)


def test_replay_rows_without_url_tell_the_feed_by_frame_shape(tmp_path):
    recording = load_recording(DERIVED_EXCHANGE_2021)
    assert recording.feed == "exchange" and len(recording.sent) == 3
    assert kinds(DERIVED_EXCHANGE_2021) == {"ticker": 107, "last_match": 10, "match": 97}
    assert len(recording_products(recording)) == 10
    # an Advanced Trade file stripped of its url is still told apart, by the "channel" key
    stripped = tmp_path / "at.jsonl"
    rows = [json.loads(line) for line in DERIVED_AT.read_text().splitlines()]
    stripped.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "url"}) + "\n" for r in rows))
    assert load_recording(stripped).feed == "advanced_trade"


def test_advanced_trade_rows_and_trades_exact_as_recorded():
    recording = load_recording(DERIVED_AT)
    assert recording.feed == "advanced_trade" and len(recording.sent) == 5
    assert recording_products(recording) == ("BTC-USD", "ETH-USD")
    trades = recording_trades(recording)
    btc, eth = trades["BTC-USD"], trades["ETH-USD"]
    assert (len(btc), btc[0].trade_id, btc[-1].trade_id) == (147, 1068571991, 1068572137)
    assert (len(eth), eth[0].trade_id, eth[-1].trade_id) == (132, 833140679, 833140810)
    assert_contiguous(btc)
    # strings exactly as Coinbase sent them (a Decimal round trip would turn some into 1E-8 forms)
    raw_trades = {}
    for _, raw in recording.frames:
        frame = json.loads(raw)
        if frame.get("channel") == "market_trades":
            for event in frame["events"]:
                for t in event["trades"]:
                    raw_trades[int(t["trade_id"])] = (t["price"], t["size"], t["time"], t["side"].lower())
    for trade in btc + eth:
        assert (trade.price, trade.size, trade.time, trade.side) == raw_trades[trade.trade_id]


def test_cryptofeed_zstd_jsonl():
    recording = load_recording(DATA / "COINBASE.jsonl.zst")
    assert recording.feed == "advanced_trade"
    assert len(recording.frames) == 1030 and len(recording.sent) == 5
    assert kinds(DATA / "COINBASE.jsonl.zst")["l2_data"] == 775
    assert len(recording_trades(recording)["ETH-USD"]) == 132


def test_cryptofeed_text_log():
    recording = load_recording(DATA / "COINBASE.ws.28.0")
    assert recording.feed == "exchange" and len(recording.sent) == 3
    assert kinds(DATA / "COINBASE.ws.28.0") == {
        "snapshot": 10,
        "ticker": 107,
        "last_match": 10,
        "l2update": 9719,
        "match": 97,
    }
    assert recording.frames[0][0] == pytest.approx(1618677817.061845)


def test_raw_ndjson_takes_ts_from_frame_time_non_decreasing():
    recording = load_recording(DATA / "flashbook" / "live-btc-eth.ndjson")
    assert recording.feed == "exchange" and len(recording.frames) == 2456
    stamps = [ts for ts, _ in recording.frames]
    assert stamps == sorted(stamps)
    assert stamps[0] == pytest.approx(1783465097.050195)  # the first timed frame's time, 22:58:17.050195Z
    assert stamps[-1] == pytest.approx(1783465156.937603)
    assert {p: len(t) for p, t in recording_trades(recording).items()} == {"BTC-USD": 345, "ETH-USD": 92}


def test_recordings_of_one_feed_merge_by_ts_and_mixed_feeds_are_refused():
    older, newer = load_recording(DERIVED_EXCHANGE_2021), load_recording(DERIVED_EXCHANGE)
    merged = RecordingSource([newer, older])
    stamps = [f.ts for f in merged.all_frames]
    assert stamps == sorted(stamps) and len(merged) == 217 - 3 + 556 - 1
    assert [f.index for f in merged.all_frames] == list(range(len(merged)))
    with pytest.raises(ValueError, match="mix feeds"):
        RecordingSource([newer, load_recording(DERIVED_AT)])


def test_not_a_recording(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("hello world\n")
    with pytest.raises(RecordingError, match="bad.txt:1"):
        load_recording(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(RecordingError, match="empty"):
        load_recording(empty)
