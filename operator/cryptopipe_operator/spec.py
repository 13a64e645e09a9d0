"""The CryptoPipeline spec as a typed model, and what a spec change means for the Spark checkpoint.

The CRD (charts/cryptopipe-operator/crds/cryptopipelines.yaml) is the source of truth: the API
server applies its defaults, patterns and CEL rules before the operator sees an object. This model
repeats the defaults (so a spec built in a test or by hand means the same) and the cross-field
rules code relies on; tests/unit/test_operator_crd.py fails when the two disagree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from cryptopipe.contracts import ingest_state_topic, parse_duration
from cryptopipe.lake.layout import LakeLocation
from cryptopipe.pipeline import PipelineConfig

API_GROUP = "cryptopipeline.io"
API_VERSION = "v1alpha1"
KIND = "CryptoPipeline"
PLURAL = "cryptopipelines"

# CEL bounds in the CRD, repeated for code paths that never pass the API server
MAX_WATERMARK_S = 3600
MAX_TRIGGER_S = 600

ChangeKind = Literal["none", "compatible", "state_breaking"]
# status.stateFingerprintVersion: 2 since the fingerprint covers Kafka, Spark image/version and layout
STATE_FINGERPRINT_VERSION = 2
PullPolicy = Literal["Always", "IfNotPresent", "Never"]


class _Model(BaseModel):
    # camelCase on the wire (the CRD's names), snake_case in Python; unknown fields are typos
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class KeyRef(_Model):
    """One key of a Secret in the pipeline's namespace (Strimzi's ``secretName``/``certificate``)."""

    name: str
    key: str


class CaKeyRef(KeyRef):
    key: str = "ca.crt"  # the key of Strimzi's CLUSTER-cluster-ca-cert Secret


class PasswordKeyRef(KeyRef):
    key: str = "password"  # the key of the Secret Strimzi's User Operator writes for a KafkaUser


class KafkaTlsSpec(_Model):
    """TLS to the brokers, verified against the cluster CA certificate (PEM) in a Secret."""

    ca_secret_ref: CaKeyRef


SaslMechanism = Literal["scram-sha-512", "scram-sha-256"]


class KafkaAuthenticationSpec(_Model):
    """SASL SCRAM as a KafkaUser (Strimzi ``type: scram-sha-512``); the password only by reference."""

    type: SaslMechanism = "scram-sha-512"
    username: str
    password_secret_ref: PasswordKeyRef
    # declared so that an inline password is refused by name (_rule_problems, the CRD's CEL rule)
    # rather than silently pruned by the API server
    password: str | None = None


class KafkaSpec(_Model):
    cluster_name: str
    bootstrap_servers: str | None = None
    topic: str | None = None
    partitions: int = 3
    replicas: int | None = None
    min_insync_replicas: int | None = None
    retention_ms: int = 604_800_000
    dlq_retention_ms: int = 2_592_000_000
    tls: KafkaTlsSpec | None = None
    authentication: KafkaAuthenticationSpec | None = None

    @property
    def security_protocol(self) -> str:
        """Kafka's security.protocol for these settings."""
        sasl = self.authentication is not None
        return {(False, False): "PLAINTEXT", (True, False): "SSL", (False, True): "SASL_PLAINTEXT"}.get(
            (self.tls is not None, sasl), "SASL_SSL"
        )

    @property
    def topic_min_insync_replicas(self) -> int | None:
        """min.insync.replicas for the topics: as given, else replicas - 1 within [1, 2] when replicas
        is set (3 -> 2), else None (the cluster's default; the operator cannot check it)."""
        if self.min_insync_replicas is not None or self.replicas is None:
            return self.min_insync_replicas
        return max(1, min(self.replicas - 1, 2))


class SecretRef(_Model):
    name: str
    access_key_key: str = "accessKey"
    secret_key_key: str = "secretKey"


