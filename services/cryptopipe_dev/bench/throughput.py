"""Ingestion throughput: the service's hot path against the bare kafka-python producer.

Both send the same records (trade and tick JSON, keyed by product) of the same pre-generated
synthetic Exchange frames into a real local broker, with the same producer settings (idempotent,
acks=all, the service's linger and batch size, no compression). A run is timed from the first
frame to the end of the flush, so a trade counts only once the broker has acknowledged it.
CPU is ``process_time()``: every thread of this process, kafka-python's sender thread included.
"""

from __future__ import annotations

import cProfile
import dataclasses
import io
import logging
import pstats
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from cryptopipe import coinbase
from cryptopipe.contracts import Feed
from cryptopipe.ingest import gc_tuning
from cryptopipe.ingest.backfill import Backfiller
from cryptopipe.ingest.feed import FrameHandler
from cryptopipe.ingest.metrics import IngestMetrics
from cryptopipe.ingest.producer_choice import make_producer
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe_dev.bench.procmem import machine_busy_s, tree_cpu_s
from cryptopipe_dev.replay import SyntheticConfig, synthetic_frames
from cryptopipe_dev.stack.kafka import KafkaBroker

log = logging.getLogger("cryptopipe_dev.bench.throughput")

PARTITIONS = 2  # as the local stack's trades topic
HOT_PATH = "ingestion hot path"
BARE = "bare KafkaProducer"


@dataclasses.dataclass(frozen=True)
class Run:
    variant: str
    trades: int
    records: int  # trades + heartbeat ticks
    wall_s: float
    cpu_s: float  # this process, all threads
    broker_cpu_s: float  # the Kafka JVM
    others_cpu_s: float  # every other process on the machine: the noise the wall figure suffered

    @property
    def per_s(self) -> float:
        return self.trades / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.trades / self.cpu_s


def make_frames(trades: int, rate: float = 10_000.0, seed: int = 7) -> list[bytes]:
    """~``trades`` trades of synthetic Exchange frames, as the socket hands them over (bytes).
    A high rate packs them into few seconds of market time: few heartbeats, as in a busy market."""
    return [f.raw.encode() for f in synthetic_frames(SyntheticConfig(rate=rate, duration=trades / rate, seed=seed))]


class _Capture:
    """Stands in for RecordProducer to collect what the hot path would send, in order."""

    def __init__(self, keep: bool = True) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.finished: Callable[[str], None] = lambda _product: None
        self.keep = keep  # for timing: 200k kept tuples would make the cyclic GC's full passes the main cost

    def on_finished(self, hook: Callable[[str], None]) -> None:
        self.finished = hook

    def send(
        self, product_id: str, value: bytes, trade_id: int | None = None, source: str = "ws", event_time_us: int = 0
    ) -> None:
        if self.keep:
            self.records.append((product_id.encode(), value))
        self.finished(product_id)  # acknowledged at once: nothing is held back waiting for Kafka

    def send_dead_letter(self, *args: object) -> None:
        raise AssertionError("a synthetic frame was dead-lettered")


class _Meter:
    """Wall and CPU time of this process, the broker and everything else, from start() to stop()."""

    def __init__(self, broker: KafkaBroker) -> None:
        assert broker.process is not None, "broker not started"
        self._broker_pid = broker.process.pid

    def _read(self) -> tuple[float, float, float, float]:
        return time.perf_counter(), time.process_time(), tree_cpu_s(self._broker_pid), machine_busy_s()

    def start(self) -> None:
        self._began = self._read()

    def stop(self) -> tuple[float, float, float, float]:
        wall, cpu, broker, busy = (b - a for a, b in zip(self._began, self._read(), strict=False))
        return wall, cpu, broker, max(0.0, busy - cpu - broker)


def _handler(settings: IngestSettings, producer, metrics: IngestMetrics) -> tuple[FrameHandler, Backfiller]:
    # wired as cryptopipe.ingest.service wires it (and as tests/components/test_ingest_throughput.py);
    # the backfill thread is not started: synthetic frames have no gaps
    backfiller = Backfiller(settings, producer, metrics, coinbase.fetch_trades_range)
    handler = FrameHandler(settings, producer, backfiller, metrics, coinbase.GapTracker(), coinbase.parse_frame)
    return handler, backfiller


def records_of(frames: Sequence[bytes], settings: IngestSettings) -> list[tuple[bytes, bytes]]:
    """(key, value) of every record the hot path produces for ``frames``: what the bare producer sends."""
    capture = _Capture()
    handler, _ = _handler(settings, capture, IngestMetrics())
    now_us = time.time_ns() // 1000
    for frame in frames:
        handler.handle(frame, now_us)
    return capture.records


