"""Real Coinbase recordings through parse_frame and GapTracker, checked against the counts in
../shared/data/coinbase/README.md."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from cryptopipe.coinbase import FrameResult, Gap, GapTracker, parse_frame
from cryptopipe.contracts import Feed
from tests.support.paths import COINBASE_DATA

DATA = COINBASE_DATA
EXCHANGE_2026 = DATA / "derived" / "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"
EXCHANGE_2021 = DATA / "derived" / "exchange_2021-04-17_matches-ticker-subs.jsonl"
ADVTRADE_2026 = DATA / "derived" / "advtrade_2026-08-09_BTC-ETH_no-l2.jsonl"
ADVTRADE_FULL_ZST = DATA / "COINBASE.jsonl.zst"
AT_PRODUCTS = ("BTC-USD", "ETH-USD")


def us(*args: int) -> int:
    return (datetime(*args, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // datetime.resolution


def parse_recording(path: Path, feed: Feed, products: tuple[str, ...] = ()) -> list[FrameResult]:
    """Every frame the server sent (rows with dir == "recv"), parsed in order."""
    results = []
    for line in path.read_bytes().splitlines():
        row = orjson.loads(line)
        if row["dir"] == "recv":
            results.append(parse_frame(row["data"], feed, round(row["ts"] * 1_000_000), products))
    return results


def replay(results: Iterable[FrameResult], tracker: GapTracker) -> list[tuple[int, Gap]]:
    """Feed records to the tracker in arrival order -> (frame index, gap) for each gap reported."""
    gaps = []
    for index, result in enumerate(results):
        for trade in result.trades:
            if gap := tracker.observe_trade(trade):
                gaps.append((index, gap))
        for tick in result.ticks:
            if gap := tracker.observe_tick(tick):
                gaps.append((index, gap))
    return gaps


@pytest.fixture(scope="module")
def exchange_2026() -> list[FrameResult]:
    return parse_recording(EXCHANGE_2026, "exchange")


@pytest.fixture(scope="module")
def advtrade_2026() -> list[FrameResult]:
    return parse_recording(ADVTRADE_2026, "advanced_trade", AT_PRODUCTS)


def test_exchange_2026_counts_match_the_readme(exchange_2026):
    assert [r.error for r in exchange_2026 if r.error] == []
    assert Counter(r.frame_type for r in exchange_2026) == {
        "subscriptions": 1,
        "last_match": 2,
        "match": 435,
        "heartbeat": 118,
    }
    matches = [r.trades[0] for r in exchange_2026 if r.frame_type == "match"]
    assert Counter(t.product_id for t in matches) == {"BTC-USD": 344, "ETH-USD": 91}
    assert all(
        len(r.trades) == 1 and r.is_snapshot == (r.frame_type == "last_match") for r in exchange_2026 if r.trades
    )
    assert sum(len(r.ticks) for r in exchange_2026) == 118
    assert exchange_2026[0].subscribed == {
        "level2_50": ("BTC-USD", "ETH-USD"),
        "matches": ("BTC-USD", "ETH-USD"),
        "heartbeat": ("ETH-USD", "BTC-USD"),
    }


def test_exchange_2026_first_match_fields(exchange_2026):
    # {"type":"match","trade_id":1052119289,...,"side":"sell","size":"0.2","price":"63514.6",
    #  "product_id":"BTC-USD","sequence":132235026010,"time":"2026-07-07T22:58:17.164892Z"}
    first = next(r.trades[0] for r in exchange_2026 if r.frame_type == "match")
    assert (first.product_id, first.trade_id, str(first.price), str(first.size), first.side) == (
        "BTC-USD",
        1052119289,
        "63514.6",
        "0.2",
        "sell",
    )
    assert first.event_time_us == us(2026, 7, 7, 22, 58, 17, 164892)
    assert first.receive_time_us == us(2026, 7, 7, 22, 58, 17, 164892)  # the derived rows' ts
    assert (first.sequence, first.feed, first.source) == (132235026010, "exchange", "ws")


def test_exchange_2026_replays_without_gaps_and_heartbeats_agree(exchange_2026):
    tracker = GapTracker()
    for result in exchange_2026:
        for trade in result.trades:
            assert tracker.observe_trade(trade) is None
        for tick in result.ticks:
            # the README: every heartbeat's last_trade_id is the highest trade id seen so far
            assert tick.last_trade_id == tracker.last_trade_id(tick.product_id)
            assert tracker.observe_tick(tick) is None
    # contiguous from each last_match: 344 BTC and 91 ETH matches follow it
    assert tracker.last_trade_id("BTC-USD") == 1052119288 + 344
    assert tracker.last_trade_id("ETH-USD") == 825468236 + 91


def _mentions(result: FrameResult, product_id: str) -> bool:
    return any(r.product_id == product_id for r in (*result.trades, *result.ticks))


def test_exchange_2026_deleting_any_match_reveals_exactly_that_id(exchange_2026):
    match_indexes = [i for i, r in enumerate(exchange_2026) if r.frame_type == "match"]
    assert len(match_indexes) == 435
    unrevealable = []
    for deleted in match_indexes:
        lost = exchange_2026[deleted].trades[0]
        kept = exchange_2026[:deleted] + exchange_2026[deleted + 1 :]
        gaps = replay(kept, GapTracker())
        # kept[deleted] is the frame that followed the deleted one
        following = [i for i in range(deleted, len(kept)) if _mentions(kept[i], lost.product_id)]
        if not following:
            # the product's last trade in the recording: nothing after it could reveal the loss
            assert gaps == [], deleted
            unrevealable.append(lost.trade_id)
            continue
        # revealed by the product's very next record: its next match or, at the latest, heartbeat
        assert gaps == [(following[0], Gap(lost.product_id, lost.trade_id, lost.trade_id))], deleted
    # the recording ends with a few matches after the last heartbeats; only the final match of
    # each product has no record after it
    assert unrevealable == [825468327, 1052119632]


def test_exchange_2021_counts_and_no_gaps():
    results = parse_recording(EXCHANGE_2021, "exchange")
    assert [r.error for r in results if r.error] == []
    assert Counter(r.frame_type for r in results) == {"subscriptions": 3, "ticker": 107, "last_match": 10, "match": 97}
    assert all(not r.trades and not r.ticks for r in results if r.frame_type == "ticker")
    last_matches = [r.trades[0] for r in results if r.frame_type == "last_match"]
    assert len({t.product_id for t in last_matches}) == 10
    assert replay(results, GapTracker()) == []
    acks = [r.subscribed for r in results if r.frame_type == "subscriptions"]
    assert len(acks[-1]["matches"]) == 10
    # SKL-BTC trades at 8 decimal places ("0.00001305"): the smallest increment stays exact
    skl_btc = next(r.trades[0] for r in results if r.trades and r.trades[0].product_id == "SKL-BTC")
    assert skl_btc.price.as_tuple().exponent == -8


def test_advtrade_2026_counts_match_the_readme(advtrade_2026):
    assert [r.error for r in advtrade_2026 if r.error] == []
    assert Counter(r.frame_type for r in advtrade_2026) == {
        "subscriptions": 5,
        "heartbeats": 25,
        "market_trades": 59,
        "candles": 6,
        "ticker": 160,
    }
    snapshots = [r for r in advtrade_2026 if r.is_snapshot]
    assert [len(r.trades) for r in snapshots] == [100, 100]
    trades = [t for r in advtrade_2026 for t in r.trades]
    btc_ids = {t.trade_id for t in trades if t.product_id == "BTC-USD"}
    eth_ids = {t.trade_id for t in trades if t.product_id == "ETH-USD"}
    assert btc_ids == set(range(1068571991, 1068572137 + 1))
    assert eth_ids == set(range(833140679, 833140810 + 1))
    btc_times = [t.event_time_us for t in trades if t.product_id == "BTC-USD"]
    assert us(2026, 8, 9, 21, 4, 35) <= min(btc_times) and max(btc_times) < us(2026, 8, 9, 21, 6, 13)
    assert {t.side for t in trades} == {"buy", "sell"}
    # the first ack (sequence_num 2) arrives after the first snapshot (sequence_num 0); each ack
    # lists every channel subscribed so far
    acks = [r.subscribed for r in advtrade_2026 if r.frame_type == "subscriptions"]
    assert acks[0] == {"market_trades": ("BTC-USD", "ETH-USD")}
    assert acks[-1]["heartbeats"] == ("heartbeats",)


def test_advtrade_2026_trades_come_oldest_first_with_the_frame_sequence(advtrade_2026):
    raw_frames = [
        orjson.loads(row["data"])
        for row in map(orjson.loads, ADVTRADE_2026.read_bytes().splitlines())
        if row["dir"] == "recv"
    ]
    for raw, result in zip(raw_frames, advtrade_2026, strict=True):
        if result.frame_type != "market_trades":
            continue
        keys = [(t.event_time_us, t.trade_id) for t in result.trades]
        assert keys == sorted(keys)
        assert {t.sequence for t in result.trades} == {raw["sequence_num"]}
        # the wire order is newest first: the parser reversed it
        wire_ids = [int(t["trade_id"]) for t in raw["events"][0]["trades"]]
        assert [t.trade_id for t in result.trades] == sorted(wire_ids)


def test_advtrade_2026_heartbeats_make_a_tick_per_product(advtrade_2026):
    heartbeats = [r for r in advtrade_2026 if r.frame_type == "heartbeats"]
    assert all([t.product_id for t in r.ticks] == list(AT_PRODUCTS) for r in heartbeats)
    first = heartbeats[0].ticks[0]
    # "current_time":"2026-08-09 21:05:48.854840045 +0000 UTC m=+41691.260485341"
    assert first.event_time_us == us(2026, 8, 9, 21, 5, 48, 854840)
    assert (first.last_trade_id, first.feed) == (None, "advanced_trade")
    times = [r.ticks[0].event_time_us for r in heartbeats]
    assert times == sorted(times) and times[-1] - times[0] > 20_000_000


def test_advtrade_2026_replays_without_gaps(advtrade_2026):
    tracker = GapTracker()
    assert replay(advtrade_2026, tracker) == []
    assert tracker.last_trade_id("BTC-USD") == 1068572137
    assert tracker.last_trade_id("ETH-USD") == 833140810


def test_advtrade_2026_deleting_an_update_frame_reveals_its_trades(advtrade_2026):
    """Advanced Trade heartbeats carry no trade id: a lost trade shows when the product trades next."""
    updates = [i for i, r in enumerate(advtrade_2026) if r.frame_type == "market_trades" and not r.is_snapshot]
    assert len(updates) == 57
    revealed = 0
    for deleted in updates:
        kept = advtrade_2026[:deleted] + advtrade_2026[deleted + 1 :]
        gaps = {gap for _, gap in replay(kept, GapTracker())}
        expected = set()
        for product_id in {t.product_id for t in advtrade_2026[deleted].trades}:
            ids = [t.trade_id for t in advtrade_2026[deleted].trades if t.product_id == product_id]
            traded_later = any(t.product_id == product_id for r in advtrade_2026[deleted + 1 :] for t in r.trades)
            if traded_later:
                expected.add(Gap(product_id, min(ids), max(ids)))
        assert gaps == expected, deleted
        revealed += len(expected)
    assert revealed >= 50


@pytest.mark.skipif(shutil.which("zstd") is None, reason="needs the zstd command to read COINBASE.jsonl.zst")
def test_advtrade_full_stream_with_level2_parses_cleanly(advtrade_2026):
    """The complete Advanced Trade recording (1,030 frames, l2_data included, one frame 5 MB)."""
    text = subprocess.run(["zstd", "-dc", str(ADVTRADE_FULL_ZST)], check=True, capture_output=True).stdout
    rows = [orjson.loads(line) for line in text.splitlines()]
    frames = [row["data"] for row in rows if row["t"] == "recv"]
    assert len(frames) == 1030
    results = [parse_frame(frame, "advanced_trade", 0, AT_PRODUCTS) for frame in frames]
    assert [r.error for r in results if r.error] == []
    types = Counter(r.frame_type for r in results)
    assert types["l2_data"] == 775 and types["market_trades"] == 59
    assert all(not r.trades and not r.ticks for r in results if r.frame_type == "l2_data")
    assert [t.trade_id for r in results for t in r.trades] == [t.trade_id for r in advtrade_2026 for t in r.trades]