# The lake prefix of a pipeline that does not set spec.sink.prefix: its own space, namespace and
# name in it, so no two pipelines share candles or a Spark checkpoint by default (docs/operator.md,
# "Lake space and ownership"). Not under "cryptopipe", the older CRD's default, which pipelines
# created before keep: a default space nested in it would be refused as overlapping.
DEFAULT_PREFIX_ROOT = "cryptopipelines"


class SinkSpec(_Model):
    endpoint: str | None = None
    region: str = "us-east-1"
    bucket: str
    prefix: str | None = None  # None: DEFAULT_PREFIX_ROOT/<namespace>/<name> (Pipeline.lake_prefix)
    credentials_secret_ref: SecretRef


class ResourceList(_Model):
    cpu: str | None = None
    memory: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("cpu", self.cpu), ("memory", self.memory)) if v is not None}


class Resources(_Model):
    requests: ResourceList = ResourceList(cpu="100m", memory="128Mi")
    limits: ResourceList = ResourceList(memory="256Mi")


class IngestionSpec(_Model):
    image: str
    image_pull_policy: PullPolicy = "IfNotPresent"
    replicas: int = 1
    ws_url: str | None = None
    rest_url: str | None = None
    hold_slack: str = "5s"  # cryptopipe.ingest.settings hold_slack_s; shorter than spec.watermark
    resources: Resources = Resources()


class SparkPod(_Model):
    cores: int = 1
    memory: str = "1g"
    # the CPU the pod requests from the scheduler (a Kubernetes quantity, "500m"); None: ``cores``.
    # A small node (a dev cluster's 2 cores) fits a driver and an executor only below 1 CPU each.
    core_request: str | None = None


class SparkExecutor(SparkPod):
    instances: int = 1


class SparkSpec(_Model):
    image: str
    image_pull_policy: PullPolicy = "IfNotPresent"
    spark_version: str = "4.1.3"
    driver: SparkPod = SparkPod()
    executor: SparkExecutor = SparkExecutor()


class MonitorResources(Resources):
    # reading Parquet footers and row groups with pyarrow needs more headroom than ingestion
    limits: ResourceList = ResourceList(memory="512Mi")


class MonitorSpec(_Model):
    """The lake monitor Deployment (``python -m cryptopipe.monitor``), off by default."""

    enabled: bool = False
    image: str | None = None  # default: spec.ingestion.image (the same cryptopipe package)
    image_pull_policy: PullPolicy = "IfNotPresent"
    interval: str = "60s"
    lookback: str = "2h"
    stale_after: str = "5m"
    price_sigma: float = Field(4.0, gt=0)
    volume_factor: float = Field(10.0, gt=1)
    min_history: int = Field(20, ge=3)  # the monitor's own floor (cryptopipe.monitor.settings)
    resources: MonitorResources = MonitorResources()


