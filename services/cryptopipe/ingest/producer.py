"""The Kafka side of ingestion: records keyed by product to the topic, bad frames to the DLQ topic.

``RecordProducer`` is the seam the service, the feed reader and the backfill use;
``producer_choice.make_producer`` picks the client by ``IngestSettings.producer``: ``kafka-python``
(the default, ``KafkaPythonProducer`` below) or ``confluent`` (librdkafka through confluent-kafka,
``confluent_producer.py``, installed only with the optional ``ingestion-fast`` extra). Both: idempotent, acks=all, keyed by product, a trade
counted as produced when acknowledged and a failed delivery counted and handed back.

One idempotent kafka-python producer (acks=all) per service. Records are batched by linger and
batch size and never flushed one by one; ``flush()`` is for shutdown. Compression is off: lz4 and
zstd need extra packages, and the records are small JSON on a fast link, so CPU matters more than
bytes here.

Fast path. ``KafkaProducer.send()`` costs ~16 µs of CPU per record, most of it per-call checks
that cannot change between two trades (headers, serializers, metadata, partitioner, size). With the
topic's metadata known, ``send`` appends straight to kafka-python's RecordAccumulator (~8.6 µs),
the same call ``KafkaProducer.send()`` ends in. Measured on the shared 2-core machine (parse +
encode + produce, CPU of all threads): ~31k trades per CPU-second through ``send()``, ~44k through
the accumulator. The accumulator is private API, so it is used only if it has the expected shape
(kafka-python is pinned), and everything else -- dead letters, a topic without metadata -- goes
through the public ``send()``.
"""

from __future__ import annotations

import abc
import base64
import collections
import contextlib
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.future import Future
from kafka.partitioner import Partitioner, murmur2
from kafka.producer.transaction_manager import TransactionState
from kafka.structs import TopicPartition

from cryptopipe.contracts import UnfillableTradeIds
from cryptopipe.ingest.metrics import IngestMetrics
from cryptopipe.ingest.settings import IngestSettings

log = logging.getLogger(__name__)

# One record in this many gets a latency callback: enough for a histogram, cheap on the hot path.
LATENCY_SAMPLE_MASK = 63
# The fast path re-reads the topic's partition count once per this many records (+1).
PARTITION_RECHECK_MASK = 4095
_NO_HEADERS: list[tuple[str, bytes]] = []  # never mutated by kafka-python
# While deliveries keep failing, log the first failure and then at most one line per this many seconds.
DELIVERY_ERROR_LOG_INTERVAL_S = 10.0
# A record unfinished this long past delivery + request timeout means kafka-python is stuck.
STUCK_MARGIN_S = 10.0
_READY, _UNINITIALIZED = TransactionState.READY, TransactionState.UNINITIALIZED


