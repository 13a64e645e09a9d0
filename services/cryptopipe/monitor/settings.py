"""The lake monitor service's one typed settings object, read from ``CRYPTOPIPE_MONITOR_*`` env.

These names are the monitor Deployment's env in Kubernetes: keep them stable.

=========================================  ===============  ================================================
variable                                   default          meaning
=========================================  ===============  ================================================
CRYPTOPIPE_MONITOR_S3_ENDPOINT             (AWS)            e.g. http://minio:9000
CRYPTOPIPE_MONITOR_S3_ACCESS_KEY           required
CRYPTOPIPE_MONITOR_S3_SECRET_KEY           required
CRYPTOPIPE_MONITOR_S3_REGION               us-east-1
CRYPTOPIPE_MONITOR_BUCKET                  required         the lake's bucket
CRYPTOPIPE_MONITOR_PREFIX                  cryptopipe       the lake's prefix in the bucket
CRYPTOPIPE_MONITOR_PRODUCTS                (all in lake)    comma-separated; these are stale if absent
CRYPTOPIPE_MONITOR_WINDOWS                 1m               comma-separated window sizes to scan
CRYPTOPIPE_MONITOR_LOOKBACK                2h               history each scan reads: [now - lookback, now)
CRYPTOPIPE_MONITOR_INTERVAL                60s              scan period
CRYPTOPIPE_MONITOR_STALE_AFTER             5m               next candle overdue by this much = stale
CRYPTOPIPE_MONITOR_PRICE_SIGMA             4.0              robust z-score limit of a close-to-close move
CRYPTOPIPE_MONITOR_VOLUME_FACTOR           10.0             volume limit as a multiple of the median
CRYPTOPIPE_MONITOR_MIN_HISTORY             20               candles needed before the statistical checks
CRYPTOPIPE_MONITOR_KAFKA_BOOTSTRAP         (none)           where the ingestion's dead-letter topic is; unset:
                                                            no counted-unfillable input (every gap "lost")
CRYPTOPIPE_MONITOR_DLQ_TOPIC               (none)           that topic (the ingestion's DLQ_TOPIC)
CRYPTOPIPE_MONITOR_HTTP_HOST               0.0.0.0          /metrics /healthz /readyz bind
CRYPTOPIPE_MONITOR_HTTP_PORT               8080             0 = any free port (logged)
CRYPTOPIPE_MONITOR_LOG_LEVEL               INFO
=========================================  ===============  ================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cryptopipe.contracts import PRODUCT_PATTERN, ContractError, parse_duration, window_label
from cryptopipe.kafka_security import KafkaSecuritySettings
from cryptopipe.lake.layout import LakeLocation
from cryptopipe.lake.s3 import S3Connection
from cryptopipe.monitor.anomalies import Thresholds

ENV_PREFIX = "CRYPTOPIPE_MONITOR_"


class SettingsError(ValueError):
    """Invalid monitor settings; the message names each bad environment variable."""


def _csv(value: object) -> object:
    return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value


def _duration(value: str) -> str:
    try:
        parse_duration(value)
    except ContractError as exc:
        raise ValueError(str(exc)) from None
    return value.strip()


class MonitorSettings(KafkaSecuritySettings, BaseSettings):
    # how it authenticates to Kafka: the ingestion's settings of the same names (KafkaSecuritySettings)
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    s3_endpoint: str | None = Field(None, description="S3 endpoint URL; unset for AWS S3.")
    s3_access_key: str = Field(description="S3 access key.")
    s3_secret_key: str = Field(description="S3 secret key.")
    s3_region: str = "us-east-1"
    bucket: str = Field(min_length=1, description="Bucket of the lake.")
    prefix: str = "cryptopipe"
    products: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Products to watch; empty = every product found in the lake."
    )
    windows: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["1m"], description="Window sizes to scan.")
    lookback: str = Field("2h", description="History each scan reads.")
    interval: str = Field("60s", description="Scan period.")
    stale_after: str = Field("5m", description="How long a product's next candle may be overdue.")
    price_sigma: float = Field(4.0, gt=0)
    volume_factor: float = Field(10.0, gt=1)
    min_history: int = Field(20, ge=3, description="Candles a product needs before price/volume checks run.")
    kafka_bootstrap: str | None = Field(
        None, description="Kafka bootstrap of the ingestion's dead-letter topic (counted-unfillable trade ids)."
    )
    dlq_topic: str | None = Field(None, description="The ingestion's dead-letter topic.")
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("products", "windows", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _csv(value)

    @field_validator("lookback", "interval", "stale_after")
    @classmethod
    def _check_duration(cls, value: str) -> str:
        return _duration(value)

    @field_validator("s3_endpoint", "kafka_bootstrap", "dlq_topic", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return value or None  # an empty env var means unset (for the endpoint: AWS)

    @model_validator(mode="after")
    def _bootstrap_with_topic(self) -> MonitorSettings:
        if (self.kafka_bootstrap is None) != (self.dlq_topic is None):
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_BOOTSTRAP and {ENV_PREFIX}DLQ_TOPIC go together: set both (or neither)"
            )
        return self

    @field_validator("products")
    @classmethod
    def _check_products(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if not PRODUCT_PATTERN.match(p)]
        if bad:
            raise ValueError(f"not product ids like BTC-USD: {bad}")
        return value

    @field_validator("windows")
    @classmethod
    def _check_windows(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one window is needed")
        try:  # normalised to the lake's partition label: "60s" is stored as window=1m
            return [window_label(parse_duration(w)) for w in value]
        except ContractError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    # -- derived ---------------------------------------------------------------------------------
    @property
    def lookback_s(self) -> int:
        return parse_duration(self.lookback)

    @property
    def interval_s(self) -> int:
        return parse_duration(self.interval)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            price_sigma=self.price_sigma,
            volume_factor=self.volume_factor,
            stale_after_s=parse_duration(self.stale_after),
            min_history=self.min_history,
        )

    @property
    def lake(self) -> LakeLocation:
        return LakeLocation(self.bucket, self.prefix)

    @property
    def connection(self) -> S3Connection:
        return S3Connection(self.s3_endpoint, self.s3_access_key, self.s3_secret_key, self.s3_region)


def load_settings(env: Mapping[str, str] | None = None) -> MonitorSettings:
    """MonitorSettings from the process environment, with ``env``'s variables taking precedence over it;
    SettingsError naming the variables if any value is bad."""
    try:
        if env is None:
            return MonitorSettings()
        fields = {name[len(ENV_PREFIX) :].lower(): value for name, value in env.items() if name.startswith(ENV_PREFIX)}
        return MonitorSettings.model_validate(fields)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if not error["loc"]:  # a check across fields: its message names them
                problems.append(error["msg"].removeprefix("Value error, "))
                continue
            field = str(error["loc"][0])
            problems.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}")
        raise SettingsError("invalid lake monitor settings: " + "; ".join(problems)) from None
