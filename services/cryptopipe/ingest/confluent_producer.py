"""The ingestion's producer on librdkafka (confluent-kafka), chosen by ``producer: confluent``.

Optional (the ``ingestion-fast`` extra): kafka-python stays the default the design names. What it
buys is CPU: librdkafka builds batches in C, where kafka-python spends ~9 µs per record in Python
(docs/benchmarks.md). The semantics are kafka-python's, setting for setting: idempotent, acks=all,
the same linger, batch size, delivery and request timeouts, no compression, records keyed by product
and partitioned by the Java client's murmur2 of the key (``murmur2_random``: the same partition
kafka-python's ``KeyHashPartitioner`` picks, so switching clients moves no product).

librdkafka reports deliveries only from ``poll()``: a thread of this producer polls, and the delivery
callbacks run there (as kafka-python's run on its sender thread). A trade counts as produced when
acknowledged; a failed one increments ``delivery_errors`` and goes back to the failed-trade handler,
exactly as in ``KafkaPythonProducer``. librdkafka repairs an idempotent producer's lost id itself,
so ``check()`` only watches for a producer that stopped reporting.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from kafka.partitioner import murmur2

from cryptopipe.contracts import UnfillableTradeIds
from cryptopipe.ingest.metrics import IngestMetrics
from cryptopipe.ingest.producer import (
    LATENCY_SAMPLE_MASK,
    STUCK_MARGIN_S,
    DeliveryErrorLog,
    RecordProducer,
    dead_letter_value,
)
from cryptopipe.ingest.settings import IngestSettings

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.05
# produce() while librdkafka's queue is full waits this long at most (kafka-python's max_block_ms)
MAX_BLOCK_S = 10.0
# librdkafka's local queue, in records (its default: 100,000). With the default, a burst of 200k
# trades through the hot path left tens of thousands of records in flight and the delivery reports
# of the last ~40-50 % never came, though every record reached the topic and flush() returned 0
# (14 runs of 14, both feeds; confluent-kafka 2.16.1, librdkafka 2.16.0; the cause inside them
# not found). With 20,000 none was missing (8 runs of 8, tests/components/
# test_ingest_confluent_producer.py among them): a full queue makes produce() wait for the poll
# thread instead. 20,000 records of ~300 bytes are ~6 MB, ~0.3 s of the hot path at full speed:
# enough to keep batches full (its trades per CPU-second were unchanged, docs/benchmarks.md).
QUEUE_MAX_RECORDS = 20_000


class ProducerQueueFull(Exception):
    """librdkafka's local queue stayed full for MAX_BLOCK_S: Kafka is not taking records."""


class TopicMissing(Exception):
    """A topic the producer needs is not in the cluster's metadata."""


class FlushIncomplete(Exception):
    """close() could not deliver everything it had accepted within its timeout."""


