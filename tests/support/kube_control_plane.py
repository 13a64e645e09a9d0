"""Fixtures for tests that need a real Kubernetes API: ``kube`` (session: etcd + kube-apiserver +
kube-controller-manager with the upstream KafkaTopic and SparkApplication CRDs and the chart's
CryptoPipeline CRD installed) and
``kube_namespace`` (a fresh namespace per test).

Also ``helm``, the chart tests' binary. A pytest plugin, loaded by tests/conftest.py; the binaries
come from scripts/build-control-plane.sh, and a missing one fails the test with that hint (it never
skips).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptopipe_dev.crd import CRD_PATH, upstream_crd_paths
from cryptopipe_dev.stack.kube import KubeControlPlane, require_binary
from cryptopipe_dev.stack.paths import MissingDependency
from tests.support.local_services import running


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary of the control-plane build (a missing one fails with the build's hint)."""
    try:
        return require_binary("helm")
    except MissingDependency as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def kube_crd_paths() -> list[Path]:
    """The upstream CRDs (in the shared folder) the operator's objects must pass (see its README.md)."""
    return upstream_crd_paths()


@pytest.fixture(scope="session")
def kube(services_dir: Path, kube_crd_paths: list[Path]) -> Iterator[KubeControlPlane]:
    """A real control plane on 127.0.0.1 (~4 s to start, ~2 s more for the CRDs), shared by the session.

    Tests share it, so each should work in its own namespace (``kube_namespace``) and not rely on
    cluster-scoped state other tests may change.
    """
    # CRDs installed at start-up, before the controller manager: garbage collection of KafkaTopics
    # and SparkApplications then works at once, not only after the collector's 30 s resync
    # (the CryptoPipeline CRD too: garbage collection of a deleted pipeline's children needs it)
    crds = [*kube_crd_paths, CRD_PATH]
    control_plane = KubeControlPlane(services_dir / "kube", crds=crds, die_with_parent=True)
    with running("kube", control_plane):
        yield control_plane


@pytest.fixture
def kube_namespace(kube: KubeControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new namespace named after the test, deleted (without waiting) afterwards."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{base}-{_next_suffix()}"
    kube.ensure_namespace(name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


_counter = 0


def _next_suffix() -> str:
    global _counter
    _counter += 1
    return str(_counter)
