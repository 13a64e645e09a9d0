"""`cryptopipe monitor serve`: scan the lake every interval and export what was found as metrics.

Each scan reads [now - lookback, now) of every configured window and replaces the previous scan's
values all at once. A scan that fails (S3 unreachable, bad credentials, missing bucket) changes no
gauge: the last good picture stays, ``cryptopipe_lake_scans_total{result="error"}`` counts it, one
JSON error line says why, and the next interval tries again. With CRYPTOPIPE_MONITOR_KAFKA_BOOTSTRAP
and _DLQ_TOPIC set, each scan first reads the ingestion's counted-unfillable trade ids from the
dead-letter topic (monitor/unfillable.py), so the continuity audit tells them from lost ones; a
topic it cannot read fails the scan like the lake. /healthz is 200 while the process
runs; /readyz is 200 once a scan has succeeded.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cryptopipe.http_server import HealthServer
from cryptopipe.logs import setup_logging
from cryptopipe.monitor.anomalies import KINDS
from cryptopipe.monitor.continuity import MISSING_KINDS
from cryptopipe.monitor.scan import WindowScan, scan_window
from cryptopipe.monitor.settings import MonitorSettings
from cryptopipe.monitor.unfillable import UnfillableLog

log = logging.getLogger("cryptopipe.monitor")

PREFIX = "cryptopipe_lake_"


class MonitorMetrics:
    """The exported metric names are a contract (dashboards, alert rules): do not rename."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.anomalies = Gauge(
            PREFIX + "anomalies",
            "Anomalies of each kind found by the latest successful scan.",
            ["product_id", "window", "kind"],
            registry=r,
        )
        self.newest_end = Gauge(
            PREFIX + "newest_candle_end_timestamp_seconds",
            "Window end of the product's newest candle (freshness = time() - this).",
            ["product_id", "window"],
            registry=r,
        )
        self.complete_through = Gauge(
            PREFIX + "complete_through_timestamp_seconds",
            "The job's complete-through: every window ending at or before it is final in the lake.",
            ["window"],
            registry=r,
        )
        self.trade_ids_missing = Gauge(
            PREFIX + "trade_ids_missing",
            "Trade ids missing between or inside the product's candles in the scanned range (continuity "
            "audit), by kind: lost (nobody counted them) or unfillable (counted by the ingestion).",
            ["product_id", "window", "kind"],
            registry=r,
        )
        self.candles_scanned = Gauge(
            PREFIX + "candles_scanned", "Candles read by the latest successful scan.", ["window"], registry=r
        )
        self.scans = Counter(PREFIX + "scans", "Lake scans, by result (ok or error).", ["result"], registry=r)
        self.duration = Histogram(
            PREFIX + "scan_duration_seconds",
            "Time one scan of the lake took.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.last_success = Gauge(
            PREFIX + "last_successful_scan_timestamp_seconds",
            "When the latest successful scan finished (epoch seconds).",
            registry=r,
        )
        for result in ("ok", "error"):  # both series exist from the start, so rate() works at once
            self.scans.labels(result)
        self._series: set[tuple[str, str]] = set()  # (product, window) exported by the latest scan

    def publish(self, scans: list[WindowScan], finished: float) -> None:
        """Replace the previous scan's values; series of products not seen any more are dropped."""
        series = set()
        for scan in scans:
            self.candles_scanned.labels(scan.window).set(scan.candles)
            if scan.complete_through is not None:
                self.complete_through.labels(scan.window).set(scan.complete_through.timestamp())
            counts = {(a.product_id, a.kind): 0 for a in scan.anomalies}
            for a in scan.anomalies:
                counts[(a.product_id, a.kind)] += 1
            missing = {(g.product_id, g.kind): 0 for g in scan.id_gaps}
            for g in scan.id_gaps:
                missing[(g.product_id, g.kind)] += g.count
            for product in {*scan.products, *(p for p, _ in counts), *(p for p, _ in missing)}:
                series.add((product, scan.window))
                for kind in KINDS:
                    self.anomalies.labels(product, scan.window, kind).set(counts.get((product, kind), 0))
                for kind in MISSING_KINDS:
                    self.trade_ids_missing.labels(product, scan.window, kind).set(missing.get((product, kind), 0))
            for product, end in scan.newest_end.items():
                self.newest_end.labels(product, scan.window).set(end.timestamp())
        for product, window in self._series - series:
            for kind in KINDS:
                self.anomalies.remove(product, window, kind)
            for kind in MISSING_KINDS:
                with contextlib.suppress(KeyError):
                    self.trade_ids_missing.remove(product, window, kind)
            with contextlib.suppress(KeyError):  # a product never seen with a candle has no freshness series
                self.newest_end.remove(product, window)
        self._series = series
        self.last_success.set(finished)


