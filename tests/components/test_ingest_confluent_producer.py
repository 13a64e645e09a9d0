"""The optional librdkafka producer (``producer: confluent``, the ingestion-fast extra) in the
ingestion service, between the real replay server and a real Kafka broker: the same records, keys
and partitions as kafka-python's. Its delivery failures are counted the same way: see
test_ingest_no_silent_loss.py, whose broker-outage test runs with both producers."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.partitioner import murmur2

from cryptopipe.contracts import Tick, decode_record
from cryptopipe_dev.replay import ReplayServer
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
)

pytestmark = pytest.mark.components
pytest.importorskip("confluent_kafka", reason="the ingestion-fast extra (confluent-kafka) is not installed")


def test_the_confluent_producer_puts_each_trade_once_keyed_on_the_partition_kafka_python_picks(kafka: Any) -> None:
    from cryptopipe.ingest.confluent_producer import ConfluentProducer

    expected = recorded_trade_ids(EXCHANGE)
    topic, dlq = unique_topics(kafka, "confluent")
    with ReplayServer([EXCHANGE], speed="max") as server:
        settings = settings_for(kafka, server, topic, dlq, producer="confluent")
        with running(settings) as service:
            assert isinstance(service.producer, ConfluentProducer)
            run_until_all_produced(service, server, expected)
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
