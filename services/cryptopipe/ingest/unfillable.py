"""The ingestion's side of the lake monitor's input: every trade id it gives up on is published as
``UnfillableTradeIds`` records (cryptopipe.contracts) to the dead-letter topic, which the monitor
reads (cryptopipe.monitor.unfillable) so that its continuity audit counts those ids as unfillable
instead of raising the "lost" alert. One call, from the backfill's give-up (backfill.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Protocol

from cryptopipe.contracts import UnfillableTradeIds, unfillable_ranges

log = logging.getLogger(__name__)


class _Sink(Protocol):
    def send_unfillable(self, record: UnfillableTradeIds) -> None: ...


def publish_unfillable(producer: _Sink, product_id: str, ids: Iterable[int], reason: str) -> int:
    """One record per run of consecutive ``ids``; the number sent. A failure is logged, never raised:
    the give-up is already counted and logged, and must not stop the backfill."""
    records = unfillable_ranges(product_id, ids, reason, time.time_ns() // 1_000)
    sent = 0
    for record in records:
        try:
            producer.send_unfillable(record)
            sent += 1
        except Exception as exc:
            log.error(
                "could not publish unfillable trade ids",
                extra={
                    "product_id": product_id,
                    "first": record.first_trade_id,
                    "last": record.last_trade_id,
                    "reason": reason,
                    "error": repr(exc),
                },
            )
    return sent
