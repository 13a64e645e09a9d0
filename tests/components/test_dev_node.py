"""``cryptopipe dev cluster up --node`` as a user runs it (as root): a real node goes Ready, a pod
(the locally built pause image, never pulled) is scheduled and runs, reaches the apiserver through
the ``kubernetes`` Service and resolves its name through CoreDNS (deployed by ``up --node``), and ``down`` leaves the host exactly as it was before ``up``: sysctls,
iptables and ip6tables chains (and the iptables-nft tables), mounts, cgroups, network links and the
host directories kubelet, containerd and the CNI plugins use.

This machine may be shared with parallel jobs (an image build's dockerd and its containerd, a
debootstrap chroot): what those change is told apart by where it is (their mounts are outside the
work dir, /run and /var), by name (``docker``: chains, links, cgroups) and, for /run/containerd
(where every containerd's shims put their sockets), by another containerd running (and so are
/sys/fs/cgroup/*/<containerd namespace>); it is left out of the comparison. Everything else must be equal.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.commands.dev_cluster import pid_runs
from cryptopipe_dev.stack import node as nodemod
from cryptopipe_dev.stack.kube import control_plane_bin
from cryptopipe_dev.stack.paths import MissingDependency
from tests.support.paths import REPO as REPO_ROOT

pytestmark = pytest.mark.node

PAUSE_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "pause", "namespace": "default"},
    "spec": {
        "containers": [{"name": "pause", "image": "", "imagePullPolicy": "Never"}],
        "terminationGracePeriodSeconds": 1,
    },
}
FOREIGN = re.compile(r"docker", re.I)  # a parallel job's dockerd: its chains, links and cgroups
# `ctr run` without a cgroup parent puts a container in /<namespace>/<id>: another containerd's
# (seen once: an empty /sys/fs/cgroup/*/k8s.io appeared during a run). This node's containers
# are all under kubepods (kubelet sets their cgroup parent), which the comparison covers.
CONTAINERD_NAMESPACES = {"k8s.io", "moby", "default"}


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptopipe_dev.cli", "dev", "cluster", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


def _kubectl(kubeconfig: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PATH": f"{control_plane_bin()}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=90, env=env, input=input)


def _out(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False).stdout


def host_snapshot(work_dir: Path) -> dict[str, Any]:
    """What kubelet, kube-proxy, containerd and the CNI plugins could leave changed on the host."""
    chains: dict[str, list[str]] = {}
    for save in ("iptables-save", "ip6tables-save"):
        table = ""
        for line in _out(save).splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":") and not FOREIGN.search(line):
                name, policy = line[1:].split()[:2]
                chains.setdefault(f"{save} {table}", []).append(f"{name} {policy}")
            elif line.startswith("-A") and re.search(r" -j (KUBE-|CNI-)", line):
                chains.setdefault(f"{save} {table}", []).append(line)  # jumps to our chains
    # another containerd (a parallel job's dockerd) puts its shims' sockets in /run/containerd too
    others = [c for c in _cmdlines() if "containerd" in c and str(work_dir) not in c]
    docker_tables = {k.split()[1] for k in chains if any(FOREIGN.search(c) for c in chains[k])}
    mounts = []
    watched = (str(work_dir), "/run/", "/var/")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, point, fstype = line.split()[:3]
        if point.startswith("/run/docker") or FOREIGN.search(point):
            continue
        if point.startswith(watched) or fstype == "nsfs":
            mounts.append(f"{point} {fstype}")
    cgroups = sorted(
        str(p)
        for p in [*Path("/sys/fs/cgroup").glob("*/*"), *Path("/sys/fs/cgroup").glob("*/kubepods*/**")]
        if p.is_dir() and not FOREIGN.search(str(p))
    )
    links = sorted(
        line.split(": ")[1].split("@")[0]
        for line in _out("ip", "-o", "link", "show").splitlines()
        if not FOREIGN.search(line)
    )
    return {
        "other_containerd": bool(others),
        "sysctls": {name: nodemod.read_sysctl(name) for name in nodemod.SYSCTLS},
        "chains": {k: sorted(v) for k, v in chains.items()},
        "nft_tables": sorted(
            t for t in _out("nft", "list", "tables").splitlines() if t.split()[-1] not in docker_tables
        ),
        "mounts": sorted(mounts),
        "cgroups": cgroups,
        "links": links,
        "dirs": {
            d: os.path.lexists(d)
            for d in (*nodemod.HOST_DIRS, "/var/log/pods", str(nodemod.KUBELET_DEVICE_PLUGIN_SOCKET))
        },
    }


def _cmdlines() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    before, after = dict(before), dict(after)
    if before.pop("other_containerd") or after.pop("other_containerd", False):
        # another containerd ran before or after (a parallel job's): /run/containerd and the
        # top-level /sys/fs/cgroup/*/<containerd namespace> may be its doing (whether it ran
        # decides at either snapshot, so the two are compared alike)
        for snap in (before, after):
            snap["dirs"] = {d: v for d, v in snap["dirs"].items() if d != "/run/containerd"}
            snap["cgroups"] = [c for c in snap["cgroups"] if Path(c).name not in CONTAINERD_NAMESPACES]
    after.pop("other_containerd", None)
    out: dict[str, Any] = {}
    for key in before:
        b, a = before[key], after[key]
        if b == a:
            continue
        if isinstance(b, dict):
            out[key] = {k: (b.get(k), a.get(k)) for k in {*b, *a} if b.get(k) != a.get(k)}
        else:
            out[key] = {"gone": sorted(set(b) - set(a)), "new": sorted(set(a) - set(b))}
    return out


def _require_node() -> None:
    if os.geteuid() != 0:
        pytest.fail("the node test needs root (a real kubelet: interfaces, iptables, mounts, cgroups)", pytrace=False)
    try:
        nodemod.require_node_binaries()
    except MissingDependency as exc:
        pytest.fail(str(exc), pytrace=False)


# one DNS A query over UDP (no resolver library in the pause image, so it runs from the host in
# the pod's network namespace): argv SERVER NAME, prints the answers' addresses
DNS_QUERY = r"""
import random, socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
qid = random.randrange(65536)
query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(5)
sock.sendto(query, (server, 53))
reply = sock.recv(4096)
assert struct.unpack(">H", reply[:2])[0] == qid
answers = struct.unpack(">H", reply[6:8])[0]
pos = len(query)
for _ in range(answers):
    pos += 2 if reply[pos] & 0xC0 == 0xC0 else reply.index(b"\0", pos) + 1 - pos
    rtype, _, _, size = struct.unpack(">HHIH", reply[pos : pos + 10])
    pos += 10
    if rtype == 1:
        print(socket.inet_ntoa(reply[pos : pos + size]))
    pos += size
