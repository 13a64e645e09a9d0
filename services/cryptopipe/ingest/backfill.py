"""Fill trade-id gaps over REST, on a worker thread so the socket reader never waits for HTTP.

The reader reports a gap with ``submit``; its ids become *missing*. A missing id is produced exactly
once, by whichever comes first: the REST fetch, or the WebSocket delivering it late (a reordered
frame), which asks ``claim`` before producing a trade id at or below the newest it produced. What
REST does not return is retried a few times (the REST trades endpoint can lag the socket by a
moment), then given up, counted and logged. A partial answer keeps what it found: every id REST
returned is produced, a row that breaks the contract is dead-lettered with the reason and its id
counted as unfillable (reason ``bad_row``), and only the ids still missing are asked for again, so
``trades_unfilled_total`` counts exactly the ids that never reached Kafka.

At shutdown a gap not filled yet is **left for the next start** when that start resumes exactly
(``retry_on_restart``: a state topic is written and read, resume.py): it stays owed, so the last
resume point stays below it, and the restart finds its ids missing from the topic and backfills
them again. Counting them as unfillable too would count as lost ids that reach the lake. Without
an exact resume they are given up and counted (reason ``shutdown``).

Every trade goes to Kafka through the release order (``releaser.Releaser``, ``hold.py``): a gap is
owed from the moment it is submitted, with the event time of the product's trade before it as its
floor, until its ids are offered or given up, and records later than the floor wait meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from cryptopipe.coinbase.rest import FetchedRange, RejectedRow
from cryptopipe.contracts import Trade
from cryptopipe.ingest.clock import ahead_of_receipt
from cryptopipe.ingest.metrics import IngestMetrics
from cryptopipe.ingest.producer import RecordProducer
from cryptopipe.ingest.releaser import Releaser
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.ingest.unfillable import publish_unfillable

log = logging.getLogger(__name__)

# fetch_trades(base_url, product, first, last, *, timeout) -> FetchedRange (or just the trades found)
FetchTrades = Callable[..., FetchedRange | Sequence[Trade]]
# Gaps queued beyond this are refused: something is badly wrong upstream and memory must stay bounded.
MAX_QUEUED_GAPS = 1000


class Backfiller:
    def __init__(
        self,
        settings: IngestSettings,
        producer: RecordProducer,
        metrics: IngestMetrics,
        fetch: FetchTrades,
    ) -> None:
        self._settings = settings
        self._producer = producer
        self._metrics = metrics
        self._fetch = fetch
        self._lock = threading.Lock()
        self._missing: dict[str, set[int]] = {}
        self._queue: queue.Queue[tuple[str, int, int] | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-backfill", daemon=True)
        self._pending = 0  # gaps submitted and not finished; guarded by _idle
        # trades whose delivery to Kafka failed, per product, until the worker turns them into gaps
        self._redeliver: dict[str, set[int]] = {}
        self._idle = threading.Condition(self._lock)
        self._max_ahead_us = round(settings.max_clock_skew_s * 1_000_000)
        # gaps a hold expiry gave up while the worker may still be on them: not "backfilled"
        self._expired: set[tuple[str, int, int]] = set()
        self.releaser = Releaser(settings, producer, metrics)
        self.releaser.on_expired_gap = self.give_up_owed
        self.releaser.on_refused_trade = self._refused
        # set by the service when the next start resumes exactly from the state topic (resume.py)
        self.retry_on_restart = False

    # -- called by the socket reader ----------------------------------------------------------------

    def submit(self, product_id: str, first_missing: int, last_missing: int, floor_us: int = 0) -> None:
        """Record ids first..last of a product as missing and queue them for backfill. ``floor_us``:
        an event time no later than any of them (the trade before the gap; 0 if unknown): records
        later than it are held until the gap is paid."""
        count = last_missing - first_missing + 1
        if count <= 0:
            return
        self._metrics.gaps_detected.labels(product_id).inc()
        fields = {"product_id": product_id, "first_missing": first_missing, "last_missing": last_missing}
        if count > self._settings.backfill_max_trades:
            self._give_up(product_id, count, "too_large", fields, range(first_missing, last_missing + 1))
            return
        if self._stopping.is_set() and self.retry_on_restart:
            self._leave_for_restart(product_id, first_missing, last_missing, floor_us)
            return
        if self._queue.qsize() >= MAX_QUEUED_GAPS or self._stopping.is_set():
            reason = "queue_full" if not self._stopping.is_set() else "shutdown"
            self._give_up(product_id, count, reason, fields, range(first_missing, last_missing + 1))
            return
        self.releaser.owe((product_id, first_missing, last_missing), floor_us)
        with self._lock:
            self._missing.setdefault(product_id, set()).update(range(first_missing, last_missing + 1))
            self._pending += 1
        self._metrics.backfill_pending.inc()
        log.info("trade gap detected", extra={**fields, "trades": count})
        self._queue.put((product_id, first_missing, last_missing))

    def redeliver(self, product_id: str, trade_id: int, event_time_us: int = 0) -> None:
        """A trade Kafka did not acknowledge (delivery timeout, non-retriable error): missing again,
        refilled over REST like a gap. Called on kafka-python's sender thread, so it only records the
        id and queues one marker per product: the worker coalesces the ids that failed together
        into ranges, and a broker outage costs a few REST requests, not one per trade."""
        with self._lock:
            stopping = self._stopping.is_set()
            if not stopping:
                self.releaser.owe((product_id, trade_id, trade_id), event_time_us)
                self._missing.setdefault(product_id, set()).add(trade_id)
                ids = self._redeliver.setdefault(product_id, set())
                ids.add(trade_id)
                new_marker = len(ids) == 1
                if new_marker:
                    self._pending += 1
        if stopping and self.retry_on_restart:
            self._leave_for_restart(product_id, trade_id, trade_id, event_time_us)
            return
        if stopping:
            fields = {"product_id": product_id, "first_missing": trade_id, "last_missing": trade_id}
            self._give_up(product_id, 1, "shutdown", fields, (trade_id,))
            return
        self._metrics.redelivered.labels(product_id).inc()
        if new_marker:
            self._metrics.backfill_pending.inc()
            self._queue.put((product_id, 0, -1))  # first > last: "the failed deliveries of this product"

    def claim(self, product_id: str, trade_id: int) -> bool:
        """True exactly once for a missing id (the caller then produces it); False otherwise."""
        missing = self._missing.get(product_id)
        if not missing:  # the usual case: no lock taken
            return False
        with self._lock:
            if trade_id in missing:
                missing.discard(trade_id)
                return True
            return False

    def missing_count(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self._missing.values())

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until every submitted gap is finished (filled or given up); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self.releaser.start()

    def stop(self, timeout_s: float) -> None:
        """Finish the gap in progress (bounded by ``timeout_s``); gaps still queued are given up."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and item[1] > item[2]:
                for first, last in self._take_redeliveries(item[0]):
                    self._finish(item[0], first, last, reason="shutdown")
            elif item is not None:
                self._finish(*item, reason="shutdown")
        self.releaser.stop(timeout_s)  # whatever is still held goes to the producer, to be flushed

    # -- worker ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            product_id, first, last = item
            gaps = self._take_redeliveries(product_id) if first > last else [(first, last)]
            for gap in gaps:
                try:
                    self._fill(product_id, *gap)
                except Exception:  # a bug must not kill the worker silently
                    log.exception("backfill worker failed on a gap", extra={"gap": (product_id, *gap)})
                    self._finish(product_id, *gap, reason="internal_error")

    def _take_redeliveries(self, product_id: str) -> list[tuple[int, int]]:
        """The failed deliveries of a product as contiguous id ranges, each counted as one pending
        gap (the marker that brought them here counted one)."""
        with self._lock:
            ids = sorted(self._redeliver.pop(product_id, ()))
            ranges: list[tuple[int, int]] = []
            for trade_id in ids:
                if ranges and ranges[-1][1] == trade_id - 1:
                    ranges[-1] = (ranges[-1][0], trade_id)
                else:
                    ranges.append((trade_id, trade_id))
            self._pending += len(ranges) - 1
            if not ranges:
                self._idle.notify_all()
        self._metrics.backfill_pending.inc(len(ranges) - 1)
        for first, last in ranges:
            self._metrics.gaps_detected.labels(product_id).inc()
            log.info(
                "kafka did not acknowledge these trades; refilling them over REST",
                extra={"product_id": product_id, "first_missing": first, "last_missing": last},
            )
        return ranges

    def _fill(self, product_id: str, first: int, last: int) -> None:
        settings = self._settings
        delay = settings.backfill_retry_delay_s
        rejected_ids: list[int] = []  # ids REST returned in a shape that breaks the contract
        dead_lettered: set[bytes] = set()
        for attempt in range(1, settings.backfill_retries + 1):
            if not self._still_missing(product_id, first, last):
                break
            try:
                fetched = self._fetch(settings.rest_url, product_id, first, last, timeout=settings.backfill_timeout_s)
            except Exception as exc:  # HTTP failure, timeout, body not a list: retry
                self._metrics.error("backfill")
                log.warning(
                    "backfill request failed",
                    extra={
                        "product_id": product_id,
                        "first_missing": first,
                        "last_missing": last,
                        "attempt": attempt,
                        "error": repr(exc),
                    },
                )
            else:
                # Keep whatever came back: good rows are produced, bad rows dead-lettered (their ids
                # counted as unfillable at once: a retry would not repair them), the rest retried.
                trades, rejected = self._bound_event_time(
                    product_id,
                    *((fetched.trades, fetched.rejected) if isinstance(fetched, FetchedRange) else (fetched, ())),
                )
                produced = 0
                for trade in trades:
                    if (
                        trade.product_id == product_id
                        and first <= trade.trade_id <= last
                        and self.claim(product_id, trade.trade_id)
                    ) and self._send(trade):
                        produced += 1
                for row in rejected:
                    row_id = row.trade_id
                    in_gap = row_id is not None and first <= row_id <= last
                    if row_id is not None and in_gap and self.claim(product_id, row_id):
                        rejected_ids.append(row_id)
                    elif in_gap or row.raw in dead_lettered:
                        continue  # already produced, or already dead-lettered on an earlier attempt
                    dead_lettered.add(row.raw)
                    self._dead_letter(product_id, row)
                if produced:
                    log.info(
                        "gap backfilled",
                        extra={
                            "product_id": product_id,
                            "first_missing": first,
                            "last_missing": last,
                            "trades": produced,
                            "attempt": attempt,
                        },
                    )
            if attempt < settings.backfill_retries and self._still_missing(product_id, first, last):
                if self._stopping.wait(delay):
                    break
                delay *= 2
        self._finish(
            product_id,
            first,
            last,
            reason="shutdown" if self._stopping.is_set() else "not_returned",
            rejected=rejected_ids,
        )

    def _bound_event_time(
        self, product_id: str, trades: Sequence[Trade], rejected: Sequence[RejectedRow]
    ) -> tuple[Sequence[Trade], Sequence[RejectedRow]]:
        """REST trades are legitimately old, but one stamped more than max_clock_skew_s after it was
        fetched would move the job's watermark: it breaks the contract like a bad row (dead-lettered
        with the reason, its id counted unfillable as ``bad_row``)."""
        max_ahead_us = self._max_ahead_us
        if all(t.event_time_us - t.receive_time_us <= max_ahead_us for t in trades):
            return trades, rejected
        kept: list[Trade] = []
        refused = list(rejected)
        for trade in trades:
            reason = ahead_of_receipt(trade, max_ahead_us)
            if reason is None:
                kept.append(trade)
                continue
            with self._lock:  # counted once: a retried gap may fetch it again, when it is no longer missing
                first_time = trade.product_id == product_id and trade.trade_id in self._missing.get(product_id, ())
            if first_time:
                self._metrics.ahead_of_receipt.labels(product_id, "trade", "rest").inc()
            refused.append(RejectedRow(trade.trade_id, reason, trade.to_json()))
        return kept, refused

    def _dead_letter(self, product_id: str, row: RejectedRow) -> None:
        reason = f"rest backfill of {product_id}: {row.reason}"
        try:
            self._producer.send_dead_letter(reason, row.raw, "exchange", time.time_ns() // 1_000)
        except Exception as exc:  # the DLQ failing must not stop the backfill
            self._metrics.error("dead_letter")
            log.error("could not dead-letter a REST row", extra={"reason": reason, "error": repr(exc)})

    def _send(self, trade: Trade) -> bool:
        # into the release order; counted as backfilled when Kafka acknowledges it; a failed
        # delivery comes back through redeliver(), a refusal through _refused()
        self.releaser.offer(trade if trade.source == "rest" else dataclasses.replace(trade, source="rest"))
        return True

    def _refused(self, trade: Trade) -> None:
        """The producer refused a released trade: a gap of its own, refilled over REST or counted."""
        self.submit(trade.product_id, trade.trade_id, trade.trade_id, trade.event_time_us)

    def give_up_owed(self, product_id: str, first: int, last: int) -> None:
        """A hold expiry gave up this debt: its ids still missing are counted unfillable
        (``hold_expired``); a REST answer arriving later finds them no longer claimable."""
        with self._lock:
            missing = self._missing.get(product_id, set())
            left = [i for i in range(first, last + 1) if i in missing]
            missing.difference_update(left)
            self._expired.add((product_id, first, last))
        if left:
            fields = {"product_id": product_id, "first_missing": first, "last_missing": last}
            self._give_up(
                product_id, len(left), "hold_expired", {**fields, "unfilled_trade_ids_sample": left[:10]}, left
            )

    def _still_missing(self, product_id: str, first: int, last: int) -> bool:
        with self._lock:
            missing = self._missing.get(product_id, ())
            return any(i in missing for i in range(first, last + 1))

    def _finish(self, product_id: str, first: int, last: int, *, reason: str, rejected: Sequence[int] = ()) -> None:
        """Forget the gap's ids; whatever is still missing is given up, and so are the ``rejected``
        ids (REST rows that broke the contract, already dead-lettered). Counted before the gap stops
        being pending, so whoever sees the backfill idle also sees the counts."""
        with self._lock:
            missing = self._missing.get(product_id, set())
            left = [i for i in range(first, last + 1) if i in missing]
            missing.difference_update(left)
            expired = bool(self._expired) and any(
                p == product_id and first <= f and la <= last for p, f, la in self._expired
            )
            self._expired = {k for k in self._expired if not (k[0] == product_id and first <= k[1] and k[2] <= last)}
        fields = {"product_id": product_id, "first_missing": first, "last_missing": last}
        if left and reason == "shutdown" and self.retry_on_restart:
            # not paid: the debt stays, so no resume point passes it and the next start refills it
            log.warning(
                "trade gap left for the next start",
                extra={**fields, "trades": len(left), "unfilled_trade_ids_sample": left[:10]},
            )
        else:
            # paid: every id of the gap is offered to the release order or counted below
            self.releaser.settle(product_id, first, last)
            if left:
                self._give_up(product_id, len(left), reason, {**fields, "unfilled_trade_ids_sample": left[:10]}, left)
        if not left and not rejected and not expired:
            self._metrics.gaps_backfilled.labels(product_id).inc()
        if rejected:
            self._give_up(
                product_id,
                len(rejected),
                "bad_row",
                {**fields, "unfilled_trade_ids_sample": sorted(rejected)[:10]},
                rejected,
            )
        self._metrics.backfill_pending.dec()
        with self._lock:
            self._pending -= 1
            self._idle.notify_all()

    def _leave_for_restart(self, product_id: str, first: int, last: int, floor_us: int) -> None:
        """A gap found while stopping: owed (so the last resume point stays below it), not counted:
        the next start finds its ids missing from the topic and backfills them."""
        self.releaser.owe((product_id, first, last), floor_us)
        log.warning(
            "trade gap left for the next start",
            extra={"product_id": product_id, "first_missing": first, "last_missing": last, "trades": last - first + 1},
        )

    def _give_up(self, product_id: str, count: int, reason: str, fields: dict, ids: Iterable[int]) -> None:
        self._metrics.gaps_unfilled.labels(product_id, reason).inc()
        self._metrics.trades_unfilled.labels(product_id).inc(count)
        log.error("trade gap not backfilled", extra={**fields, "reason": reason, "trades": count})
        publish_unfillable(self._producer, product_id, ids, reason)  # the lake monitor's input (issue 10)
