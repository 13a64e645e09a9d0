"""One pipeline's configuration and how it is wired into its processes.

``PipelineConfig`` is what a CryptoPipeline spec (or `cryptopipe up` / `replay` flags) decides.
``ingestion_env`` and ``job_arguments`` turn it into the ingestion process's environment and the
Spark job's arguments: the local stack runs them as processes, the operator renders the very same
values into the Deployment's env and the SparkApplication's arguments. Pure functions, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from cryptopipe.contracts import ContractError, Feed, parse_duration, window_label
from cryptopipe.lake.s3 import S3Connection

DEFAULT_TOPIC = "coinbase.trades"
DEFAULT_DLQ_TOPIC = "coinbase.trades.dlq"
DEFAULT_HOLD_SLACK_S = 5.0  # cryptopipe.ingest.settings.IngestSettings.hold_slack_s
HOLD_SLACK_ENV = "CRYPTOPIPE_INGEST_HOLD_SLACK_S"


def check_hold_slack(hold_slack_s: float, watermark: str, name: str) -> None:
    """The ingestion releases records up to ``hold_slack_s`` later than a trade it still owes; the
    job drops a trade that arrives more than ``watermark`` behind the latest record. A slack not
    below the watermark lets the owed trade, once backfilled, be dropped as late: refused, naming
    ``name`` (the setting that carries the slack)."""
    watermark_s = parse_duration(watermark)
    if not 0 <= hold_slack_s < watermark_s:
        raise ContractError(
            f"{name}: the ingestion's hold slack ({hold_slack_s:g}s) must be at least 0 and shorter than "
            f"the job's watermark ({watermark}): otherwise a backfilled trade can arrive after the "
            "watermark passed it and be dropped as late"
        )


def default_hold_slack_s(watermark: str) -> float:
    """The slack a pipeline gets when none is set: the ingestion's default, or half the watermark
    when that is shorter, so that `cryptopipe up --watermark 5s` runs as it always did."""
    return min(DEFAULT_HOLD_SLACK_S, parse_duration(watermark) / 2)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    feed: Feed = "exchange"
    windows: tuple[str, ...] = ("1m",)
    watermark: str = "30s"
    trigger: str = "5s"
    topic: str = DEFAULT_TOPIC
    dlq_topic: str = DEFAULT_DLQ_TOPIC
    bucket: str = "lake"
    prefix: str = "cryptopipe"
    checkpoint_generation: int = 1
    # ingestion's hold slack (CRYPTOPIPE_INGEST_HOLD_SLACK_S, cryptopipe.ingest.hold): below the
    # watermark; None: default_hold_slack_s(watermark)
    hold_slack_s: float | None = None

    def __post_init__(self) -> None:
        # normalise and validate once: "60s" and "1m" are the same window
        object.__setattr__(self, "windows", tuple(window_label(parse_duration(w)) for w in self.windows))
        if self.hold_slack_s is None:
            object.__setattr__(self, "hold_slack_s", default_hold_slack_s(self.watermark))
        check_hold_slack(self.slack_s, self.watermark, "hold_slack_s")
        parse_duration(self.trigger)

    @property
    def slack_s(self) -> float:
        """The hold slack in force (set, or derived from the watermark)."""
        assert self.hold_slack_s is not None  # set in __post_init__
        return self.hold_slack_s

    @property
    def window_seconds(self) -> tuple[int, ...]:
        return tuple(parse_duration(w) for w in self.windows)


def ingestion_env(
    config: PipelineConfig,
    *,
    kafka_bootstrap: str,
    ws_url: str | None = None,
    rest_url: str | None = None,
    http_port: int = 8080,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment of the ingestion process (see cryptopipe.ingest.settings for every name)."""
    env = {
        "CRYPTOPIPE_INGEST_FEED": config.feed,
        "CRYPTOPIPE_INGEST_PRODUCTS": ",".join(config.products),
        "CRYPTOPIPE_INGEST_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CRYPTOPIPE_INGEST_TOPIC": config.topic,
        "CRYPTOPIPE_INGEST_DLQ_TOPIC": config.dlq_topic,
        "CRYPTOPIPE_INGEST_HTTP_PORT": str(http_port),
        HOLD_SLACK_ENV: f"{config.slack_s:g}",
    }
    if ws_url:
        env["CRYPTOPIPE_INGEST_WS_URL"] = ws_url
    if rest_url:
        env["CRYPTOPIPE_INGEST_REST_URL"] = rest_url
    env.update(extra or {})
    if env[HOLD_SLACK_ENV] != f"{config.slack_s:g}":  # overridden: the job's watermark still rules
        try:
            slack = float(env[HOLD_SLACK_ENV])
        except ValueError:
            raise ContractError(f"{HOLD_SLACK_ENV}: not a number of seconds: {env[HOLD_SLACK_ENV]!r}") from None
        check_hold_slack(slack, config.watermark, HOLD_SLACK_ENV)
    return env