"""


def pod_netns(pod_ip: str, before: set[str]) -> str:
    """The /run/netns entry (made since ``before``) whose eth0 holds ``pod_ip``."""
    for name in sorted(os.listdir("/run/netns")):
        held = name.startswith("cni-") and name not in before
        if held and f"inet {pod_ip}/" in _out("ip", "-n", name, "-o", "addr", "show"):
            return name
    raise AssertionError(f"no network namespace holds {pod_ip}")


def _run_pause_pod(kubeconfig: str, work_dir: Path) -> tuple[dict[str, Any], float]:
    """Create the pause pod (the locally built image, never pulled); wait until it is Ready."""
    pod = json.loads(json.dumps(PAUSE_POD))
    pod["spec"]["containers"][0]["image"] = (nodemod.node_images() / "pause.ref").read_text().strip()
    created = time.monotonic()
    applied = _kubectl(kubeconfig, "create", "-f", "-", input=json.dumps(pod))
    assert applied.returncode == 0, applied.stderr
    waited = _kubectl(kubeconfig, "wait", "--for=condition=Ready", "pod/pause", "--timeout=60s")
    seconds = time.monotonic() - created
    got = json.loads(_kubectl(kubeconfig, "get", "pod", "pause", "-o", "json").stdout)
    assert waited.returncode == 0, (waited.stderr, got.get("status"), _tail(work_dir / "node" / "kubelet.log"))
    assert got["spec"]["nodeName"] == nodemod.NODE_NAME
    assert got["status"]["phase"] == "Running"
    assert got["status"]["podIP"].startswith("10.244.0.")
    return got, seconds


def test_up_node_pod_runs_down_restores_host(tmp_path: Path) -> None:
    _require_node()
    work_dir = tmp_path / "dev"
    netns_before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    before = host_snapshot(work_dir)

    began = time.monotonic()
    pids: dict[str, int] = {}
    try:
        # in the try: a timeout or an interrupt while `up` runs must still end in `down`
        up = _cli("up", "--node", "--work-dir", str(work_dir))
        up_seconds = time.monotonic() - began
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((work_dir / "state.json").read_text())
        pids = {p["name"]: p["pid"] for p in state["processes"]}
        assert set(pids) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "containerd",
            "kubelet",
            "kube-proxy",
            "cryptopipe-operator",
        }
        assert all(pid_runs(pid) for pid in pids.values()), pids
        kubeconfig = state["kubeconfig"]
        assert state["server"].startswith(f"https://{nodemod.NODE_IP}:")  # reachable from pods

        node = json.loads(_kubectl(kubeconfig, "get", "node", nodemod.NODE_NAME, "-o", "json").stdout)
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert ready["Ready"] == "True", node["status"]["conditions"]
        assert {"type": "InternalIP", "address": nodemod.NODE_IP} in node["status"]["addresses"]

        pod, pod_ready_seconds = _run_pause_pod(kubeconfig, work_dir)
        # the apiserver reaches kubelet's API with its client certificate, kubelet's webhook
        # authorizes it: what logs and exec need
        logs = _kubectl(kubeconfig, "logs", "pause")
        assert logs.returncode == 0, logs.stderr

        # from inside the pod's network namespace, the kubernetes Service (kube-proxy's DNAT to the
        # apiserver on the node address) answers TLS: 401, anonymous requests are refused
        netns = pod_netns(pod["status"]["podIP"], netns_before)
        code = _out(
            "nsenter",
            f"--net=/run/netns/{netns}",
            "curl",
            "-sk",
            "-m",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"https://{nodemod.KUBERNETES_SERVICE_IP}/version",
        )
        assert code == "401", code

        # CoreDNS (deployed by up --node) answers the pod's nameserver, kube-dns 10.96.0.10, from
        # inside the pod's network namespace: the kubernetes Service's name resolves to its IP
        coredns = json.loads(_kubectl(kubeconfig, "-n", "kube-system", "get", "deploy", "coredns", "-o", "json").stdout)
        assert coredns["status"].get("readyReplicas") == 1, coredns["status"]
        resolved = _out(
            "nsenter",
            f"--net=/run/netns/{netns}",
            sys.executable,
            "-c",
            DNS_QUERY,
            nodemod.CLUSTER_DNS_IP,
            "kubernetes.default.svc.cluster.local",
        ).split()
        assert resolved == [nodemod.KUBERNETES_SERVICE_IP], resolved

        status = _cli("status", "--work-dir", str(work_dir))
        assert status.returncode == 0, status.stdout
        assert re.search(rf"^{nodemod.NODE_NAME}\s+Ready", status.stdout, re.M), status.stdout
        assert re.search(r"^default\s+pause\s+1/1\s+Running", status.stdout, re.M), status.stdout
        print(f"\nup --node {up_seconds:.1f} s ({state['node']}); pod create -> Ready {pod_ready_seconds:.1f} s")
    finally:
        down = _cli("down", "--work-dir", str(work_dir), timeout=240)
    assert down.returncode == 0, down.stdout + down.stderr
    left = {name: pid for name, pid in pids.items() if pid_runs(pid)}
    assert not left, left
    assert not (work_dir / "state.json").exists()
    after = host_snapshot(work_dir)
    assert _diff(before, after) == {}, down.stdout


def test_down_after_kubelet_and_containerd_crash_restores_host(tmp_path: Path) -> None:
    """kubelet and containerd SIGKILLed with a pod running (its shim and processes survive, no CNI
    DEL runs): ``down`` still stops everything and restores the host."""
    _require_node()
    work_dir = tmp_path / "dev"
    before = host_snapshot(work_dir)
    pids: dict[str, int] = {}
    try:
        # in the try: a timeout or an interrupt while `up` runs must still end in `down`
        up = _cli("up", "--node", "--work-dir", str(work_dir))
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((work_dir / "state.json").read_text())
        pids = {p["name"]: p["pid"] for p in state["processes"]}
        _run_pause_pod(state["kubeconfig"], work_dir)
        for name in ("kubelet", "containerd"):
            os.kill(pids[name], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (pid_runs(pids["kubelet"]) or pid_runs(pids["containerd"])) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(str(work_dir) in c and "containerd-shim" in c for c in _cmdlines())  # the pod lives on
    finally:
        down = _cli("down", "--work-dir", str(work_dir), timeout=240)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "kubelet (pid" in down.stdout and "not running" in down.stdout, down.stdout
    assert not {name: pid for name, pid in pids.items() if pid_runs(pid)}
    assert not [c for c in _cmdlines() if str(work_dir) in c]  # no shim, no process of this node
    assert _diff(before, host_snapshot(work_dir)) == {}, down.stdout


def test_up_node_needs_root(tmp_path: Path) -> None:
    """Without root, ``up --node`` says so and exits non-zero before touching anything."""
    # as root, run it as nobody
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    tmp_path.chmod(0o777)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "CRYPTOPIPE_CACHE": str(tmp_path / "cache")}
    got = subprocess.run(
        [*nobody, sys.executable, "-m", "cryptopipe_dev.cli", "dev", "cluster", "up", "--node"]
        + ["--work-dir", str(tmp_path / "dev")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env=env,
    )
    assert got.returncode == 1, got.stdout + got.stderr
    assert "needs root" in got.stderr, got.stderr
    assert not (tmp_path / "dev").exists()

    # nor does `down` of a cluster with a node try to restore the host without root
    # (not under tmp_path: nobody cannot enter /tmp/pytest-of-root)
    with tempfile.TemporaryDirectory(prefix="cryptopipe-noroot-") as recorded:
        state = Path(recorded) / "state.json"
        state.write_text(json.dumps({"processes": [], "node": {"name": nodemod.NODE_NAME}}))
        for path in (Path(recorded), state):
            path.chmod(0o777)  # readable by nobody whatever the umask
        got = subprocess.run(
            [*nobody, sys.executable, "-m", "cryptopipe_dev.cli", "dev", "cluster", "down", "--work-dir", recorded],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
            env=env,
        )
        assert got.returncode == 1, got.stdout + got.stderr
        assert "needs root" in got.stderr, got.stderr
        assert state.exists()


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return ""
