"""The operator as the cluster would run it (``python -m cryptopipe_operator``, a separate
process) against the test control plane, plus helpers to write CryptoPipelines and read what the
operator made of them. No part of the API server is mocked."""

from __future__ import annotations

import copy
import json
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.procs import LOOPBACK, ManagedProcess, free_port, wait_for

T = TypeVar("T")
INVALID_SPECS = yaml.safe_load((Path(__file__).parents[1] / "unit" / "invalid_specs.yaml").read_text())
BASE_SPEC: dict[str, Any] = INVALID_SPECS["base"]
GROUP_VERSION = "cryptopipeline.io/v1alpha1"
# short loops for tests: status within ~1 s of a child's change, a failed step retried after 1 s
# (also one waiting for a fixed sink Secret)
OPERATOR_ENV = {
    "CRYPTOPIPE_OPERATOR_STATUS_INTERVAL_S": "1",
    "CRYPTOPIPE_OPERATOR_RETRY_BACKOFF_S": "1",
    "CRYPTOPIPE_OPERATOR_MISCONFIG_RETRY_S": "1",
    "CRYPTOPIPE_OPERATOR_HEALTH_HOST": LOOPBACK,
    "CRYPTOPIPE_OPERATOR_LOG_LEVEL": "INFO",
}
PATHS = {
    "KafkaTopic": "/apis/kafka.strimzi.io/v1/namespaces/{ns}/kafkatopics",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "SparkApplication": "/apis/sparkoperator.k8s.io/v1beta2/namespaces/{ns}/sparkapplications",
    "Service": "/api/v1/namespaces/{ns}/services",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "CryptoPipeline": "/apis/cryptopipeline.io/v1alpha1/namespaces/{ns}/cryptopipelines",
}
CHILD_KINDS = ("KafkaTopic", "ServiceAccount", "Role", "RoleBinding", "Service", "Deployment", "SparkApplication")


class OperatorProcess:
    """One operator process at a time; ``kill9()`` and ``start()`` again for crash tests."""

    def __init__(
        self, kube: KubeControlPlane, log_path: Path, kubeconfig: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.kube = kube
        self.log_path = log_path
        self.kubeconfig = kubeconfig  # None: the admin's; a ServiceAccount's to run with its RBAC only
        self.extra_env = env or {}  # e.g. the chart Deployment's CRYPTOPIPE_OPERATOR_* env
        self.port = 0
        self.proc: ManagedProcess | None = None

    def start(self) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        env = {
            **OPERATOR_ENV,
            **self.extra_env,
            **self.kube.env(self.kubeconfig),
            "CRYPTOPIPE_OPERATOR_HEALTH_PORT": str(self.port),
            "CRYPTOPIPE_OPERATOR_METRICS_PORT": str(self.metrics_port),
        }
        self.proc = ManagedProcess(
            [sys.executable, "-m", "cryptopipe_operator"],
            log_path=self.log_path,
            env=env,
            name="cryptopipe-operator",
            die_with_parent=True,
        ).start()
        wait_for(self._healthy, 30, "operator liveness endpoint", interval=0.1, process=self.proc)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.port}/healthz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def log_tail(self, lines: int = 40) -> str:
        return self.proc.log_tail(lines) if self.proc else "(not started)"


def run_operator(kube: KubeControlPlane, log_path: Path) -> Iterator[OperatorProcess]:
    from tests.conftest import _services  # its log tail joins a failing test's report

    operator = OperatorProcess(kube, log_path)
    _services["operator"] = operator  # type: ignore[assignment]
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def merge_patch(base: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what invalid_specs.yaml's cases are written as)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base) if isinstance(base, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def pipeline(name: str, namespace: str, **spec_patch: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "CryptoPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": merge_patch(BASE_SPEC, spec_patch),
    }


def get(kube: KubeControlPlane, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    code, body = kube.api(f"{PATHS[kind].format(ns=namespace)}/{name}")
    if code == 404:
        return None
    assert code == 200, body
    return json.loads(body)


def items(kube: KubeControlPlane, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    query = f"?labelSelector={selector}" if selector else ""
    code, body = kube.api(f"{PATHS[kind].format(ns=namespace)}{query}")
    assert code == 200, body
    return json.loads(body)["items"]


def patch_status(kube: KubeControlPlane, resource: str, namespace: str, status: Mapping[str, Any]) -> None:
    kube.kubectl(
        "patch", resource, "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})
    )


def eventually(check: Callable[[], T], what: str, timeout: float = 20.0, operator: OperatorProcess | None = None) -> T:
    """Poll ``check`` until truthy; AssertionErrors inside count as "not yet" (and the last one is shown)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except AssertionError as exc:
            last = exc
        time.sleep(0.2)
    tail = f"\noperator log:\n{operator.log_tail()}" if operator else ""
    pytest.fail(f"{what} not reached in {timeout:.0f}s (last: {last!r}){tail}")


def conditions(obj: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def events(kube: KubeControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    found = kube.get_json("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    return found["items"]
