"""The job's metrics from Spark's progress events (the JSON a StreamingQueryListener receives)."""

from __future__ import annotations

import json
import time

from prometheus_client import generate_latest

from candles_job.progress import JobProgress, ProgressForwarder, kafka_lag
from cryptopipe_dev.stack.prometheus import promtool

TOPIC = "cryptopipe.trades"


def progress_event(batch_id: int, *, watermark: str, end: dict, latest: dict | None, dropped: int = 0) -> dict:
    # the shape of StreamingQueryProgress.json for a Kafka source and one state operator
    source = {
        "description": f"KafkaV2[Subscribe[{TOPIC}]]",
        "startOffset": {TOPIC: {"0": 0, "1": 0}},
        "endOffset": {TOPIC: end},
        "numInputRows": 10,
    }
    if latest is not None:
        source["latestOffset"] = {TOPIC: latest}
    return {
        "name": "candles-1m",
        "batchId": batch_id,
        "numInputRows": 10,
        "inputRowsPerSecond": 4.0,
        "processedRowsPerSecond": 8.0,
        "durationMs": {"triggerExecution": 1250},
        "eventTime": {"watermark": watermark},
        "stateOperators": [{"numRowsTotal": 7, "numRowsDroppedByWatermark": dropped}],
        "sources": [source],
    }


def sample(progress: JobProgress, name: str, **labels: str) -> float | None:
    return progress.registry.get_sample_value(name, labels or {"window": "1m"})


def test_lag_is_latest_minus_end_summed_over_partitions() -> None:
    sources = [{"endOffset": {TOPIC: {"0": 100, "1": 50}}, "latestOffset": {TOPIC: {"0": 130, "1": 50}}}]
    assert kafka_lag(sources) == 30
    # Spark may hand offsets over as JSON text
    assert kafka_lag([{"endOffset": '{"t": {"0": 1}}', "latestOffset": '{"t": {"0": 4}}'}]) == 3
    assert kafka_lag([{"endOffset": {TOPIC: {"0": 1}}}]) is None  # no latestOffset: unknown, not 0


def test_metrics_follow_the_batches() -> None:
    progress = JobProgress()
    progress.on_progress(
        progress_event(0, watermark="1970-01-01T00:00:00.000Z", end={"0": 5, "1": 5}, latest={"0": 9, "1": 5})
    )
    # no watermark yet: no delay series rather than a delay of 56 years
    assert sample(progress, "cryptopipe_job_watermark_delay_seconds") is None
    assert sample(progress, "cryptopipe_job_kafka_lag_records") == 4

    watermark_s = int(time.time()) - 40
    iso = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(watermark_s))
    progress.on_progress(progress_event(1, watermark=iso, end={"0": 9, "1": 5}, latest={"0": 9, "1": 5}, dropped=3))
    assert sample(progress, "cryptopipe_job_kafka_lag_records") == 0
    assert sample(progress, "cryptopipe_job_late_rows_dropped_total") == 3
    assert sample(progress, "cryptopipe_job_batches_total") == 2
    assert sample(progress, "cryptopipe_job_state_rows") == 7
    assert sample(progress, "cryptopipe_job_watermark_timestamp_seconds") == watermark_s
    delay = sample(progress, "cryptopipe_job_watermark_delay_seconds")
    assert delay is not None and 40 <= delay < 40 + 600  # computed at scrape time from the wall clock
    assert time.time() - sample(progress, "cryptopipe_job_last_batch_timestamp_seconds") < 600
    assert sample(progress, "cryptopipe_job_batch_duration_seconds_count") == 2


def test_exposition_passes_promtool_check_metrics() -> None:
    progress = JobProgress()
    iso = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 30))
    progress.on_progress(progress_event(0, watermark=iso, end={"0": 1}, latest={"0": 2}))
    progress.on_written("1m", 0, candles=4, files=2)
    result = promtool("check", "metrics", input_text=generate_latest(progress.registry).decode())
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result


def test_rejected_rows_are_counted_by_reason_from_the_observed_metrics() -> None:
    progress = JobProgress()
    event = progress_event(0, watermark="2026-11-26T10:00:00.000Z", end={"0": 10}, latest=None)
    event["observedMetrics"] = {"rejected_rows": {"malformed_json": 2, "bad_decimal": 1, "unknown_kind": 0}}
    progress.on_progress(event)
    progress.on_progress(event | {"batchId": 1, "observedMetrics": {"rejected_rows": {"bad_decimal": 3}}})
    progress.on_progress(event | {"batchId": 2, "observedMetrics": {}})  # a batch without the metric
    assert sample(progress, "cryptopipe_job_rejected_rows_total", window="1m", reason="malformed_json") == 2
    assert sample(progress, "cryptopipe_job_rejected_rows_total", window="1m", reason="bad_decimal") == 4
    # every reason exists from the first batch on, so increase() sees its first rejection
    assert sample(progress, "cryptopipe_job_rejected_rows_total", window="1m", reason="decimal_too_precise") == 0
    assert progress.snapshot()["queries"]["1m"]["rejected_rows"]["bad_decimal"] == 4


class _JavaProgressEvent:
    """What the JVM hands the forwarder over py4j: an event whose progress() renders Spark's JSON."""

    def __init__(self, progress: dict) -> None:
        self._json = json.dumps(progress)

    def progress(self):
        return self

    def json(self) -> str:
        return self._json


def test_the_forwarder_hands_on_sparks_json() -> None:
    progress = JobProgress()
    forwarder = ProgressForwarder(progress)
    event = progress_event(0, watermark="1970-01-01T00:00:00.000Z", end={"0": 5, "1": 5}, latest={"0": 9, "1": 5})
    forwarder.onQueryProgress(_JavaProgressEvent(event))
    forwarder.onQueryProgress(_JavaProgressEvent(event | {"batchId": 1}))
    assert sample(progress, "cryptopipe_job_kafka_lag_records") == 4
    assert sample(progress, "cryptopipe_job_input_rows_total") == 20
