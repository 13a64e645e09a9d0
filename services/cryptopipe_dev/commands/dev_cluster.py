"""``cryptopipe dev cluster up|down|status``: a Kubernetes control plane and the operator on this
machine, for trying CryptoPipelines with ``kubectl`` where no cluster exists.

``up`` starts etcd, kube-apiserver and kube-controller-manager (stack/kube.py, the tests' control
plane), installs the upstream KafkaTopic and SparkApplication CRDs (../shared/crds) and the chart's
CryptoPipeline CRD, starts the operator (``python -m cryptopipe_operator``), prints the kubeconfig
and returns. The processes are *detached*: each runs in its own session (ManagedProcess), is taken
out of ManagedProcess's stop-at-exit list on purpose, and is recorded with its pid in
``<work dir>/state.json``; ``down`` stops exactly those pids (after checking each pid still runs
the program it was recorded for), ``status`` reports them. Without ``--node`` no kubelet runs:
objects are stored, validated and garbage-collected, but no pod ever starts.

etcd's data, the admin token and the keys stay in the work dir, so a later ``up`` finds the
CryptoPipelines of the last one (on new ports when the old ones are taken).

``up --node`` (as root) adds kube-scheduler and one real node (stack/node.py: a second containerd,
kubelet, kube-proxy, a CNI bridge), with the apiserver on the node's address of a dummy interface
instead of 127.0.0.1, so pods run and reach it (its etcd data in ``<work dir>/kube-node``, apart
from the plain cluster's). Those processes are recorded the same way; before
anything starts, the host's state is written down, and ``down`` drains the node, stops everything
and restores the host (sysctls, iptables chains, mounts, cgroups, links).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptopipe_dev.stack import node as nodemod
from cryptopipe_dev.stack import node_addons, node_monitoring, node_spark, paths, procs
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.procs import LOOPBACK, ManagedProcess, free_port, wait_for

STATE_FILE = "state.json"
# stopped in this order (the operator first: it would otherwise log the API server going away)
# (with a node: nothing may create or bind pods while it drains; kubelet stops each sandbox, then
# containerd; the apiserver last but etcd)
STOP_ORDER = (
    "topic-controller",
    "cryptopipe-operator",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-proxy",
    "kubelet",
    "containerd",
    "kube-apiserver",
    "etcd",
)
# what /proc/<pid>/cmdline must contain for a recorded pid to still be ours (pids get reused)
CMDLINE_MARKERS = {
    "topic-controller": "cryptopipe_dev.topic_controller",
    "cryptopipe-operator": "cryptopipe_operator",
    "kube-controller-manager": "kube-controller-manager",
    "kube-apiserver": "kube-apiserver",
    "etcd": "etcd",
    "kube-scheduler": "kube-scheduler",
    "kubelet": "bin/kubelet",
    "kube-proxy": "kube-proxy",
    "containerd": "containerd --config",
}
MINIMAL_EXAMPLE = "manifests/examples/cryptopipeline-minimal.yaml"


def default_work_dir() -> Path:
    return paths.cache_dir() / "dev-cluster"


def _repo_root() -> Path:
    from cryptopipe_dev.repo import REPO_ROOT

    return REPO_ROOT


def crd_files() -> list[Path]:
    """The upstream KafkaTopic and SparkApplication CRDs, then the chart's CryptoPipeline CRD."""
    from cryptopipe_dev.repo import CRD_PATH, UPSTREAM_CRDS

    upstream = sorted(UPSTREAM_CRDS.glob("*.yaml"))
    missing = [p for p in [*upstream, CRD_PATH] if not p.is_file()]
    if not upstream or missing:
        raise paths.MissingDependency(f"CRDs missing: {missing or UPSTREAM_CRDS}")
    return [*upstream, CRD_PATH]


# --- state file -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    name: str
    pid: int
    log: str

    @property
    def alive(self) -> bool:
        return pid_runs(self.pid, CMDLINE_MARKERS.get(self.name, ""))