def job_arguments(
    config: PipelineConfig,
    *,
    kafka_bootstrap: str,
    s3_endpoint: str | None,
    progress_file: str | None = None,
    metrics_port: int | None = None,
    shuffle_partitions: int = 2,
    starting_offsets: str = "earliest",
    handover: bool = True,
    state_fingerprint: str | None = None,
    pipeline_uid: str | None = None,
) -> list[str]:
    """Arguments of spark-apps/candles_job/main.py (credentials are not arguments: see job_env)."""
    args = [
        "--kafka-bootstrap",
        kafka_bootstrap,
        "--topic",
        config.topic,
        "--windows",
        ",".join(config.windows),
        "--watermark",
        config.watermark,
        "--trigger",
        config.trigger,
        "--bucket",
        config.bucket,
        "--prefix",
        config.prefix,
        "--checkpoint-generation",
        str(config.checkpoint_generation),
        "--shuffle-partitions",
        str(shuffle_partitions),
        "--starting-offsets",
        starting_offsets,
    ]
    if not handover:  # the job's default: a new generation hands over from the older ones
        args += ["--handover", "false"]
    if state_fingerprint:
        args += ["--state-fingerprint", state_fingerprint]
    if pipeline_uid:
        args += ["--pipeline-uid", pipeline_uid]
    if s3_endpoint:
        args += ["--s3-endpoint", s3_endpoint]
    if progress_file:
        args += ["--progress-file", progress_file]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    return args


def job_env(s3: S3Connection) -> dict[str, str]:
    """The job's secrets, as env (in Kubernetes they come from the sink's Secret)."""
    return {
        "CRYPTOPIPE_JOB_S3_ACCESS_KEY": s3.access_key,
        "CRYPTOPIPE_JOB_S3_SECRET_KEY": s3.secret_key,
        "CRYPTOPIPE_JOB_S3_REGION": s3.region,
    }


def monitor_env(
    config: PipelineConfig,
    s3: S3Connection,
    *,
    interval: str = "60s",
    lookback: str = "2h",
    stale_after: str = "5m",
    price_sigma: float = 4.0,
    volume_factor: float = 10.0,
    min_history: int = 20,
    http_host: str | None = None,
    http_port: int = 8080,
    kafka_bootstrap: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment of the lake monitor (``cryptopipe monitor serve``): the pipeline's lake (bucket,
    prefix, products, windows), the S3 connection it reads it with, and the scan's thresholds.
    In Kubernetes the credentials come from the sink's Secret (the operator swaps them for
    secretKeyRefs)."""
    env = {
        "CRYPTOPIPE_MONITOR_S3_ACCESS_KEY": s3.access_key,
        "CRYPTOPIPE_MONITOR_S3_SECRET_KEY": s3.secret_key,
        "CRYPTOPIPE_MONITOR_S3_REGION": s3.region,
        "CRYPTOPIPE_MONITOR_BUCKET": config.bucket,
        "CRYPTOPIPE_MONITOR_PREFIX": config.prefix,
        "CRYPTOPIPE_MONITOR_PRODUCTS": ",".join(config.products),
        "CRYPTOPIPE_MONITOR_WINDOWS": ",".join(config.windows),
        "CRYPTOPIPE_MONITOR_LOOKBACK": lookback,
        "CRYPTOPIPE_MONITOR_INTERVAL": interval,
        "CRYPTOPIPE_MONITOR_STALE_AFTER": stale_after,
        "CRYPTOPIPE_MONITOR_PRICE_SIGMA": repr(float(price_sigma)),
        "CRYPTOPIPE_MONITOR_VOLUME_FACTOR": repr(float(volume_factor)),
        "CRYPTOPIPE_MONITOR_MIN_HISTORY": str(int(min_history)),
        "CRYPTOPIPE_MONITOR_HTTP_PORT": str(http_port),
    }
    if s3.endpoint:
        env["CRYPTOPIPE_MONITOR_S3_ENDPOINT"] = s3.endpoint
    if http_host:
        env["CRYPTOPIPE_MONITOR_HTTP_HOST"] = http_host
    if kafka_bootstrap:  # the ingestion's counted-unfillable trade ids, in its dead-letter topic
        env["CRYPTOPIPE_MONITOR_KAFKA_BOOTSTRAP"] = kafka_bootstrap
        env["CRYPTOPIPE_MONITOR_DLQ_TOPIC"] = config.dlq_topic
    env.update(extra or {})
    return env