class ConfluentProducer(RecordProducer):
    """Produces trade/tick JSON and dead letters through librdkafka; thread-safe."""

    def __init__(self, settings: IngestSettings, metrics: IngestMetrics, **overrides: Any) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "client.id": "cryptopipe-ingest",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": settings.linger_ms,
            "batch.size": settings.batch_size,
            "delivery.timeout.ms": settings.delivery_timeout_ms,
            "request.timeout.ms": settings.request_timeout_ms,
            "compression.type": "none",
            "queue.buffering.max.messages": QUEUE_MAX_RECORDS,
            "partitioner": "murmur2_random",  # Java's murmur2 for keyed records, as kafka-python's side
            "error_cb": self._on_client_error,
            "logger": log,  # librdkafka logs through logging (JSON on stderr), not raw to stderr
        }
        config.update(settings.kafka_security.confluent())
        config.update(overrides)
        self._settings = settings
        self._metrics = metrics
        self._topic = settings.topic
        self._dlq_topic = settings.dlq_topic
        self._producer = Producer(config)
        self._produce = self._producer.produce
        self._keys: dict[str, bytes] = {}
        self._products: dict[bytes | None, str] = {}  # key -> product (msg.key() is typed optional)
        self._sent = 0
        self._observe_latency = metrics.produce_latency.observe
        self._failed_trade_handler: Callable[[str, int, int], None] | None = None
        self._finished: Callable[[str], None] = _nothing
        self.acked_max: dict[str, tuple[int, int, int, int]] = {}
        self._state_topic = settings.state_topic
        self._partitions: dict[str, int] = {}  # topic -> partition count, from wait_for_topics()
        self._log_delivery_error = DeliveryErrorLog()
        self._fatal: str | None = None
        self._stuck: str | None = None
        self._closing = False
        self._topics_known = False
        # deliveries seen, and since when records have waited with none (check() reads both)
        self._reports = 0
        self._watch: tuple[int, float] | None = None
        self._on_tick = self._on_tick_delivery
        self._stop_polling = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="ingest-producer-poll", daemon=True)
        self._poller.start()

    @property
    def fast_path(self) -> bool:
        return True  # produce() is the one path: librdkafka appends in C

    # -- hot path ---------------------------------------------------------------------------------

    def send(
        self, product_id: str, value: bytes, trade_id: int | None = None, source: str = "ws", event_time_us: int = 0
    ) -> None:
        """As ``KafkaPythonProducer.send``; raises ProducerQueueFull if librdkafka cannot take the
        record within MAX_BLOCK_S."""
        key = self._keys.get(product_id)
        if key is None:
            key = self._keys[product_id] = product_id.encode()
            self._products[key] = product_id
        on_delivery: Callable[..., None]
        if trade_id is None:
            on_delivery = self._on_tick
        else:
            # the trade's id and time go with its callback: the resume point and a failed trade's
            # hand-back need both (one small partial per trade, as kafka-python's side)
            counts = self._metrics.hot.trades if source == "ws" else self._metrics.hot.backfilled
            on_delivery = functools.partial(self._on_trade_delivery, counts, product_id, trade_id, event_time_us)
        self._sent = sent = self._sent + 1  # racy across threads; drives sampling only
        if not sent & LATENCY_SAMPLE_MASK:
            on_delivery = functools.partial(self._on_sampled_delivery, on_delivery, time.perf_counter())
        try:
            self._produce(self._topic, value, key, on_delivery=on_delivery)
        except BufferError:
            self._produce_when_room(self._topic, value, key, on_delivery)

    def _produce_when_room(self, topic: str, value: bytes, key: bytes | None, on_delivery: Callable) -> None:
        """librdkafka's queue is full: wait (the poll thread drains it) up to MAX_BLOCK_S."""
        deadline = time.monotonic() + MAX_BLOCK_S
        while True:
            time.sleep(0.005)
            try:
                self._produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise ProducerQueueFull(
                        f"librdkafka's queue stayed full for {MAX_BLOCK_S:g} s ({len(self._producer)} records waiting)"
                    ) from None

    def on_failed_trade(self, handler: Callable[[str, int, int], None]) -> None:
        self._failed_trade_handler = handler

    def on_finished(self, hook: Callable[[str], None]) -> None:
        self._finished = hook

    def send_unfillable(self, record: UnfillableTradeIds) -> None:
        """As ``KafkaPythonProducer.send_unfillable``: to the dead-letter topic, keyed by product."""
        value, key = record.to_json(), record.product_id.encode()
        try:
            self._produce(self._dlq_topic, value, key, on_delivery=self._on_dead_letter_delivery)
        except BufferError:
            self._produce_when_room(self._dlq_topic, value, key, self._on_dead_letter_delivery)

    def send_state(self, key: bytes, value: bytes) -> None:
        """One resume point to the state topic (compacted: the newest per key is what counts)."""
        try:
            self._produce(self._state_topic, value, key, on_delivery=self._on_state_delivery)
        except BufferError:
            self._produce_when_room(self._state_topic, value, key, self._on_state_delivery)

    def partition_of(self, product_id: str) -> int | None:
        """The trades topic's partition of a product: Java's murmur2 of the key, as librdkafka's
        ``murmur2_random`` picks it (None before wait_for_topics() found the topic)."""
        count = self._partitions.get(self._topic)
        if not count:
            return None
        return (murmur2(product_id.encode()) & 0x7FFFFFFF) % count

    def flush(self, timeout_s: float) -> None:
        self._producer.flush(timeout_s)

    def send_dead_letter(self, reason: str, raw: str | bytes, feed: str, receive_time_us: int) -> None:
        value = dead_letter_value(reason, raw, feed, receive_time_us)
        try:
            self._produce(self._dlq_topic, value, None, on_delivery=self._on_dead_letter_delivery)
        except BufferError:
            self._produce_when_room(self._dlq_topic, value, None, self._on_dead_letter_delivery)
        self._metrics.dead_lettered.inc()

    # -- callbacks (run on the poll thread) ---------------------------------------------------------

    def _poll_loop(self) -> None:
        poll = self._producer.poll
        while not self._stop_polling.is_set():
            poll(POLL_INTERVAL_S)

    def _on_sampled_delivery(self, inner: Callable, started: float, err: KafkaError | None, msg: Message) -> None:
        inner(err, msg)
        if err is None:
            self._observe_latency(time.perf_counter() - started)

    def _on_trade_delivery(
        self,
        counts: Counter[str],
        product_id: str,
        trade_id: int,
        event_time_us: int,
        err: KafkaError | None,
        msg: Message,
    ) -> None:
        self._reports += 1
        if err is None:
            counts[product_id] += 1  # only the poll thread writes these counts
            best = self.acked_max.get(product_id)
            if best is None or trade_id > best[0]:
                self.acked_max[product_id] = (trade_id, event_time_us, msg.partition() or 0, msg.offset() or 0)
            self._finished(product_id)
            return
        self._on_delivery_error(self._topic, err)
        handler = self._failed_trade_handler
        if handler is not None:
            try:
                # owed again before it stops counting as unacknowledged (see KafkaPythonProducer)
                handler(product_id, trade_id, event_time_us)
            except Exception:  # never let it kill the poll thread
                log.exception("could not hand back a trade whose delivery failed", extra={"trade_id": trade_id})
        self._finished(product_id)

    def _on_tick_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self._reports += 1
        product_id = self._products[msg.key()]
        if err is None:
            self._metrics.hot.ticks[product_id] += 1
        else:  # a lost tick only delays the watermark
            self._on_delivery_error(self._topic, err)
        self._finished(product_id)

    def _on_state_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        self._reports += 1
        if err is not None:
            self._on_delivery_error(self._state_topic, err)

    def _on_dead_letter_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        self._reports += 1
        if err is not None:
            self._on_delivery_error(self._dlq_topic, err)

    def _on_delivery_error(self, topic: str, err: KafkaError) -> None:
        self._metrics.delivery_errors.labels(topic).inc()
        self._log_delivery_error(topic, repr(KafkaException(err)))

    def _on_client_error(self, err: KafkaError) -> None:
        """librdkafka's error callback: mostly transient (a broker down, it retries); a fatal error
        (the idempotent producer's guarantees broken) ends this producer."""
        if err.fatal():
            self._fatal = f"kafka producer failed (fatal): {err.str()}"
            log.error("kafka producer fatal error", extra={"error": err.str()})
        else:
            log.warning("kafka client error", extra={"error": err.str()})

    # -- readiness and lifecycle -------------------------------------------------------------------

    def failure(self) -> str | None:
        if self._fatal is not None:
            return self._fatal
        if not self._poller.is_alive() and not self._closing:
            return "kafka producer failed: its poll thread stopped"
        return self._stuck

    def check(self) -> None:
        """Records waiting with no delivery report at all for longer than delivery + request
        timeout (+ a margin) mean librdkafka is stuck: librdkafka fails a record at its delivery
        timeout itself, and that failure is a report."""
        waiting, reports, now = len(self._producer), self._reports, time.monotonic()
        if not waiting or self._watch is None or self._watch[0] != reports:
            self._watch = (reports, now) if waiting else None
            return
        limit = (self._settings.delivery_timeout_ms + self._settings.request_timeout_ms) / 1000 + STUCK_MARGIN_S
        silent_s = now - self._watch[1]
        if silent_s > limit and not self._closing:
            self._stuck = f"kafka producer stuck: {waiting} records waiting, no delivery report for {silent_s:.0f} s"

    def wait_for_topics(self) -> None:
        """Both topics in the cluster's metadata (10 s each); raises TopicMissing or KafkaException."""
        for topic in (self._topic, self._dlq_topic):
            found = self._producer.list_topics(topic, timeout=MAX_BLOCK_S).topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                reason = found.error.str() if found is not None and found.error is not None else "no partitions"
                raise TopicMissing(f"kafka topic {topic!r} not available: {reason}")
            self._partitions[topic] = len(found.partitions)
        self._topics_known = True

    def has_topic_metadata(self) -> bool:
        """Known once wait_for_topics() found them (librdkafka keeps and refreshes its metadata)."""
        return self._topics_known

    def close(self, timeout_s: float) -> None:
        """Flush everything accepted (callbacks then run on this thread), then stop polling.
        Raises FlushIncomplete if records are left after ``timeout_s``."""
        self._closing = True
        self._stop_polling.set()
        self._poller.join(timeout_s)
        left = self._producer.flush(timeout_s)
        if left:
            raise FlushIncomplete(f"{left} records not delivered within {timeout_s:g} s")


def _nothing(_product_id: str) -> None:
    pass