def pid_runs(pid: int, marker: str = "") -> bool:
    """``pid`` exists, is not a zombie, and (with ``marker``) its command line contains ``marker``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and marker in cmdline


def read_state(work_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((work_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None


def recorded(state: dict[str, Any] | None) -> list[Recorded]:
    found = {
        p["name"]: Recorded(p["name"], int(p["pid"]), p.get("log", "")) for p in (state or {}).get("processes", [])
    }
    return [found[n] for n in STOP_ORDER if n in found] + [p for n, p in found.items() if n not in STOP_ORDER]


def _write_state(work_dir: Path, state: dict[str, Any]) -> None:
    tmp = work_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(work_dir / STATE_FILE)


# --- commands ---------------------------------------------------------------------------------------


def cluster_up(
    work_dir: Path, *, node: bool = False, platform: bool = False, monitoring: bool = True, out: Any = None
) -> int:
    """``monitoring`` (with ``platform``): Prometheus run by prometheus-operator, and the chart with its
    PodMonitor, ServiceMonitor and PrometheusRule (``--no-monitoring`` turns it off)."""
    out = out or sys.stdout
    if platform and not node:
        print("error: --platform needs --node (the platform runs in pods)", file=sys.stderr)
        return 1
    monitoring = monitoring and platform
    if node:
        try:
            nodemod.require_root()
        except nodemod.NeedsRoot as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    previous = read_state(work_dir)
    running = [p for p in recorded(previous) if p.alive]
    if running and (previous or {}).get("partial"):
        print(
            f"error: an `up` that was killed midway left {', '.join(p.name for p in running)} running in "
            f"{work_dir}; `cryptopipe dev cluster down --work-dir {work_dir}` stops them",
            file=sys.stderr,
        )
        return 1
    if running:
        print(f"dev cluster already running in {work_dir} (`cryptopipe dev cluster down` stops it)", file=out)
        _print_status(work_dir, previous or {}, out)
        return 0

    began = time.monotonic()
    kube_node = nodemod.KubeNode(work_dir) if node else None
    started: list[ManagedProcess] = []
    kube: KubeControlPlane | None = None
    addons: dict[str, Any] = {}

    def track(proc: ManagedProcess) -> None:
        """Record each process the moment it starts ("partial" until ``up`` finishes): an ``up``
        killed midway (SIGKILL, a caller's timeout) leaves detached processes only ``down`` can
        stop, and ``down`` stops what state.json lists."""
        if proc not in started:
            started.append(proc)
        _write_state(work_dir, _partial_state(kube, started, kube_node))

    if kube_node is not None:
        kube_node.on_start = track
    try:
        if kube_node is None:
            kube = KubeControlPlane(work_dir / "kube", crds=crd_files(), die_with_parent=False)
        else:
            kube_node.prepare_host()  # records the host first; the dummy interface, the certificates
            kube = KubeControlPlane(
                # not "kube": its etcd holds a kubernetes Service from 10.0.0.0/24, outside this
                # Service range, and the apiserver does not move it
                work_dir / "kube-node",
                crds=crd_files(),
                die_with_parent=False,
                address=kube_node.node_ip,
                service_cidr=nodemod.SERVICE_CIDR,
                root_ca_file=kube_node.pki / "ca.crt",
                extra_apiserver_args=kube_node.apiserver_args(),
            )
        kube.on_start = track
        kube.start()
        if kube_node is not None:
            kube_node.start(kube)
            addons["coredns_ready_s"] = node_addons.deploy_dns(kube, kube_node)
            if platform:
                deps = node_addons.deploy_platform_deps(kube, kube_node, log_path=work_dir / "images-load.log")
                addons.update(deps.timings)
                addons["platform"] = {
                    "namespace": deps.namespace,
                    "kafka_bootstrap_from_host": deps.kafka_bootstrap_from_host,
                    "s3_endpoint": deps.s3_endpoint_in_cluster,
                    "s3_endpoint_from_host": deps.s3_endpoint_from_host,
                    "s3_secret": node_addons.S3_SECRET,
                    "lake_bucket": node_addons.LAKE_BUCKET,
                    "kafka_cluster": node_addons.KAFKA_CLUSTER,
                }
                # spark-operator (controller + webhook), so a pipeline's SparkApplication really runs
                addons.update(node_spark.deploy_spark_operator(kube, kube_node, log_path=work_dir / "images-load.log"))
                topics = node_addons.topic_controller_for(kube, deps, log_path=work_dir / "topic-controller.log")
                track(topics.start())
                if monitoring:
                    # before the chart: its PodMonitor, ServiceMonitor and PrometheusRule need the CRDs
                    addons.update(
                        node_monitoring.deploy_monitoring(kube, kube_node, log_path=work_dir / "images-load.log")
                    )
                    addons["monitoring"] = {
                        "namespace": node_monitoring.MONITORING_NAMESPACE,
                        "prometheus_service": node_monitoring.PROMETHEUS_SERVICE,
                    }
                # the operator as a user installs it: its chart, its image, in a pod (not on the host)
                addons["operator_install_s"] = node_addons.install_operator(kube, monitoring=monitoring)
        operator = None if platform else _start_operator(kube, work_dir, on_start=track)
    except BaseException:
        _stop_started(started, kube_node, kube)
        if not any(p.alive for p in started):
            (work_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    # Detach on purpose: ManagedProcess stops its children when this interpreter exits; these are
    # meant to outlive `up` (own sessions already, so a Ctrl-C in this terminal does not reach them).
    for proc in started:
        procs._running.discard(proc)
    state: dict[str, Any] = {
        "server": kube.server,
        "kubeconfig": str(kube.kubeconfig_path),
        "bin_dir": str(kube.bin_dir),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "processes": _process_records(started),
    }
    if kube_node is not None:
        state["node"] = {
            "name": kube_node.node_name,
            "ip": kube_node.node_ip,
            "dir": str(kube_node.dir),
            "bin_dir": str(kube_node.bin_dir),
            "containerd_socket": str(kube_node.containerd_socket),
            "pause_image": kube_node.pause_image,
            "up_seconds": round(time.monotonic() - began, 1),
            **{k: v for k, v in kube_node.timings.items() if k.endswith("_s")},
            **addons,
        }
    _write_state(work_dir, state)

    example = _repo_root() / MINIMAL_EXAMPLE
    print(f"dev cluster up: {kube.server} (etcd data, logs and state in {work_dir})", file=out)
    print(f"kubeconfig: {kube.kubeconfig_path}", file=out)
    print("", file=out)
    print(f"export KUBECONFIG={kube.kubeconfig_path}", file=out)
    print(f"export PATH={kube.bin_dir}:$PATH  # kubectl and helm", file=out)
    print(f"kubectl apply -f {example}", file=out)
    print("kubectl get cryptopipelines,kafkatopics,deployments,sparkapplications", file=out)
    print("", file=out)
    if kube_node is not None:
        print(
            f"node {kube_node.node_name} Ready ({kube_node.node_ip}, kubelet to Ready "
            f"{kube_node.timings.get('kubelet_to_ready_s')} s, up {state['node']['up_seconds']} s); "
            f"images: ctr --address {kube_node.containerd_socket} -n k8s.io images import IMAGE.tar",
            file=out,
        )
        print(f"CoreDNS: kube-dns {nodemod.CLUSTER_DNS_IP} (ready in {addons['coredns_ready_s']} s)", file=out)
        if platform:
            p = addons["platform"]
            print(
                f"platform: namespace {p['namespace']} (restricted), Kafka {p['kafka_cluster']}-kafka-bootstrap:9092 "
                f"(from the host {p['kafka_bootstrap_from_host']}), S3 {p['s3_endpoint']} (Secret {p['s3_secret']}, "
                f"bucket {p['lake_bucket']}; from the host {p['s3_endpoint_from_host']}), KafkaTopic stand-in on the host, "
                f"spark-operator {node_spark.SPARK_OPERATOR_VERSION} in {node_spark.NAMESPACE} (controller + webhook)",
                file=out,
            )
        if monitoring:
            ns, svc = node_monitoring.MONITORING_NAMESPACE, node_monitoring.PROMETHEUS_SERVICE
            print(
                f"Prometheus (prometheus-operator) in {ns}, scraping the chart's PodMonitor and ServiceMonitor, "
                f"with its PrometheusRule: kubectl get --raw "
                f"'/api/v1/namespaces/{ns}/services/{svc}/proxy/api/v1/targets'",
                file=out,
            )
    if operator is not None:
        print(f"operator log: {operator.log_path}; stop everything with `cryptopipe dev cluster down`", file=out)
    else:
        print(
            f"operator: helm release {node_addons.OPERATOR_RELEASE} in {node_addons.OPERATOR_NAMESPACE} "
            f"(kubectl -n {node_addons.OPERATOR_NAMESPACE} logs deploy/{node_addons.OPERATOR_RELEASE}); "
            "stop everything with `cryptopipe dev cluster down`",
            file=out,
        )
    return 0


def _process_records(started: list[ManagedProcess]) -> list[dict[str, Any]]:
    """state.json's processes: the last started of each name (a restart on a taken port replaces one)."""
    latest = {p.name: p for p in started}
    return [{"name": p.name, "pid": p.pid, "log": str(p.log_path)} for p in latest.values()]


def _partial_state(
    kube: KubeControlPlane | None, started: list[ManagedProcess], kube_node: nodemod.KubeNode | None
) -> dict[str, Any]:
    """What ``down`` needs of an ``up`` still under way: the processes and, for the drain, the
    kubeconfig."""
    state: dict[str, Any] = {"partial": True, "processes": _process_records(started)}
    if kube is not None and kube.port:  # the apiserver's port is picked after etcd starts
        state |= {"server": kube.server, "kubeconfig": str(kube.kubeconfig_path), "bin_dir": str(kube.bin_dir)}
    if kube_node is not None:
        state["node"] = {"dir": str(kube_node.dir), "bin_dir": str(kube_node.bin_dir)}
    return state


def _stop_started(started: list[ManagedProcess], kube_node: nodemod.KubeNode | None, kube: Any) -> None:
    """A failed ``up``: stop what it started (in STOP_ORDER) and, with a node, restore the host."""
    order = {name: i for i, name in enumerate(STOP_ORDER)}
    for proc in sorted(started, key=lambda p: order.get(p.name, -1)):
        if kube_node is not None and proc.name == "containerd" and proc.alive:
            nodemod.kill_containers(kube_node.dir)
        proc.stop()
    if kube is not None:
        kube.stop()
    if kube_node is not None:
        nodemod.teardown(kube_node.dir, kube_node.bin_dir / "kube-proxy", say=lambda m: print(m, file=sys.stderr))


def _start_operator(
    kube: KubeControlPlane, work_dir: Path, *, on_start: Callable[[ManagedProcess], None]
) -> ManagedProcess:
    root = _repo_root()
    pythonpath = os.pathsep.join(
        [str(root / "operator"), str(root / "services"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    health_port = free_port()
    env = {
        **kube.env(),
        "PYTHONPATH": pythonpath,
        "CRYPTOPIPE_OPERATOR_HEALTH_HOST": LOOPBACK,
        "CRYPTOPIPE_OPERATOR_HEALTH_PORT": str(health_port),
        # status follows the children within 2 s (a dev loop is watched by a human)
        "CRYPTOPIPE_OPERATOR_STATUS_INTERVAL_S": os.environ.get("CRYPTOPIPE_OPERATOR_STATUS_INTERVAL_S", "2"),
        "CRYPTOPIPE_OPERATOR_RETRY_BACKOFF_S": os.environ.get("CRYPTOPIPE_OPERATOR_RETRY_BACKOFF_S", "2"),
    }
    operator = ManagedProcess(
        [sys.executable, "-m", "cryptopipe_operator"],
        log_path=work_dir / "operator.log",
        env=env,
        name="cryptopipe-operator",
    ).start()
    on_start(operator)

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{health_port}/healthz", timeout=1) as resp:
            return resp.status == 200

    wait_for(healthy, 60, "operator /healthz", interval=0.2, process=operator, retry_on=(OSError,))
    return operator


def cluster_down(work_dir: Path, *, timeout: float = 15.0, out: Any = None) -> int:
    out = out or sys.stdout
    work_dir = work_dir.resolve()
    state = read_state(work_dir)
    node_dir = work_dir / "node"
    host_record = node_dir / nodemod.HOST_RECORD
    if state is None and not host_record.exists():
        print(f"no dev cluster recorded in {work_dir}", file=out)
        return 0
    if (state or {}).get("node") or host_record.exists():
        try:
            nodemod.require_root("cryptopipe dev cluster down (of a cluster with a node)")
        except nodemod.NeedsRoot as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    procs_recorded = recorded(state)
    by_name = {p.name: p for p in procs_recorded}
    for proc in procs_recorded:
        kubelet, apiserver = by_name.get("kubelet"), by_name.get("kube-apiserver")
        if proc.name == "kube-proxy" and kubelet and kubelet.alive and apiserver and apiserver.alive:
            # nothing schedules or recreates pods any more: kubelet stops each sandbox properly
            nodemod.drain(lambda *a, **kw: _kubectl(state or {}, *a, **kw), node_dir)
        if proc.name == "containerd" and proc.alive:
            for task in nodemod.kill_containers(node_dir):
                print(f"container {task}: killed", file=out)
        if not proc.alive:
            print(f"{proc.name} (pid {proc.pid}): not running", file=out)
            continue
        _stop_pid(proc, timeout)
        print(f"{proc.name} (pid {proc.pid}): stopped", file=out)
    left = [p for p in procs_recorded if p.alive]
    if left:
        print("still running: " + ", ".join(f"{p.name} (pid {p.pid})" for p in left), file=out)
        return 1
    if host_record.exists():
        bin_dir = Path((state or {}).get("node", {}).get("bin_dir") or nodemod.node_bin())
        problems = nodemod.teardown(node_dir, bin_dir / "kube-proxy", say=lambda m: print(m, file=out))
        if problems:
            return 1
    (work_dir / STATE_FILE).unlink(missing_ok=True)
    return 0


def _kubectl(state: dict[str, Any], *args: str, check: bool = False, timeout: float = 60) -> Any:
    kubectl = Path(state.get("bin_dir", "")) / "kubectl"
    return subprocess.run(
        [str(kubectl), f"--kubeconfig={state.get('kubeconfig')}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def _stop_pid(proc: Recorded, timeout: float) -> None:
    """SIGTERM the process's group (each was started as a session leader), SIGKILL after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not proc.alive:
                return
            time.sleep(0.1)


def cluster_status(work_dir: Path, *, out: Any = None) -> int:
    """Exit 0 when every recorded process runs, 1 otherwise (nothing recorded, or some stopped)."""
    out = out or sys.stdout
    work_dir = work_dir.resolve()
    state = read_state(work_dir)
    if state is None:
        print(f"no dev cluster recorded in {work_dir} (start one with `cryptopipe dev cluster up`)", file=out)
        return 1
    return 0 if _print_status(work_dir, state, out) else 1


def _print_status(work_dir: Path, state: dict[str, Any], out: Any) -> bool:
    all_alive = True
    print(f"dev cluster in {work_dir}: server {state.get('server')}, started {state.get('started_at')}", file=out)
    for proc in recorded(state):
        alive = proc.alive
        all_alive &= alive
        print(f"  {proc.name:<24} pid {proc.pid:<8} {'running' if alive else 'NOT RUNNING'}  log {proc.log}", file=out)
    if state.get("node") and all_alive:
        for what in (("nodes", "-o", "wide"), ("pods", "--all-namespaces", "-o", "wide")):
            got = _kubectl(state, "get", *what, timeout=20)
            print(got.stdout.rstrip() or got.stderr.rstrip(), file=out)
    print(f"export KUBECONFIG={state.get('kubeconfig')}", file=out)
    return all_alive


def run_dev_cluster(
    action: str, work_dir: Path | None, *, node: bool = False, platform: bool = False, monitoring: bool = True
) -> int:
    work_dir = work_dir or default_work_dir()
    if action == "up":
        try:
            return cluster_up(work_dir, node=node, platform=platform, monitoring=monitoring)
        except paths.MissingDependency as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if action == "down":
        return cluster_down(work_dir)
    if action == "status":
        return cluster_status(work_dir)
    raise AssertionError(action)