class NetworkPolicySpec(_Model):
    """The pipeline's NetworkPolicies (render_network): on by default."""

    enabled: bool = True
    # namespaces whose Prometheus may scrape the metrics ports (kube-prometheus-stack's default)
    metrics_namespace_selector: dict[str, Any] = Field(
        default_factory=lambda: {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    )


FreshFrom = Literal["handover", "earliest", "latest", "timestamp"]


class FreshStartSpec(_Model):
    """Where a generation started by ``upgradeMode: fresh`` reads the topic from."""

    from_: FreshFrom = Field("handover", alias="from")
    timestamp: str | None = None  # RFC 3339, with from: timestamp


class PipelineSpec(_Model):
    suspend: bool = False
    # Flink-style lifecycle controls (docs/operator.md, "Checkpoint generations and upgrade modes")
    restart_nonce: int | None = None
    upgrade_mode: Literal["last-state", "fresh"] = "last-state"
    fresh_start: FreshStartSpec = FreshStartSpec()
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    feed: Literal["exchange", "advanced_trade"] = "exchange"
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    windows: tuple[str, ...] = ("1m",)
    watermark: str = "30s"
    trigger: str = "5s"
    kafka: KafkaSpec
    sink: SinkSpec
    ingestion: IngestionSpec
    spark: SparkSpec
    monitor: MonitorSpec = MonitorSpec()
    network_policy: NetworkPolicySpec = NetworkPolicySpec()


@dataclasses.dataclass(frozen=True)
class SpecProblem:
    field: str  # "spec.windows[1]"
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(ValueError):
    """A spec the operator must not act on; every problem names its field."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """One CryptoPipeline object: the identity its children point back to, and its parsed spec."""

    name: str
    namespace: str
    uid: str
    spec: PipelineSpec

    @property
    def topic(self) -> str:
        return self.spec.kafka.topic or f"cryptopipe.{self.name}.trades"

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def state_topic(self) -> str:
        """Ingestion's resume points (compacted; the name ingestion derives from the trades topic)."""
        return ingest_state_topic(self.topic)

    @property
    def lake_prefix(self) -> str:
        """The pipeline's key prefix in its bucket: spec.sink.prefix as given (without edge
        slashes), else ``cryptopipelines/<namespace>/<name>``."""
        return effective_prefix(self.spec, self.namespace, self.name)

    @property
    def lake(self) -> LakeLocation:
        return LakeLocation(self.spec.sink.bucket, self.lake_prefix)

    @property
    def kafka_bootstrap(self) -> str:
        return kafka_bootstrap(self.spec)


def kafka_bootstrap(spec: PipelineSpec) -> str:
    # Strimzi's service for the cluster's plain listener (9092), or its tls listener (9093)
    kafka = spec.kafka
    port = 9093 if kafka.tls is not None else 9092
    return kafka.bootstrap_servers or f"{kafka.cluster_name}-kafka-bootstrap:{port}"


def shuffle_partitions(spec: PipelineSpec) -> int:
    """spark.sql.shuffle.partitions of the job: the executors' cores. A checkpoint fixes it (Spark
    keeps the value the query started with), so a new layout only takes effect in a new generation."""
    return spec.spark.executor.cores * spec.spark.executor.instances


def effective_prefix(spec: PipelineSpec, namespace: str, name: str) -> str:
    explicit = spec.sink.prefix
    if explicit is not None and explicit.strip("/"):
        return explicit.strip("/")
    return f"{DEFAULT_PREFIX_ROOT}/{namespace}/{name}"


def lake_spaces_overlap(a: LakeLocation, b: LakeLocation) -> bool:
    """Whether two lake spaces are the same or one nests in the other: the same bucket, and one
    prefix's path segments start the other's (``shared`` and ``shared/sub`` overlap, ``shared``
    and ``shared-2`` do not). Empty segments and edge slashes do not count."""
    if a.bucket.strip("/") != b.bucket.strip("/"):
        return False
    sa = [part for part in a.prefix.split("/") if part]
    sb = [part for part in b.prefix.split("/") if part]
    shorter = min(len(sa), len(sb))
    return sa[:shorter] == sb[:shorter]


def parse_spec(raw: Mapping[str, Any]) -> PipelineSpec:
    """Validate a spec (as the API server stored it, or hand-written); SpecError names every bad field."""
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError([SpecProblem(_field_path(err["loc"]), err["msg"]) for err in exc.errors()]) from None
    problems = _rule_problems(spec)
    if problems:
        raise SpecError(problems)
    return spec


def parse_pipeline(body: Mapping[str, Any]) -> Pipeline:
    """A whole CryptoPipeline object (metadata + spec) as the API server returns it."""
    meta = body["metadata"]
    return Pipeline(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], spec=parse_spec(body["spec"]))


def _field_path(loc: tuple[str | int, ...]) -> str:
    path = "spec"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _duplicates(field: str, values: tuple[str, ...], key: Callable[[str], object] = lambda v: v) -> list[SpecProblem]:
    seen: dict[object, int] = {}
    problems = []
    for index, value in enumerate(values):
        k = key(value)
        if k in seen:
            problems.append(SpecProblem(f"spec.{field}[{index}]", f"duplicate of spec.{field}[{seen[k]}] ({value})"))
        seen.setdefault(k, index)
    return problems


def _seconds(value: str) -> int | None:
    try:
        return parse_duration(value)
    except ValueError:
        return None


