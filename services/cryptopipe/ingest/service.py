"""The ingestion service: wires settings, producer, backfill worker, feed reader and HTTP server.

Start order: HTTP server first (so probes answer at once, /readyz saying why it is not ready),
then on a starter thread the Kafka producer (retried until Kafka answers) and its topic metadata,
then the backfill worker and the feed. Nothing is read from Coinbase before Kafka can take it.

Stop order (SIGTERM/SIGINT): stop reading frames, let the backfill finish the gap in progress,
flush the producer (everything it accepted is delivered or the exit code says otherwise), close.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from types import FrameType

from prometheus_client import CollectorRegistry

from cryptopipe import coinbase
from cryptopipe.http_server import HealthServer
from cryptopipe.ingest import gc_tuning
from cryptopipe.ingest.backfill import Backfiller
from cryptopipe.ingest.feed import FeedConnection, FrameHandler
from cryptopipe.ingest.kafka_auth_failure import AuthFailureWatch
from cryptopipe.ingest.metrics import IngestMetrics
from cryptopipe.ingest.producer import RecordProducer
from cryptopipe.ingest.producer_choice import make_producer
from cryptopipe.ingest.resume import ResumePoint, plan, read_state, scan_trades, topic_exists
from cryptopipe.ingest.resume_writer import WRITE_INTERVAL_S, ResumeWriter
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.logs import setup_logging

log = logging.getLogger("cryptopipe.ingest")

REST_PAGE_LIMIT = 1000
# Stopping waits at most these (plus flush_timeout_s): together within Kubernetes' 30 s grace period.
STOP_FEED_TIMEOUT_S = 2.0  # the reader only finishes the frame in hand
STOP_BACKFILL_TIMEOUT_S = 5.0  # a REST fetch in flight; queued gaps are left for the next start (or counted)


class IngestService:
    def __init__(
        self, settings: IngestSettings, registry: CollectorRegistry | None = None, *, tune_gc: bool = False
    ) -> None:
        """``tune_gc``: apply ``settings.gc_gen0_threshold`` (gc_tuning.py) once the pipeline's objects
        exist, just before the feed starts, and undo it in stop(). The process's ``run()`` asks for it;
        off by default because the collector is the interpreter's, shared with whatever else runs in it
        (tests run services in their own process)."""
        self.settings = settings
        self._tune_gc = tune_gc
        self._gc_state: gc_tuning.GcState | None = None
        self.metrics = IngestMetrics(registry)
        self.metrics.declare_products(settings.products)
        for topic in (settings.topic, settings.dlq_topic):  # at 0 from the start: the delivery alert uses increase()
            self.metrics.delivery_errors.labels(topic)
        self._stop = threading.Event()
        self._health = HealthServer(
            settings.http_host, settings.http_port, self.metrics.registry, self.readiness, name="ingest"
        )
        self.producer: RecordProducer | None = None
        self.backfiller: Backfiller | None = None
        self.feed: FeedConnection | None = None
        self.resume_writer: ResumeWriter | None = None
        self._starter = threading.Thread(target=self._start_pipeline, name="ingest-starter", daemon=True)
        self._watchdog = threading.Thread(target=self._watch_producer, name="ingest-producer-watch", daemon=True)
        self._start_failed = False
        self._auth_watch = AuthFailureWatch()
        self._kafka_refused: str | None = None  # the broker's reason when the last connect was refused

    @property
    def http_port(self) -> int:
        return self._health.port

    def start(self) -> None:
        self._health.start()
        self._starter.start()
        self._watchdog.start()

    def _watch_producer(self) -> None:
        """Once a second: let the producer repair what it can and notice what it cannot (then
        readiness() and failed() report it and the process exits non-zero)."""
        last_write = time.monotonic()
        while not self._stop.wait(1.0):
            producer = self.producer
            if producer is None:
                continue
            try:
                producer.check()
            except Exception:  # a bug here must not end the watch
                log.exception("kafka producer check failed")
            writer = self.resume_writer
            if writer is not None and time.monotonic() - last_write >= WRITE_INTERVAL_S:
                last_write = time.monotonic()
                try:
                    writer.write()
                except Exception:  # a bug here must not end the watch
                    log.exception("writing the resume points failed")

    def readiness(self) -> str | None:
        """None when ready, else why not (served by /readyz)."""
        producer, feed = self.producer, self.feed
        if self._stop.is_set():
            return "shutting down"
        if producer is None:
            refused = self._kafka_refused
            if refused is not None:
                s = self.settings
                return (
                    f"kafka authentication failed for user {s.kafka_sasl_username} ({s.kafka_sasl_mechanism}) "
                    f"at {s.kafka_bootstrap}: {refused}"
                )
            return f"kafka producer not connected to {self.settings.kafka_bootstrap}"
        failure = producer.failure()
        if failure is not None:
            return failure
        if not producer.has_topic_metadata():
            return f"no kafka metadata for topic {self.settings.topic}"
        # a hold (records waiting for an owed trade) is working as designed: still ready
        if feed is None:
            return "feed not started"
        if not feed.subscribed:
            return f"feed not connected and subscribed to {self.settings.ws_url}"
        return None

    def failed(self) -> bool:
        """A component died on its own (a bug, not a stop): the process should exit non-zero."""
        if self._stop.is_set():
            return False
        if self._start_failed:
            return True
        if self.producer is not None and self.producer.failure() is not None:
            return True  # kafka-python cannot repair it: exit non-zero so Kubernetes restarts the pod
        return self.feed is not None and not self.feed.is_alive()

    def totals(self) -> dict[str, dict[str, int]]:
        """What Kafka acknowledged from this instance, per product (logged at exit; tests compare it with Kafka)."""
        hot = self.metrics.hot
        products = set(hot.trades) | set(hot.backfilled)
        return {
            "trades": {p: hot.trades[p] + hot.backfilled[p] for p in sorted(products)},
            "ticks": dict(hot.ticks),
            "duplicates_skipped": dict(hot.duplicates),
        }

    def _start_pipeline(self) -> None:
        try:
            producer = self._connect_producer()
            if producer is None:
                return
            self.producer = producer
            if not self._wait_for_topics(producer):
                return
            # 1000 trades per REST page (Coinbase's maximum): a large gap costs few requests against the rate limit
            fetch = functools.partial(coinbase.fetch_trades, page_limit=REST_PAGE_LIMIT)
            backfiller = Backfiller(self.settings, producer, self.metrics, fetch)
            producer.on_failed_trade(backfiller.redeliver)
            handler = FrameHandler(
                self.settings, producer, backfiller, self.metrics, coinbase.GapTracker(), coinbase.parse_frame
            )
            try:
                has_state = topic_exists(
                    self.settings.kafka_bootstrap, self.settings.state_topic, self.settings.kafka_security
                )
            except Exception as exc:  # Kafka answered the producer a moment ago: treat as absent, say so
                log.warning("could not look the resume-point topic up", extra={"error": repr(exc)})
                has_state = False
            if not has_state:
                log.warning(
                    "no resume-point topic: a restart will read the whole trades topic",
                    extra={"state_topic": self.settings.state_topic},
                )
            points = self._resume(handler, backfiller, producer, has_state) if self.settings.resume_from_topic else {}
            if has_state:
                self.resume_writer = ResumeWriter(producer, backfiller.releaser, points)
                # the next start reads the points and refills what is still missing past them
                backfiller.retry_on_restart = self.settings.resume_from_topic
            feed = FeedConnection(self.settings, handler, self.metrics, coinbase.subscribe_frames)
            backfiller.start()
            self.backfiller = backfiller
            if self._stop.is_set():
                return
            if self._tune_gc:  # start-up is done: what it left alive is frozen, not scanned per trade
                self._gc_state = gc_tuning.apply(self.settings.gc_gen0_threshold)
            feed.start()
            self.feed = feed
        except Exception:
            log.exception("ingestion failed to start")
            self._start_failed = True

    def _resume(
        self, handler: FrameHandler, backfiller: Backfiller, producer: RecordProducer, has_state: bool
    ) -> dict[str, ResumePoint]:
        """Continue exactly where the previous run left off (ingest/resume.py): each product's newest
        trade in the topic, and the trades still pending then, backfilled again now."""
        s = self.settings
        try:
            security = s.kafka_security
            points = read_state(s.kafka_bootstrap, s.state_topic, security=security) if has_state else {}
            partitions = {p: producer.partition_of(p) for p in s.products}
            known = {p: n for p, n in partitions.items() if n is not None}
            resumes = plan(
                points, scan_trades(s.kafka_bootstrap, s.topic, s.products, points, known, security=security)
            )
        except Exception as exc:  # not fatal: without it a restart's downtime is simply not backfilled
            self.metrics.error("resume")
            log.error("could not read where the last run left off", extra={"topic": s.topic, "error": repr(exc)})
            return {}
        for product, resume in resumes.items():
            handler.resume_after(product, 0, resume.newest, resume.newest_time_us)
            for first, last in resume.pending:
                backfiller.submit(product, first, last, resume.floor_us)
        log.info(
            "resuming after the topic's last trades",
            extra={
                "last_trade_ids": {p: r.newest for p, r in resumes.items()},
                "pending": {p: list(r.pending[:10]) for p, r in resumes.items() if r.pending},
                "resume_points": {p: pt.trade_id for p, pt in points.items()},
            },
        )
        return points

    def _connect_producer(self) -> RecordProducer | None:
        delay = self.settings.backoff_initial_s
        while not self._stop.is_set():
            self._auth_watch.last = None
            try:
                with self._auth_watch:
                    return make_producer(self.settings, self.metrics)
            except Exception as exc:  # NoBrokersAvailable and friends: Kafka may just be starting
                self.metrics.error("kafka_connect")
                self._kafka_refused = refused = self._auth_watch.last
                if refused is not None:  # retried too: the Secret may be fixed, but said plainly
                    self.metrics.error("kafka_authentication")
                    log.error(
                        "kafka authentication failed; retrying",
                        extra={"bootstrap": self.settings.kafka_bootstrap, "reason": refused, "delay_s": delay},
                    )
                else:
                    log.warning(
                        "kafka not reachable; retrying",
                        extra={"bootstrap": self.settings.kafka_bootstrap, "error": repr(exc), "delay_s": delay},
                    )
                self._stop.wait(delay)
                delay = min(self.settings.backoff_max_s, delay * 2)
        return None

    def _wait_for_topics(self, producer: RecordProducer) -> bool:
        while not self._stop.is_set():
            try:
                producer.wait_for_topics()
                return True
            except Exception as exc:  # KafkaTimeoutError: topic not created (yet)
                self.metrics.error("topic_metadata")
                log.warning(
                    "waiting for kafka topics",
                    extra={"topics": [self.settings.topic, self.settings.dlq_topic], "error": repr(exc)},
                )
                self._stop.wait(1.0)
        return False

    def stop(self) -> bool:
        """Stop reading, flush, close. True when everything accepted was delivered to Kafka."""
        self._stop.set()
        self._starter.join(15.0)
        if self.feed is not None:
            self.feed.stop(STOP_FEED_TIMEOUT_S)
        if self.backfiller is not None:
            self.backfiller.stop(STOP_BACKFILL_TIMEOUT_S)
        clean = True
        if self.producer is not None:
            try:
                if self.resume_writer is not None:
                    # the last points after everything accepted is acknowledged (then flushed by close)
                    self.producer.flush(self.settings.flush_timeout_s)
                    self.resume_writer.write()
                self.producer.close(self.settings.flush_timeout_s)
            except Exception as exc:
                clean = False
                log.error("kafka producer did not flush everything before closing", extra={"error": repr(exc)})
        self._health.stop()
        if self._gc_state is not None:
            gc_tuning.restore(self._gc_state)
            self._gc_state = None
        return clean


def run(settings: IngestSettings) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop, 1 if something failed or was not flushed."""
    setup_logging(settings.log_level)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("ingestion starting", extra={"settings": settings.model_dump()})
    service = IngestService(settings, tune_gc=True)
    service.start()
    failed = False
    while not stop.wait(0.5):
        if service.failed():
            log.error("an ingestion component stopped unexpectedly; exiting", extra={"reason": service.readiness()})
            failed = True
            break
    clean = service.stop()
    log.info("ingestion stopped", extra={"clean": clean and not failed, "produced": service.totals()})
    return 0 if clean and not failed else 1
