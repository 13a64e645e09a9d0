"""The spec model: field-naming errors, the PipelineConfig it becomes, and what a change costs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cryptopipe.lake.layout import LakeLocation
from cryptopipe.pipeline import PipelineConfig
from cryptopipe_operator.spec import (
    Pipeline,
    SpecError,
    checkpoint_status,
    classify_change,
    lake_spaces_overlap,
    next_checkpoint_generation,
    parse_pipeline,
    parse_spec,
    state_fingerprint,
    to_pipeline_config,
)

BASE_SPEC = yaml.safe_load((Path(__file__).parent / "invalid_specs.yaml").read_text())["base"]


def spec_with(**changes):
    """The base spec with fields replaced; nested ones spelt with __ (sink__bucket)."""
    raw = yaml.safe_load(yaml.safe_dump(BASE_SPEC))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = raw
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    return parse_spec(raw)


def test_errors_name_every_bad_field() -> None:
    raw = BASE_SPEC | {"windows": ["1m", "60s"], "feed": "level2", "suspend": "sometimes"}
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    fields = {p.field for p in caught.value.problems}
    assert fields == {"spec.feed", "spec.suspend"}  # type errors first: rules need a typed spec
    with pytest.raises(SpecError) as caught:
        parse_spec(BASE_SPEC | {"windows": ["1m", "60s"]})
    assert str(caught.value) == "spec.windows[1]: duplicate of spec.windows[0] (60s)"


def test_missing_required_field_is_named() -> None:
    with pytest.raises(SpecError, match=r"^spec\.sink\.credentialsSecretRef: Field required$"):
        parse_spec(BASE_SPEC | {"sink": {"bucket": "lake"}})


def test_pipeline_config_is_what_the_local_stack_runs() -> None:
    body = {"metadata": {"name": "btc", "namespace": "data", "uid": "u-1"}, "spec": BASE_SPEC}
    pipeline = parse_pipeline(body)
    config = to_pipeline_config(pipeline, checkpoint_generation=4)
    assert config == PipelineConfig(
        products=("BTC-USD", "ETH-USD"),
        feed="exchange",
        windows=("1m", "5m"),
        watermark="30s",
        trigger="5s",
        topic="cryptopipe.btc.trades",
        dlq_topic="cryptopipe.btc.trades.dlq",
        bucket="lake",
        prefix="cryptopipelines/data/btc",  # unset spec.sink.prefix: the pipeline's own space
        checkpoint_generation=4,
    )
    assert pipeline.kafka_bootstrap == "lake-kafka-kafka-bootstrap:9092"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (None, "cryptopipelines/data/btc"),
        ("team/btc", "team/btc"),
        ("/team/btc/", "team/btc"),
        ("", "cryptopipelines/data/btc"),
    ],
)
def test_lake_prefix_is_the_pipelines_own_unless_set(prefix: str | None, expected: str) -> None:
    spec = spec_with() if prefix is None else spec_with(sink__prefix=prefix)
    assert Pipeline("btc", "data", "u-1", spec).lake_prefix == expected


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("shared", "shared", True),
        ("shared", "shared/sub", True),
        ("shared/sub/", "/shared", True),
        ("shared", "shared-2", False),
        ("cryptopipe/ns/a", "cryptopipe/ns/ab", False),
        ("cryptopipe/ns/a", "cryptopipe/other/a", False),
        # the older CRD's default prefix and the per-pipeline default spaces never nest
        ("cryptopipe", "cryptopipelines/ns/a", False),
    ],
)
def test_lake_spaces_overlap(a: str, b: str, overlap: bool) -> None:
    assert lake_spaces_overlap(LakeLocation("lake", a), LakeLocation("lake", b)) is overlap
    assert lake_spaces_overlap(LakeLocation("lake", b), LakeLocation("lake", a)) is overlap
    assert not lake_spaces_overlap(LakeLocation("lake", a), LakeLocation("other-bucket", b))


def test_explicit_topic_and_bootstrap_win() -> None:
    spec = spec_with(kafka__topic="coinbase.trades", kafka__bootstrapServers="kafka:9092")
    pipeline = Pipeline("btc", "data", "u-1", spec)
    assert (pipeline.topic, pipeline.dlq_topic, pipeline.kafka_bootstrap) == (
        "coinbase.trades",
        "coinbase.trades.dlq",
        "kafka:9092",
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, "none"),
        ({"products": ["BTC-USD", "SOL-USD"]}, "compatible"),
        ({"trigger": "10s"}, "compatible"),
        ({"suspend": True}, "compatible"),
        ({"deletionPolicy": "Delete"}, "compatible"),
        ({"feed": "advanced_trade"}, "compatible"),
        ({"ingestion__image": "cryptopipe/ingestion:v2"}, "compatible"),
        ({"ingestion__replicas": 2}, "compatible"),
        ({"ingestion__resources": {"limits": {"memory": "512Mi"}}}, "compatible"),
        ({"spark__executor": {"memory": "2g"}}, "compatible"),
        ({"spark__driver": {"cores": 2, "memory": "2g"}}, "compatible"),
        ({"restartNonce": 7}, "compatible"),  # under last-state: a restart on the same checkpoint
        ({"freshStart": {"from": "earliest"}}, "compatible"),  # used only under upgradeMode fresh
        ({"kafka__partitions": 6}, "compatible"),
        ({"sink__endpoint": "http://minio.storage:9000"}, "compatible"),
        # same state, written differently: Spark's checkpoint is still the right one
        ({"windows": ["5m", "1m"]}, "compatible"),
        ({"watermark": "30s"}, "none"),
        ({"windows": ["1m", "5m", "15m"]}, "state_breaking"),
        ({"windows": ["1m"]}, "state_breaking"),
        ({"watermark": "45s"}, "state_breaking"),
        ({"sink__bucket": "lake2"}, "state_breaking"),
        ({"sink__prefix": "candles-v2"}, "state_breaking"),
        # the checkpoint's offsets are this cluster's and topic's
        ({"kafka__bootstrapServers": "other-kafka:9092"}, "state_breaking"),
        ({"kafka__clusterName": "other"}, "state_breaking"),
        ({"kafka__topic": "other.trades"}, "state_breaking"),
        # the job's code and Spark's state format
        ({"spark__image": "cryptopipe/spark-job:v2"}, "state_breaking"),
        ({"spark__sparkVersion": "4.2.0"}, "state_breaking"),
        # the shuffle partitions a checkpoint fixes (cores x instances)
        ({"spark__executor": {"instances": 3, "memory": "2g"}}, "state_breaking"),
        ({"spark__executor": {"cores": 2}}, "state_breaking"),
        ({"upgradeMode": "fresh"}, "state_breaking"),
    ],
)
def test_classify_change(change: dict, expected: str) -> None:
    assert classify_change(spec_with(), spec_with(**change)) == expected


P = "cryptopipe"  # the effective lake prefix (Pipeline.lake_prefix)


def test_checkpoint_generation_follows_the_recorded_state() -> None:
    first = spec_with()
    assert next_checkpoint_generation({}, first, P) == 1
    status = checkpoint_status(first, 1, P)
    assert status["checkpointPath"] == "s3a://lake/cryptopipe/_checkpoints/gen-1"
    # compatible change: same generation
    assert next_checkpoint_generation(status, spec_with(products=["SOL-USD"]), P) == 1
    # state-breaking change: the next one, and again the same answer when asked again before
    # status was written (an operator restarted mid-change must not skip a generation)
    changed = spec_with(windows=["1m", "15m"])
    assert next_checkpoint_generation(status, changed, P) == 2
    assert next_checkpoint_generation(status, changed, P) == 2
    recorded = checkpoint_status(changed, 2, P)
    assert next_checkpoint_generation(recorded, changed, P) == 2
    # going back to the old windows is a new state too: the old checkpoint has moved on meanwhile
    assert next_checkpoint_generation(recorded, first, P) == 3


def test_a_nonce_under_fresh_is_a_new_generation_under_last_state_not() -> None:
    fresh = spec_with(upgradeMode="fresh")
    assert classify_change(fresh, spec_with(upgradeMode="fresh", restartNonce=1)) == "state_breaking"
    assert classify_change(spec_with(), spec_with(restartNonce=1)) == "compatible"


def test_a_status_of_an_older_operator_keeps_its_generation_once() -> None:
    """An operator upgrade must not bump every pipeline's generation: a status without
    stateFingerprintVersion matches the old fields' fingerprint, once."""
    from cryptopipe_operator.spec import _fingerprint, _legacy_state_fields

    spec = spec_with()
    old_status = {"checkpointGeneration": 4, "stateFingerprint": _fingerprint(_legacy_state_fields(spec, P))}
    assert next_checkpoint_generation(old_status, spec, P) == 4
    assert next_checkpoint_generation(old_status, spec_with(spark__image="cryptopipe/spark-job:v2"), P) == 4
    recorded = checkpoint_status(spec, 4, P)
    assert next_checkpoint_generation(recorded, spec_with(spark__image="cryptopipe/spark-job:v2"), P) == 5
    assert next_checkpoint_generation(old_status, spec_with(watermark="45s"), P) == 5


