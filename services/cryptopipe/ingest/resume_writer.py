"""Writes the resume points (``resume.py``) to the state topic: every few seconds and at shutdown.

A product's point advances to the acknowledged trade with the highest id only when nothing of the
product with a lower id is owed, held or unacknowledged (``Releaser.outstanding``); otherwise the
previous point stays, and a restart reads the trades topic from it. A point is never ahead of what
Kafka holds or the service counted.
"""

from __future__ import annotations

import logging

from cryptopipe.ingest.producer import RecordProducer
from cryptopipe.ingest.releaser import Releaser
from cryptopipe.ingest.resume import ResumePoint, encode_point

log = logging.getLogger(__name__)

WRITE_INTERVAL_S = 5.0


class ResumeWriter:
    def __init__(self, producer: RecordProducer, releaser: Releaser, written: dict[str, ResumePoint]) -> None:
        self._producer = producer
        self._releaser = releaser
        self._written = dict(written)  # what the state topic holds (read on start, then written)

    def write(self) -> int:
        """Write the points that advanced; returns how many."""
        candidates = dict(self._producer.acked_max)  # copied first: the sender thread updates it
        try:
            outstanding = self._releaser.outstanding()
        except RuntimeError:  # an acknowledgement changed a queue while it was read: next time
            return 0
        written = 0
        for product, (trade_id, event_time_us, partition, offset) in candidates.items():
            if outstanding.get(product, trade_id + 1) <= trade_id:
                continue  # a lower id is still owed, held or unacknowledged: the old point stays
            previous = self._written.get(product)
            if previous is not None and previous.trade_id >= trade_id:
                continue
            point = ResumePoint(trade_id, event_time_us, partition, offset)
            try:
                self._producer.send_state(*encode_point(product, point))
            except Exception as exc:  # the next write retries; a restart then reads a little more
                log.warning("could not write a resume point", extra={"product_id": product, "error": repr(exc)})
                continue
            self._written[product] = point
            written += 1
        return written
