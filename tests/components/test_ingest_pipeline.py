"""The ingestion service in-process, between the real replay server and a real Kafka broker.

Every test reads back everything in its own topics and checks trade ids per product exactly, so a
lost or doubled trade fails it.
"""

from __future__ import annotations

import collections
import itertools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from cryptopipe.contracts import Tick, Trade, decode_record, ingest_state_topic
from cryptopipe.ingest.service import IngestService
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe_dev.replay import ReplayServer
from tests.support.http_probe import http_get
from tests.support.paths import DERIVED_RECORDINGS

pytestmark = pytest.mark.components

DERIVED = DERIVED_RECORDINGS
EXCHANGE = DERIVED / "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"
ADVTRADE = DERIVED / "advtrade_2026-08-09_BTC-ETH_no-l2.jsonl"
PRODUCTS = ["BTC-USD", "ETH-USD"]
_topic_ids = itertools.count(1)


# --- helpers ---------------------------------------------------------------------------------------


def recorded_trade_ids(path: Path) -> dict[str, list[int]]:
    """Unique trade ids per product straight from the recording's raw frames (no pipeline code)."""
    ids: dict[str, set[int]] = collections.defaultdict(set)
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["dir"] != "recv":
            continue
        frame = json.loads(row["data"])
        if frame.get("type") in ("match", "last_match"):
            ids[frame["product_id"]].add(int(frame["trade_id"]))
        elif frame.get("channel") == "market_trades":
            for event in frame["events"]:
                for trade in event["trades"]:
                    ids[trade["product_id"]].add(int(trade["trade_id"]))
    return {product: sorted(found) for product, found in ids.items()}


def trades_revealed_only_by_heartbeat(path: Path, product: str) -> list[int]:
    """Trade ids of ``product`` whose next frame for that product is a heartbeat: withheld, only
    the heartbeat's last_trade_id can reveal them."""
    found, previous = [], None
    for line in path.read_text().splitlines():
        row = json.loads(line)
        frame = json.loads(row["data"]) if row["dir"] == "recv" else {}
        if frame.get("product_id") != product:
            continue
        if frame["type"] == "heartbeat" and previous is not None and previous["type"] == "match":
            found.append(int(previous["trade_id"]))
        if frame["type"] in ("match", "heartbeat"):
            previous = frame
    return found


def unique_topics(kafka: Any, name: str, partitions: int = 3) -> tuple[str, str]:
    topic = f"ingest-{name}-{next(_topic_ids)}-{int(time.time() * 1000) % 1_000_000}"
    kafka.create_topic(topic, partitions)
    kafka.create_topic(topic + ".dlq", 1)
    kafka.create_topic(ingest_state_topic(topic), 1, config={"cleanup.policy": "compact"})
    return topic, topic + ".dlq"


def settings_for(kafka: Any, server: ReplayServer, topic: str, dlq: str, **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "feed": server.source.feed,
        "products": PRODUCTS,
        "ws_url": server.url,
        "rest_url": server.rest_url,
        "kafka_bootstrap": kafka.bootstrap,
        "topic": topic,
        "dlq_topic": dlq,
        "http_host": "127.0.0.1",
        "http_port": 0,
        "subscribe_timeout_s": 2.0,
        "watchdog_s": 1.0,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.5,
        "linger_ms": 5,
        "backfill_retries": 3,
        "backfill_retry_delay_s": 0.1,
        "backfill_timeout_s": 5.0,
    }
    values.update(overrides)
    return IngestSettings(**values)


