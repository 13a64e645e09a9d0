"""The operator, run with the chart's ServiceAccount credentials and nothing more, reconciles a
CryptoPipeline: proof that the chart's RBAC grants what the operator needs.

The chart is installed confined to one namespace (a Role there, the operator told to watch only
it), and the operator process gets the env the chart's Deployment sets: other tests' pipelines in
the shared API server stay out of its sight."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cryptopipe_dev.stack.kube import KubeControlPlane
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import CHILD_KINDS, conditions, get, items
from tests.support.operator_process import OperatorProcess, eventually
from tests.support.paths import CHART

pytestmark = pytest.mark.kube


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
    operator = OperatorProcess(
        kube,
        tmp_path / "operator.log",
        env=chart_env,
        kubeconfig=kube.service_account_kubeconfig(f"{release}-cryptopipe-operator", kube_namespace),
    )
    try:
        operator.start()
        # every optional child on (the lake monitor), as a user (admin) would
        kube.apply(pipeline("rbac", pipeline_ns, monitor={"enabled": True}))

        def reconciled() -> bool:
            missing = [
                kind for kind in CHILD_KINDS if not items(kube, kind, pipeline_ns, "app.kubernetes.io/instance=rbac")
            ]
            assert not missing, missing
            assert get(kube, "Deployment", pipeline_ns, "rbac-lake-monitor") is not None
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
        kube.kubectl("delete", "cryptopipeline", "rbac", "-n", pipeline_ns, "--timeout=60s")
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
        kube.kubectl("delete", "namespace", pipeline_ns, "--wait=false", check=False)
        subprocess.run(
            [str(kube.helm_path), "uninstall", release, "-n", kube_namespace, "--wait"],
            env=kube.env(),
            capture_output=True,
            timeout=120,
        )
