"""The hot path at volume: parse + encode + produce of 40k synthetic Exchange trades into a real broker.

Its speed is measured by the benchmark (`make bench`), not asserted here: this checks that the fast
produce path is the one in use and that nothing is lost or repeated at volume.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from cryptopipe import coinbase
from cryptopipe.ingest.backfill import Backfiller
from cryptopipe.ingest.feed import FrameHandler
from cryptopipe.ingest.metrics import IngestMetrics
from cryptopipe.ingest.producer import KafkaPythonProducer, RecordProducer
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe_dev.replay import SyntheticConfig, synthetic_frames

pytestmark = pytest.mark.components


def test_hot_path_at_volume_uses_fast_path_and_loses_nothing(kafka: Any) -> None:
    topic = f"ingest-throughput-{int(time.time() * 1000) % 1_000_000}"
    kafka.create_topic(topic, 2)
    kafka.create_topic(topic + ".dlq", 1)
    frames = [f.raw.encode() for f in synthetic_frames(SyntheticConfig(rate=1000.0, duration=40.0, seed=3))]
    settings = IngestSettings(kafka_bootstrap=kafka.bootstrap, topic=topic, dlq_topic=topic + ".dlq")
    metrics = IngestMetrics()
    producer = KafkaPythonProducer(settings, metrics)
    producer.wait_for_topics()
    assert producer.fast_path, "kafka-python's accumulator was not usable: the hot path got ~40% slower"
    backfiller = feed_hot_path(settings, producer, metrics, frames, close_timeout_s=30)
    trades = sum(metrics.hot.trades.values())
    assert trades > 30_000 and not metrics.hot.duplicates and backfiller.missing_count() == 0
    # every record acknowledged by the broker: none of the topic's sends failed
    assert not metrics.registry.get_sample_value("cryptopipe_ingest_delivery_errors_total", {"topic": topic})


def feed_hot_path(
    settings: IngestSettings,
    producer: RecordProducer,
    metrics: IngestMetrics,
    frames: list[bytes],
    close_timeout_s: float,
) -> Backfiller:
    """``frames`` through FrameHandler -> release order -> ``producer`` as fast as they parse (wired as
    the service wires them), then the producer closed (flushed); returns the stopped backfiller.
    Received now: the synthetic market is stamped in the past (2026-01-01), as a backlog; a receive
    time before the event time would make every trade "ahead of its receipt" and dead-letter it."""
    backfiller = Backfiller(settings, producer, metrics, coinbase.fetch_trades_range)
    handle = FrameHandler(settings, producer, backfiller, metrics, coinbase.GapTracker(), coinbase.parse_frame).handle
    received_us = time.time_ns() // 1000
    try:
        for frame in frames:
            handle(frame, received_us)
        producer.close(close_timeout_s)
    finally:
        backfiller.stop(1)
    return backfiller
