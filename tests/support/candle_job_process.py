"""Run the real candle job (spark-submit, local mode) against the session's Kafka and S3 server,
feed it records made with the shared contract, and read its lake back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from kafka import KafkaProducer

from cryptopipe.contracts import Tick, Trade
from cryptopipe.lake.layout import LakeLocation
from cryptopipe.lake.reader import read_candles
from cryptopipe.lake.s3 import S3Connection
from cryptopipe.pipeline import PipelineConfig, job_arguments, job_env
from cryptopipe_dev.stack.procs import ManagedProcess, wait_for
from cryptopipe_dev.stack.spark_job import spark_job_process


def us(text: str) -> int:
    """'2026-11-26T10:00:15.5Z' -> epoch microseconds."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(value.timestamp()) * 1_000_000 + value.microsecond


def trade(product: str, trade_id: int, price: str, size: str, at: str) -> Trade:
    return Trade(product, trade_id, Decimal(price), Decimal(size), "buy", us(at), us(at), "exchange")


def tick(product: str, at: str) -> Tick:
    return Tick(product, us(at), us(at), "exchange")


class JobRun:
    """One job process over ``config``; its progress file tells what it committed."""

    def __init__(
        self,
        kafka,
        s3,
        config: PipelineConfig,
        work_dir: Path,
        *,
        extra_args: Iterable[str] = (),
        kafka_bootstrap: str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ):
        """``kafka_bootstrap``: another listener of ``kafka`` (its SASL_SSL one, say), whose
        security settings come in ``extra_env`` as the SparkApplication's env would give them."""
        self.kafka = kafka
        self.kafka_bootstrap = kafka_bootstrap or kafka.bootstrap
        self.extra_env = dict(extra_env or {})
        self.s3 = s3
        self.config = config
        self.work_dir = work_dir
        self.progress_file = work_dir / f"progress-{config.prefix}.json"
        self.extra_args = list(extra_args)
        self.connection = S3Connection(s3.endpoint, s3.access_key, s3.secret_key)
        self.process: ManagedProcess | None = None
        self.runs = 0

    def start(self) -> JobRun:
        self.runs += 1
        args = (
            job_arguments(
                self.config,
                kafka_bootstrap=self.kafka_bootstrap,
                s3_endpoint=self.s3.endpoint,
                progress_file=str(self.progress_file),
            )
            + self.extra_args
        )
        self.process = spark_job_process(
            args,
            env=job_env(self.connection) | self.extra_env,
            log_path=self.work_dir / f"job-{self.config.prefix}-{self.runs}.log",
        ).start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=20)

    def progress(self) -> dict:
        try:
            return json.loads(self.progress_file.read_text())["queries"]
        except FileNotFoundError:
            return {}

    def wait(self, predicate, what: str, timeout: float = 180.0):
        return wait_for(lambda: predicate(self.progress()), timeout, what, interval=0.25, process=self.process)

    def wait_input(self, rows: int, window: str = "1m", timeout: float = 180.0) -> dict:
        """Until the query has read at least ``rows`` Kafka records in committed batches."""
        return self.wait(
            lambda p: (p.get(window) or {}).get("input_rows", 0) >= rows and p, f"{rows} records read", timeout
        )

    def wait_watermark(self, at_least: str, timeout: float = 180.0) -> dict:
        def reached(progress: dict):
            if set(progress) >= set(self.config.windows) and all(
                progress[w]["watermark"] >= at_least for w in self.config.windows
            ):
                return progress
            return None

        return self.wait(reached, f"watermark >= {at_least}", timeout)

    def candles(self, window: str = "1m"):
        return read_candles(
            LakeLocation(self.config.bucket, self.config.prefix), self.connection.arrow_filesystem(), window=window
        )


def produce(kafka, topic: str, records: Iterable[Trade | Tick], *, receipt_timestamps: bool = False) -> int:
    """``receipt_timestamps``: each Kafka record's timestamp is its receive time, as ingestion's
    producer stamps them (it produces on receipt); else the producer's clock now."""
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    n = 0
    try:
        for record in records:
            stamp = record.receive_time_us // 1000 if receipt_timestamps else None
            producer.send(topic, key=record.product_id.encode(), value=record.to_json(), timestamp_ms=stamp)
            n += 1
        producer.flush()
    finally:
        producer.close()
    return n


def rows_by_product(table) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        out.setdefault(row["product_id"], []).append(row)
    return out


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def unique_name(stem: str) -> str:
    return f"{stem}-{int(time.time() * 1000) % 10_000_000}"
