"""The ingestion service's one typed settings object, read from the environment.

Every field is an environment variable with the prefix ``CRYPTOPIPE_INGEST_``. These names are the
ingestion Deployment's env in Kubernetes: keep them stable.

=============================================  ===============================  =========================
variable                                       default                          meaning
=============================================  ===============================  =========================
CRYPTOPIPE_INGEST_FEED                         exchange                         exchange | advanced_trade
CRYPTOPIPE_INGEST_PRODUCTS                     BTC-USD,ETH-USD                  comma-separated products
CRYPTOPIPE_INGEST_WS_URL                       FEED_URLS[feed]                  WebSocket feed URL
CRYPTOPIPE_INGEST_REST_URL                     REST_BASE_URL                    REST base URL (backfill)
CRYPTOPIPE_INGEST_KAFKA_BOOTSTRAP              127.0.0.1:9092                   Kafka bootstrap servers
CRYPTOPIPE_INGEST_KAFKA_SECURITY_PROTOCOL      PLAINTEXT                        PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL
CRYPTOPIPE_INGEST_KAFKA_SASL_MECHANISM         (none)                           SCRAM-SHA-512 | SCRAM-SHA-256
CRYPTOPIPE_INGEST_KAFKA_SASL_USERNAME          (none)                           Kafka user (SASL)
CRYPTOPIPE_INGEST_KAFKA_SASL_PASSWORD          (none)                           its password (from a Secret)
CRYPTOPIPE_INGEST_KAFKA_SSL_CAFILE             (none: system CAs)               PEM CA file verifying brokers
CRYPTOPIPE_INGEST_TOPIC                        coinbase.trades                  trades + ticks topic
CRYPTOPIPE_INGEST_DLQ_TOPIC                    coinbase.trades.dlq              dead-letter topic
CRYPTOPIPE_INGEST_STATE_TOPIC                  <topic>.ingest-state             resume points (compacted)
CRYPTOPIPE_INGEST_HTTP_HOST                    0.0.0.0                          /metrics /healthz /readyz bind
CRYPTOPIPE_INGEST_HTTP_PORT                    8080                             0 = any free port (logged)
CRYPTOPIPE_INGEST_SUBSCRIBE_TIMEOUT_S          5                                connect + subscribe ack limit
CRYPTOPIPE_INGEST_WATCHDOG_S                   30                               silence before reconnect
CRYPTOPIPE_INGEST_BACKOFF_INITIAL_S            0.5                              first reconnect delay
CRYPTOPIPE_INGEST_BACKOFF_MAX_S                30                               reconnect delay ceiling
CRYPTOPIPE_INGEST_BACKOFF_JITTER               0.2                              +- fraction of each delay
CRYPTOPIPE_INGEST_PRODUCER                     kafka-python                     kafka-python | confluent
CRYPTOPIPE_INGEST_LINGER_MS                    10                               producer batching delay
CRYPTOPIPE_INGEST_BATCH_SIZE                   262144                           producer batch bytes
CRYPTOPIPE_INGEST_FLUSH_TIMEOUT_S              20                               flush limit on shutdown
CRYPTOPIPE_INGEST_DELIVERY_TIMEOUT_MS          120000                           send -> ack limit, then refill
CRYPTOPIPE_INGEST_REQUEST_TIMEOUT_MS           30000                            one Kafka request's limit
CRYPTOPIPE_INGEST_LOG_LEVEL                    INFO                             log level
CRYPTOPIPE_INGEST_BACKFILL_MAX_TRADES          10000                            larger gaps are refused
CRYPTOPIPE_INGEST_BACKFILL_RETRIES             5                                REST attempts per gap
CRYPTOPIPE_INGEST_BACKFILL_RETRY_DELAY_S       1                                first wait; doubles
CRYPTOPIPE_INGEST_BACKFILL_TIMEOUT_S           10                               one REST request's limit
CRYPTOPIPE_INGEST_RESUME_FROM_TOPIC            true                             continue after the topic's last trade
CRYPTOPIPE_INGEST_MAX_CLOCK_SKEW_S             60                               event time ahead of receipt -> DLQ
CRYPTOPIPE_INGEST_HOLD_SLACK_S                 5                                lead allowed over an owed trade
CRYPTOPIPE_INGEST_MAX_HOLD_S                   1800                             longest hold, then owed ids given up
CRYPTOPIPE_INGEST_MAX_HELD_RECORDS             500000                           records held at most, idem
CRYPTOPIPE_INGEST_SETTLE_S                     10                               wait for each product after connecting
CRYPTOPIPE_INGEST_GC_GEN0_THRESHOLD            20000                            0 = Python's GC defaults (gc_tuning.py)
=============================================  ===============================  =========================
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cryptopipe.coinbase.frames import FEED_URLS, REST_BASE_URL
from cryptopipe.contracts import PRODUCT_PATTERN, ingest_state_topic
from cryptopipe.kafka_security import KafkaSecuritySettings

ENV_PREFIX = "CRYPTOPIPE_INGEST_"


class IngestSettings(KafkaSecuritySettings, BaseSettings):
    """Configuration of one ingestion process (one feed, a set of products, one Kafka topic)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    feed: Literal["exchange", "advanced_trade"] = Field(
        "exchange",
        description="Which Coinbase WebSocket protocol to speak: the Exchange feed (matches + heartbeat, "
        "gap-checkable) or Advanced Trade (market_trades + heartbeats).",
    )
    products: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTC-USD", "ETH-USD"],
        description="Product ids to subscribe to; in the environment a comma-separated list such as 'BTC-USD,ETH-USD'.",
    )
    ws_url: str = Field(
        "",
        description="WebSocket URL of the feed; empty means Coinbase's public URL for the chosen feed.",
    )
    rest_url: str = Field(
        REST_BASE_URL,
        description="Base URL of the Coinbase Exchange REST API, used to backfill trade-id gaps.",
    )
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092",
        description="Kafka bootstrap servers, comma-separated host:port.",
    )
    topic: str = Field("coinbase.trades", description="Kafka topic for trade and tick records.")
    dlq_topic: str = Field(
        "coinbase.trades.dlq", description="Kafka topic for frames that could not be turned into records."
    )
    state_topic: str = Field(
        "",
        description="Compacted Kafka topic where ingestion records, per product, the trade id it can resume "
        "after (with its partition and offset); empty means '<topic>.ingest-state'.",
    )
    http_host: str = Field("0.0.0.0", description="Address the /metrics, /healthz and /readyz server binds to.")
    http_port: int = Field(
        8080,
        ge=0,
        le=65535,
        description="Port of the /metrics, /healthz and /readyz server; 0 picks a free port and logs it.",
    )
    subscribe_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Seconds allowed for connecting and for the subscriptions acknowledgement to arrive.",
    )
    watchdog_s: float = Field(
        30.0,
        gt=0,
        description="Seconds without any frame after which the connection is considered dead and reopened.",
    )
    backoff_initial_s: float = Field(
        0.5, gt=0, description="Delay before the first reconnect attempt; doubles on each further failure."
    )
    backoff_max_s: float = Field(30.0, gt=0, description="Ceiling of the reconnect delay.")
    backoff_jitter: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Each reconnect delay is scaled by a random factor in [1 - jitter, 1 + jitter], "
        "so many replicas do not reconnect in lockstep.",
    )
    producer: Literal["kafka-python", "confluent"] = Field(
        "kafka-python",
        description="Kafka client of the producer: kafka-python (the default, pure Python) or confluent "
        "(librdkafka through confluent-kafka: less CPU per trade; needs the optional ingestion-fast extra). "
        "Same semantics either way: idempotent, acks=all, keyed by product, counted when acknowledged.",
    )
    linger_ms: int = Field(
        10,
        ge=0,
        le=60_000,
        description="Kafka producer linger in ms: how long a batch waits to fill before it is sent.",
    )
    batch_size: int = Field(262_144, ge=1024, description="Kafka producer batch size in bytes per partition.")
    delivery_timeout_ms: int = Field(
        120_000,
        ge=1000,
        description="Kafka producer delivery timeout: a record not acknowledged this long after it was "
        "sent fails; a failed trade is then fetched again over REST and produced again (a gap).",
    )
    request_timeout_ms: int = Field(
        30_000, ge=500, description="Kafka producer request timeout (must be <= delivery_timeout_ms - linger_ms)."
    )
    flush_timeout_s: float = Field(
        20.0,
        gt=0,
        description="On shutdown, how long to wait for the producer to deliver what it accepted. With the "
        "feed and backfill stop (at most ~5 s) it must fit the pod's terminationGracePeriodSeconds (30 s default).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the JSON logs on stderr."
    )
    backfill_max_trades: int = Field(
        10_000,
        ge=1,
        description="A trade-id gap larger than this is not backfilled (counted as unfilled and logged): "
        "it means a long outage, not a dropped frame.",
    )
    backfill_retries: int = Field(5, ge=1, description="REST attempts per gap before it is given up.")
    backfill_retry_delay_s: float = Field(
        1.0,
        ge=0,
        description="Wait before the second REST attempt of a gap, doubling for each further one (the REST "
        "trades endpoint can lag the socket, and answers 429 when asked too fast).",
    )
    backfill_timeout_s: float = Field(10.0, gt=0, description="Timeout of one REST request while backfilling.")
    resume_from_topic: bool = Field(
        True,
        description="On start, read the resume points (state_topic) and the trades topic past them to find "
        "the last trade id produced per product and the trades still pending when the last run stopped: those "
        "and the trades missed while the service was down are then backfilled (up to backfill_max_trades) and "
        "replays of trades already in the topic are not produced again.",
    )

    max_clock_skew_s: float = Field(
        60.0,
        gt=0,
        description="A trade or heartbeat tick whose event time is more than this many seconds ahead of "
        "the time it was received is dead-lettered (reason event_time_ahead_of_receipt), not produced: one "
        "such record would move the Spark job's watermark for good. Only the future is bounded (backfill "
        "and last_match are legitimately old). Keep the job's max_clock_skew at least this large.",
    )

    hold_slack_s: float = Field(
        5.0,
        ge=0,
        description="A record is handed to Kafka only if its event time is at most this much later than the "
        "earliest trade ingestion still owes (a gap being backfilled, a failed delivery being re-fetched, a "
        "record Kafka has not acknowledged). Must stay below the Spark job's watermark delay (30 s by default), "
        "so the job never drops an owed trade as late.",
    )
    max_hold_s: float = Field(
        1800.0,
        gt=0,
        description="Longest a record is held for an owed trade: past it the owed ids are given up (counted in "
        "trades_unfilled_total, reason hold_expired) and the held records released. An outage whose backfill "
        "completes within this loses nothing.",
    )
    max_held_records: int = Field(
        500_000,
        ge=1,
        description="Most records held in memory at once; past it the hold expires as for max_hold_s.",
    )
    settle_s: float = Field(
        10.0,
        gt=0,
        description="After (re)connecting, how long records later than a product's newest known trade wait for "
        "that product's first trade or heartbeat (which reveals the trades it missed). Past it the product is "
        "assumed to owe nothing (logged, counted in hold_expired_total{cause=settle}).",
    )

    gc_gen0_threshold: int = Field(
        20_000,
        ge=0,
        le=10_000_000,
        description="Once started, freeze the objects start-up left alive (gc.freeze: never scanned again) and "
        "run Python's youngest garbage collection every this many net container allocations instead of 700, "
        "which saves CPU per trade (ingest/gc_tuning.py gives the figures). 0 leaves the collector at "
        "Python's defaults.",
    )

    @field_validator("products", mode="before")
    @classmethod
    def _split_products(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("products")
    @classmethod
    def _check_products(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one product is needed")
        bad = [p for p in value if not PRODUCT_PATTERN.match(p)]
        if bad:
            raise ValueError(f"not product ids like BTC-USD: {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"products listed twice: {value}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _defaults_from_feed(self) -> IngestSettings:
        if not self.ws_url:
            # frozen model: set through object.__setattr__ once, at validation time
            object.__setattr__(self, "ws_url", FEED_URLS[self.feed])
        if not self.state_topic:
            object.__setattr__(self, "state_topic", ingest_state_topic(self.topic))
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        if self.delivery_timeout_ms < self.linger_ms + self.request_timeout_ms:
            raise ValueError("delivery_timeout_ms must be >= linger_ms + request_timeout_ms")
        return self