class KeyHashPartitioner(Partitioner):
    """Java-compatible murmur2 key partitioning (the same partition Kafka's own clients choose),
    with the hash cached per key: there are only a handful of product ids, and kafka-python's
    DefaultPartitioner re-hashes in pure Python and sorts the partition list on every record."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, bytes, int], int] = {}
        self._round_robin = 0

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if partitions is None:
            raise ValueError(f"topic {topic} not found in cluster metadata")
        if serialized_key is None:
            # DLQ records have no key: spread them
            self._round_robin += 1
            ordered = sorted(partitions)
            return ordered[self._round_robin % len(ordered)]
        cache_key = (topic, serialized_key, len(partitions))
        chosen = self._cache.get(cache_key)
        if chosen is None:
            ordered = sorted(partitions)
            chosen = ordered[(murmur2(serialized_key) & 0x7FFFFFFF) % len(ordered)]
            self._cache[cache_key] = chosen
        return chosen


class RecordProducer(abc.ABC):
    """Produces trade/tick JSON (``Record.to_json()``) and dead letters; thread-safe. The
    contract every client behind it keeps (each method's doc is in ``KafkaPythonProducer``)."""

    @property
    def fast_path(self) -> bool:
        """Is the client's cheapest per-record path in use (the benchmark reports it)?"""
        return False

    # per product, the acknowledged trade with the highest id: (trade id, event time, partition,
    # offset), the candidate resume point (written by the client's delivery thread only)
    acked_max: dict[str, tuple[int, int, int, int]]

    @abc.abstractmethod
    def send(
        self, product_id: str, value: bytes, trade_id: int | None = None, source: str = "ws", event_time_us: int = 0
    ) -> None: ...

    @abc.abstractmethod
    def on_finished(self, hook: Callable[[str], None]) -> None: ...

    @abc.abstractmethod
    def on_failed_trade(self, handler: Callable[[str, int, int], None]) -> None: ...

    @abc.abstractmethod
    def failure(self) -> str | None: ...

    @abc.abstractmethod
    def check(self) -> None: ...

    @abc.abstractmethod
    def send_dead_letter(self, reason: str, raw: str | bytes, feed: str, receive_time_us: int) -> None: ...

    @abc.abstractmethod
    def send_unfillable(self, record: UnfillableTradeIds) -> None: ...

    @abc.abstractmethod
    def send_state(self, key: bytes, value: bytes) -> None: ...

    @abc.abstractmethod
    def partition_of(self, product_id: str) -> int | None: ...

    @abc.abstractmethod
    def flush(self, timeout_s: float) -> None: ...

    @abc.abstractmethod
    def wait_for_topics(self) -> None: ...

    @abc.abstractmethod
    def has_topic_metadata(self) -> bool: ...

    @abc.abstractmethod
    def close(self, timeout_s: float) -> None: ...


class KafkaPythonProducer(RecordProducer):
    """The default: kafka-python, with its accumulator fast path (module doc)."""

    def __init__(self, settings: IngestSettings, metrics: IngestMetrics, **overrides: Any) -> None:
        config: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in settings.kafka_bootstrap.split(",") if s.strip()],
            "client_id": "cryptopipe-ingest",
            "enable_idempotence": True,
            "acks": "all",
            "linger_ms": settings.linger_ms,
            "delivery_timeout_ms": settings.delivery_timeout_ms,
            "request_timeout_ms": settings.request_timeout_ms,
            "batch_size": settings.batch_size,
            "compression_type": None,
            "partitioner": KeyHashPartitioner(),
            # Topics belong to the operator (Strimzi KafkaTopic) or the test: never create one by accident.
            "allow_auto_create_topics": False,
            # send() blocks at most this long while topic metadata is missing (kafka-python 3 has no
            # buffer_memory bound: when Kafka is down, batches wait in memory until delivery_timeout_ms)
            "max_block_ms": 10_000,
            # fail fast and let the service retry, so a stop request never waits long on a dead broker
            "bootstrap_timeout_ms": 5_000,
        }
        config.update(settings.kafka_security.kafka_python())
        config.update(overrides)
        self._producer = KafkaProducer(**config)
        self._settings = settings
        self._metrics = metrics
        self._topic = settings.topic
        self._dlq_topic = settings.dlq_topic
        self._send_raw = self._producer.send
        self._keys: dict[str, bytes] = {}
        self._sent = 0
        self._log_delivery_error = DeliveryErrorLog()
        self._observe_latency = metrics.produce_latency.observe
        # built once: add_errback(f) with no extra args stores f as is, no allocation per record
        self._dead_letter_errback = functools.partial(self._on_delivery_error, self._dlq_topic)
        self._append, self._wakeup = _accumulator_fast_path(self._producer)
        self._partitioner = config["partitioner"]
        self._partition_of: dict[str, TopicPartition] = {}
        # trades count as produced when acknowledged (written on kafka-python's sender thread only)
        self._acked_ws = metrics.hot.trades
        self._acked_rest = metrics.hot.backfilled
        self._acked_ticks = metrics.hot.ticks
        self._failed_trade_handler: Callable[[str, int, int], None] | None = None
        self._finished: Callable[[str], None] = _nothing
        # per product, the acknowledged trade with the highest id: (trade id, event time, partition,
        # offset), the candidate resume point (written on the sender thread only)
        self.acked_max: dict[str, tuple[int, int, int, int]] = {}
        self._state_topic = settings.state_topic
        self._state_errback = functools.partial(self._on_delivery_error, self._state_topic)
        self._closing = False
        self._stuck: str | None = None
        # kafka-python's own hot path registers callback + errback under one lock; use it if it is there
        self._one_lock_callbacks = callable(getattr(Future, "_add_cb_eb", None))

    @property
    def fast_path(self) -> bool:
        return self._append is not None

    # -- hot path ---------------------------------------------------------------------------------

    def send(
        self, product_id: str, value: bytes, trade_id: int | None = None, source: str = "ws", event_time_us: int = 0
    ) -> None:
        """Hand one encoded record to the producer, keyed by product (one product, one partition).

        A trade (``trade_id`` given) or tick counts as produced when Kafka acknowledges it; if a trade's delivery
        fails (delivery timeout, a non-retriable error) the failed-trade handler gets it back, to be
        fetched again over REST (``event_time_us`` goes with it). Either way the finished hook runs
        once per record. Raises kafka errors (KafkaTimeoutError) if the producer cannot
        accept it within max_block_ms.
        """
        key = self._keys.get(product_id)
        if key is None:
            key = self._keys[product_id] = product_id.encode()
        self._sent = sent = self._sent + 1  # racy across threads; drives sampling and rechecks only
        tp = self._partition_of.get(product_id)
        if tp is None or not sent & PARTITION_RECHECK_MASK:
            tp = self._resolve_partition(product_id, key)
        if tp is not None:
            future, batch_full, new_batch, _ = self._append(tp, None, key, value, _NO_HEADERS)
            if batch_full or new_batch:
                self._wakeup()
        else:
            future = self._send_raw(self._topic, value, key)
        # one partial for both outcomes (the callback tells them apart by the argument's type)
        if trade_id is None:  # a tick: counted once acknowledged; a lost one only delays the watermark
            on_delivery = functools.partial(self._on_tick_delivery, product_id)
        else:
            counts = self._acked_ws if source == "ws" else self._acked_rest
            on_delivery = functools.partial(self._on_trade_delivery, counts, product_id, trade_id, event_time_us)
        if self._one_lock_callbacks:
            future._add_cb_eb(on_delivery, on_delivery)  # add_both() under one lock: ~1/3 of its cost
        else:
            future.add_both(on_delivery)
        if not sent & LATENCY_SAMPLE_MASK:
            future.add_callback(self._on_sampled_ack, time.perf_counter())

    def on_finished(self, hook: Callable[[str], None]) -> None:
        """``hook(product_id)`` runs (on the sender thread) once per trade or tick of the topic when
        Kafka has finished it, acknowledged or failed (after the failed-trade handler)."""
        self._finished = hook

    def on_failed_trade(self, handler: Callable[[str, int, int], None]) -> None:
        """``handler(product_id, trade_id, event_time_us)`` runs (on the sender thread) for each trade whose
        delivery failed: the caller turns it into a gap to refill."""
        self._failed_trade_handler = handler

    def failure(self) -> str | None:
        """Why this producer can deliver nothing any more (None while it works): kafka-python's
        idempotent producer in its FATAL state after a non-retriable error, its sender thread gone,
        or records neither acknowledged nor failed long past the delivery timeout (stuck). Such a
        producer is not repaired in place: the service goes unready and the process exits non-zero."""
        manager = getattr(self._producer, "_transaction_manager", None)
        if manager is not None and manager.has_fatal_error():
            return f"kafka producer failed (fatal): {manager.last_error!r}"
        sender = getattr(self._producer, "_sender", None)
        if sender is not None and not sender.is_alive() and not self._closing:
            return "kafka producer failed: its sender thread stopped"
        return self._stuck

    def check(self) -> None:
        """Called every second or so (the service's watchdog thread): repairs the one stuck state
        kafka-python leaves an idempotent producer in, and notices any other.

        kafka-python 3.0.12: when a batch that was already sent expires (delivery timeout), the
        sender resets the producer id (the broker may or may not have written the batch, so the
        sequence numbers are void) but leaves the state READY, and it asks for a new id only from
        UNINITIALIZED -- so it never sends again and its records never even expire. Putting the
        state back to UNINITIALIZED makes the sender ask for a new producer id, as the Java client
        does. Anything still unfinished well past the delivery timeout is reported by failure()."""
        manager = getattr(self._producer, "_transaction_manager", None)
        if manager is not None and not manager.is_transactional() and not manager.has_fatal_error():
            with manager._lock:
                lost_id = manager._current_state == _READY and not manager.has_producer_id()
                if lost_id:
                    manager._current_state = _UNINITIALIZED
            if lost_id:
                log.warning("kafka producer lost its producer id after a failed delivery; asking for a new one")
                self._wakeup_sender()
        oldest = self._oldest_unfinished_age_s()
        limit = (self._settings.delivery_timeout_ms + self._settings.request_timeout_ms) / 1000 + STUCK_MARGIN_S
        if oldest is not None and oldest > limit and not self._closing:
            self._stuck = f"kafka producer stuck: a record has been neither delivered nor failed for {oldest:.0f} s"

    def _oldest_unfinished_age_s(self) -> float | None:
        try:
            batches = self._producer._accumulator._incomplete.all()
        except AttributeError:  # not the kafka-python this was written for: no stuck detection
            return None
        created = [batch.created for batch in batches]
        return time.monotonic() - min(created) if created else None

    def _wakeup_sender(self) -> None:
        with contextlib.suppress(Exception):
            self._producer._sender.wakeup()

    def _resolve_partition(self, product_id: str, key: bytes) -> TopicPartition | None:
        """The fast path's partition for a key, or None to use the public send()."""
        if self._append is None:
            return None
        cluster = self._producer._metadata
        if cluster.partitions_for_topic(self._topic) is None:
            self._partition_of.pop(product_id, None)
            return None
        partition = self._partitioner.partition(self._topic, key, key, None, None, cluster)
        tp = self._partition_of[product_id] = TopicPartition(self._topic, partition)
        return tp

    def send_dead_letter(self, reason: str, raw: str | bytes, feed: str, receive_time_us: int) -> None:
        """A frame that could not become records, with why, exactly as received."""
        future = self._send_raw(self._dlq_topic, dead_letter_value(reason, raw, feed, receive_time_us))
        future.add_errback(self._dead_letter_errback)
        self._metrics.dead_lettered.inc()

    def send_unfillable(self, record: UnfillableTradeIds) -> None:
        """The trade ids given up, to the dead-letter topic keyed by product: the lake monitor reads
        them so that its continuity audit counts these ids as unfillable, not lost."""
        future = self._send_raw(self._dlq_topic, record.to_json(), key=record.product_id.encode())
        future.add_errback(self._dead_letter_errback)

    # -- callbacks (run on kafka-python's sender thread) -------------------------------------------

    def _on_sampled_ack(self, started: float, _metadata: object) -> None:
        self._observe_latency(time.perf_counter() - started)

    def _on_tick_delivery(self, product_id: str, result: object) -> None:
        if isinstance(result, BaseException):
            self._on_delivery_error(self._topic, result)
        else:
            self._acked_ticks[product_id] += 1
        self._finished(product_id)

    def _on_trade_delivery(
        self, counts: collections.Counter[str], product_id: str, trade_id: int, event_time_us: int, result: object
    ) -> None:
        if not isinstance(result, BaseException):
            counts[product_id] += 1  # only the sender thread writes these counts
            best = self.acked_max.get(product_id)
            if best is None or trade_id > best[0]:
                self.acked_max[product_id] = (trade_id, event_time_us, result.partition, result.offset)  # type: ignore[attr-defined]
            self._finished(product_id)
            return
        self._on_delivery_error(self._topic, result)
        handler = self._failed_trade_handler
        if handler is not None:
            try:
                # owed again before it stops counting as unacknowledged: the release order never
                # sees it as neither (and lets later records overtake it)
                handler(product_id, trade_id, event_time_us)
            except Exception:  # never let it kill kafka-python's sender thread
                log.exception("could not hand back a trade whose delivery failed", extra={"trade_id": trade_id})
        self._finished(product_id)

    def _on_delivery_error(self, topic: str, exc: BaseException) -> None:
        self._metrics.delivery_errors.labels(topic).inc()
        self._log_delivery_error(topic, repr(exc))

    # -- readiness and lifecycle -------------------------------------------------------------------

    def wait_for_topics(self) -> None:
        """Block until the producer has partition metadata for both topics (max_block_ms each);
        raises KafkaTimeoutError if a topic does not exist."""
        for topic in (self._topic, self._dlq_topic):
            self._producer.partitions_for(topic)

    def send_state(self, key: bytes, value: bytes) -> None:
        """One resume point to the state topic (compacted: the newest per key is what counts)."""
        self._send_raw(self._state_topic, value, key).add_errback(self._state_errback)

    def partition_of(self, product_id: str) -> int | None:
        """The trades topic's partition a product's records go to (None without metadata)."""
        cluster = self._producer._metadata
        if cluster.partitions_for_topic(self._topic) is None:
            return None
        key = product_id.encode()
        return self._partitioner.partition(self._topic, key, key, None, None, cluster)

    def flush(self, timeout_s: float) -> None:
        self._producer.flush(timeout=timeout_s)

    def has_topic_metadata(self) -> bool:
        """Non-blocking: does the producer currently know the record topic's partitions?"""
        # kafka-python has no public non-blocking accessor; partitions_for() waits up to max_block_ms.
        return self._producer._metadata.partitions_for_topic(self._topic) is not None

    def close(self, timeout_s: float) -> None:
        """Flush everything accepted, then close. Raises KafkaTimeoutError if the flush times out."""
        self._closing = True
        try:
            self._producer.flush(timeout=timeout_s)
        except Exception:
            with contextlib.suppress(Exception):  # already failing: do not wait a second time
                self._producer.close(timeout=0)
            raise
        self._producer.close(timeout=timeout_s)