def test_fresh_start_needs_a_timestamp_exactly_when_from_timestamp() -> None:
    with pytest.raises(SpecError, match=r"spec.freshStart.timestamp"):
        spec_with(freshStart={"from": "timestamp"})
    with pytest.raises(SpecError, match=r"spec.freshStart.timestamp"):
        spec_with(freshStart={"from": "earliest", "timestamp": "2026-12-01T00:00:00Z"})
    with pytest.raises(SpecError, match=r"spec.freshStart.timestamp"):
        spec_with(freshStart={"from": "timestamp", "timestamp": "yesterday"})


def test_fingerprint_ignores_what_the_checkpoint_does_not_hold() -> None:
    assert state_fingerprint(spec_with(), P) == state_fingerprint(spec_with(trigger="1m", products=["SOL-USD"]), P)
    assert state_fingerprint(spec_with(), P) != state_fingerprint(spec_with(watermark="31s"), P)
    assert state_fingerprint(spec_with(), P) != state_fingerprint(spec_with(), "cryptopipelines/data/eth")


def test_monitor_is_off_by_default_with_the_documented_defaults() -> None:
    monitor = spec_with().monitor
    assert monitor.enabled is False and monitor.image is None
    assert (monitor.interval, monitor.lookback, monitor.stale_after) == ("60s", "2h", "5m")
    assert (monitor.price_sigma, monitor.volume_factor, monitor.min_history) == (4, 10, 20)
    assert monitor.resources.requests.as_dict() == {"cpu": "100m", "memory": "128Mi"}
    assert monitor.resources.limits.as_dict() == {"memory": "512Mi"}


