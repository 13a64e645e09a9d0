"""What the benchmark creates, and what the operator should make of it: the example CryptoPipeline
(manifests/examples/cryptopipeline-minimal.yaml) under new names, POSTed straight to the API server
(no kubectl start-up in the figures), and the children the operator's own render_children renders
for each."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import yaml

from cryptopipe_dev.repo import REPO_ROOT
from cryptopipe_dev.stack.kube import KubeControlPlane, insecure_tls
from cryptopipe_operator.kube_api import object_path
from cryptopipe_operator.render import render_children
from cryptopipe_operator.spec import API_GROUP, API_VERSION, KIND, parse_pipeline

NAMESPACE = "bench"
EXAMPLE = REPO_ROOT / "manifests" / "examples" / "cryptopipeline-minimal.yaml"
PIPELINE_API_VERSION = f"{API_GROUP}/{API_VERSION}"
PIPELINES_PATH = object_path(PIPELINE_API_VERSION, KIND, NAMESPACE)
Child = tuple[str, str]  # (kind, name)


def pipeline_body(name: str) -> dict[str, Any]:
    """manifests/examples/cryptopipeline-minimal.yaml under another name (the CRD defaults the rest)."""
    example = yaml.safe_load(EXAMPLE.read_text())
    return {
        "apiVersion": PIPELINE_API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": example["spec"],
    }


def expected_children(name: str) -> tuple[set[Child], dict[str, str]]:
    """The (kind, name) of every child the operator renders for pipeline ``name``, and each kind's
    collection path, from the operator's own render_children (names do not depend on the uid)."""
    body = pipeline_body(name)
    body["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
    manifests = render_children(parse_pipeline(body), 1)
    children = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    paths = {m["kind"]: object_path(m["apiVersion"], m["kind"], NAMESPACE) for m in manifests}
    return children, paths


def create_pipeline(kube: KubeControlPlane, name: str) -> float:
    """POST one CryptoPipeline; returns time.monotonic() when the create call returned."""
    req = urllib.request.Request(
        kube.server + PIPELINES_PATH,
        data=json.dumps(pipeline_body(name)).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {kube.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60, context=insecure_tls()) as resp:
        resp.read()
    return time.monotonic()
