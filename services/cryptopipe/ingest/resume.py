"""Exact resume after a restart (issue 10, hole 2): where each product left off, however quiet the
product and however busy its partition, and which of its trades were still pending.

The ingestion keeps a small compacted **state topic** (``<trades topic>.ingest-state``, one
partition, key = product): per product a *resume point* -- a trade id ``H`` such that every id of
the product up to ``H`` is in the trades topic or was counted as unfillable, with the partition
and offset of ``H``'s record and its event time. It is written every few seconds and at shutdown,
only ever advanced to an acknowledged trade with nothing of the product owed or unacknowledged
below it (``ReleaseOrder.outstanding``).

On start the state topic is read to its end, then each partition of the trades topic from the
smallest recorded offset of its products (from the beginning for a product without a point, or
for every partition if the state topic is empty: the first start after an upgrade) to its end.
Per product: the newest id in the topic, and the ids between ``H`` and it that are not there --
the gaps pending when the previous run stopped (or died), backfilled again at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from kafka import KafkaConsumer, TopicPartition

from cryptopipe.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

STATE_VERSION = 1
SCAN_TIMEOUT_S = 120.0  # reading back a busy partition's records since the last point


@dataclass(frozen=True)
class ResumePoint:
    trade_id: int
    event_time_us: int
    partition: int
    offset: int


def encode_point(product: str, point: ResumePoint) -> tuple[bytes, bytes]:
    """The state topic's (key, value) for one product."""
    value = {
        "v": STATE_VERSION,
        "trade_id": point.trade_id,
        "event_time_us": point.event_time_us,
        "partition": point.partition,
        "offset": point.offset,
    }
    return product.encode(), orjson.dumps(value)


def decode_point(value: bytes) -> ResumePoint:
    """Raises ValueError naming what is wrong with a state record."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"ingest state record is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("v") != STATE_VERSION:
        raise ValueError(f"ingest state record has no version {STATE_VERSION}: {value[:200]!r}")
    fields = ("trade_id", "event_time_us", "partition", "offset")
    if any(type(data.get(f)) is not int for f in fields):
        raise ValueError(f"ingest state record needs integer {', '.join(fields)}: {value[:200]!r}")
    return ResumePoint(data["trade_id"], data["event_time_us"], data["partition"], data["offset"])


@dataclass(frozen=True)
class Resume:
    """Where one product resumes: ``newest`` id in the topic (with its event time) and the id
    ranges at or below it that are not in the topic and were not counted (to backfill)."""

    newest: int
    newest_time_us: int
    pending: tuple[tuple[int, int], ...]
    floor_us: int  # event time no later than any pending trade


def holes(after: int, present: set[int], newest: int) -> tuple[tuple[int, int], ...]:
    """The contiguous ranges of ids in (after, newest] not in ``present``."""
    ranges: list[tuple[int, int]] = []
    start = None
    for trade_id in range(after + 1, newest + 1):
        if trade_id in present:
            if start is not None:
                ranges.append((start, trade_id - 1))
                start = None
        elif start is None:
            start = trade_id
    if start is not None:
        ranges.append((start, newest))
    return tuple(ranges)


def plan(points: dict[str, ResumePoint], seen: dict[str, dict[int, int]]) -> dict[str, Resume]:
    """Per product: its resume point and the (id -> event time) of its trades found past it."""
    out: dict[str, Resume] = {}
    for product in sorted(set(points) | {p for p, found in seen.items() if found}):
        point = points.get(product)
        found = seen.get(product, {})
        if point is None:
            # no point (first start with a state topic): resume after the newest trade, as a tail
            # read did; ids missing inside the old topic may have been counted long ago
            newest = max(found)
            out[product] = Resume(newest, found[newest], (), found[newest])
            continue
        newer = {i: t for i, t in found.items() if i > point.trade_id}
        if not newer:
            out[product] = Resume(point.trade_id, point.event_time_us, (), point.event_time_us)
            continue
        newest = max(newer)
        out[product] = Resume(newest, newer[newest], holes(point.trade_id, set(newer), newest), point.event_time_us)
    return out


def topic_exists(bootstrap: str, topic: str, security: KafkaSecurity = PLAINTEXT) -> bool:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, client_id="cryptopipe-ingest-resume", **security.kafka_python()
    )
    try:
        return topic in consumer.topics()
    finally:
        consumer.close()


def read_state(
    bootstrap: str, state_topic: str, timeout_s: float = SCAN_TIMEOUT_S, security: KafkaSecurity = PLAINTEXT
) -> dict[str, ResumePoint]:
    """The newest resume point per product in the state topic ({} if it is empty)."""
    points: dict[str, ResumePoint] = {}
    for key, value, _partition, _offset in _read(bootstrap, state_topic, None, timeout_s, security):
        if key is None or value is None:
            continue
        try:
            points[key.decode()] = decode_point(value)
        except ValueError as exc:  # one bad record must not stop a restart: that product is scanned fully
            log.error("ignoring an ingest state record", extra={"key": key, "error": str(exc)})
            points.pop(key.decode(), None)
    return points


def scan_trades(
    bootstrap: str,
    topic: str,
    products: Sequence[str],
    points: dict[str, ResumePoint],
    partition_of: dict[str, int],
    timeout_s: float = SCAN_TIMEOUT_S,
    security: KafkaSecurity = PLAINTEXT,
) -> dict[str, dict[int, int]]:
    """(trade id -> event time) per product, of the trades at or after each product's recorded
    offset (from the beginning without one)."""
    wanted = set(products)
    start: dict[int, int] = {}
    for product in wanted:
        point = points.get(product)
        if point is None:
            partition = partition_of.get(product)
            if partition is None:
                start = {}  # unknown partition: every partition from the beginning
                break
            start[partition] = 0
        else:
            start[point.partition] = min(start.get(point.partition, point.offset), point.offset)
    seen: dict[str, dict[int, int]] = {}
    for _key, value, _partition, _offset in _read(bootstrap, topic, start or None, timeout_s, security):
        if value is None:
            continue
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue  # not ours to judge here: the job counts it
        product, trade_id = record.get("product_id"), record.get("trade_id")
        if record.get("kind") != "trade" or product not in wanted or type(trade_id) is not int:
            continue
        event_time = record.get("event_time_us")
        seen.setdefault(product, {})[trade_id] = event_time if type(event_time) is int else 0
    return seen


def _read(
    bootstrap: str, topic: str, start: dict[int, int] | None, timeout_s: float, security: KafkaSecurity
) -> list[tuple[bytes | None, bytes | None, int, int]]:
    """Every record of ``topic`` (of the partitions in ``start``, from those offsets; all
    partitions from the beginning when None), read up to the end offsets of the moment."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        client_id="cryptopipe-ingest-resume",
        **security.kafka_python(),
    )
    try:
        available = sorted(consumer.partitions_for_topic(topic) or ())
        wanted = available if start is None else [p for p in available if p in start]
        partitions = [TopicPartition(topic, p) for p in wanted]
        if not partitions:
            return []
        consumer.assign(partitions)
        begin, end = consumer.beginning_offsets(partitions), consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(begin[tp], (start or {}).get(tp.partition, 0)))
        out: list[tuple[bytes | None, bytes | None, int, int]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s} s")
            for records in consumer.poll(timeout_ms=500).values():
                out.extend((r.key, r.value, r.partition, r.offset) for r in records)
        return out
    finally:
        consumer.close()
