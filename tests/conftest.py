"""Fixtures every test directory may use, loaded once here; the modules of tests/support say what each holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import REPO, SHARED

pytest_plugins = [
    "tests.support.local_services",  # kafka, s3, spark: real services, started once per session
    "tests.support.kube_control_plane",  # kube, kube_namespace, helm: a real Kubernetes API
    "tests.support.operator_process",  # operator: the operator as a process, one per test module
]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED
