"""Entry point of the candle job: the file spark-submit runs, locally and as the SparkApplication's
mainApplicationFile. Thin: settings -> session -> one streaming query per window size -> wait.

    spark-submit --jars ... spark-apps/candles_job/main.py --kafka-bootstrap host:9092 --bucket lake ...
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import time
import uuid

# spark-submit runs this file as a script: make the sibling package importable without installing
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyspark.sql import SparkSession

from candles_job.generation import start_generation
from candles_job.pacing import pacing
from candles_job.progress import JobProgress, add_progress_listener
from candles_job.settings import JobSettings, parse_args, spark_duration
from candles_job.sink import make_batch_writer, offset_log_watermark_ms
from candles_job.transforms import candles
from cryptopipe.logs import setup_logging

log = logging.getLogger("cryptopipe.job")


class LakeUnreachable(RuntimeError):
    pass


def check_lake(settings: JobSettings, filesystem) -> None:
    """Fail at start-up, naming endpoint and bucket, rather than on the first batch."""
    from pyarrow import fs

    try:
        info = filesystem.get_file_info(settings.bucket)
    except OSError as exc:
        raise LakeUnreachable(
            f"cannot reach the lake: S3 endpoint {settings.s3_endpoint or 'AWS'} bucket {settings.bucket!r}: {exc}"
        ) from None
    if info.type != fs.FileType.Directory:
        raise LakeUnreachable(
            f"lake bucket {settings.bucket!r} does not exist at S3 endpoint {settings.s3_endpoint or 'AWS'}"
        )


# Writes each checkpoint file (offsets, commits, state deltas and snapshots) straight to its final
# S3 key, in one PUT that S3 makes visible whole or not at all, aborted if the write fails. Spark's
# default writes a temporary object and renames it: on s3a a rename is HEADs and LISTs, a COPY and a
# DELETE, for each of the ~12 files a micro-batch commits. Profiled (docs/benchmarks.md): those
# S3 round trips were the largest share of the job's CPU per batch. From spark-hadoop-cloud.
DIRECT_CHECKPOINT_MANAGER = "org.apache.spark.internal.io.cloud.AbortableStreamBasedCheckpointFileManager"


def use_direct_checkpoint_writes(spark: SparkSession, checkpoint_url: str) -> bool:
    """Checkpoint files written in one PUT each instead of write-and-rename, when the checkpoint is
    on s3a and the class is on the class path (an older jar set keeps Spark's default, with a warning)."""
    jvm = spark._jvm
    if jvm is None or not checkpoint_url.startswith("s3a://"):
        return False
    try:
        jvm.java.lang.Class.forName(DIRECT_CHECKPOINT_MANAGER)
    except Exception:  # noqa: BLE001 (py4j's error type): the default manager still works
        log.warning(
            "spark-hadoop-cloud is not on the class path: checkpoint files are written and renamed "
            "(slower on S3; run scripts/bootstrap.sh)",
            extra={"class": DIRECT_CHECKPOINT_MANAGER},
        )
        return False
    spark.conf.set("spark.sql.streaming.checkpointFileManagerClass", DIRECT_CHECKPOINT_MANAGER)
    return True


def build_session(settings: JobSettings) -> SparkSession:
    builder = SparkSession.builder.appName("cryptopipe-candles")
    conf = {
        # 200 shuffle partitions made a micro-batch take ~10 s on 2 cores; about the core count, ~0.3 s
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        **settings.s3.s3a_conf(),
    }
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def start_queries(spark: SparkSession, settings: JobSettings, progress: JobProgress):
    filesystem = settings.s3.arrow_filesystem()
    check_lake(settings, filesystem)
    # the generation the lake allows (never older than its newest, never a stale checkpoint) and
    # each window size's hand-over point from the older generations (lake/generations.py)
    start = start_generation(settings, filesystem, now_us=time.time_ns() // 1000)
    settings = start.settings
    progress.checkpoint_generation.set(settings.checkpoint_generation)
    # this driver's claim on the checkpoint's commits: a driver started later on the same checkpoint
    # fences this one out (it stops at its next batch instead of committing; lake/fence.py)
    driver_token = uuid.uuid4().hex
    log.info("driver claims its windows", extra={"driver": driver_token, "generation": settings.checkpoint_generation})
    # TLS and SCRAM: the JAAS line with the password is built here from the env, never rendered
    kafka_options = settings.kafka_security.spark_kafka_source()
    plan = pacing(
        trigger=settings.trigger,
        available_now=settings.available_now,
        close_on_watermark=settings.close_on_watermark,
        max_offsets_per_trigger=settings.max_offsets_per_trigger,
    )
    for key, value in plan.session_conf.items():
        spark.conf.set(key, value)
    queries = []
    for window, seconds in zip(settings.windows, settings.window_seconds, strict=False):
        source = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
            .options(**kafka_options)
            .option("subscribe", settings.topic)
            .options(**start.kafka_starting_options(window))
            .options(**plan.source_options)
        )
        writer = make_batch_writer(
            lake=settings.lake,
            filesystem=filesystem,
            generation=settings.checkpoint_generation,
            window=window,
            batch_watermark_ms=functools.partial(offset_log_watermark_ms, spark, settings.checkpoint_location(window)),
            on_written=functools.partial(progress.on_written, window),
            driver_token=driver_token,
            first_window_us=start.first_window_us(window),
        )
        stream = (
            candles(source.load(), seconds, spark_duration(settings.watermark), settings.max_clock_skew_us)
            .writeStream.queryName(f"candles-{window}")
            .outputMode("append")
            .foreachBatch(writer)
            .option("checkpointLocation", settings.checkpoint_location(window))
        )
        if plan.processing_time is None:
            stream = stream.trigger(availableNow=True)
        else:
            stream = stream.trigger(processingTime=plan.processing_time)
        query = stream.start()
        log.info(
            "query started",
            extra={
                "window": window,
                "checkpoint": settings.checkpoint_location(window),
                "generation": settings.checkpoint_generation,
                "first_window_us": start.first_window_us(window),
                "watermark": settings.watermark,
                "max_clock_skew": settings.max_clock_skew,
                "processing_time": plan.processing_time or "availableNow",
            },
        )
        queries.append(query)
    return queries


def write_progress_events(queries, path: str) -> None:
    """Every query's recent progress events (durationMs breakdown, batch sizes), one JSON a line.
    Read from the queries once they stopped: the listener bus may drop the last events at exit."""
    with open(path, "w") as f:
        for query in queries:
            for event in query.recentProgress:
                # PySpark's progress object (a dict of Python values, UUIDs included) renders itself
                text = event.json if hasattr(event, "json") else json.dumps(event, default=str)
                f.write(json.dumps(json.loads(text)) + "\n")


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    setup_logging(settings.log_level)
    spark = build_session(settings)
    spark.sparkContext.setLogLevel("WARN")
    progress = JobProgress(settings.progress_file)
    if settings.metrics_port is not None:
        progress.serve(settings.metrics_port)
    add_progress_listener(spark, progress)
    if settings.checkpoint_direct_writes:
        use_direct_checkpoint_writes(spark, settings.checkpoint_location(settings.windows[0]))
    try:
        queries = start_queries(spark, settings, progress)
    except LakeUnreachable as exc:
        log.error(str(exc))
        return 2

    def stop(signum, _frame):
        # a stop between batches; a SIGKILL anywhere is covered by the checkpoint and idempotent files
        log.info("stopping", extra={"signal": signum})
        for query in queries:
            query.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if settings.available_now:  # every query stops by itself once it has caught up
            for query in queries:
                query.awaitTermination()
        else:
            spark.streams.awaitAnyTermination()
    finally:
        for query in queries:
            if query.isActive:
                query.stop()
    if settings.progress_events_file:
        write_progress_events(queries, settings.progress_events_file)
    failed = [q for q in queries if q.exception() is not None]
    for query in failed:
        log.error("query failed", extra={"query": query.name, "error": str(query.exception())[:2000]})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