class LakeMonitor:
    def __init__(
        self,
        settings: MonitorSettings,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = MonitorMetrics(registry)
        self.clock = clock
        self._filesystem = None
        # the ingestion's counted-unfillable trade ids (None: no such input configured)
        self._unfillable = (
            UnfillableLog(settings.kafka_bootstrap, settings.dlq_topic, security=settings.kafka_security)
            if settings.kafka_bootstrap and settings.dlq_topic
            else None
        )
        self._succeeded = False
        self._last_error: str | None = None
        self._last_ok = False
        self._last_found: dict[str, int] | None = None
        self._stop = threading.Event()
        self._health = HealthServer(
            settings.http_host, settings.http_port, self.metrics.registry, self.readiness, name="monitor"
        )

    @property
    def http_port(self) -> int:
        return self._health.port

    def readiness(self) -> str | None:
        if self._stop.is_set():
            return "shutting down"
        if not self._succeeded:
            return f"no successful lake scan yet (last error: {self._last_error or 'none, first scan running'})"
        return None

    def scan_once(self) -> bool:
        """One scan of every window; True if it succeeded. Never raises for a lake or S3 problem."""
        s = self.settings
        started = time.monotonic()
        now = datetime.fromtimestamp(self.clock(), tz=UTC)
        try:
            if self._filesystem is None:
                self._filesystem = s.connection.arrow_filesystem()
            unfillable = self._unfillable.refresh() if self._unfillable is not None else None
            scans = [
                scan_window(
                    s.lake,
                    self._filesystem,
                    window=w,
                    products=s.products,
                    start=now - timedelta(seconds=s.lookback_s),
                    end=now,
                    now=now,
                    thresholds=s.thresholds,
                    unfillable=unfillable,
                )
                for w in s.windows
            ]
        except Exception as exc:  # noqa: BLE001 - any failure of one scan is reported and retried
            self.metrics.scans.labels("error").inc()
            self.metrics.duration.observe(time.monotonic() - started)
            self._last_error, self._last_ok = f"{type(exc).__name__}: {exc}", False
            log.error(
                "lake scan failed",
                extra={
                    "endpoint": s.s3_endpoint or "aws",
                    "bucket": s.bucket,
                    "prefix": s.prefix,
                    "error": self._last_error,
                },
            )
            return False
        self.metrics.publish(scans, self.clock())
        self.metrics.scans.labels("ok").inc()
        self.metrics.duration.observe(time.monotonic() - started)
        found = {sc.window: len(sc.anomalies) for sc in scans}
        # info when the picture changes (and after a failure), debug otherwise: a scan every few
        # seconds must not flood the logs with identical lines
        level = logging.INFO if found != self._last_found or not self._last_ok else logging.DEBUG
        log.log(level, "lake scan", extra={"candles": {sc.window: sc.candles for sc in scans}, "anomalies": found})
        self._last_found, self._last_ok, self._succeeded = found, True, True
        return True

    def start(self) -> None:
        self._health.start()

    def run(self) -> None:
        """Scan every interval (measured start to start) until stop()."""
        while not self._stop.is_set():
            started = time.monotonic()
            self.scan_once()
            self._stop.wait(max(0.0, self.settings.interval_s - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._health.stop()
        if self._unfillable is not None:
            self._unfillable.close()


def run(settings: MonitorSettings) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop."""
    setup_logging(settings.log_level)
    # the *_created series double every counter's output and nothing here reads them
    prometheus_client.disable_created_metrics()
    monitor = LakeMonitor(settings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        monitor.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    monitor.start()
    log.info(
        "lake monitor started",
        extra={
            "port": monitor.http_port,
            "endpoint": settings.s3_endpoint or "aws",
            "bucket": settings.bucket,
            "prefix": settings.prefix,
            "windows": settings.windows,
            "products": settings.products or "all",
            "interval": settings.interval,
            "lookback": settings.lookback,
        },
    )
    try:
        monitor.run()
    finally:
        monitor.close()
    log.info("lake monitor stopped")
    return 0
