"""The job's one settings object: environment variables (prefix ``CRYPTOPIPE_JOB_``) overridden by
command-line flags. The SparkApplication the operator renders passes flags; the S3 credentials and
the Kafka password come as env from a Secret. Nothing else in the job reads configuration.
"""

from __future__ import annotations

import argparse

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cryptopipe.contracts import ContractError, parse_duration, window_label
from cryptopipe.kafka_security import KafkaSecuritySettings
from cryptopipe.lake.layout import LakeLocation
from cryptopipe.lake.s3 import S3Connection


class JobSettings(KafkaSecuritySettings, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRYPTOPIPE_JOB_", extra="forbid")

    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port]")
    topic: str = Field("coinbase.trades", description="Topic of trade and tick records")
    starting_offsets: str = Field(
        "earliest",
        description="Where a new checkpoint starts reading a window size no older generation had (or with "
        "handover off): earliest|latest, or a record timestamp in epoch ms",
    )
    max_offsets_per_trigger: int | None = Field(None, ge=1, description="Cap on records per micro-batch")
    windows: list[str] = Field(["1m"], description="Candle window sizes, e.g. 1m,5m,1h; one streaming query each")
    watermark: str = Field("30s", description="How late a trade may arrive and still count")
    trigger: str = Field("5s", description="Micro-batch trigger interval: how often new data is read")
    close_on_watermark: bool = Field(
        True,
        description="Apply a watermark that moved (emit the windows it closes) in a batch right after the one "
        "that moved it, instead of a trigger interval later; the trigger still paces reading new data "
        "(candles_job/pacing.py). false: Spark's processing-time grid for every batch",
    )
    available_now: bool = Field(
        False,
        description="Run once: process what the topic holds now (in maxOffsetsPerTrigger batches), then stop "
        "(Spark's availableNow trigger; for catching up on a backlog and benchmarks)",
    )
    max_clock_skew: str = Field(
        "60s",
        description="A record whose event time is more than this ahead of its receive time is rejected "
        "(event_time_ahead_of_receipt) instead of moving the watermark; at least ingestion's max_clock_skew_s",
    )
    s3_endpoint: str | None = Field(None, description="S3 endpoint URL (MinIO); unset for AWS")
    s3_access_key: str = Field(description="S3 access key")
    s3_secret_key: str = Field(description="S3 secret key")
    s3_region: str = Field("us-east-1", description="S3 region")
    bucket: str = Field(description="Lake bucket")
    prefix: str = Field("cryptopipe", description="Lake prefix inside the bucket")
    checkpoint_generation: int = Field(1, ge=1, description="Checkpoint generation; a new one starts fresh state")
    state_fingerprint: str | None = Field(
        None,
        description="The spec's state fingerprint (the operator's): a lake generation of another fingerprint is "
        "never resumed (lake/generations.py)",
    )
    pipeline_uid: str | None = Field(None, description="The CryptoPipeline's uid, recorded with a new generation")
    handover: bool = Field(
        True,
        description="A new generation starts each window size where older generations' candles are final "
        "(their complete-through) instead of at starting-offsets; off: always starting-offsets",
    )
    handover_slack: str = Field(
        "2m", description="How far before the first handed-over window the Kafka source starts (record time)"
    )
    checkpoint_root: str | None = Field(
        None, description="Override the checkpoint location root (default: s3a://BUCKET/PREFIX/_checkpoints)"
    )
    shuffle_partitions: int = Field(2, ge=1, description="spark.sql.shuffle.partitions: about the core count")
    checkpoint_direct_writes: bool = Field(
        True,
        description="Write each s3a checkpoint file in one PUT (spark-hadoop-cloud's abortable-stream manager) "
        "instead of write-and-rename (false: Spark's default); without the jar on the class path the job "
        "warns and keeps Spark's default (docs/benchmarks.md, catch-up profile)",
    )
    progress_file: str | None = Field(None, description="Local JSON file the job rewrites after every batch")
    progress_events_file: str | None = Field(
        None, description="Local file the job appends every query progress event to, one JSON per line (profiling)"
    )
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus metrics port (driver)")
    log_level: str = Field("INFO", description="Log level of the job's own logs")

    @field_validator("windows", mode="before")
    @classmethod
    def _split_windows(cls, value):
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        return value

    @field_validator("windows")
    @classmethod
    def _valid_windows(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("windows: at least one window size is needed")
        seconds = []
        for text in value:
            try:
                seconds.append(parse_duration(text))
            except ContractError as exc:
                raise ValueError(f"windows: {exc}") from None
        if len(set(seconds)) != len(seconds):
            raise ValueError(f"windows: duplicate window sizes in {value}")
        return [window_label(s) for s in seconds]

    @field_validator("watermark", "trigger", "max_clock_skew", "handover_slack")
    @classmethod
    def _valid_duration(cls, value: str, info) -> str:
        try:
            parse_duration(value)
        except ContractError as exc:
            raise ValueError(f"{info.field_name}: {exc}") from None
        return value

    @property
    def window_seconds(self) -> list[int]:
        return [parse_duration(w) for w in self.windows]

    @property
    def max_clock_skew_us(self) -> int:
        return parse_duration(self.max_clock_skew) * 1_000_000

    @property
    def lake(self) -> LakeLocation:
        return LakeLocation(self.bucket, self.prefix)

    @property
    def s3(self) -> S3Connection:
        return S3Connection(self.s3_endpoint, self.s3_access_key, self.s3_secret_key, self.s3_region)

    def checkpoint_location(self, window: str) -> str:
        if self.checkpoint_root:
            return f"{self.checkpoint_root.rstrip('/')}/gen-{self.checkpoint_generation}/window={window}"
        return self.lake.checkpoint_url(self.checkpoint_generation, window)


def spark_duration(text: str) -> str:
    """'30s' -> '30 seconds' (Spark's interval syntax)."""
    return f"{parse_duration(text)} seconds"


def parse_args(argv: list[str] | None = None) -> JobSettings:
    """Flags override env: ``--kafka-bootstrap``, ``--windows 1m,5m``, ... (every JobSettings field)."""
    parser = argparse.ArgumentParser(prog="candles_job", description="Kafka trades -> OHLC candles in the lake")
    for name, field in JobSettings.model_fields.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, help=field.description)
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return JobSettings(**args)
