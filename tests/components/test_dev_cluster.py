"""``cryptopipe dev cluster up|status|down`` as a user runs it: a separate process that returns
with the control plane and the operator left running detached, a kubeconfig that kubectl can use
to apply the minimal example, and ``down`` leaving none of the recorded pids alive."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.commands.dev_cluster import pid_runs
from cryptopipe_dev.stack.kube import control_plane_bin
from tests.support.paths import REPO

pytestmark = pytest.mark.kube

EXAMPLE = REPO / "manifests" / "examples" / "cryptopipeline-minimal.yaml"


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptopipe_dev.cli", "dev", "cluster", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def _kubectl(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    # what the printed hint says: kubectl from the control plane's bin dir, $KUBECONFIG from `up`
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PATH": f"{control_plane_bin()}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60, env=env)


def _pids(work_dir: Path) -> dict[str, int]:
    state = json.loads((work_dir / "state.json").read_text())
    return {p["name"]: p["pid"] for p in state["processes"]}


def test_up_apply_example_down(tmp_path: Path) -> None:
    work_dir = tmp_path / "dev"
    began = time.monotonic()
    pids: dict[str, int] = {}
    try:
        # in the try: a timeout or an interrupt while `up` runs must still end in `down`
        up = _cli("up", "--work-dir", str(work_dir))
        assert up.returncode == 0, up.stdout + up.stderr
        assert time.monotonic() - began < 90  # returned: nothing it started holds its output open
        pids = _pids(work_dir)
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "cryptopipe-operator"}
        assert all(pid_runs(pid) for pid in pids.values()), pids  # still running after `up` exited

        (kubeconfig,) = re.findall(r"^export KUBECONFIG=(\S+)$", up.stdout, re.M)
        assert f"kubectl apply -f {EXAMPLE}" in up.stdout, up.stdout
        applied = _kubectl(kubeconfig, "apply", "-f", str(EXAMPLE))
        assert applied.returncode == 0, applied.stderr

        wanted = {
            "kafkatopic/btc-eth-trades",
            "kafkatopic/btc-eth-trades-dlq",
            "deployment/btc-eth-ingestion",
            "sparkapplication/btc-eth-candles",
        }
        deadline, seen = time.monotonic() + 30, set()
        while time.monotonic() < deadline:
            got = _kubectl(kubeconfig, "get", "kafkatopics,deployments,sparkapplications", "-o", "name")
            seen = {line.split(".", 1)[0] + "/" + line.rsplit("/", 1)[1] for line in got.stdout.split()}
            if wanted <= seen:
                break
            time.sleep(0.5)
        assert wanted <= seen, (seen, (work_dir / "operator.log").read_text()[-3000:])

        def phase() -> str:
            got = _kubectl(kubeconfig, "get", "cryptopipeline/btc-eth", "-o", "jsonpath={.status.phase}")
            return got.stdout

        deadline = time.monotonic() + 20
        while not phase() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert phase() == "Pending"  # status written; nothing runs the pods here, so not Ready

        status = _cli("status", "--work-dir", str(work_dir))
        assert status.returncode == 0 and status.stdout.count("running") == 4, status.stdout
        again = _cli("up", "--work-dir", str(work_dir))  # idempotent: no second control plane
        assert again.returncode == 0 and "already running" in again.stdout, again.stdout
        assert _pids(work_dir) == pids
    finally:
        down = _cli("down", "--work-dir", str(work_dir), timeout=120)
    _assert_down_stopped_all(down, work_dir, pids)
    status = _cli("status", "--work-dir", str(work_dir))
    assert status.returncode == 1 and "no dev cluster" in status.stdout


def test_down_stops_what_an_up_killed_midway_started(tmp_path: Path) -> None:
    """An ``up`` SIGKILLed before it finished (a caller's timeout: subprocess.run kills its child)
    has already detached etcd, kube-apiserver, kube-controller-manager and the operator. Each is in
    state.json from the moment it starts, so ``down`` stops them; a new ``up`` refuses instead of
    calling the half-started cluster running."""
    work_dir = tmp_path / "dev"
    up = subprocess.Popen(
        [sys.executable, "-m", "cryptopipe_dev.cli", "dev", "cluster", "up", "--work-dir", str(work_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    state: dict[str, Any] = {}
    try:
        # the operator is the last thing `up` starts; it waits for its /healthz (seconds of imports)
        # before it writes the final state, so this partial one is there to be seen
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and up.poll() is None:
            try:
                state = json.loads((work_dir / "state.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                state = {}
            if state.get("partial") and "cryptopipe-operator" in _names(state):
                break
            time.sleep(0.05)
        up.kill()
        up.wait(timeout=30)
        assert state.get("partial") and "cryptopipe-operator" in _names(state), (up.returncode, state)
    finally:
        if up.poll() is None:
            up.kill()
    pids = {p["name"]: p["pid"] for p in state["processes"]}
    try:
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "cryptopipe-operator"}, pids
        assert all(pid_runs(pid) for pid in pids.values()), pids  # detached: `up`'s death left them running
        again = _cli("up", "--work-dir", str(work_dir))
        assert again.returncode == 1 and "cryptopipe dev cluster down" in again.stderr, again.stdout + again.stderr
    finally:
        down = _cli("down", "--work-dir", str(work_dir), timeout=120)
    _assert_down_stopped_all(down, work_dir, pids)


def _assert_down_stopped_all(down: subprocess.CompletedProcess[str], work_dir: Path, pids: dict[str, int]) -> None:
    assert down.returncode == 0, down.stdout + down.stderr
    left = {name: pid for name, pid in pids.items() if pid_runs(pid)}
    assert not left, left
    assert not (work_dir / "state.json").exists()


def _names(state: dict[str, Any]) -> set[str]:
    return {p["name"] for p in state.get("processes", [])}