class DeliveryErrorLog:
    """Logs failed deliveries without flooding: while they keep failing (a broker down fails every
    record), the first one and then at most one line per DELIVERY_ERROR_LOG_INTERVAL_S, each saying
    how many it left out. Thread-safe; both producers' delivery threads call it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0.0
        self._suppressed = 0

    def __call__(self, topic: str, error: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < DELIVERY_ERROR_LOG_INTERVAL_S:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._last = now
        log.error(
            "kafka delivery failed",
            extra={"topic": topic, "error": error, "suppressed_since_last_log": suppressed},
        )


def _nothing(_product_id: str) -> None:
    pass


def dead_letter_value(reason: str, raw: str | bytes, feed: str, receive_time_us: int) -> bytes:
    """The DLQ record: JSON with the reason and the raw frame as a string -- as received if it is
    UTF-8 text, else base64 with ``raw_encoding`` saying so."""
    if isinstance(raw, bytes):
        try:
            text, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    else:
        text, encoding = raw, "utf-8"
    return orjson.dumps(
        {
            "v": 1,
            "kind": "dead_letter",
            "reason": reason,
            "feed": feed,
            "receive_time_us": receive_time_us,
            "raw": text,
            "raw_encoding": encoding,
        }
    )


def _accumulator_fast_path(producer: KafkaProducer) -> tuple[Any, Any]:
    """(RecordAccumulator.append, sender.wakeup) if this kafka-python has them as expected, else (None, None)."""
    accumulator = getattr(producer, "_accumulator", None)
    sender = getattr(producer, "_sender", None)
    append = getattr(accumulator, "append", None)
    wakeup = getattr(sender, "wakeup", None)
    if (
        append is None
        or wakeup is None
        or getattr(producer, "_transaction_manager", None) is not None
        and producer._transaction_manager.is_transactional()
    ):
        log.warning("kafka-python internals not as expected; using KafkaProducer.send()")
        return None, None
    params = list(inspect.signature(append).parameters)
    if params[:5] != ["tp", "timestamp_ms", "key", "value", "headers"]:
        log.warning("kafka-python RecordAccumulator.append changed; using KafkaProducer.send()")
        return None, None
    return append, wakeup
