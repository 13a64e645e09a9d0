"""The lake monitor's input of counted-unfillable trade ids: the ingestion's ``UnfillableTradeIds``
records (cryptopipe.contracts) in the dead-letter topic, read with a plain Kafka consumer (no group,
nothing committed). Each ``refresh()`` reads what was added since the last one, up to the end the
topic had when it began, and returns every range seen so far, per product, merged.

Without this input the continuity audit cannot tell a gap the ingestion counted from a silent loss,
and ``CryptopipeLakeTradeIdsLost`` fires on counted gaps. The topic's retention (7 days on the local
stack) must exceed the monitor's lookback, or old counted gaps would read as lost again.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaConsumer, TopicPartition

from cryptopipe.contracts import ContractError, decode_unfillable
from cryptopipe.kafka_security import PLAINTEXT, KafkaSecurity
from cryptopipe.monitor.continuity import merge_ranges

log = logging.getLogger("cryptopipe.monitor")

POLL_MS = 500


class UnfillableLog:
    def __init__(
        self, bootstrap: str, topic: str, *, timeout_s: float = 20.0, security: KafkaSecurity = PLAINTEXT
    ) -> None:
        self.bootstrap, self.topic, self.timeout_s = bootstrap, topic, timeout_s
        self._security = security
        self.bad_records = 0  # records of the kind that break the contract (logged, skipped)
        self._ranges: dict[str, list[tuple[int, int]]] = {}
        self._consumer: KafkaConsumer | None = None
        self._assigned: set[TopicPartition] = set()

    def refresh(self) -> dict[str, list[tuple[int, int]]]:
        """product -> merged inclusive id ranges. Raises (KafkaError, OSError, TimeoutError) when the
        topic cannot be read to its end within ``timeout_s``: the caller's scan fails and says why."""
        consumer = self._consumer_for_topic()
        partitions = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or ())]
        if not partitions:
            raise OSError(f"dead-letter topic {self.topic} not found on {self.bootstrap}")
        fresh = [tp for tp in partitions if tp not in self._assigned]
        if fresh:
            self._assigned |= set(fresh)
            consumer.assign(sorted(self._assigned, key=lambda tp: tp.partition))
            consumer.seek_to_beginning(*fresh)
        end = consumer.end_offsets(partitions)
        deadline = time.monotonic() + self.timeout_s
        try:
            while any(consumer.position(tp) < end[tp] for tp in partitions):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read the dead-letter topic {self.topic} within {self.timeout_s} s")
                for records in consumer.poll(timeout_ms=POLL_MS).values():
                    for record in records:
                        self._take(record.value)
        finally:  # what was read is kept even when the end was not reached: the position moved past it
            self._ranges = {p: merge_ranges(r) for p, r in self._ranges.items()}
        return {p: list(r) for p, r in self._ranges.items()}

    def _take(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            record = decode_unfillable(value)
        except ContractError as exc:
            self.bad_records += 1
            log.warning("bad unfillable trade ids record skipped", extra={"topic": self.topic, "error": str(exc)})
            return
        if record is not None:
            self._ranges.setdefault(record.product_id, []).append((record.first_trade_id, record.last_trade_id))

    def _consumer_for_topic(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                client_id="cryptopipe-lake-monitor",
                **self._security.kafka_python(),
            )
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def read_unfillable(bootstrap: str, topic: str, *, timeout_s: float = 20.0) -> dict[str, list[tuple[int, int]]]:
    """Every counted-unfillable range in the topic, once (`cryptopipe monitor report`)."""
    log_ = UnfillableLog(bootstrap, topic, timeout_s=timeout_s)
    try:
        return log_.refresh()
    finally:
        log_.close()


__all__ = ["UnfillableLog", "read_unfillable"]