def hold_slack_seconds(value: str) -> int | None:
    """spec.ingestion.holdSlack ('5s', '0s': whole seconds, as the CRD's pattern) -> seconds."""
    if re.fullmatch(r"(0|[1-9][0-9]{0,3})s", value) is None:
        return None
    return int(value[:-1])


# A spec is readable by everyone who may read the pipeline and lands in Events and logs: a URL that
# carries a password (user:password@host) or a token in its query is refused (the CRD's CEL rules).
_CREDENTIALS_IN_USERINFO = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@")
_CREDENTIALS_IN_QUERY = re.compile(
    r"(?i)[?&](token|secret|password|passwd|api_?key|key|signature|x-amz-credential|x-amz-signature"
    r"|x-amz-security-token)="
)
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_QUANTITY_SCALE: dict[str | None, Decimal] = {None: Decimal(1), "m": Decimal("0.001")}
_QUANTITY_SCALE |= {suffix: Decimal(10) ** (3 * n) for n, suffix in enumerate(("k", "M", "G", "T"), start=1)}
_QUANTITY_SCALE |= {suffix: Decimal(2) ** (10 * n) for n, suffix in enumerate(("Ki", "Mi", "Gi", "Ti"), start=1)}


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity in the CRD's pattern ("100m", "1.5", "256Mi") as an exact number."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"not a quantity: {text!r}")
    return Decimal(match.group(1)) * _QUANTITY_SCALE[match.group(2)]


def _epoch_ms(text: str) -> int | None:
    from datetime import datetime

    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(value.timestamp() * 1000) if value.tzinfo is not None else None


def _url_problems(field: str, url: str | None) -> list[SpecProblem]:
    if url is None:
        return []
    if _CREDENTIALS_IN_USERINFO.match(url):
        return [SpecProblem(field, "must not carry credentials (user:password@host): use a Secret")]
    if _CREDENTIALS_IN_QUERY.search(url):
        return [SpecProblem(field, "must not carry credentials in its query (token=, key=, signature=, ...)")]
    return []


def _resource_problems(field: str, resources: Resources) -> list[SpecProblem]:
    problems = []
    for name in ("cpu", "memory"):
        request, limit = getattr(resources.requests, name), getattr(resources.limits, name)
        if request is not None and limit is not None and parse_quantity(request) > parse_quantity(limit):
            problems.append(SpecProblem(f"{field}.requests.{name}", f"requests.{name} must not exceed limits.{name}"))
    return problems


