"""The real control plane the operator tests run against: kube-apiserver 1.34 + etcd 3.6 +
kube-controller-manager, with the upstream Strimzi KafkaTopic and spark-operator SparkApplication
CRDs. These tests prove the harness itself: that the real schemas accept and reject what they
should, that RBAC is enforced for a ServiceAccount, and that ownerReference garbage collection runs.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.stack.kube import KubeControlPlane, KubectlError
from cryptopipe_dev.stack.procs import wait_for

pytestmark = pytest.mark.kube

K8S_VERSION = "v1.34.4"
KAFKA_TOPIC_CRD = "kafkatopics.kafka.strimzi.io"
SPARK_APP_CRD = "sparkapplications.sparkoperator.k8s.io"


def kafka_topic(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": name, "namespace": namespace, "labels": {"strimzi.io/cluster": "cryptopipe"}},
        "spec": {
            "partitions": 3,
            "replicas": 1,
            "config": {"retention.ms": 604800000, "cleanup.policy": "delete"},
            **spec,
        },
    }


def spark_application(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "Python",
            "mode": "cluster",
            "pythonVersion": "3",
            "image": "registry.example/cryptopipe-spark:0.1.0",
            "imagePullPolicy": "IfNotPresent",
            "mainApplicationFile": "local:///opt/cryptopipe/candles.py",
            "arguments": ["--topic", "trades"],
            "sparkVersion": "4.1.1",
            "sparkConf": {"spark.sql.shuffle.partitions": "4"},
            "restartPolicy": {"type": "Always", "onFailureRetryInterval": 10, "onSubmissionFailureRetryInterval": 20},
            "driver": {"cores": 1, "memory": "1g", "serviceAccount": "spark", "labels": {"app": "candles"}},
            "executor": {"instances": 2, "cores": 1, "memory": "2g"},
        },
    }


def create(kube: KubeControlPlane, obj: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """``kubectl create`` (strict server-side field validation, kubectl's default): the stored object."""
    out = kube.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(obj), **kwargs).stdout
    return json.loads(out)


# --- the API server --------------------------------------------------------------------------------


def test_api_server_answers(kube: KubeControlPlane) -> None:
    status, body = kube.api("/version")
    assert status == 200
    assert json.loads(body)["gitVersion"] == K8S_VERSION
    assert kube.api("/readyz") == (200, "ok")
    assert kube.api("/livez") == (200, "ok")
    # a wrong token is refused (no anonymous access)
    assert kube.api("/api/v1/namespaces", token="not-a-token")[0] == 401
    server_version = json.loads(kube.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert server_version == K8S_VERSION
    assert kube.server.startswith("https://127.0.0.1:")
    config = json.loads(kube.kubeconfig_path.read_text())
    assert config["clusters"][0]["cluster"]["server"] == kube.server


def test_upstream_crds_established(kube: KubeControlPlane) -> None:
    for name in (KAFKA_TOPIC_CRD, SPARK_APP_CRD):
        crd = kube.get_json(f"crd/{name}")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", conditions
        assert conditions.get("NamesAccepted") == "True", conditions
        assert conditions.get("NonStructuralSchema") is None, conditions
    versions = {v["name"]: v for v in kube.get_json(f"crd/{KAFKA_TOPIC_CRD}")["spec"]["versions"]}
    assert versions["v1"]["served"] and versions["v1beta2"]["storage"]
    resources = kube.kubectl("api-resources", "-o", "name").stdout.split()
    assert KAFKA_TOPIC_CRD in resources and SPARK_APP_CRD in resources


def test_install_crds_is_idempotent(kube: KubeControlPlane, kube_crd_paths: list[Path]) -> None:
    # server-side apply: the 800 KB SparkApplication CRD would not fit client-side apply's annotation
    assert kube.install_crds(kube_crd_paths) == [KAFKA_TOPIC_CRD, SPARK_APP_CRD]


# --- the real schemas ------------------------------------------------------------------------------


def test_valid_kafka_topic_accepted(kube: KubeControlPlane, kube_namespace: str) -> None:
    stored = create(kube, kafka_topic("trades", kube_namespace))
    assert stored["spec"]["partitions"] == 3
    assert stored["metadata"]["uid"]
    # stored as v1beta2 (conversion: None), served as both
    legacy = kube.get_json("kafkatopics.v1beta2.kafka.strimzi.io/trades", "-n", kube_namespace)
    assert legacy["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert legacy["spec"]["config"]["retention.ms"] == 604800000


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"partitions": "three"},
            'spec.partitions: Invalid value: "string": spec.partitions in body must be of type integer',
        ),
        (
            {"partitions": 0},
            "spec.partitions: Invalid value: 0: spec.partitions in body should be greater than or equal to 1",
        ),
        ({"replicas": 40000}, "spec.replicas in body should be less than or equal to 32767"),
        ({"partition": 3}, 'unknown field "spec.partition"'),
    ],
    ids=["partitions-string", "partitions-zero", "replicas-too-many", "unknown-field"],
)
def test_invalid_kafka_topic_rejected(
    kube: KubeControlPlane, kube_namespace: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubectlError) as err:
        create(kube, kafka_topic("bad", kube_namespace, **spec))
    assert message in err.value.stderr
    assert kube.kubectl("get", "kafkatopic/bad", "-n", kube_namespace, check=False).returncode != 0


