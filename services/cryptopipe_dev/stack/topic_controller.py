"""The dev stand-in for Strimzi's topic operator (cryptopipe_dev.topic_controller) as a child process (what a dev cluster starts
next to the operator): ``topic_controller_process(...).start()``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptopipe_dev.stack.procs import ManagedProcess

SERVICES_DIR = Path(__file__).resolve().parents[2]  # services/, for the child's PYTHONPATH
PROCESS_NAME = "topic-controller"
# what /proc/<pid>/cmdline contains while it runs (for a dev cluster's recorded-pid checks)
CMDLINE_MARKER = "cryptopipe_dev.topic_controller"


def topic_controller_process(
    bootstrap: str,
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    namespaces: Iterable[str] = (),
    cluster: str | None = None,
    interval: float | None = None,
    die_with_parent: bool = False,
) -> ManagedProcess:
    """Not started yet. ``env`` should hold KUBECONFIG (e.g. ``KubeControlPlane.env()``)."""
    args = [sys.executable, "-m", CMDLINE_MARKER, "--bootstrap", bootstrap]
    for namespace in namespaces:
        args += ["--namespace", namespace]
    if cluster:
        args += ["--cluster", cluster]
    if interval is not None:
        args += ["--interval", str(interval)]
    pythonpath = os.pathsep.join(filter(None, [str(SERVICES_DIR), os.environ.get("PYTHONPATH")]))
    return ManagedProcess(
        args,
        log_path=log_path,
        env={**(env or {}), "PYTHONPATH": pythonpath},
        name=PROCESS_NAME,
        die_with_parent=die_with_parent,
    )
