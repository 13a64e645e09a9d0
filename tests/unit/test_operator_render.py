"""The children a CryptoPipeline renders: accepted by their upstream schemas, owned, labelled,
locked down, and running exactly the local stack's command, env and arguments."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from candles_job.settings import JobSettings, parse_args
from cryptopipe.ingest.settings import ENV_PREFIX, IngestSettings
from cryptopipe.pipeline import job_arguments
from cryptopipe_dev import crd
from cryptopipe_operator.render import (
    ChildRef,
    apply_stages,
    render_children,
    render_dlq_topic,
    render_ingestion_deployment,
    render_kafka_topic,
    render_monitor_deployment,
    render_spark_application,
    render_state_topic,
    unwanted_children,
)
from cryptopipe_operator.spec import Pipeline, hold_slack_seconds, parse_spec, state_fingerprint, to_pipeline_config

BASE_SPEC = yaml.safe_load((Path(__file__).parent / "invalid_specs.yaml").read_text())["base"]
UPSTREAM_SCHEMAS = {
    "KafkaTopic": crd.upstream_schema("strimzi-0.51.0-043-Crd-kafkatopic.yaml", "v1"),
    "SparkApplication": crd.upstream_schema(
        "spark-operator-v2.5.2-sparkoperator.k8s.io_sparkapplications.yaml", "v1beta2"
    ),
}


def pipeline(**spec_changes) -> Pipeline:
    return Pipeline("btc", "data", "9b1c-uid", parse_spec(BASE_SPEC | spec_changes))


VARIANTS = {
    "base": pipeline(),
    "suspended": pipeline(suspend=True),
    "aws-and-options": pipeline(
        sink={"bucket": "candles", "prefix": "team/a", "region": "eu-west-1", "credentialsSecretRef": {"name": "aws"}},
        kafka={"clusterName": "prod", "topic": "coinbase.trades", "partitions": 12},
        ingestion={"image": "i:1", "replicas": 2, "wsUrl": "ws://replay:8765", "restUrl": "http://replay:8766"},
        spark={"image": "s:1", "executor": {"instances": 3, "cores": 2}},
    ),
    "monitored": pipeline(monitor={"enabled": True}),
    "monitored-aws-suspended": pipeline(
        suspend=True,
        sink={
            "bucket": "candles",
            "prefix": "team/a",
            "region": "eu-west-1",
            "credentialsSecretRef": {"name": "aws", "accessKeyKey": "id", "secretKeyKey": "key"},
        },
        windows=["5m", "1h"],
        products=["SOL-USD"],
        monitor={
            "enabled": True,
            "image": "m:2",
            "imagePullPolicy": "Always",
            "interval": "30s",
            "lookback": "6h",
            "staleAfter": "15m",
            "priceSigma": 3.5,
            "volumeFactor": 20,
            "minHistory": 50,
            "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
        },
    ),
    "kafka-sasl-ssl": pipeline(
        kafka={
            "clusterName": "prod",
            "tls": {"caSecretRef": {"name": "prod-cluster-ca-cert"}},
            "authentication": {"username": "btc-ingest", "passwordSecretRef": {"name": "btc-ingest", "key": "pw"}},
        },
        monitor={"enabled": True},
    ),
}
MONITORED = ("monitored", "monitored-aws-suspended")


def all_children() -> list:
    return [
        pytest.param(p, child, id=f"{variant}-{child['kind']}-{child['metadata']['name']}")
        for variant, p in VARIANTS.items()
        for child in render_children(p, checkpoint_generation=3)
    ]


def string_leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from string_leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from string_leaves(item)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize(("p", "child"), all_children())
def test_every_child_is_owned_and_labelled(p: Pipeline, child: dict) -> None:
    meta = child["metadata"]
    assert meta["namespace"] == p.namespace and meta["name"].startswith(f"{p.name}-")
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "cryptopipeline.io/v1alpha1",
            "kind": "CryptoPipeline",
            "name": p.name,
            "uid": p.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"]["app.kubernetes.io/instance"] == p.name
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "cryptopipe-operator"
    assert meta["labels"]["app.kubernetes.io/part-of"] == "cryptopipe"
    assert meta["labels"]["app.kubernetes.io/name"].startswith("cryptopipe-")
    # the stand-ins render_spark uses to find secret entries never reach a manifest
    assert not any("\0" in text for text in string_leaves(child))


@pytest.mark.parametrize(("p", "child"), [c for c in all_children() if c.values[1]["kind"] in UPSTREAM_SCHEMAS])
def test_upstream_schema_accepts(p: Pipeline, child: dict) -> None:
    assert crd.schema_problems(UPSTREAM_SCHEMAS[child["kind"]], child) == []


def test_schema_check_is_not_blind() -> None:
    """The checker used above does reject a child its upstream CRD would refuse or prune."""
    app = render_spark_application(pipeline(), 1)
    app["spec"]["mode"] = "local"
    app["spec"]["driver"]["serviceAcount"] = "typo"
    del app["spec"]["sparkVersion"]
    fields = {p.field for p in crd.schema_problems(UPSTREAM_SCHEMAS["SparkApplication"], app)}
    assert fields == {"spec.mode", "spec.driver.serviceAcount", "spec.sparkVersion"}


def test_kafka_topics() -> None:
    p = VARIANTS["aws-and-options"]
    topic, dlq = render_kafka_topic(p), render_dlq_topic(p)
    assert topic["apiVersion"] == dlq["apiVersion"] == "kafka.strimzi.io/v1"
    assert (
        topic["metadata"]["labels"]["strimzi.io/cluster"] == dlq["metadata"]["labels"]["strimzi.io/cluster"] == "prod"
    )
    assert topic["spec"] == {
        "topicName": "coinbase.trades",
        "partitions": 12,
        "config": {"retention.ms": 604_800_000, "cleanup.policy": "delete"},
    }
    assert dlq["spec"]["topicName"] == "coinbase.trades.dlq"
    assert dlq["spec"]["config"]["retention.ms"] == 2_592_000_000
    # replicas given: both topics carry it; not given, the cluster's default applies
    assert render_kafka_topic(pipeline())["spec"]["replicas"] == 1
    assert "replicas" not in render_kafka_topic(pipeline(kafka={"clusterName": "k"}))["spec"]


def test_the_ingest_state_topic_is_compacted_and_kept() -> None:
    state = render_state_topic(VARIANTS["aws-and-options"])
    assert state["metadata"]["name"].endswith("-ingest-state")
    assert state["spec"]["topicName"] == "coinbase.trades.ingest-state"
    assert state["spec"]["partitions"] == 1
    # compacted, no retention.ms: a quiet product's resume point must outlive any age limit
    assert state["spec"]["config"] == {"cleanup.policy": "compact"}
    assert state in render_children(VARIANTS["aws-and-options"], 1)


def min_insync(**kafka: object) -> object:
    topic, dlq = (
        render(pipeline(kafka={"clusterName": "k", **kafka})) for render in (render_kafka_topic, render_dlq_topic)
    )
    assert topic["spec"]["config"].get("min.insync.replicas") == dlq["spec"]["config"].get("min.insync.replicas")
    return topic["spec"]["config"].get("min.insync.replicas")


def test_topics_say_how_many_copies_acks_all_waits_for() -> None:
    # with replicas known, both topics carry min.insync.replicas: replicas - 1, within [1, 2]
    assert [min_insync(replicas=r) for r in (1, 2, 3, 5)] == [1, 1, 2, 2]
    assert min_insync(replicas=3, minInsyncReplicas=3) == 3
    # unknown replicas: the cluster's defaults apply and nothing is rendered
    assert min_insync() is None


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("p", VARIANTS.values(), ids=VARIANTS.keys())
def test_ingestion_env_is_the_settings_contract(p: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    # a secretKeyRef's value as the kubelet would give it
    env = {e["name"]: e.get("value", "from-secret") for e in container(render_ingestion_deployment(p))["env"]}
    settings_names = {ENV_PREFIX + name.upper() for name in IngestSettings.model_fields}
    assert set(env) <= settings_names
    # and the process would read back the spec's values from it
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = IngestSettings()
    assert tuple(settings.products) == p.spec.products
    assert (settings.feed, settings.topic, settings.dlq_topic) == (p.spec.feed, p.topic, p.dlq_topic)
    assert settings.kafka_bootstrap == p.kafka_bootstrap
    assert settings.ws_url == (p.spec.ingestion.ws_url or settings.ws_url)
    assert settings.hold_slack_s == hold_slack_seconds(p.spec.ingestion.hold_slack)


def test_ingestion_container() -> None:
    deployment = render_ingestion_deployment(VARIANTS["base"])
    c = container(deployment)
    assert c["command"] == ["python", "-m", "cryptopipe.ingest"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    (port,) = c["ports"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert port["name"] == "metrics" and str(port["containerPort"]) == env["CRYPTOPIPE_INGEST_HTTP_PORT"]
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod = deployment["spec"]["template"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize(
    ("variant", "replicas", "suspend"), [("base", 1, False), ("suspended", 0, True), ("aws-and-options", 2, False)]
)
def test_suspend_stops_both(variant: str, replicas: int, suspend: bool) -> None:
    p = VARIANTS[variant]
    assert render_ingestion_deployment(p)["spec"]["replicas"] == replicas
    assert render_spark_application(p, 1)["spec"]["suspend"] is suspend


@pytest.mark.parametrize("p", VARIANTS.values(), ids=VARIANTS.keys())
def test_spark_application_runs_the_local_job(p: Pipeline) -> None:
    app = render_spark_application(p, checkpoint_generation=7)["spec"]
    assert (app["type"], app["mode"]) == ("Python", "cluster")
    assert app["mainApplicationFile"] == "local:///opt/cryptopipe/spark-apps/candles_job/main.py"
    executor = p.spec.spark.executor
    assert app["arguments"] == job_arguments(
        to_pipeline_config(p, 7),
        kafka_bootstrap=p.kafka_bootstrap,
        s3_endpoint=p.spec.sink.endpoint,
        metrics_port=9108,
        shuffle_partitions=executor.cores * executor.instances,
        state_fingerprint=state_fingerprint(p.spec, p.lake_prefix),
        pipeline_uid=p.uid,
    )
    # the job parses them (credentials from env, as the Secret would give them)
    settings: JobSettings = parse_args(app["arguments"] + ["--s3-access-key", "a", "--s3-secret-key", "b"])
    assert settings.checkpoint_location("1m").endswith("/_checkpoints/gen-7/window=1m")
    assert settings.topic == p.topic and settings.windows == list(p.spec.windows)
    assert app["executor"]["instances"] == executor.instances
    assert app["restartPolicy"]["type"] == "Always"
    assert (settings.state_fingerprint, settings.pipeline_uid, settings.handover) == (
        state_fingerprint(p.spec, p.lake_prefix),
        p.uid,
        True,
    )


def test_restart_nonce_and_fresh_start_reach_the_spark_application() -> None:
    base = VARIANTS["base"]
    assert "annotations" not in render_spark_application(base, 1)["spec"]["driver"]
    restarted = dataclasses.replace(base, spec=base.spec.model_copy(update={"restart_nonce": 3}))
    driver = render_spark_application(restarted, 1)["spec"]["driver"]
    assert driver["annotations"] == {"cryptopipeline.io/restart-nonce": "3"}
    fresh = parse_spec(
        base.spec.model_dump(by_alias=True, exclude_none=True)
        | {"upgradeMode": "fresh", "freshStart": {"from": "timestamp", "timestamp": "2026-12-01T00:00:00Z"}}
    )
    args = render_spark_application(dataclasses.replace(base, spec=fresh), 2)["spec"]["arguments"]
    settings = parse_args(args + ["--s3-access-key", "a", "--s3-secret-key", "b"])
    assert (settings.handover, settings.starting_offsets) == (False, "1796083200000")  # 2026-12-01T00:00:00Z in ms


def test_spark_pods_carry_the_restricted_profile() -> None:
    """spark-operator's webhook copies these onto the driver and executor pods: without every one of
    them a namespace enforcing the restricted Pod Security Standard refuses the pods."""
    app = render_spark_application(VARIANTS["base"], 1)["spec"]
    for pod in (app["driver"], app["executor"]):
        assert pod["podSecurityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        assert pod["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }


def test_spark_core_request_only_when_set() -> None:
    base = render_spark_application(VARIANTS["base"], 1)["spec"]
    assert "coreRequest" not in base["driver"] and "coreRequest" not in base["executor"]
    small = pipeline(
        spark={"image": "s:1", "driver": {"coreRequest": "400m"}, "executor": {"coreRequest": "1", "cores": 2}}
    )
    app = render_spark_application(small, 1)
    assert (app["spec"]["driver"]["coreRequest"], app["spec"]["driver"]["cores"]) == ("400m", 1)
    assert (app["spec"]["executor"]["coreRequest"], app["spec"]["executor"]["cores"]) == ("1", 2)
    assert crd.schema_problems(UPSTREAM_SCHEMAS["SparkApplication"], app) == []


def test_spark_credentials_come_from_the_secret() -> None:
    p = VARIANTS["aws-and-options"]
    app = render_spark_application(p, 1)["spec"]
    for pod in (app["driver"], app["executor"]):
        env = {e["name"]: e for e in pod["env"]}
        assert env["CRYPTOPIPE_JOB_S3_ACCESS_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "aws", "key": "accessKey"}}
        assert env["CRYPTOPIPE_JOB_S3_SECRET_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "aws", "key": "secretKey"}}
        assert env["CRYPTOPIPE_JOB_S3_REGION"]["value"] == "eu-west-1"
        assert pod["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["podSecurityContext"]["runAsNonRoot"] is True
    conf = app["sparkConf"]
    assert not any(key.endswith((".access.key", ".secret.key")) for key in conf)
    assert "spark.master" not in conf and "spark.driver.memory" not in conf
    assert conf["spark.sql.shuffle.partitions"] == "6" and conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"
    assert "spark.hadoop.fs.s3a.endpoint" not in conf  # AWS: no endpoint override
    minio = render_spark_application(VARIANTS["base"], 1)["spec"]["sparkConf"]
    assert minio["spark.hadoop.fs.s3a.endpoint"] == "http://minio:9000"
    assert minio["spark.hadoop.fs.s3a.path.style.access"] == "true"


def test_driver_is_bound_to_the_spark_driver_cluster_role() -> None:
    children = {c["kind"]: c for c in render_children(VARIANTS["base"], 1, spark_driver_role="rel-spark-driver")}
    account = children["ServiceAccount"]["metadata"]["name"]
    assert children["SparkApplication"]["spec"]["driver"]["serviceAccount"] == account
    binding = children["RoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "data"}]
    # the chart's ClusterRole, bound in the pipeline's namespace; no Role of the operator's making
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "rel-spark-driver",
    }
    assert "Role" not in children
    # a roleRef is immutable: the new binding's name is not the old Role binding's (deleted instead)
    assert binding["metadata"]["name"] == "btc-spark-driver" != account
    assert {(r.kind, r.name) for r in unwanted_children(VARIANTS["base"])} >= {
        ("Role", account),
        ("RoleBinding", account),
    }
    service = children["Service"]
    assert service["spec"]["selector"] == children["Deployment"]["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_only_the_spark_application_depends_on_the_checkpoint_generation() -> None:
    p = VARIANTS["base"]
    first, second = render_children(p, 1), render_children(p, 2)
    changed = [a["kind"] for a, b in zip(first, second, strict=False) if a != b]
    assert changed == ["SparkApplication"]


# -- the lake monitor ------------------------------------------------------------------------------

# the monitor's settings contract (CRYPTOPIPE_MONITOR_*, read by `cryptopipe monitor serve`)
MONITOR_SETTINGS = {
    "KAFKA_BOOTSTRAP",
    "DLQ_TOPIC",
    "S3_ENDPOINT",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "S3_REGION",
    "BUCKET",
    "PREFIX",
    "PRODUCTS",
    "WINDOWS",
    "LOOKBACK",
    "INTERVAL",
    "STALE_AFTER",
    "PRICE_SIGMA",
    "VOLUME_FACTOR",
    "MIN_HISTORY",
    "HTTP_HOST",
    "HTTP_PORT",
    "LOG_LEVEL",
}


def monitor_env(deployment: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(deployment)["env"]}


def test_monitor_is_rendered_only_when_enabled() -> None:
    def monitors(p: Pipeline) -> list[str]:
        return [c["metadata"]["name"] for c in render_children(p, 1) if c["metadata"]["name"].endswith("-lake-monitor")]

    assert monitors(VARIANTS["base"]) == [] and monitors(VARIANTS["suspended"]) == []
    assert monitors(VARIANTS["monitored"]) == ["btc-lake-monitor"]
    # off: the reconcile deletes a monitor an earlier spec created, by name and component label
    legacy_rbac = [
        ChildRef("rbac.authorization.k8s.io/v1", "RoleBinding", "btc-spark", "spark"),
        ChildRef("rbac.authorization.k8s.io/v1", "Role", "btc-spark", "spark"),
    ]
    assert unwanted_children(VARIANTS["base"]) == [
        ChildRef("apps/v1", "Deployment", "btc-lake-monitor", "lake-monitor"),
        *legacy_rbac,
    ]
    assert unwanted_children(VARIANTS["monitored"]) == legacy_rbac
    # and nothing rendered is ever in the list of children to delete
    for p in VARIANTS.values():
        rendered = {(c["kind"], c["metadata"]["name"]) for c in render_children(p, 1)}
        assert not rendered & {(r.kind, r.name) for r in unwanted_children(p)}


@pytest.mark.parametrize("variant", MONITORED)
def test_monitor_env_is_the_settings_contract(variant: str) -> None:
    p = VARIANTS[variant]
    env = monitor_env(render_monitor_deployment(p))
    assert {name.removeprefix("CRYPTOPIPE_MONITOR_") for name in env} <= MONITOR_SETTINGS
    assert all(name.startswith("CRYPTOPIPE_MONITOR_") for name in env)
    values = {name.removeprefix("CRYPTOPIPE_MONITOR_"): e.get("value") for name, e in env.items()}
    sink, monitor = p.spec.sink, p.spec.monitor
    assert (values["BUCKET"], values["PREFIX"], values["S3_REGION"]) == (sink.bucket, p.lake_prefix, sink.region)
    assert values.get("S3_ENDPOINT") == sink.endpoint  # unset for AWS
    assert values["PRODUCTS"].split(",") == list(p.spec.products)
    assert values["WINDOWS"].split(",") == list(p.spec.windows)
    assert (values["INTERVAL"], values["LOOKBACK"], values["STALE_AFTER"]) == (
        monitor.interval,
        monitor.lookback,
        monitor.stale_after,
    )
    assert (
        float(values["PRICE_SIGMA"]) == monitor.price_sigma and float(values["VOLUME_FACTOR"]) == monitor.volume_factor
    )
    assert int(values["MIN_HISTORY"]) == monitor.min_history
    assert values["HTTP_HOST"] == "0.0.0.0"
    # the ingestion's counted-unfillable trade ids are read from its dead-letter topic
    assert (values["KAFKA_BOOTSTRAP"], values["DLQ_TOPIC"]) == (p.kafka_bootstrap, p.dlq_topic)
    (port,) = container(render_monitor_deployment(p))["ports"]
    assert (port["name"], str(port["containerPort"])) == ("metrics", values["HTTP_PORT"])


@pytest.mark.parametrize("variant", MONITORED)
def test_monitor_reads_the_spec_back_from_its_env(variant: str) -> None:
    """The monitor's own settings loader accepts the rendered env and sees the spec's values."""
    from cryptopipe.monitor.settings import load_settings

    p = VARIANTS[variant]
    env = {e["name"]: e.get("value", "from-the-secret") for e in container(render_monitor_deployment(p))["env"]}
    settings = load_settings(env)
    assert (settings.bucket, settings.prefix, settings.s3_region) == (
        p.spec.sink.bucket,
        p.lake_prefix,
        p.spec.sink.region,
    )
    assert settings.s3_endpoint == p.spec.sink.endpoint
    assert tuple(settings.products) == p.spec.products and tuple(settings.windows) == p.spec.windows
    monitor = p.spec.monitor
    assert (settings.interval, settings.lookback, settings.stale_after) == (
        monitor.interval,
        monitor.lookback,
        monitor.stale_after,
    )
    assert (settings.price_sigma, settings.volume_factor, settings.min_history) == (
        monitor.price_sigma,
        monitor.volume_factor,
        monitor.min_history,
    )
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 8080)


def test_monitor_defaults_in_env() -> None:
    values = {e["name"]: e.get("value") for e in container(render_monitor_deployment(VARIANTS["monitored"]))["env"]}
    expected = {
        "CRYPTOPIPE_MONITOR_S3_ENDPOINT": "http://minio:9000",
        "CRYPTOPIPE_MONITOR_S3_REGION": "us-east-1",
        "CRYPTOPIPE_MONITOR_BUCKET": "lake",
        "CRYPTOPIPE_MONITOR_PREFIX": "cryptopipelines/data/btc",  # the pipeline's own space
        "CRYPTOPIPE_MONITOR_PRODUCTS": "BTC-USD,ETH-USD",
        "CRYPTOPIPE_MONITOR_WINDOWS": "1m,5m",
        "CRYPTOPIPE_MONITOR_LOOKBACK": "2h",
        "CRYPTOPIPE_MONITOR_INTERVAL": "60s",
        "CRYPTOPIPE_MONITOR_STALE_AFTER": "5m",
        "CRYPTOPIPE_MONITOR_MIN_HISTORY": "20",
        "CRYPTOPIPE_MONITOR_HTTP_PORT": "8080",
    }
    assert values.items() >= expected.items()
    assert (
        float(values["CRYPTOPIPE_MONITOR_PRICE_SIGMA"]) == 4 and float(values["CRYPTOPIPE_MONITOR_VOLUME_FACTOR"]) == 10
    )


@pytest.mark.parametrize(
    ("variant", "secret", "access", "secret_key"),
    [
        ("monitored", "lake-credentials", "accessKey", "secretKey"),
        ("monitored-aws-suspended", "aws", "id", "key"),
    ],
)
def test_monitor_credentials_come_from_the_secret(variant: str, secret: str, access: str, secret_key: str) -> None:
    p = VARIANTS[variant]
    env = monitor_env(render_monitor_deployment(p))
    assert env["CRYPTOPIPE_MONITOR_S3_ACCESS_KEY"] == {
        "name": "CRYPTOPIPE_MONITOR_S3_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": secret, "key": access}},
    }
    assert env["CRYPTOPIPE_MONITOR_S3_SECRET_KEY"] == {
        "name": "CRYPTOPIPE_MONITOR_S3_SECRET_KEY",
        "valueFrom": {"secretKeyRef": {"name": secret, "key": secret_key}},
    }
    # exactly as the Spark job gets them
    job_env = {e["name"]: e for e in render_spark_application(p, 1)["spec"]["driver"]["env"]}
    assert env["CRYPTOPIPE_MONITOR_S3_ACCESS_KEY"]["valueFrom"] == job_env["CRYPTOPIPE_JOB_S3_ACCESS_KEY"]["valueFrom"]
    assert env["CRYPTOPIPE_MONITOR_S3_SECRET_KEY"]["valueFrom"] == job_env["CRYPTOPIPE_JOB_S3_SECRET_KEY"]["valueFrom"]
    # nothing else is secret: every other entry is a literal
    assert [n for n, e in env.items() if "value" not in e] == [
        "CRYPTOPIPE_MONITOR_S3_ACCESS_KEY",
        "CRYPTOPIPE_MONITOR_S3_SECRET_KEY",
    ]


def test_monitor_deployment() -> None:
    p = VARIANTS["monitored"]
    deployment = render_monitor_deployment(p)
    meta = deployment["metadata"]
    assert (meta["name"], meta["namespace"]) == ("btc-lake-monitor", "data")
    assert meta["labels"]["app.kubernetes.io/component"] == "lake-monitor"
    assert meta["labels"]["app.kubernetes.io/name"] == "cryptopipe-lake-monitor"
    assert meta["ownerReferences"][0]["uid"] == p.uid and meta["ownerReferences"][0]["controller"] is True
    c = container(deployment)
    assert c["command"] == ["python", "-m", "cryptopipe.monitor"]
    # the image defaults to the ingestion's (it holds the cryptopipe package)
    assert (c["image"], c["imagePullPolicy"]) == ("cryptopipe/ingestion:dev", "IfNotPresent")
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod = deployment["spec"]["template"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True and pod["spec"]["securityContext"]["runAsUser"] > 0
    assert pod["spec"]["automountServiceAccountToken"] is False
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    # its pods are not the ingestion's: neither selector picks the other's pods
    ingestion = render_ingestion_deployment(p)
    assert not ingestion["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert not selector.items() <= ingestion["spec"]["template"]["metadata"]["labels"].items()
    assert deployment["spec"]["replicas"] == 1


def test_monitor_options_and_suspend() -> None:
    deployment = render_monitor_deployment(VARIANTS["monitored-aws-suspended"])
    c = container(deployment)
    assert (c["image"], c["imagePullPolicy"]) == ("m:2", "Always")
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "1Gi"},
    }
    assert deployment["spec"]["replicas"] == 0  # suspend stops it with the ingestion


def test_network_policies_fence_the_pipeline_and_pin_the_ingestion_egress() -> None:
    p = VARIANTS["aws-and-options"]
    children = {(c["kind"], c["metadata"]["name"]): c for c in render_children(p, 1)}
    ingress = children[("NetworkPolicy", "btc-ingress")]["spec"]
    egress = children[("NetworkPolicy", "btc-ingestion-egress")]["spec"]
    pipeline_pods = {"app.kubernetes.io/instance": "btc", "app.kubernetes.io/part-of": "cryptopipe"}
    assert ingress["podSelector"] == {"matchLabels": pipeline_pods}
    # the pipeline's own pods on any port (Spark's driver and executors); the monitoring namespace
    # only on the metrics ports; nothing else, so the Spark UI (4040) is unreachable from outside
    own, metrics = ingress["ingress"]
    assert own == {"from": [{"podSelector": {"matchLabels": pipeline_pods}}]}
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert {port["port"] for port in metrics["ports"]} == {8080, 9108}
    # the ingestion reaches DNS, Kafka's bootstrap port and the feed's ports (the replay server here)
    assert egress["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "ingestion"
    assert egress["policyTypes"] == ["Egress"]
    ports = {(rule["protocol"], rule["port"]) for entry in egress["egress"] for rule in entry["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 9092), ("TCP", 8765), ("TCP", 8766)}
    # Coinbase's default URLs are wss/https: 443
    (default,) = [c for c in render_children(pipeline(), 1) if c["metadata"]["name"] == "btc-ingestion-egress"]
    default_ports = {rule["port"] for entry in default["spec"]["egress"] for rule in entry["ports"]}
    assert default_ports == {53, 9092, 443}


def test_network_policies_can_be_turned_off_and_are_then_unwanted() -> None:
    p = pipeline(networkPolicy={"enabled": False})
    assert not [c for c in render_children(p, 1) if c["kind"] == "NetworkPolicy"]
    assert {(ref.kind, ref.name) for ref in unwanted_children(p)} >= {
        ("NetworkPolicy", "btc-ingress"),
        ("NetworkPolicy", "btc-ingestion-egress"),
    }
    assert not [ref for ref in unwanted_children(pipeline()) if ref.kind == "NetworkPolicy"]


def test_spark_ui_cannot_kill_jobs() -> None:
    assert render_spark_application(pipeline(), 1)["spec"]["sparkConf"]["spark.ui.killEnabled"] == "false"


def _env_entries(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c["env"]}


def test_ingestion_authenticates_with_the_secrets_by_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    p = VARIANTS["kafka-sasl-ssl"]
    deployment = render_ingestion_deployment(p)
    c = container(deployment)
    env = _env_entries(c)
    assert env["CRYPTOPIPE_INGEST_KAFKA_SASL_PASSWORD"] == {
        "name": "CRYPTOPIPE_INGEST_KAFKA_SASL_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "btc-ingest", "key": "pw"}},
    }
    assert env["CRYPTOPIPE_INGEST_KAFKA_BOOTSTRAP"]["value"] == "prod-kafka-bootstrap:9093"  # Strimzi's tls listener
    # the CA Secret's key mounted read-only where the settings point
    assert {"name": "kafka-ca", "mountPath": "/etc/cryptopipe/kafka-ca", "readOnly": True} in c["volumeMounts"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-ca"]["secret"]["secretName"] == "prod-cluster-ca-cert"
    assert volumes["kafka-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    for entry in env.values():
        if "value" in entry:
            monkeypatch.setenv(entry["name"], entry["value"])
    monkeypatch.setenv("CRYPTOPIPE_INGEST_KAFKA_SASL_PASSWORD", "from-secret")
    assert IngestSettings().kafka_security.kafka_python() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "btc-ingest",
        "sasl_plain_password": "from-secret",
        "ssl_cafile": "/etc/cryptopipe/kafka-ca/ca.crt",
    }


def test_plaintext_pipelines_render_no_kafka_security() -> None:
    for p in (VARIANTS["base"], VARIANTS["monitored"]):
        for child in render_children(p, checkpoint_generation=1):
            assert not any("KAFKA_SASL" in leaf or "kafka-ca" in leaf for leaf in string_leaves(child))


def test_spark_job_builds_its_kafka_options_from_the_rendered_env(monkeypatch: pytest.MonkeyPatch) -> None:
    p = VARIANTS["kafka-sasl-ssl"]
    app = render_spark_application(p, 1)["spec"]
    for pod in (app["driver"], app["executor"]):
        env = _env_entries(pod)
        password = env["CRYPTOPIPE_JOB_KAFKA_SASL_PASSWORD"]
        assert password["valueFrom"] == {"secretKeyRef": {"name": "btc-ingest", "key": "pw"}}
        assert pod["secrets"] == [
            {"name": "prod-cluster-ca-cert", "path": "/etc/cryptopipe/kafka-ca", "secretType": "Generic"}
        ]
    # nothing in the SparkApplication is a JAAS line or a password
    assert not any("jaas" in leaf.lower() or "ScramLoginModule" in leaf for leaf in string_leaves(app))
    for entry in _env_entries(app["driver"]).values():
        monkeypatch.setenv(entry["name"], entry.get("value", "from-secret"))
    settings = parse_args(app["arguments"])
    assert settings.kafka_security.spark_kafka_source() == {
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="btc-ingest" password="from-secret";',
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": "/etc/cryptopipe/kafka-ca/ca.crt",
    }


def test_monitor_authenticates_like_the_ingestion() -> None:
    p = VARIANTS["kafka-sasl-ssl"]
    monitor = render_monitor_deployment(p)
    assert monitor is not None
    c = container(monitor)
    env = _env_entries(c)
    assert env["CRYPTOPIPE_MONITOR_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["CRYPTOPIPE_MONITOR_KAFKA_SASL_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "btc-ingest", "key": "pw"}
    }
    assert env["CRYPTOPIPE_MONITOR_KAFKA_SSL_CAFILE"]["value"] == "/etc/cryptopipe/kafka-ca/ca.crt"
    assert {"name": "kafka-ca", "mountPath": "/etc/cryptopipe/kafka-ca", "readOnly": True} in c["volumeMounts"]


def test_network_policy_lets_the_ingestion_reach_the_tls_listener() -> None:
    policies = [c for c in render_children(VARIANTS["kafka-sasl-ssl"], 1) if c["kind"] == "NetworkPolicy"]
    egress_ports = {
        port["port"] for p in policies for rule in p["spec"].get("egress", []) for port in rule.get("ports", [])
    }
    assert 9093 in egress_ports and 9092 not in egress_ports


def test_monitor_reads_its_kafka_security_back_from_its_env() -> None:
    from cryptopipe.monitor.settings import load_settings

    monitor = render_monitor_deployment(VARIANTS["kafka-sasl-ssl"])
    assert monitor is not None
    settings = load_settings({e["name"]: e.get("value", "from-the-secret") for e in container(monitor)["env"]})
    assert settings.kafka_security.kafka_python() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "btc-ingest",
        "sasl_plain_password": "from-the-secret",
        "ssl_cafile": "/etc/cryptopipe/kafka-ca/ca.crt",
    }


def test_children_are_applied_in_two_stages_the_workloads_last() -> None:
    """What fences or serves the pods (NetworkPolicies, topics, RBAC, Service) at once, then the
    workloads that start pods at once: never a pod before its NetworkPolicy or RoleBinding."""
    children = render_children(VARIANTS["monitored"], 1)
    first, then = apply_stages(children)
    assert [c["kind"] for c in then] == ["Deployment", "SparkApplication", "Deployment"]
    assert {c["kind"] for c in first} == {
        "NetworkPolicy",
        "KafkaTopic",
        "ServiceAccount",
        "RoleBinding",
        "Service",
    }
    assert sorted(map(id, first + then)) == sorted(map(id, children))  # nothing lost, nothing twice
    assert [c for c in children if c in first] == first  # each stage keeps render_children's order
