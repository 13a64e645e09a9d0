"""The operator, run with the chart's ServiceAccount credentials and nothing more, reconciles a
CryptoPipeline: proof that the chart's RBAC grants what the operator needs. With the default
values that is no pod, ConfigMap or Secret right at all: the Spark driver's RoleBinding references
the chart's ClusterRole, which the operator may only bind; the per-pipeline Role and RoleBinding
older operators made are deleted; and a deletionPolicy: Delete pipeline says how to let the
operator read its sink Secret.

The chart is installed confined to one namespace (a Role there, the operator told to watch only
it), and the operator process gets the env the chart's Deployment sets: other tests' pipelines in
the shared API server stay out of its sight."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cryptopipe_dev.stack.kube import KubeControlPlane
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import CHILD_KINDS, conditions, events, get, items
from tests.support.operator_process import OperatorProcess, eventually
from tests.support.paths import CHART

pytestmark = pytest.mark.kube

RBAC = "rbac.authorization.k8s.io/v1"


def test_operator_with_only_the_charts_service_account_reconciles(
    kube: KubeControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    release = "cpo-rbac"
    pipeline_ns = f"{kube_namespace}-p"[:63]
    kube.ensure_namespace(pipeline_ns)
    install = subprocess.run(
        [
            str(kube.helm_path),
            "install",
            release,
            str(CHART),
            "-n",
            kube_namespace,
            "--set",
            f"watchNamespaces={{{pipeline_ns}}}",
        ],
        env=kube.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stderr
    deployment = kube.get_json("deployment", f"{release}-cryptopipe-operator", "-n", kube_namespace)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    chart_env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("CRYPTOPIPE_OPERATOR_")}
    assert pipeline_ns in chart_env["CRYPTOPIPE_OPERATOR_NAMESPACES"]
    assert chart_env["CRYPTOPIPE_OPERATOR_SPARK_DRIVER_CLUSTER_ROLE"] == f"{release}-cryptopipe-operator-spark-driver"
    # every optional child on (the lake monitor), as a user (admin) would, before the operator runs
    kube.apply(pipeline("rbac", pipeline_ns, monitor={"enabled": True}))
    uid = get(kube, "CryptoPipeline", pipeline_ns, "rbac")["metadata"]["uid"]
    # what an operator before the chart's Spark driver ClusterRole left: a Role and a RoleBinding
    # of the pipeline's own, and a user's Role of another name that must stay
    owned = {
        "labels": {"app.kubernetes.io/instance": "rbac", "app.kubernetes.io/component": "spark"},
        "ownerReferences": [
            {"apiVersion": "cryptopipeline.io/v1alpha1", "kind": "CryptoPipeline", "name": "rbac", "uid": uid}
        ],
    }
    rules = [{"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["delete"]}]
    kube.apply(
        {
            "apiVersion": RBAC,
            "kind": "Role",
            "metadata": {"name": "rbac-spark", "namespace": pipeline_ns, **owned},
            "rules": rules,
        },
        {
            "apiVersion": RBAC,
            "kind": "RoleBinding",
            "metadata": {"name": "rbac-spark", "namespace": pipeline_ns, **owned},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rbac-spark"},
            "subjects": [{"kind": "ServiceAccount", "name": "rbac-spark", "namespace": pipeline_ns}],
        },
        {
            "apiVersion": RBAC,
            "kind": "Role",
            "metadata": {"name": "users-own", "namespace": pipeline_ns},
            "rules": rules,
        },
    )
    operator = OperatorProcess(
        kube,
        tmp_path / "operator.log",
        env=chart_env,
        kubeconfig=kube.service_account_kubeconfig(f"{release}-cryptopipe-operator", kube_namespace),
    )
    try:
        operator.start()

        def reconciled() -> bool:
            missing = [
                kind for kind in CHILD_KINDS if not items(kube, kind, pipeline_ns, "app.kubernetes.io/instance=rbac")
            ]
            assert not missing, missing
            assert get(kube, "Deployment", pipeline_ns, "rbac-lake-monitor") is not None
            binding = get(kube, "RoleBinding", pipeline_ns, "rbac-spark-driver")
            assert binding is not None and binding["roleRef"]["kind"] == "ClusterRole", binding
            assert binding["roleRef"]["name"] == chart_env["CRYPTOPIPE_OPERATOR_SPARK_DRIVER_CLUSTER_ROLE"]
            assert get(kube, "RoleBinding", pipeline_ns, "rbac-spark") is None, "the old binding is deleted"
            assert get(kube, "Role", pipeline_ns, "rbac-spark") is None, "the old Role is deleted"
            obj = get(kube, "CryptoPipeline", pipeline_ns, "rbac")
            assert set(conditions(obj)) == {
                "Ready",
                "TopicReady",
                "IngestionReady",
                "SparkReady",
                "LakeMonitorReady",
            }, obj.get("status")
            return True

        eventually(reconciled, "children and status written with the chart's RBAC", timeout=60, operator=operator)
        # turned off: the operator deletes the monitor's Deployment itself
        kube.kubectl(
            "patch",
            "cryptopipeline",
            "rbac",
            "-n",
            pipeline_ns,
            "--type=merge",
            "-p",
            '{"spec":{"monitor":{"enabled":false}}}',
        )

        def monitor_deleted() -> bool:
            assert get(kube, "Deployment", pipeline_ns, "rbac-lake-monitor") is None
            obj = get(kube, "CryptoPipeline", pipeline_ns, "rbac")
            assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"], obj["status"]
            return True

        eventually(monitor_deleted, "lake monitor deleted with the chart's RBAC", timeout=60, operator=operator)
        # no API call was refused (ours say "HTTP 403", kopf's "APIForbiddenError")
        log = operator.log_tail(400)
        assert "HTTP 403" not in log and "Forbidden" not in log, log[-3000:]
        assert get(kube, "Role", pipeline_ns, "users-own") is not None, "not the pipeline's: left alone"
        kube.kubectl("delete", "cryptopipeline", "rbac", "-n", pipeline_ns, "--timeout=60s")

        # deletionPolicy: Delete needs the sink Secret, which the default RBAC does not let the
        # operator read: said when the pipeline is applied, and again when its deletion waits
        kube.apply(pipeline("gone", pipeline_ns, deletionPolicy="Delete"))

        def warned_at_apply() -> bool:
            assert get(kube, "Deployment", pipeline_ns, "gone-ingestion") is not None
            warnings = [e for e in events(kube, pipeline_ns, "gone") if e["reason"] == "SinkSecretUnreadable"]
            assert warnings and warnings[0]["type"] == "Warning", [
                e["reason"] for e in events(kube, pipeline_ns, "gone")
            ]
            assert "rbac.readSinkSecrets=true" in warnings[0]["message"], warnings[0]["message"]
            return True

        eventually(
            warned_at_apply,
            "the Delete pipeline's children and its SinkSecretUnreadable",
            timeout=60,
            operator=operator,
        )
        # a Retain pipeline never needs the Secret: no such warning
        assert not [e for e in events(kube, pipeline_ns, "rbac") if e["reason"] == "SinkSecretUnreadable"]
        kube.kubectl("delete", "cryptopipeline", "gone", "-n", pipeline_ns, "--wait=false")

        def told_to_enable_secret_reading() -> bool:
            warnings = [e for e in events(kube, pipeline_ns, "gone") if e["reason"] == "LakeDeleteFailed"]
            assert warnings, [e["reason"] for e in events(kube, pipeline_ns, "gone")]
            assert "rbac.readSinkSecrets=true" in warnings[-1]["message"], warnings[-1]["message"]
            assert get(kube, "CryptoPipeline", pipeline_ns, "gone") is not None, "the deletion waits"
            return True

        eventually(
            told_to_enable_secret_reading,
            "LakeDeleteFailed says to enable rbac.readSinkSecrets",
            timeout=60,
            operator=operator,
        )
    finally:
        operator.stop()
        kube.kubectl(
            "patch",
            "cryptopipeline",
            "rbac",
            "-n",
            pipeline_ns,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
        kube.kubectl(
            "patch",
            "cryptopipeline",
            "gone",
            "-n",
            pipeline_ns,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
        kube.kubectl("delete", "namespace", pipeline_ns, "--wait=false", check=False)
        subprocess.run(
            [str(kube.helm_path), "uninstall", release, "-n", kube_namespace, "--wait"],
            env=kube.env(),
            capture_output=True,
            timeout=120,
        )