@contextmanager
def running(settings: IngestSettings) -> Iterator[IngestService]:
    service = IngestService(settings)
    service.start()
    try:
        yield service
    finally:
        assert service.stop(), "the producer did not flush everything it accepted"


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes, int]]:
    """Every record of ``topic`` as (key, value, partition), read up to the end offsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=200)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        out: list[tuple[bytes | None, bytes, int]] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend((r.key, r.value, r.partition) for r in batch)
        return out
    finally:
        consumer.close()


def trades_by_product(records: list[tuple[bytes | None, bytes, int]]) -> dict[str, list[Trade]]:
    trades: dict[str, list[Trade]] = collections.defaultdict(list)
    for key, value, _partition in records:
        record = decode_record(value)
        assert key == record.product_id.encode(), "records must be keyed by product"
        if isinstance(record, Trade):
            trades[record.product_id].append(record)
    return trades


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def produced_trades(service: IngestService) -> int:
    return sum(service.totals()["trades"].values())


def run_until_all_produced(
    service: IngestService, server: ReplayServer, expected: dict[str, list[int]], timeout: float = 30
) -> None:
    total = sum(len(ids) for ids in expected.values())
    try:
        wait_for(lambda: server.wait_done(0) and produced_trades(service) >= total, timeout, f"{total} trades produced")
    except AssertionError:
        raise AssertionError(
            f"replay done: {server.wait_done(0)}; produced: {service.totals()}; "
            f"still missing: {service.backfiller and service.backfiller.missing_count()}"
        ) from None


def assert_each_trade_once(
    records: list[tuple[bytes | None, bytes, int]], expected: dict[str, list[int]]
) -> dict[str, list[Trade]]:
    trades = trades_by_product(records)
    for product, ids in expected.items():
        got = collections.Counter(t.trade_id for t in trades[product])
        doubled = sorted(i for i, n in got.items() if n > 1)
        missing = sorted(set(ids) - set(got))
        extra = sorted(set(got) - set(ids))
        assert not doubled and not missing and not extra, (
            f"{product}: doubled {doubled[:10]}, missing {missing[:10]}, unexpected {extra[:10]}"
        )
    assert set(trades) == set(expected)
    return trades


def metric_value(service: IngestService, name: str, **labels: str) -> float:
    value = service.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# --- tests -----------------------------------------------------------------------------------------


def test_exchange_recording_reaches_kafka_keyed_by_product_each_trade_once(kafka: Any) -> None:
    expected = recorded_trade_ids(EXCHANGE)
    topic, dlq = unique_topics(kafka, "exchange")
    with ReplayServer([EXCHANGE], speed="max") as server, running(settings_for(kafka, server, topic, dlq)) as service:
        run_until_all_produced(service, server, expected)
    records = read_topic(kafka.bootstrap, topic)
    trades = assert_each_trade_once(records, expected)
    # one product stays in one partition, in trade-id order
    for product in PRODUCTS:
        partitions = {p for key, _value, p in records if key == product.encode()}
        assert len(partitions) == 1, f"{product} spread over partitions {partitions}"
        ids = [t.trade_id for t in trades[product]]
        assert ids == sorted(ids)
    ticks = [r for r in (decode_record(v) for _k, v, _p in records) if isinstance(r, Tick)]
    assert {t.product_id for t in ticks} == set(PRODUCTS)
    assert all(t.last_trade_id for t in ticks), "Exchange heartbeats carry last_trade_id"
    assert read_topic(kafka.bootstrap, dlq) == []
    assert all(t.source == "ws" for ts in trades.values() for t in ts)


def test_advanced_trade_recording_reaches_kafka_each_trade_once(kafka: Any) -> None:
    expected = recorded_trade_ids(ADVTRADE)
    topic, dlq = unique_topics(kafka, "advtrade")
    with ReplayServer([ADVTRADE], speed="max") as server, running(settings_for(kafka, server, topic, dlq)) as service:
        assert service.settings.feed == "advanced_trade"
        run_until_all_produced(service, server, expected)
    trades = assert_each_trade_once(read_topic(kafka.bootstrap, topic), expected)
    assert all(t.feed == "advanced_trade" for ts in trades.values() for t in ts)


def test_reconnects_after_the_server_drops_the_connection_and_backfills_what_it_missed(kafka: Any) -> None:
    expected = recorded_trade_ids(EXCHANGE)
    topic, dlq = unique_topics(kafka, "drop")
    # drop after 120 data frames, and the next connection starts 40 frames later (trades lost on the
    # socket, as on a real reconnect), then the server's last_match repeats a trade already produced
    faults = {"drop_after": 120, "drop_lose": 40}
    with (
        ReplayServer([EXCHANGE], speed="max", faults=faults) as server,
        running(settings_for(kafka, server, topic, dlq)) as service,
    ):
        run_until_all_produced(service, server, expected)
        assert service.backfiller.wait_idle(10), "backfill did not finish"
        assert server.status()["faults_fired"], "the drop fault must have fired"
        assert service.feed.connections >= 2
        assert (
            sum(
                metric_value(service, "cryptopipe_ingest_reconnects_total", reason=r)
                for r in ("server_closed", "connection_closed", "connection_error")
            )
            >= 1
        )
    trades = assert_each_trade_once(read_topic(kafka.bootstrap, topic), expected)
    assert any(t.source == "rest" for ts in trades.values() for t in ts), "the lost frames come from REST"


def test_a_restarted_service_backfills_its_downtime_and_does_not_repeat_what_it_produced(kafka: Any) -> None:
    expected = recorded_trade_ids(EXCHANGE)
    total = sum(len(ids) for ids in expected.values())
    topic, dlq = unique_topics(kafka, "restart")
    # The first instance loses its connection after 150 frames and, with a long backoff, is stopped
    # before it reconnects; the next connection starts 40 frames later (trades nobody received).
    faults = {"drop_after": 150, "drop_lose": 40}
    with ReplayServer([EXCHANGE], speed="max", faults=faults) as server:
        with running(settings_for(kafka, server, topic, dlq, backoff_initial_s=30, backoff_max_s=30)) as first:
            wait_for(lambda: bool(server.status()["faults_fired"]) and not first.feed.subscribed, 20, "the drop")
        produced_before = produced_trades(first)
        assert 0 < produced_before < total
        with running(settings_for(kafka, server, topic, dlq)) as second:
            wait_for(
                lambda: server.wait_done(0) and produced_before + produced_trades(second) >= total,
                30,
                "the rest of the recording",
            )
            assert second.backfiller.wait_idle(10)
    trades = assert_each_trade_once(read_topic(kafka.bootstrap, topic), expected)
    assert sum(t.source == "rest" for ts in trades.values() for t in ts) >= 1, "the downtime came from REST"


def test_a_restarted_service_does_not_produce_again_what_the_topic_already_has(kafka: Any) -> None:
    expected = recorded_trade_ids(EXCHANGE)
    topic, dlq = unique_topics(kafka, "replayed")
    with ReplayServer([EXCHANGE], speed="max") as server:
        with running(settings_for(kafka, server, topic, dlq)) as first:
            run_until_all_produced(first, server, expected)
        server.reset()  # the next connection gets the whole recording again
        with running(settings_for(kafka, server, topic, dlq)) as second:
            wait_for(lambda: server.wait_done(0), 20, "the replay")
            total = sum(len(ids) for ids in expected.values())
            wait_for(lambda: sum(second.totals()["duplicates_skipped"].values()) == total, 10, "every trade repeated")
            assert produced_trades(second) == 0
    assert_each_trade_once(read_topic(kafka.bootstrap, topic), expected)


def test_watchdog_reconnects_after_a_stall(kafka: Any) -> None:
    expected = recorded_trade_ids(EXCHANGE)
    topic, dlq = unique_topics(kafka, "stall")
    faults = {"stall_after": 100, "stall_seconds": 30.0}  # far longer than the test: only the watchdog ends it
    with (
        ReplayServer([EXCHANGE], speed="max", faults=faults) as server,
        running(settings_for(kafka, server, topic, dlq, watchdog_s=0.8)) as service,
    ):
        run_until_all_produced(service, server, expected, timeout=20)
        assert metric_value(service, "cryptopipe_ingest_reconnects_total", reason="watchdog") >= 1
    assert_each_trade_once(read_topic(kafka.bootstrap, topic), expected)


def test_skipped_trade_ids_are_backfilled_over_rest(kafka: Any) -> None:
    expected = recorded_trade_ids(EXCHANGE)
    btc, eth = expected["BTC-USD"], expected["ETH-USD"]
    # a run of three and a single interior trade (the next match reveals them), and one trade
    # that only the next heartbeat's last_trade_id can reveal
    by_heartbeat = trades_revealed_only_by_heartbeat(EXCHANGE, "BTC-USD")[5]
    skipped = {btc[50], btc[51], btc[52], eth[30], by_heartbeat}
    assert len(skipped) == 5
    topic, dlq = unique_topics(kafka, "gap")
    with (
        ReplayServer([EXCHANGE], speed="max", faults={"skip_trade_ids": sorted(skipped)}) as server,
        running(settings_for(kafka, server, topic, dlq, watchdog_s=10.0)) as service,
    ):
        run_until_all_produced(service, server, expected)
        assert service.backfiller.wait_idle(10), "backfill did not finish"
        assert metric_value(service, "cryptopipe_ingest_gaps_detected_total", product_id="BTC-USD") >= 2
        assert metric_value(service, "cryptopipe_ingest_gaps_detected_total", product_id="ETH-USD") == 1
        backfilled = sum(
            metric_value(service, "cryptopipe_ingest_trades_backfilled_total", product_id=p) for p in PRODUCTS
        )
        assert backfilled == len(skipped)
        assert service.feed.connections == 1, "everything must come from one connection plus REST"
    trades = assert_each_trade_once(read_topic(kafka.bootstrap, topic), expected)
    from_rest = {t.trade_id for ts in trades.values() for t in ts if t.source == "rest"}
    assert from_rest == skipped


def test_duplicated_and_reordered_frames_still_give_each_trade_once(kafka: Any) -> None:
    expected = recorded_trade_ids(EXCHANGE)
    topic, dlq = unique_topics(kafka, "dupreorder")
    faults = {"seed": 7, "duplicate_rate": 0.1, "reorder_rate": 0.1}
    with (
        ReplayServer([EXCHANGE], speed="max", faults=faults) as server,
        running(settings_for(kafka, server, topic, dlq)) as service,
    ):
        run_until_all_produced(service, server, expected)
        assert service.backfiller.wait_idle(10), "backfill did not finish"
        assert sum(service.totals()["duplicates_skipped"].values()) > 0, "the duplicate fault must have fired"
    assert_each_trade_once(read_topic(kafka.bootstrap, topic), expected)


@pytest.mark.parametrize("kind", ["garbage", "bad_price"])
def test_malformed_frame_goes_to_the_dlq_with_its_reason_and_ingestion_continues(kafka: Any, kind: str) -> None:
    expected = recorded_trade_ids(EXCHANGE)
    topic, dlq = unique_topics(kafka, f"malformed-{kind.replace('_', '')}")
    with (
        ReplayServer([EXCHANGE], speed="max", faults={"malformed_after": 60, "malformed_kind": kind}) as server,
        running(settings_for(kafka, server, topic, dlq)) as service,
    ):
        run_until_all_produced(service, server, expected)
        assert metric_value(service, "cryptopipe_ingest_dead_lettered_frames_total") == 1
    dead = read_topic(kafka.bootstrap, dlq)
    assert len(dead) == 1
    letter = orjson.loads(dead[0][1])
    assert letter["feed"] == "exchange" and letter["raw_encoding"] == "utf-8" and letter["receive_time_us"] > 0
    if kind == "bad_price":
        assert "price" in letter["reason"], letter
        assert '"type":"match"' in letter["raw"].replace(" ", "")
    else:
        assert "not JSON" in letter["reason"], letter
    assert_each_trade_once(read_topic(kafka.bootstrap, topic), expected)


def test_a_trade_a_day_ahead_goes_to_the_dlq_with_its_reason_and_the_others_flow(kafka: Any) -> None:
    # issue 10, hole 6: one trade stamped a day ahead of the wall clock would move the job's watermark
    # for good; ingestion dead-letters it, and REST (which has its true time) fills its id
    expected = recorded_trade_ids(EXCHANGE)
    wild = expected["BTC-USD"][40]
    topic, dlq = unique_topics(kafka, "future")
    with (
        ReplayServer([EXCHANGE], speed="max", faults={"future_timestamp_ids": [wild]}) as server,
        running(settings_for(kafka, server, topic, dlq, watchdog_s=10.0)) as service,
    ):
        run_until_all_produced(service, server, expected)
        assert service.backfiller.wait_idle(10), "backfill did not finish"
        assert metric_value(service, "cryptopipe_ingest_dead_lettered_frames_total") == 1
        ahead = "cryptopipe_ingest_records_ahead_of_receipt_total"
        assert metric_value(service, ahead, product_id="BTC-USD", kind="trade", source="ws") == 1
        assert metric_value(service, ahead, product_id="ETH-USD", kind="trade", source="ws") == 0
    (dead,) = read_topic(kafka.bootstrap, dlq)
    letter = orjson.loads(dead[1])
    assert letter["reason"].startswith("event_time_ahead_of_receipt: trade of BTC-USD"), letter
    assert "max_clock_skew_s=60" in letter["reason"], letter
    assert orjson.loads(letter["raw"])["trade_id"] == wild
    trades = assert_each_trade_once(read_topic(kafka.bootstrap, topic), expected)
    (refilled,) = [t for t in trades["BTC-USD"] if t.trade_id == wild]
    assert refilled.source == "rest"
    assert all(t.event_time_us - t.receive_time_us <= 60_000_000 for ts in trades.values() for t in ts)


def test_readyz_reports_why_until_subscribed_and_metrics_are_served(kafka: Any) -> None:
    topic, dlq = unique_topics(kafka, "ready")
    server = ReplayServer([EXCHANGE], speed=1.0)  # real time: the feed stays open for the whole test
    settings = settings_for(kafka, server, topic, dlq, ws_url="ws://127.0.0.1:9")  # nothing listens on port 9
    with running(settings) as service:
        base = f"http://127.0.0.1:{service.http_port}"
        assert http_get(base + "/healthz")[0] == 200
        wait_for(lambda: service.producer is not None and service.producer.has_topic_metadata(), 20, "producer")
        status, body = http_get(base + "/readyz")
        assert status == 503
        assert "feed" in orjson.loads(body)["reason"]
        wait_for(
            lambda: metric_value(service, "cryptopipe_ingest_reconnects_total", reason="connect_failed") >= 1,
            10,
            "a failed connect to be counted",
        )
    with server, running(settings_for(kafka, server, topic, dlq)) as service:
        base = f"http://127.0.0.1:{service.http_port}"
        wait_for(lambda: http_get(base + "/readyz")[0] == 200, 20, "/readyz 200")
        wait_for(
            lambda: metric_value(service, "cryptopipe_ingest_frames_received_total", type="match") > 0,
            20,
            "a match frame",
        )
        status, body = http_get(base + "/metrics")
        text = body.decode()
        assert status == 200
        for name in (
            'cryptopipe_ingest_frames_received_total{type="match"}',
            "cryptopipe_ingest_trades_produced_total{",
            "cryptopipe_ingest_last_trade_timestamp_seconds{product_id=",
            'cryptopipe_ingest_connection_state{state="subscribed"} 1.0',
            "cryptopipe_ingest_produce_latency_seconds_bucket",
        ):
            assert name in text, f"{name} missing from /metrics"
        assert http_get(base + "/nothing")[0] == 404