def _rule_problems(spec: PipelineSpec) -> list[SpecProblem]:
    """The CRD's list-type=set uniqueness and CEL rules, for specs that did not pass the API server."""
    problems = _duplicates("products", spec.products) + _duplicates("windows", spec.windows, _seconds)
    window_s = [s for s in map(_seconds, spec.windows) if s is not None]
    watermark_s, trigger_s = _seconds(spec.watermark), _seconds(spec.trigger)
    for index, window in enumerate(spec.windows):
        if _seconds(window) is None:
            problems.append(SpecProblem(f"spec.windows[{index}]", f"not a window size like 1m, 5m, 1h: {window!r}"))
    if watermark_s is None:
        problems.append(SpecProblem("spec.watermark", f"not a duration like 30s, 2m: {spec.watermark!r}"))
    elif watermark_s > MAX_WATERMARK_S:
        problems.append(SpecProblem("spec.watermark", "watermark must be at most 1h"))
    elif window_s and watermark_s >= max(window_s):
        problems.append(SpecProblem("spec.watermark", "watermark must be shorter than the largest window"))
    hold_slack_s = hold_slack_seconds(spec.ingestion.hold_slack)
    if hold_slack_s is None:
        problems.append(
            SpecProblem("spec.ingestion.holdSlack", f"not whole seconds like 5s: {spec.ingestion.hold_slack!r}")
        )
    elif watermark_s is not None and hold_slack_s >= watermark_s:
        problems.append(
            SpecProblem(
                "spec.ingestion.holdSlack",
                "holdSlack must be shorter than watermark: a backfilled trade could otherwise be dropped as late",
            )
        )
    if trigger_s is None:
        problems.append(SpecProblem("spec.trigger", f"not a duration like 5s, 1m: {spec.trigger!r}"))
    elif trigger_s > MAX_TRIGGER_S:
        problems.append(SpecProblem("spec.trigger", "trigger must be at most 10m"))
    elif window_s and trigger_s > min(window_s):
        problems.append(SpecProblem("spec.trigger", "trigger must not be longer than the smallest window"))
    for field, value in (
        ("interval", spec.monitor.interval),
        ("lookback", spec.monitor.lookback),
        ("staleAfter", spec.monitor.stale_after),
    ):
        if _seconds(value) is None:
            problems.append(SpecProblem(f"spec.monitor.{field}", f"not a duration like 60s, 5m, 2h: {value!r}"))
    kafka = spec.kafka
    if kafka.min_insync_replicas is not None and (kafka.replicas is None or kafka.min_insync_replicas > kafka.replicas):
        problems.append(
            SpecProblem(
                "spec.kafka.minInsyncReplicas",
                "minInsyncReplicas needs replicas and must not exceed it: with acks=all no write could ever succeed",
            )
        )
    problems += _url_problems("spec.sink.endpoint", spec.sink.endpoint)
    problems += _url_problems("spec.ingestion.wsUrl", spec.ingestion.ws_url)
    problems += _url_problems("spec.ingestion.restUrl", spec.ingestion.rest_url)
    problems += _resource_problems("spec.ingestion.resources", spec.ingestion.resources)
    problems += _resource_problems("spec.monitor.resources", spec.monitor.resources)
    if kafka.authentication is not None and kafka.authentication.password is not None:
        problems.append(
            SpecProblem(
                "spec.kafka.authentication.password",
                "an inline password is refused (a spec is readable by everyone who may read the pipeline): "
                "put it in a Secret and name it in passwordSecretRef",
            )
        )
    fresh = spec.fresh_start
    if (fresh.from_ == "timestamp") != (fresh.timestamp is not None):
        problems.append(
            SpecProblem("spec.freshStart.timestamp", "timestamp is required with from: timestamp, and only then")
        )
    elif fresh.timestamp is not None and _epoch_ms(fresh.timestamp) is None:
        problems.append(SpecProblem("spec.freshStart.timestamp", f"not an RFC 3339 time: {fresh.timestamp!r}"))
    ref = spec.sink.credentials_secret_ref
    if ref.access_key_key == ref.secret_key_key:
        field = "spec.sink.credentialsSecretRef.secretKeyKey"
        problems.append(SpecProblem(field, "accessKeyKey and secretKeyKey must name different keys"))
    return problems


def to_pipeline_config(pipeline: Pipeline, checkpoint_generation: int) -> PipelineConfig:
    """The PipelineConfig the local stack would run for this spec: the one wiring both share."""
    spec = pipeline.spec
    return PipelineConfig(
        products=spec.products,
        feed=spec.feed,
        windows=spec.windows,
        watermark=spec.watermark,
        trigger=spec.trigger,
        topic=pipeline.topic,
        dlq_topic=pipeline.dlq_topic,
        bucket=spec.sink.bucket,
        prefix=pipeline.lake_prefix,
        checkpoint_generation=checkpoint_generation,
        hold_slack_s=float(hold_slack_seconds(spec.ingestion.hold_slack) or 0),
    )


# -- spec changes and checkpoint generations ------------------------------------------------------


def _legacy_state_fields(spec: PipelineSpec, prefix: str | None = None) -> dict[str, object]:
    """The fields fingerprinted before issue 11 (windows, watermark, sink): a status recorded by an
    older operator still matches them once, so upgrading the operator bumps no generation."""
    return {
        "windows": sorted(parse_duration(w) for w in spec.windows),
        "watermark": parse_duration(spec.watermark),
        "bucket": spec.sink.bucket,
        "prefix": (prefix if prefix is not None else spec.sink.prefix or "").strip("/"),
    }


