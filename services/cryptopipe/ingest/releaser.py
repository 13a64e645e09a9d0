"""The thread-safe shell around ``hold.ReleaseOrder``: every trade and tick for the topic is offered
here (by the socket reader and the backfill worker) and handed to the producer in the order the
release order allows; a pump thread releases what acknowledgements and settled debts free, and
applies the hold's bounds.

Producing happens under one lock, so what is released reaches the producer in release order.
Acknowledgements never take the lock (they run on kafka-python's sender thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cryptopipe.contracts import Tick, Trade
from cryptopipe.ingest.hold import Expired, OwedKey, ReleaseOrder
from cryptopipe.ingest.metrics import IngestMetrics
from cryptopipe.ingest.producer import RecordProducer
from cryptopipe.ingest.settings import IngestSettings

log = logging.getLogger(__name__)

PUMP_INTERVAL_S = 0.1  # bounds checked and acknowledgements turned into releases at least this often
REFUSAL_LOG_INTERVAL_S = 10.0


def _now_us() -> int:
    return time.time_ns() // 1000


class Releaser:
    def __init__(self, settings: IngestSettings, producer: RecordProducer, metrics: IngestMetrics) -> None:
        self._order: ReleaseOrder[Trade | Tick] = ReleaseOrder(
            slack_us=round(settings.hold_slack_s * 1e6),
            max_hold_us=round(settings.max_hold_s * 1e6),
            max_held=settings.max_held_records,
            settle_us=round(settings.settle_s * 1e6),
        )
        self._producer = producer
        self._metrics = metrics
        self._hot = metrics.hot
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="ingest-release", daemon=True)
        # set by the service once the backfill exists: (product, first, last) given up by an expiry
        self.on_expired_gap: Callable[[str, int, int], None] | None = None
        # (trade) the producer refused at release: the service turns it into a gap to refill
        self.on_refused_trade: Callable[[Trade], None] | None = None
        self._last_refusal_log = 0.0
        producer.on_finished(self._finished)

    # -- debts (any thread) -------------------------------------------------------------------------

    def owe(self, key: OwedKey, floor_us: int) -> None:
        self._order.owe(key, floor_us)  # lock-free: the sender thread owes failed deliveries

    def settle(self, product: str, first: int, last: int) -> None:
        with self._lock:
            self._order.settle(product, first, last)
            self._emit(self._order.release())

    def expect(self, floors: dict[str, int]) -> None:
        with self._lock:
            self._order.expect(floors, _now_us())

    def seen(self, product: str) -> None:
        if self._order.waiting_for(product):  # the usual case: no lock taken
            with self._lock:
                self._order.seen(product)
                self._emit(self._order.release())

    def _finished(self, product: str) -> None:
        """Kafka finished a record (sender thread): lock-free; the pump releases what it frees."""
        self._order.acked(product)
        if self._order.held:
            self._wake.set()

    # -- records (reader and backfill threads) --------------------------------------------------------

    def offer(self, record: Trade | Tick) -> None:
        with self._lock:
            trade_id = record.trade_id if isinstance(record, Trade) else None
            self._emit(self._order.offer(record, record.product_id, record.event_time_us, trade_id, _now_us()))

    def _emit(self, records: list[Trade | Tick]) -> None:
        send = self._producer.send
        last_trade_us = self._hot.last_trade_us
        for record in records:
            product = record.product_id
            try:
                if isinstance(record, Trade):
                    send(product, record.to_json(), record.trade_id, record.source, record.event_time_us)
                    if record.source == "ws" and record.event_time_us > last_trade_us.get(product, 0):
                        last_trade_us[product] = record.event_time_us  # freshness: what reached the producer
                else:
                    send(product, record.to_json())
            except Exception as exc:  # refused (no metadata within max_block_ms, closed)
                self._order.acked(product)  # it will never be acknowledged
                self._metrics.error("produce")
                now = time.monotonic()
                if now - self._last_refusal_log >= REFUSAL_LOG_INTERVAL_S:  # one line, not one per record
                    self._last_refusal_log = now
                    log.error("kafka producer refused a record", extra={"product_id": product, "error": repr(exc)})
                if isinstance(record, Trade) and self.on_refused_trade is not None:
                    self.on_refused_trade(record)  # a gap again: refilled over REST or counted

    # -- the pump -------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Stop pumping; what is still held is released (shutdown: Kafka gets it, order or not)."""
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        with self._lock:
            self._emit(self._order.drain())

    def outstanding(self) -> dict[str, int]:
        """Per product, the lowest trade id owed, held or unacknowledged (see ReleaseOrder)."""
        with self._lock:
            return self._order.outstanding()

    @property
    def held(self) -> int:
        return self._order.held

    def _pump(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(PUMP_INTERVAL_S)
            self._wake.clear()
            try:
                self.pump_once()
            except Exception:  # a bug must not end the pump (and freeze every release)
                log.exception("release pump failed")

    def pump_once(self) -> None:
        with self._lock:
            now = _now_us()
            expired = self._order.expire(now)
            if expired is not None:
                self._expired(expired)
            self._emit(self._order.release())
            self._metrics.held_records.set(self._order.held)
            self._metrics.hold_age.set(self._order.held_age_us(now) / 1e6)

    def _expired(self, expired: Expired) -> None:
        self._metrics.hold_expired.labels(expired.cause).inc()
        fields = {
            "cause": expired.cause,
            "gaps": [list(g) for g in expired.gaps[:10]],
            "unseen_products": list(expired.unseen),
            "unacknowledged": expired.unacked,
            "held": self._order.held,
        }
        if expired.cause == "settle":
            log.warning("products not seen within settle_s after connecting; releasing without them", extra=fields)
        else:
            log.error("hold bound exceeded: owed trades given up, held records released", extra=fields)
        for product, first, last in expired.gaps:
            if self.on_expired_gap is not None:
                self.on_expired_gap(product, first, last)
