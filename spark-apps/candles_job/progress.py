"""What the job tells the world after every micro-batch: Prometheus metrics on the driver and,
optionally, a small JSON progress file (the local stack waits on it to know that every candle of a
replay is committed).

Fed by a streaming query listener (progress of committed batches) and by the sink (candles written).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import threading
import time
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from pyspark.sql import SparkSession

from candles_job.transforms import REJECT_REASONS, REJECTED_METRIC

NO_WATERMARK = "1970-01-01T00:00:00.000Z"


def _iso_to_epoch_s(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class JobProgress:
    """Totals per query (one query per window size), as metrics and as an optional JSON file."""

    def __init__(self, progress_file: str | None = None, registry: CollectorRegistry | None = None):
        self.progress_file = progress_file
        self.registry = registry or CollectorRegistry()
        self._lock = threading.Lock()
        self._state: dict[str, dict] = {}
        labels = ["window"]
        r = self.registry
        self.input_rows = Counter("cryptopipe_job_input_rows", "Kafka records read", labels, registry=r)
        self.batches = Counter("cryptopipe_job_batches", "Micro-batches committed", labels, registry=r)
        self.late_rows = Counter(
            "cryptopipe_job_late_rows_dropped",
            "Rows dropped because they were older than the watermark",
            labels,
            registry=r,
        )
        self.rejected_rows = Counter(
            "cryptopipe_job_rejected_rows",
            "Kafka records rejected before aggregation, by reason (they are in no candle)",
            ["window", "reason"],
            registry=r,
        )
        self.candles = Counter("cryptopipe_job_candles_written", "Candles written to the lake", labels, registry=r)
        self.files = Counter("cryptopipe_job_files_written", "Parquet files written to the lake", labels, registry=r)
        self.state_rows = Gauge("cryptopipe_job_state_rows", "Rows held in streaming state", labels, registry=r)
        self.watermark = Gauge(
            "cryptopipe_job_watermark_timestamp_seconds", "Event-time watermark of the last batch", labels, registry=r
        )
        self.last_batch = Gauge(
            "cryptopipe_job_last_batch_timestamp_seconds",
            "Wall time the last micro-batch was committed",
            labels,
            registry=r,
        )
        self.kafka_lag = Gauge(
            "cryptopipe_job_kafka_lag_records",
            "Records in Kafka after the last batch's end offsets (from the source's latestOffset)",
            labels,
            registry=r,
        )
        # delay = wall clock - watermark, computed when scraped: a gauge set once per batch would read
        # "on time" forever after the job stalls
        self._watermarks: dict[str, float] = {}
        self.watermark_delay = Gauge(
            "cryptopipe_job_watermark_delay_seconds",
            "Wall clock minus the event-time watermark (how far behind real time finished candles are)",
            labels,
            registry=r,
        )
        self.input_rate = Gauge(
            "cryptopipe_job_input_rows_per_second", "Input rate of the last batch", labels, registry=r
        )
        self.processed_rate = Gauge(
            "cryptopipe_job_processed_rows_per_second", "Processing rate of the last batch", labels, registry=r
        )
        self.checkpoint_generation = Gauge(
            "cryptopipe_job_checkpoint_generation",
            "The checkpoint generation this driver runs (lake/generations.py; may be newer than the one handed)",
            registry=r,
        )
        self.batch_duration = Histogram(
            "cryptopipe_job_batch_duration_seconds",
            "Wall time of a micro-batch",
            labels,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )

    # -- fed by the listener --------------------------------------------------------------------
    def on_progress(self, progress: dict) -> None:
        window = (progress.get("name") or "candles-?").removeprefix("candles-")
        operators = progress.get("stateOperators") or []
        dropped = sum(op.get("numRowsDroppedByWatermark", 0) for op in operators)
        watermark = (progress.get("eventTime") or {}).get("watermark", NO_WATERMARK)
        self.input_rows.labels(window).inc(progress.get("numInputRows", 0))
        self.batches.labels(window).inc()
        self.late_rows.labels(window).inc(dropped)
        rejected = rejected_rows(progress)
        for reason, n in rejected.items():
            self.rejected_rows.labels(window, reason).inc(n)
        self.state_rows.labels(window).set(sum(op.get("numRowsTotal", 0) for op in operators))
        self.watermark.labels(window).set(_iso_to_epoch_s(watermark))
        self.last_batch.labels(window).set(time.time())
        lag = kafka_lag(progress.get("sources") or [])
        if lag is not None:
            self.kafka_lag.labels(window).set(lag)
        if watermark != NO_WATERMARK and window not in self._watermarks:
            self.watermark_delay.labels(window).set_function(functools.partial(self._watermark_delay_s, window))
        if watermark != NO_WATERMARK:
            self._watermarks[window] = _iso_to_epoch_s(watermark)
        self.input_rate.labels(window).set(progress.get("inputRowsPerSecond") or 0)
        self.processed_rate.labels(window).set(progress.get("processedRowsPerSecond") or 0)
        self.batch_duration.labels(window).observe((progress.get("durationMs") or {}).get("triggerExecution", 0) / 1000)
        with self._lock:
            s = self._state.setdefault(window, _empty())
            s["batch_id"] = progress.get("batchId")
            s["watermark"] = watermark
            s["input_rows"] += progress.get("numInputRows", 0)
            s["late_rows_dropped"] += dropped
            for reason, n in rejected.items():
                s["rejected_rows"][reason] = s["rejected_rows"].get(reason, 0) + n
            s["end_offsets"] = [src.get("endOffset") for src in progress.get("sources") or []]
            self._flush()

    def _watermark_delay_s(self, window: str) -> float:
        return time.time() - self._watermarks[window]

    # -- fed by the sink ------------------------------------------------------------------------
    def on_written(self, window: str, batch_id: int, candles: int, files: int) -> None:
        self.candles.labels(window).inc(candles)
        self.files.labels(window).inc(files)
        with self._lock:
            s = self._state.setdefault(window, _empty())
            s["candles_written"] += candles
            s["last_written_batch_id"] = batch_id

    def snapshot(self) -> dict:
        with self._lock:
            return {"updated": time.time(), "queries": json.loads(json.dumps(self._state))}

    def _flush(self) -> None:
        if not self.progress_file:
            return
        body = json.dumps({"updated": time.time(), "queries": self._state}, default=str)
        folder = os.path.dirname(os.path.abspath(self.progress_file))
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as tmp:
            tmp.write(body)
        os.replace(tmp.name, self.progress_file)  # readers never see half a file

    def serve(self, port: int) -> None:
        start_http_server(port, addr="0.0.0.0", registry=self.registry)


def rejected_rows(progress: dict) -> dict[str, int]:
    """Rows the batch rejected, by reason, from its observed metrics; every reason present (0 when
    none), so the counters exist before the first rejection and ``increase()`` sees it."""
    observed = (progress.get("observedMetrics") or {}).get(REJECTED_METRIC) or {}
    return {reason: int(observed.get(reason) or 0) for reason in REJECT_REASONS}


def _offsets(value) -> dict:
    """A Kafka source offset as progress reports it: {"topic": {"partition": offset}} (or that as JSON text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def kafka_lag(sources: list[dict]) -> int | None:
    """Records between each partition's end offset and its latest offset, summed; None when Spark
    did not report latest offsets (sources other than Kafka, or a batch before the first fetch)."""
    total, seen = 0, False
    for source in sources:
        latest, end = _offsets(source.get("latestOffset")), _offsets(source.get("endOffset"))
        for topic, partitions in latest.items():
            for partition, offset in (partitions or {}).items():
                done = (end.get(topic) or {}).get(partition)
                if isinstance(offset, int) and isinstance(done, int):
                    total += max(offset - done, 0)
                    seen = True
    return total if seen else None


def _empty() -> dict:
    return {
        "batch_id": None,
        "watermark": NO_WATERMARK,
        "input_rows": 0,
        "late_rows_dropped": 0,
        "rejected_rows": {},
        "candles_written": 0,
    }


# Spark's Java interface for a listener written in Python (the JVM's PythonStreamingQueryListenerWrapper
# calls one, in the same package).
_PYTHON_LISTENER = "org.apache.spark.sql.streaming.PythonStreamingQueryListener"


class ProgressForwarder:
    """Each committed batch's progress, as Spark's own JSON, handed to ``JobProgress.on_progress``.

    Implements Spark's Java listener interface through py4j rather than subclassing PySpark's
    StreamingQueryListener: PySpark turns every event into Python objects field by field first (a
    py4j round trip per field, state operator and source, and a look-up of PythonSQLUtils by its
    short name, which py4j resolves by trying class names across every jar on the class path).
    Profiled (JFR, catch-up of a day): ~0.1-0.2 s of the JVM's CPU per event, all of it in those
    look-ups, for a dict we then made from the JSON anyway. Here: two calls, progress() and json().
    """

    def __init__(self, progress: JobProgress) -> None:
        self.progress = progress

    def onQueryStarted(self, jevent) -> None:  # noqa: N802 (Spark's names)
        pass

    def onQueryProgress(self, jevent) -> None:  # noqa: N802
        self.progress.on_progress(json.loads(jevent.progress().json()))

    def onQueryIdle(self, jevent) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, jevent) -> None:  # noqa: N802
        pass

    class Java:
        implements = [_PYTHON_LISTENER]


def add_progress_listener(spark: SparkSession, progress: JobProgress) -> None:
    """Register a ProgressForwarder on the session's streaming queries (what
    ``spark.streams.addListener`` does for a PySpark listener, without its per-event conversion)."""
    from pyspark.java_gateway import ensure_callback_server_started

    gateway = spark.sparkContext._gateway
    assert gateway is not None
    ensure_callback_server_started(gateway)  # the JVM calls the forwarder back through it
    wrapper = gateway.jvm.org.apache.spark.sql.streaming.PythonStreamingQueryListenerWrapper(
        ProgressForwarder(progress)
    )
    spark._jsparkSession.streams().addListener(wrapper)