def _state_fields(spec: PipelineSpec, prefix: str | None = None) -> dict[str, object]:
    """What the Spark checkpoint's state depends on, normalised: reordering windows or writing 60s
    for 1m changes nothing Spark keeps, so it must not throw the state away. ``prefix``: the
    effective lake prefix (Pipeline.lake_prefix) when known, else the spec's own.

    Beyond windows, watermark and sink: the Kafka cluster and topic (the checkpoint's offsets are
    that cluster's), the Spark image and version (the job's code and Spark's state format), and the
    executor layout (the shuffle partitions a checkpoint fixes). With ``upgradeMode: fresh`` also
    the restart nonce and the fresh start: bumping the nonce starts a new generation."""
    fields = _legacy_state_fields(spec, prefix) | {
        "kafka": [kafka_bootstrap(spec), spec.kafka.topic or ""],
        "spark": [spec.spark.image, spec.spark.spark_version],
        "shufflePartitions": shuffle_partitions(spec),
    }
    if spec.upgrade_mode == "fresh":
        fields["fresh"] = [spec.restart_nonce, spec.fresh_start.from_, spec.fresh_start.timestamp]
    return fields


def _fingerprint(fields: dict[str, object]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def state_fingerprint(spec: PipelineSpec, prefix: str) -> str:
    """Recorded in status with the checkpoint generation it started, and in the lake's generation
    record (``prefix``: the effective lake prefix, Pipeline.lake_prefix)."""
    return _fingerprint(_state_fields(spec, prefix))


def classify_change(old: PipelineSpec, new: PipelineSpec) -> ChangeKind:
    """none: nothing changed; compatible: applied in place, the checkpoint is kept (resources,
    ingestion, products, trigger, executor memory, suspend, restartNonce under last-state, ...);
    state_breaking: a field of _state_fields changed, so a new checkpoint generation starts."""
    if old == new:
        return "none"
    return "state_breaking" if _state_fields(old) != _state_fields(new) else "compatible"


def next_checkpoint_generation(status: Mapping[str, Any], spec: PipelineSpec, prefix: str) -> int:
    """The generation to run ``spec`` with, given the status the operator last wrote.

    Compares with the fingerprint recorded in status rather than with the previous spec: a restart
    of the operator between applying the children and writing status computes the same answer, so
    a generation is never skipped nor reused for different state.
    """
    current: int | None = status.get("checkpointGeneration")
    if current is None:
        return 1
    recorded = status.get("stateFingerprint")
    same = recorded == state_fingerprint(spec, prefix)
    if not same and status.get("stateFingerprintVersion") is None:  # written by an older operator
        same = recorded == _fingerprint(_legacy_state_fields(spec, prefix))
    return current if same else current + 1


def checkpoint_status(spec: PipelineSpec, generation: int, prefix: str) -> dict[str, object]:
    """The status fields that record a checkpoint generation (``prefix``: the effective one)."""
    root = LakeLocation(spec.sink.bucket, prefix).checkpoint_root(generation)
    return {
        "checkpointGeneration": generation,
        "checkpointPath": f"s3a://{root}",
        "stateFingerprint": state_fingerprint(spec, prefix),
        "stateFingerprintVersion": STATE_FINGERPRINT_VERSION,
    }


def job_start(spec: PipelineSpec) -> dict[str, str]:
    """Where a new generation's queries start reading (the job's --handover/--starting-offsets):
    under last-state, the hand-over (each window size where the older generations' candles are
    final; earliest for a new size); under fresh, spec.freshStart."""
    fresh = spec.fresh_start
    if spec.upgrade_mode == "last-state" or fresh.from_ == "handover":
        return {"handover": "true", "starting_offsets": "earliest"}
    if fresh.from_ == "timestamp":
        ms = _epoch_ms(fresh.timestamp or "")
        return {"handover": "false", "starting_offsets": str(ms)}
    return {"handover": "false", "starting_offsets": fresh.from_}
