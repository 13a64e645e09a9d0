"""A CRD newer than the operator (issue 11, point 15): helm never upgrades ``crds/``, so the CRD is
applied on its own (``kubectl apply --server-side``, docs/operator.md "CRD upgrades") and can run
ahead of the operator. Here a copy of the chart's CRD with two extra optional fields with defaults
(one nested, one top-level) is applied to the real API server, which then stores the defaults in
every new pipeline: the operator must keep reconciling it, with a warning condition naming the
fields, not refuse it as Invalid. The chart's CRD is put back afterwards (the API server is shared).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.crd import CRD_PATH, load_crd
from cryptopipe_dev.stack.kube import KubeControlPlane
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import CHILD_KINDS, conditions, get, items
from tests.support.operator_process import OperatorProcess, eventually

pytestmark = pytest.mark.kube

NEWER_FIELDS = ("spec.ingestion.compression", "spec.priorityClassName")


def _newer_crd(path: Path) -> Path:
    crd = copy.deepcopy(load_crd())
    (version,) = crd["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    spec["ingestion"]["properties"]["compression"] = {
        "type": "string",
        "enum": ["none", "zstd"],
        "default": "zstd",
        "description": "a field of a future CRD version",
    }
    spec["priorityClassName"] = {"type": "string", "default": "pipelines", "description": "a future field"}
    path.write_text(json.dumps(crd))
    return path


def _defaults(kube: KubeControlPlane, ns: str) -> dict[str, Any]:
    """A dry-run create's spec: what the API server's defaulting currently adds."""
    probe = pipeline("probe", ns)
    out = kube.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe)).stdout
    spec: dict[str, Any] = json.loads(out)["spec"]
    return spec


def test_operator_reconciles_under_a_newer_crd_and_names_the_fields_it_ignores(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    kube.install_crds([_newer_crd(tmp_path / "newer-crd.json")])
    try:
        eventually(lambda: _defaults(kube, ns)["ingestion"].get("compression") == "zstd", "newer CRD in force")
        kube.apply(pipeline("newer", ns))
        stored = get(kube, "CryptoPipeline", ns, "newer")
        assert stored is not None and stored["spec"]["priorityClassName"] == "pipelines", stored["spec"]

        def reconciled_with_a_warning() -> dict[str, Any]:
            missing = [k for k in CHILD_KINDS if not items(kube, k, ns, "app.kubernetes.io/instance=newer")]
            assert not missing, f"children missing: {missing}"
            obj = get(kube, "CryptoPipeline", ns, "newer")
            assert obj is not None
            status = obj.get("status") or {}
            assert status.get("phase") != "Invalid", status
            assert status.get("observedGeneration") == obj["metadata"]["generation"], status
            found = conditions(obj)
            assert "SpecNewerThanOperator" in found, status
            return found

        found = eventually(reconciled_with_a_warning, "reconciled, with the newer fields named", operator=operator)
        newer = found["SpecNewerThanOperator"]
        assert newer["status"] == "True" and newer["reason"] == "UnknownFields"
        for field in NEWER_FIELDS:
            assert field in newer["message"], newer
        assert found["Ready"].get("reason") != "InvalidSpec", found["Ready"]
    finally:
        kube.install_crds([CRD_PATH])
        eventually(lambda: "compression" not in _defaults(kube, ns)["ingestion"], "chart's CRD back in force")
