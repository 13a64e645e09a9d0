"""The optional librdkafka producer (``producer: confluent``, the ingestion-fast extra) against a
real Kafka broker: in the ingestion service, the same records, keys and partitions as
kafka-python's; behind the producer seam, a real outage (the broker frozen past the delivery
timeout) counted and handed back exactly as kafka-python's producer does it. The service-level
outage test (test_ingest_no_silent_loss.py) runs with both producers too."""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.partitioner import murmur2

from cryptopipe.contracts import Tick, decode_record
from cryptopipe.ingest.metrics import IngestMetrics
from cryptopipe.ingest.producer_choice import make_producer
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe_dev.replay import ReplayServer
from cryptopipe_dev.stack.kafka import KafkaBroker
from tests.components.test_ingest_pipeline import (
    EXCHANGE,
    PRODUCTS,
    assert_each_trade_once,
    metric_value,
    read_topic,
    recorded_trade_ids,
    run_until_all_produced,
    running,
    settings_for,
    unique_topics,
    wait_for,
)

pytestmark = pytest.mark.components
needs_confluent = pytest.mark.skipif(
    importlib.util.find_spec("confluent_kafka") is None, reason="the ingestion-fast extra is not installed"
)


@needs_confluent
def test_the_confluent_producer_puts_each_trade_once_keyed_on_the_partition_kafka_python_picks(kafka: Any) -> None:
    from cryptopipe.ingest.confluent_producer import ConfluentProducer

    expected = recorded_trade_ids(EXCHANGE)
    topic, dlq = unique_topics(kafka, "confluent")
    with ReplayServer([EXCHANGE], speed="max") as server:
        settings = settings_for(kafka, server, topic, dlq, producer="confluent")
        with running(settings) as service:
            run_until_all_produced(service, server, expected)
            # asked once everything is produced: the service connects its producer in the
            # background, after reading where the last run left off
            assert isinstance(service.producer, ConfluentProducer)
            assert service.readiness() is None
            assert metric_value(service, "cryptopipe_ingest_delivery_errors_total", topic=topic) == 0
            # counted once acknowledged, one per trade
            assert service.totals()["trades"] == {p: len(ids) for p, ids in expected.items()}
    records = read_topic(kafka.bootstrap, topic)
    trades = assert_each_trade_once(records, expected)
    for product in PRODUCTS:
        partitions = {p for key, _value, p in records if key == product.encode()}
        # Java's murmur2 of the key, as kafka-python's KeyHashPartitioner: switching clients moves no product
        assert partitions == {(murmur2(product.encode()) & 0x7FFFFFFF) % 3}, product
        ids = [t.trade_id for t in trades[product]]
        assert ids == sorted(ids)
    ticks = [r for r in (decode_record(v) for _k, v, _p in records) if isinstance(r, Tick)]
    assert {t.product_id for t in ticks} == set(PRODUCTS)
    assert read_topic(kafka.bootstrap, dlq) == []


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test alone: it is frozen (SIGSTOP), which the session's broker must not be."""
    broker = KafkaBroker(tmp_path / "kafka", die_with_parent=True).start()
    try:
        yield broker
    finally:
        if broker.alive:
            os.kill(broker.process.pid, signal.SIGCONT)
        broker.stop()


@pytest.mark.parametrize("producer", ["kafka-python", pytest.param("confluent", marks=needs_confluent)])
def test_each_trade_whose_delivery_times_out_is_counted_once_and_handed_back(
    own_kafka: KafkaBroker, producer: str
) -> None:
    topic = f"seam-{producer}-{int(time.time() * 1000) % 1_000_000}"
    own_kafka.create_topic(topic, 3)
    own_kafka.create_topic(topic + ".dlq", 1)
    settings = IngestSettings(
        kafka_bootstrap=own_kafka.bootstrap, topic=topic, dlq_topic=topic + ".dlq", producer=producer,
        linger_ms=5, request_timeout_ms=1000, delivery_timeout_ms=2500,
    )  # fmt: skip
    metrics = IngestMetrics()
    failed: list[tuple[str, int]] = []
    seam = make_producer(settings, metrics)
    seam.on_failed_trade(lambda product, trade_id, _event_time_us: failed.append((product, trade_id)))
    seam.wait_for_topics()
    try:
        for trade_id in range(1, 6):
            seam.send("BTC-USD", f'{{"trade_id": {trade_id}}}'.encode(), trade_id)
        wait_for(lambda: metrics.hot.trades["BTC-USD"] == 5, 30, "the first trades acknowledged")
        # the broker stops answering (connections stay open, nothing comes back) past the delivery timeout
        os.kill(own_kafka.process.pid, signal.SIGSTOP)
        try:
            for trade_id in (10, 11, 12):
                seam.send("ETH-USD", f'{{"trade_id": {trade_id}}}'.encode(), trade_id)
            wait_for(lambda: len(failed) >= 3, 60, "the deliveries to fail")
        finally:
            os.kill(own_kafka.process.pid, signal.SIGCONT)
        assert sorted(failed) == [("ETH-USD", 10), ("ETH-USD", 11), ("ETH-USD", 12)]
        errors = metrics.registry.get_sample_value("cryptopipe_ingest_delivery_errors_total", {"topic": topic})
        assert errors == 3, "each failed trade counted once"
        assert metrics.hot.trades == {"BTC-USD": 5}, "a failed trade never counts as produced"
    finally:
        seam.close(10)


@needs_confluent
def test_a_burst_of_200k_trades_gets_a_delivery_report_for_every_record(kafka: Any) -> None:
    """The hot path (FrameHandler -> Releaser -> ConfluentProducer) fed 200k trades as fast as it
    parses them, as a backlog or a long backfill would: every record gets its delivery report, so
    every trade is counted and released. With librdkafka's default local queue (100,000 messages)
    the reports of the last ~40-50 % never came (14 runs of 14), although every record was in the
    topic and flush() returned 0: the acknowledged counts, the resume points and the release order
    all stopped moving (make bench-full, 2026-12-07)."""
    from cryptopipe_dev.replay import SyntheticConfig, synthetic_frames
    from tests.components.test_ingest_process import end_offsets
    from tests.components.test_ingest_throughput import feed_hot_path

    topic = f"confluent-burst-{int(time.time() * 1000) % 1_000_000}"
    kafka.create_topic(topic, 2)
    kafka.create_topic(topic + ".dlq", 1)
    frames = [f.raw.encode() for f in synthetic_frames(SyntheticConfig(rate=10_000.0, duration=20.0, seed=7))]
    settings = IngestSettings(
        kafka_bootstrap=kafka.bootstrap, topic=topic, dlq_topic=topic + ".dlq", producer="confluent"
    )
    metrics = IngestMetrics()
    producer = make_producer(settings, metrics)
    producer.wait_for_topics()
    backfiller = feed_hot_path(settings, producer, metrics, frames, close_timeout_s=60)
    trades, ticks = sum(metrics.hot.trades.values()), sum(metrics.hot.ticks.values())
    in_topic = end_offsets(kafka.bootstrap, topic)
    assert trades > 190_000 and not metrics.hot.duplicates and backfiller.missing_count() == 0
    assert not metrics.registry.get_sample_value("cryptopipe_ingest_delivery_errors_total", {"topic": topic})
    assert trades + ticks == in_topic, f"{in_topic} records in the topic, {trades + ticks} delivery reports"