def test_valid_spark_application_accepted(kube: KubeControlPlane, kube_namespace: str) -> None:
    stored = create(kube, spark_application("candles", kube_namespace))
    assert stored["spec"]["executor"]["instances"] == 2
    assert stored["spec"]["sparkConf"] == {"spark.sql.shuffle.partitions": "4"}


def _without(obj: dict[str, Any], field: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    del obj["spec"][field]
    return obj


def _with(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    *parents, leaf = path.split(".")
    target = obj
    for key in parents:
        target = target[key]
    target[leaf] = value
    return obj


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: _with(o, "spec.type", "Ruby"), 'spec.type: Unsupported value: "Ruby"'),
        (lambda o: _without(o, "sparkVersion"), "spec.sparkVersion: Required value"),
        (
            lambda o: _with(o, "spec.executor.instances", "two"),
            "spec.executor.instances in body must be of type integer",
        ),
        (
            lambda o: _with(o, "spec.sparkConf", {"spark.executor.cores": 2}),
            "spec.sparkConf.spark.executor.cores in body must be of type string",
        ),
        (lambda o: _with(o, "spec.driver.memoryy", "1g"), 'unknown field "spec.driver.memoryy"'),
    ],
    ids=["type-enum", "missing-sparkVersion", "instances-string", "sparkConf-int", "unknown-field"],
)
def test_invalid_spark_application_rejected(
    kube: KubeControlPlane, kube_namespace: str, mutate: Any, message: str
) -> None:
    with pytest.raises(KubectlError) as err:
        create(kube, mutate(spark_application("bad", kube_namespace)))
    assert message in err.value.stderr


# --- RBAC ---------------------------------------------------------------------------------------------


def test_service_account_kubeconfig_enforces_rbac(kube: KubeControlPlane, kube_namespace: str) -> None:
    sa_config = kube.service_account_kubeconfig("operator", kube_namespace, create=True)
    whoami = json.loads(kube.kubectl("auth", "whoami", "-o", "json", kubeconfig=sa_config).stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{kube_namespace}:operator"

    def topics(cfg: Path) -> Any:
        return kube.kubectl("get", "kafkatopics", kubeconfig=cfg, check=False)  # its own namespace

    denied = topics(sa_config)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "topics", "namespace": kube_namespace},
            "rules": [
                {"apiGroups": ["kafka.strimzi.io"], "resources": ["kafkatopics"], "verbs": ["get", "list", "create"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "operator-topics", "namespace": kube_namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "topics"},
            "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": kube_namespace}],
        },
    )
    wait_for(lambda: topics(sa_config).returncode == 0, 10, "RBAC grant to take effect")
    create(kube, kafka_topic("by-operator", kube_namespace), kubeconfig=sa_config)
    # granted in its namespace only, and only what the Role lists
    assert kube.kubectl("get", "kafkatopics", "-n", "default", kubeconfig=sa_config, check=False).returncode != 0
    assert kube.kubectl("delete", "kafkatopic/by-operator", kubeconfig=sa_config, check=False).returncode != 0


# --- garbage collection ------------------------------------------------------------------------------


def test_owner_reference_garbage_collection(kube: KubeControlPlane, kube_namespace: str) -> None:
    ns = kube_namespace
    owner = create(kube, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": ns}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    create(
        kube,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "child", "namespace": ns, "ownerReferences": [ref]},
        },
    )
    topic = kafka_topic("owned-topic", ns)
    topic["metadata"]["ownerReferences"] = [ref]
    create(kube, topic)

    began = time.monotonic()
    kube.kubectl("delete", "configmap/owner", "-n", ns)

    def gone(kind_name: str) -> bool:
        return kube.kubectl("get", kind_name, "-n", ns, "--ignore-not-found", "-o", "name").stdout.strip() == ""

    wait_for(lambda: gone("configmap/child"), 30, "garbage collection of the child ConfigMap", interval=0.5)
    # a custom resource: watched from the start because the fixture installs the CRDs before the
    # controller manager starts (CRDs added later are picked up by its 30 s discovery resync)
    wait_for(lambda: gone("kafkatopic/owned-topic"), 30, "garbage collection of the owned KafkaTopic", interval=0.5)
    print(f"GC: children gone {time.monotonic() - began:.1f}s after the owner's deletion")


# --- without the controller manager --------------------------------------------------------------------


def test_control_plane_without_controller_manager(tmp_path: Path) -> None:
    """A second, apiserver-only cluster (envtest style) next to the session's: own ports, own data."""
    with KubeControlPlane(tmp_path / "kube", with_controller_manager=False) as lone:
        assert lone.controller_manager is None
        assert lone.api("/readyz") == (200, "ok")
        lone.ensure_namespace("solo")
        # pods pass admission without a "default" ServiceAccount (no controller creates one here)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "solo"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        assert create(lone, pod)["spec"]["containers"][0]["name"] == "c"
        # no garbage collector: the child outlives its owner (so the session cluster's GC test
        # really measures the controller manager)
        owner = create(lone, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "o", "namespace": "solo"}})
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": owner["metadata"]["uid"]}
        create(
            lone,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "solo", "ownerReferences": [ref]},
            },
        )
        lone.kubectl("delete", "configmap/o", "-n", "solo")
        time.sleep(2)
        assert lone.kubectl("get", "configmap/c", "-n", "solo", "-o", "name").stdout.strip() == "configmap/c"
    assert not lone.alive
    for name in ("etcd", "kube-apiserver"):
        assert lone.log_paths[name].stat().st_size > 0
