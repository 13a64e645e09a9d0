"""Before anything is measured: a fresh control plane (etcd, kube-apiserver, kube-controller-manager
with the upstream KafkaTopic and SparkApplication CRDs and the CryptoPipeline CRD) and the operator
as the chart runs it (``python -m cryptopipe_operator``, settings.py's defaults, metrics port on, leader election on)."""

from __future__ import annotations

import platform
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptopipe_dev.bench.machine import binary_version, machine, package_version
from cryptopipe_dev.bench_operator.pipelines import NAMESPACE
from cryptopipe_dev.crd import CRD_PATH, upstream_crd_paths
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.procs import LOOPBACK, ManagedProcess, free_port, wait_for


def control_plane(work_dir: Path) -> KubeControlPlane:
    crds = [*upstream_crd_paths(), CRD_PATH]
    return KubeControlPlane(work_dir / "kube", crds=crds, die_with_parent=True)


def start_control_plane(kube: KubeControlPlane) -> None:
    """Start it, print the machine and versions, and make the benchmark's namespace."""
    kube.start()
    for key, value in environment(kube).items():
        print(f"  {key}: {value}")
    print(
        f"  control plane up in {kube.startup_seconds:.1f} s (etcd, kube-apiserver, "
        "kube-controller-manager; KafkaTopic, SparkApplication, CryptoPipeline CRDs)",
        flush=True,
    )
    kube.ensure_namespace(NAMESPACE)


def environment(kube: KubeControlPlane) -> dict[str, str]:
    return {
        "machine": machine(),
        "kube-apiserver": binary_version([str(kube.bin_dir / "kube-apiserver"), "--version"]),
        "etcd": binary_version([str(kube.bin_dir / "etcd"), "--version"]),
        "python": platform.python_version(),
        "kopf": package_version("kopf"),
        "aiohttp": package_version("aiohttp"),
    }


@dataclass
class Operator:
    process: ManagedProcess
    metrics_port: int


def start_operator(kube: KubeControlPlane, log_path: Path, operator_env: list[str]) -> Operator:
    """The operator with settings.py's defaults plus ``operator_env`` (NAME=VALUE), once it is healthy."""
    overrides = dict(item.split("=", 1) for item in operator_env)
    health_port, metrics_port = free_port(), free_port()
    env = {
        **kube.env(),
        "CRYPTOPIPE_OPERATOR_HEALTH_HOST": LOOPBACK,
        "CRYPTOPIPE_OPERATOR_HEALTH_PORT": str(health_port),
        "CRYPTOPIPE_OPERATOR_METRICS_PORT": str(metrics_port),
        # leader election as the chart runs it (the first and only candidate takes the Lease at once)
        "CRYPTOPIPE_OPERATOR_LEASE_NAME": "cryptopipe-operator",
        "CRYPTOPIPE_OPERATOR_LEASE_NAMESPACE": NAMESPACE,
        **overrides,
    }
    process = ManagedProcess(
        [sys.executable, "-m", "cryptopipe_operator"],
        log_path=log_path,
        env=env,
        name="cryptopipe-operator",
        die_with_parent=True,
    ).start()
    started = time.monotonic()

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{health_port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, 60, "operator liveness endpoint", interval=0.1, process=process)
    except BaseException:
        print("\noperator log tail:\n" + process.log_tail(), file=sys.stderr)
        process.stop()
        raise
    print(
        f"  operator (pid {process.pid}) healthy {time.monotonic() - started:.1f} s after start; "
        f"settings: defaults{' + ' + ', '.join(operator_env) if operator_env else ''}",
        flush=True,
    )
    return Operator(process, metrics_port)