@pytest.mark.parametrize(
    ("monitor", "field"),
    [
        ({"interval": "1 min"}, "spec.monitor.interval"),
        ({"lookback": "two hours"}, "spec.monitor.lookback"),
        ({"staleAfter": "0s"}, "spec.monitor.staleAfter"),
        ({"priceSigma": 0}, "spec.monitor.priceSigma"),
        ({"volumeFactor": 1}, "spec.monitor.volumeFactor"),
        ({"minHistory": 2}, "spec.monitor.minHistory"),
        ({"enabled": True, "imagePullPolicy": "Sometimes"}, "spec.monitor.imagePullPolicy"),
        ({"enabeld": True}, "spec.monitor.enabeld"),
    ],
)
def test_monitor_problems_name_the_field(monitor: dict, field: str) -> None:
    """What the model refuses on its own (a spec that never passed the API server)."""
    with pytest.raises(SpecError) as caught:
        parse_spec(BASE_SPEC | {"monitor": monitor})
    assert [p.field for p in caught.value.problems] == [field]


def test_turning_the_monitor_on_or_off_keeps_the_checkpoint() -> None:
    assert classify_change(spec_with(), spec_with(monitor={"enabled": True})) == "compatible"
    assert (
        classify_change(spec_with(monitor={"enabled": True}), spec_with(monitor={"enabled": True, "lookback": "6h"}))
        == "compatible"
    )


KAFKA_TLS = {"caSecretRef": {"name": "lake-kafka-cluster-ca-cert"}}
KAFKA_SCRAM = {"username": "ingest", "passwordSecretRef": {"name": "ingest"}}


@pytest.mark.parametrize(
    ("tls", "authentication", "protocol", "bootstrap"),
    [
        (None, None, "PLAINTEXT", "lake-kafka-kafka-bootstrap:9092"),
        (KAFKA_TLS, None, "SSL", "lake-kafka-kafka-bootstrap:9093"),
        (None, KAFKA_SCRAM, "SASL_PLAINTEXT", "lake-kafka-kafka-bootstrap:9092"),
        (KAFKA_TLS, KAFKA_SCRAM, "SASL_SSL", "lake-kafka-kafka-bootstrap:9093"),
    ],
)
def test_kafka_security_protocol_and_default_listener(
    tls: dict | None, authentication: dict | None, protocol: str, bootstrap: str
) -> None:
    spec = spec_with(kafka__tls=tls, kafka__authentication=authentication)
    pipeline = Pipeline("btc", "data", "u-1", spec)
    assert (spec.kafka.security_protocol, pipeline.kafka_bootstrap) == (protocol, bootstrap)


def test_kafka_secret_refs_default_to_strimzis_keys() -> None:
    spec = spec_with(kafka__tls=KAFKA_TLS, kafka__authentication=KAFKA_SCRAM | {"type": "scram-sha-256"})
    assert spec.kafka.tls is not None and spec.kafka.authentication is not None
    assert spec.kafka.tls.ca_secret_ref.key == "ca.crt"
    assert spec.kafka.authentication.password_secret_ref.key == "password"
    assert spec.kafka.authentication.type == "scram-sha-256"


def test_inline_kafka_password_is_refused_by_name() -> None:
    with pytest.raises(SpecError) as caught:
        spec_with(kafka__authentication=KAFKA_SCRAM | {"password": "hunter2"})
    assert [p.field for p in caught.value.problems] == ["spec.kafka.authentication.password"]
    assert "hunter2" not in str(caught.value)
