"""The local stack: the same pipeline as in a cluster, as processes on 127.0.0.1.

Kafka (KRaft) and the S3 server are started here; the ingestion service and the Spark job are
started with exactly the env and arguments the operator renders for the cluster
(cryptopipe.pipeline). Everything lives in one work folder, logs included, and stops together.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path

from kafka import KafkaProducer

from cryptopipe.contracts import Tick, ingest_state_topic
from cryptopipe.lake.reader import read_candles
from cryptopipe.lake.s3 import S3Connection
from cryptopipe.pipeline import PipelineConfig, ingestion_env, job_arguments, job_env, monitor_env
from cryptopipe_dev.stack.kafka import KafkaBroker
from cryptopipe_dev.stack.procs import ManagedProcess, free_port, wait_for
from cryptopipe_dev.stack.s3server import S3Server
from cryptopipe_dev.stack.spark_job import spark_job_process

log = logging.getLogger("cryptopipe_dev.stack")


class LocalStack:
    def __init__(self, work_dir: Path, config: PipelineConfig, *, partitions: int = 2, cores: int = 2) -> None:
        self.work_dir = Path(work_dir)
        self.config = config
        self.partitions = partitions
        self.cores = cores
        self.kafka = KafkaBroker(self.work_dir / "kafka")
        self.s3 = S3Server(self.work_dir / "s3")
        self.progress_file = self.work_dir / "job-progress.json"
        self.processes: list[ManagedProcess] = []

    # -- infrastructure -----------------------------------------------------------------------
    def start(self) -> LocalStack:
        """Kafka and S3 start side by side (Kafka's JVM is the slow one), then topics and bucket."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        errors: list[BaseException] = []

        def start_s3() -> None:
            try:
                self.s3.start()
                self.s3.create_bucket(self.config.bucket)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        s3_thread = threading.Thread(target=start_s3, name="s3-start")
        s3_thread.start()
        try:
            self.kafka.start()
            self.kafka.create_topic(self.config.topic, self.partitions)
            # the DLQ keeps bad frames for a week: long enough to look at them
            self.kafka.create_topic(self.config.dlq_topic, 1, config={"retention.ms": str(7 * 86_400_000)})
            # ingestion's resume points (ingest/resume.py): the newest per product, kept forever
            self.kafka.create_topic(ingest_state_topic(self.config.topic), 1, config={"cleanup.policy": "compact"})
        finally:
            s3_thread.join()
        if errors:
            raise errors[0]
        return self

    @property
    def s3_connection(self) -> S3Connection:
        return S3Connection(self.s3.endpoint, self.s3.access_key, self.s3.secret_key)

    # -- pipeline processes -------------------------------------------------------------------
    def start_ingestion(
        self,
        *,
        ws_url: str | None = None,
        rest_url: str | None = None,
        extra_env: dict[str, str] | None = None,
        name: str = "ingestion",
        kafka_bootstrap: str | None = None,
    ) -> ManagedProcess:
        """``kafka_bootstrap``: another way to the broker (a fault proxy's listener); default its own."""
        self.ingestion_port = free_port()
        env = ingestion_env(
            self.config,
            kafka_bootstrap=kafka_bootstrap or self.kafka.bootstrap,
            ws_url=ws_url,
            rest_url=rest_url,
            http_port=self.ingestion_port,
            extra={"CRYPTOPIPE_INGEST_HTTP_HOST": "127.0.0.1", **(extra_env or {})},
        )
        proc = ManagedProcess(
            [sys.executable, "-m", "cryptopipe.ingest"], env=env, log_path=self.work_dir / f"{name}.log", name=name
        ).start()
        self.processes.append(proc)
        return proc

    def start_job(self, *, metrics_port: int | None = None, name: str = "spark-job") -> ManagedProcess:
        args = job_arguments(
            self.config,
            kafka_bootstrap=self.kafka.bootstrap,
            s3_endpoint=self.s3.endpoint,
            progress_file=str(self.progress_file),
            metrics_port=metrics_port,
            shuffle_partitions=self.cores,
        )
        proc = spark_job_process(
            args, env=job_env(self.s3_connection), log_path=self.work_dir / f"{name}.log", cores=self.cores
        ).start()
        self.processes.append(proc)
        return proc

    def start_monitor(
        self,
        *,
        interval: str = "5s",
        lookback: str = "2h",
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
        name: str = "lake-monitor",
    ) -> ManagedProcess:
        """The lake monitor service (`cryptopipe monitor serve`) on this stack's lake; metrics on ``monitor_port``."""
        self.monitor_port = port or free_port()
        # the same env the operator renders for the monitor Deployment (cryptopipe.pipeline.monitor_env)
        env = monitor_env(
            self.config,
            self.s3_connection,
            interval=interval,
            lookback=lookback,
            http_host="127.0.0.1",
            http_port=self.monitor_port,
            # its counted-unfillable input; a stack watching a lake without its own Kafka has none
            kafka_bootstrap=self.kafka.bootstrap if self.kafka.port else None,
            extra=extra_env,
        )
        proc = ManagedProcess(
            [sys.executable, "-m", "cryptopipe_dev.cli", "monitor", "serve"],
            env=env,
            log_path=self.work_dir / f"{name}.log",
            name=name,
        ).start()
        self.processes.append(proc)
        return proc

    # -- observing ------------------------------------------------------------------------------
    def job_progress(self) -> dict:
        try:
            return json.loads(self.progress_file.read_text())
        except FileNotFoundError:
            return {"queries": {}}

    def wait_for_watermark(self, at_least_iso: str, *, job: ManagedProcess, timeout: float) -> dict:
        """Until every window's query has committed a batch with watermark >= ``at_least_iso``."""

        def reached() -> dict | None:
            queries = self.job_progress()["queries"]
            if set(queries) >= set(self.config.windows) and all(
                queries[w]["watermark"] >= at_least_iso for w in self.config.windows
            ):
                return queries
            return None

        return wait_for(reached, timeout, f"Spark watermark >= {at_least_iso}", interval=0.25, process=job)

    def produce_ticks(self, products, event_time_us: int) -> None:
        """Control records that move the job's watermark to ``event_time_us`` - watermark delay."""
        produce_ticks(self.kafka.bootstrap, self.config.topic, self.config.feed, products, event_time_us)

    def candles(self, window: str = "1m"):
        from cryptopipe.lake.layout import LakeLocation

        return read_candles(
            LakeLocation(self.config.bucket, self.config.prefix), self.s3_connection.arrow_filesystem(), window=window
        )

    # -- teardown -----------------------------------------------------------------------------
    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop(timeout=15)
        self.kafka.stop()
        self.s3.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def produce_ticks(bootstrap: str, topic: str, feed: str, products, event_time_us: int) -> None:
    """One tick per product into a pipeline's trades ``topic``: control records that move its job's
    watermark to ``event_time_us`` - watermark delay."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    try:
        # a control record made here, not received: stamped no earlier than its own time, so the job
        # does not reject it as ahead of receipt when a recent recording's flush time is in the future
        receive_us = max(int(time.time() * 1_000_000), event_time_us)
        for product in products:
            tick = Tick(product_id=product, event_time_us=event_time_us, receive_time_us=receive_us, feed=feed)
            producer.send(topic, key=product.encode(), value=tick.to_json())
        producer.flush()
    finally:
        producer.close()