def hot_path_run(
    broker: KafkaBroker,
    topic: str,
    frames: Sequence[bytes],
    wrap: Callable[[Callable[[], None]], None] = lambda f: f(),
    *,
    feed: Feed = "exchange",
    topic_config: Mapping[str, str] | None = None,
    producer_kind: str = "kafka-python",
) -> Run:
    """FrameHandler.handle -> RecordProducer on this thread, as FeedConnection._read calls it;
    ``producer_kind``: the settings' ``producer`` (kafka-python or confluent).

    It stands for the service's process, so it runs with the service's garbage-collector settings
    (gc_tuning.apply with the settings' gc_gen0_threshold, as the service applies them before its
    feed starts), restored afterwards whatever happens:
    the runs after it (the bare clients) get Python's defaults, as a user with no tuning would."""
    broker.create_topic(topic, PARTITIONS, config=topic_config)
    broker.create_topic(topic + ".dlq", 1)
    settings = IngestSettings(
        kafka_bootstrap=broker.bootstrap, topic=topic, dlq_topic=topic + ".dlq", feed=feed, producer=producer_kind
    )
    metrics = IngestMetrics()
    producer = make_producer(settings, metrics)
    producer.wait_for_topics()
    if not producer.fast_path:
        log.warning("RecordProducer is not on its fast path: the figures are of send()")
    handler, backfiller = _handler(settings, producer, metrics)
    handle, time_ns = handler.handle, time.time_ns

    def loop() -> None:
        for frame in frames:
            handle(frame, time_ns() // 1000)
        producer.close(60)  # flush: counted once acknowledged

    meter = _Meter(broker)
    gc_state = gc_tuning.apply(settings.gc_gen0_threshold)  # its full collection not timed: start-up's
    try:
        meter.start()
        wrap(loop)
        measured = meter.stop()
    finally:
        gc_tuning.restore(gc_state)
        backfiller.stop(1)
    hot = metrics.hot
    trades, ticks = sum(hot.trades.values()), sum(hot.ticks.values())
    if hot.duplicates or metrics.registry.get_sample_value("cryptopipe_ingest_delivery_errors_total", {"topic": topic}):
        raise RuntimeError(f"hot path run lost or skipped records: duplicates={dict(hot.duplicates)}")
    _check_delivered(broker, topic, trades + ticks)
    return Run(HOT_PATH, trades, trades + ticks, *measured)


def bare_run(broker: KafkaBroker, topic: str, records: Sequence[tuple[bytes, bytes]], trades: int) -> Run:
    """The same records through KafkaProducer.send() with the service's producer settings."""
    broker.create_topic(topic, PARTITIONS)
    settings = IngestSettings()  # defaults: the linger and batch size the service runs with
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.linger_ms,
        batch_size=settings.batch_size,
        compression_type=None,
    )
    producer.partitions_for(topic)  # metadata before the clock starts, as the service's readiness does
    send = producer.send
    meter = _Meter(broker)
    meter.start()
    for key, value in records:
        send(topic, value=value, key=key)
    producer.flush(60)
    producer.close(60)
    measured = meter.stop()
    _check_delivered(broker, topic, len(records))
    return Run(BARE, trades, len(records), *measured)


def _check_delivered(broker: KafkaBroker, topic: str, expected: int) -> None:
    """Every record is in the topic (a fresh one per run), so no run is fast by losing records."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    finally:
        consumer.close()
    if sum(ends.values()) != expected:
        raise RuntimeError(f"{topic}: {sum(ends.values())} records in the topic, {expected} sent")


def breakdown(frames: Sequence[bytes], settings: IngestSettings) -> dict[str, float]:
    """CPU µs per frame of the hot path's stages without Kafka: parsing alone, and the whole
    FrameHandler (parse, duplicate and gap checks, to_json, counters) with a producer that drops
    every record. The rest of a hot-path run's CPU per trade is kafka-python's."""
    now_us = time.time_ns() // 1000
    cpu = time.process_time()
    for frame in frames:
        coinbase.parse_frame(frame, settings.feed, now_us, settings.products)
    parse = time.process_time() - cpu
    handle = _handler(settings, _Capture(keep=False), IngestMetrics())[0].handle
    cpu = time.process_time()
    for frame in frames:
        handle(frame, now_us)
    handler = time.process_time() - cpu
    return {"parse_us": parse / len(frames) * 1e6, "handler_us": handler / len(frames) * 1e6}


@dataclasses.dataclass
class ThroughputResult:
    runs: list[Run]
    kafka_startup_s: float
    stages_us: dict[str, float]  # see breakdown()
    profile: str | None = None  # cProfile top functions of one extra hot-path run

    def best(self, variant: str) -> Run:
        return max((r for r in self.runs if r.variant == variant), key=lambda r: r.per_s)


def run_throughput(work_dir: Path, *, trades: int, rounds: int = 2, profile: bool = False) -> ThroughputResult:
    broker = KafkaBroker(work_dir / "kafka-throughput")
    frames = make_frames(trades)
    records = records_of(frames, IngestSettings())
    stages = breakdown(frames, IngestSettings())
    with broker:
        runs: list[Run] = []
        for i in range(rounds):  # alternated, so machine noise hits both variants alike
            runs.append(hot_path_run(broker, f"bench-hot-{i}", frames))
            runs.append(bare_run(broker, f"bench-bare-{i}", records, runs[-1].trades))
            log.info("throughput round", extra={"round": i, "runs": [dataclasses.asdict(r) for r in runs[-2:]]})
        result = ThroughputResult(runs, broker.startup_seconds, stages)
        if profile:
            result.profile = profile_hot_path(broker, frames)
    return result


def profile_hot_path(
    broker: KafkaBroker,
    frames: Sequence[bytes],
    top: int = 25,
    *,
    feed: Feed = "exchange",
    topic: str = "bench-hot-profile",
) -> str:
    """Where the hot path's time goes (main thread only: cProfile does not see the sender thread)."""
    profiler = cProfile.Profile()
    hot_path_run(broker, topic, frames, wrap=profiler.runcall, feed=feed)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()
