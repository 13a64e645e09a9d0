"""The operator as the cluster would run it (``python -m cryptopipe_operator``, a separate
process) against the test control plane: ``OperatorProcess``, the module-scoped ``operator`` fixture
(a pytest plugin, loaded by tests/conftest.py) and ``eventually`` to wait for what it does. No part
of the API server is mocked; tests.support.cryptopipelines writes what it reconciles and
tests.support.kube_objects reads what it made."""

from __future__ import annotations

import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from cryptopipe_dev.commands.scrape import samples
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.procs import LOOPBACK, ManagedProcess, free_port, wait_for
from tests.support.local_services import register

T = TypeVar("T")
# short loops for tests: status within ~1 s of a child's change, a failed step retried after 1 s
# (also one waiting for a fixed sink Secret)
OPERATOR_ENV = {
    "CRYPTOPIPE_OPERATOR_STATUS_INTERVAL_S": "1",
    "CRYPTOPIPE_OPERATOR_RETRY_BACKOFF_S": "1",
    "CRYPTOPIPE_OPERATOR_MISCONFIG_RETRY_S": "1",
    "CRYPTOPIPE_OPERATOR_HEALTH_HOST": LOOPBACK,
    "CRYPTOPIPE_OPERATOR_LOG_LEVEL": "INFO",
}


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

    @property
    def lease_identity(self) -> str:
        """Who this process is in a leader-election Lease (cryptopipe_operator.leader_run)."""
        assert self.proc is not None
        return f"{socket.gethostname()}_{self.proc.pid}"

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of the operator's /metrics (None: not exposed)."""
        for sample in samples(f"http://{LOOPBACK}:{self.metrics_port}/metrics", timeout=5):
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
        return None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

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
    operator = OperatorProcess(kube, log_path)
    register("operator", operator)  # its log tail joins a failing test's report
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


@pytest.fixture(scope="module")
def operator(
    kube: KubeControlPlane, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    """One operator process for the test module, its log in a temporary folder named after the module."""
    module = request.module.__name__.rpartition(".")[2]
    yield from run_operator(kube, tmp_path_factory.mktemp(f"operator-{module}") / "operator.log")


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
