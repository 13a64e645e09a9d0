"""``python -m cryptopipe_dev.bench_operator`` (``make bench-operator``): the operator against a real
kube-apiserver, measured in one run and printed side by side with the targets of issue 3:

1. latency: N CryptoPipelines created one at a time (default 40, one every 0.3 s); for each, the
   wall time from its create call returning to the last of its children (what render_children
   renders) appearing in the API server, p50/p99/max;
2. throughput: 100 more created at once (a thread pool of POSTs); the time from the first create
   call to all 100 having every child and status.observedGeneration == metadata.generation;
3. memory: the operator process's VmRSS, sampled every 0.1 s during both phases (and a steady
   period after them, with every pipeline's status timer running), peak reported.

Children and statuses are observed through API watch streams (one per kind), so nothing polls and
each object's first appearance is timestamped when its event arrives. The operator runs as the
chart runs it (``python -m cryptopipe_operator``, settings.py's defaults, metrics port on).
About 2 minutes on 2 cores. Method and figures: docs/benchmarks-operator.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from cryptopipe.logs import setup_logging
from cryptopipe_dev.repo import CRD_PATH, REPO_ROOT, UPSTREAM_CRDS
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.procs import LOOPBACK, ManagedProcess, free_port, wait_for
from cryptopipe_operator.kube_api import object_path
from cryptopipe_operator.render import render_children
from cryptopipe_operator.spec import API_GROUP, API_VERSION, KIND, parse_pipeline

NAMESPACE = "bench"
UPSTREAM = (
    "strimzi-0.51.0-043-Crd-kafkatopic.yaml",
    "spark-operator-v2.5.2-sparkoperator.k8s.io_sparkapplications.yaml",
)
EXAMPLE = REPO_ROOT / "manifests" / "examples" / "cryptopipeline-minimal.yaml"
PIPELINE_API_VERSION = f"{API_GROUP}/{API_VERSION}"
# issue 3's targets
P50_TARGET_S, P99_TARGET_S, RECONCILE_100_TARGET_S, RSS_TARGET_MB = 1.0, 3.0, 60.0, 150.0
Child = tuple[str, str]  # (kind, name)


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test control plane's self-signed certificate
    return ctx


# --- what is created and what it should produce ---------------------------------------------------


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


# --- observing: one watch stream per kind ------------------------------------------------------


class Watcher:
    """First-appearance time of every object of the watched kinds in NAMESPACE, and for each
    CryptoPipeline the first time its status.observedGeneration equalled its generation."""

    def __init__(self, kube: KubeControlPlane, paths: Mapping[str, str]) -> None:
        self.kube = kube
        self.paths = dict(paths)
        self.cond = threading.Condition()
        self.first_seen: dict[Child, float] = {}
        self.observed: dict[str, float] = {}
        self.expected: dict[str, set[Child]] = {}
        self.events = 0
        self._ready = {kind: threading.Event() for kind in self.paths}
        self._halt = threading.Event()
        self.errors: list[str] = []

    def start(self, timeout: float = 30.0) -> None:
        for kind, path in self.paths.items():
            threading.Thread(target=self._run, args=(kind, path), name=f"watch-{kind}", daemon=True).start()
        for kind, ready in self._ready.items():
            if not ready.wait(timeout):
                raise RuntimeError(f"watch on {kind} not established in {timeout:.0f} s: {self.errors}")

    def stop(self) -> None:
        self._halt.set()

    def _run(self, kind: str, path: str) -> None:
        rv = ""
        while not self._halt.is_set():
            query = "watch=1&timeoutSeconds=1800" + (f"&resourceVersion={rv}" if rv else "")
            req = urllib.request.Request(
                f"{self.kube.server}{path}?{query}", headers={"Authorization": f"Bearer {self.kube.token}"}
            )
            try:
                with urllib.request.urlopen(req, timeout=1900, context=_tls()) as resp:
                    self._ready[kind].set()
                    for line in resp:  # one JSON event per line (chunk)
                        now = time.monotonic()
                        event = json.loads(line)
                        if event["type"] == "ERROR":  # e.g. 410 Gone: start over with a fresh list
                            rv = ""
                            break
                        obj = event["object"]
                        rv = obj["metadata"].get("resourceVersion", rv)
                        if event["type"] != "BOOKMARK":
                            self._record(kind, event["type"], obj, now)
            except (OSError, ValueError) as exc:
                if self._halt.is_set():
                    return
                self.errors.append(f"{kind}: {exc!r}")
                time.sleep(0.2)

    def _record(self, kind: str, type_: str, obj: Mapping[str, Any], now: float) -> None:
        meta = obj["metadata"]
        with self.cond:
            self.events += 1
            if type_ == "DELETED":
                return
            if kind == KIND:
                status = obj.get("status") or {}
                if status.get("observedGeneration") == meta.get("generation"):
                    self.observed.setdefault(meta["name"], now)
            else:
                self.first_seen.setdefault((kind, meta["name"]), now)
            self.cond.notify_all()

    def children_at(self, name: str) -> float | None:
        """When the last of pipeline ``name``'s children appeared (None: not all yet). Caller holds cond."""
        times = [self.first_seen.get(child) for child in self.expected[name]]
        return None if None in times else max(times)  # type: ignore[type-var]

    def reconciled_at(self, name: str) -> float | None:
        children = self.children_at(name)
        observed = self.observed.get(name)
        return None if children is None or observed is None else max(children, observed)

    def wait(self, names: Iterable[str], *, reconciled: bool, timeout: float) -> bool:
        names = list(names)
        done = self.reconciled_at if reconciled else self.children_at
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(done(n) is not None for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
        return True


# --- memory and CPU of a process, from /proc ---------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (its threads included)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self.phase = "idle"
        self.samples: list[tuple[str, float, int]] = []  # (phase, t, VmRSS KiB)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            kb = proc_status_kb(self.pid, "VmRSS")
            if kb:
                self.samples.append((self.phase, time.monotonic(), kb))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def peak_mib(self, phase: str | None = None) -> float:
        kbs = [kb for p, _, kb in self.samples if phase is None or p == phase]
        return max(kbs, default=0) / 1024

    def last_mib(self, phase: str) -> float:
        kbs = [kb for p, _, kb in self.samples if p == phase]
        return (kbs[-1] if kbs else 0) / 1024


# --- helpers ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with 40 values, p99 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def create_pipeline(kube: KubeControlPlane, name: str) -> float:
    """POST one CryptoPipeline; returns time.monotonic() when the create call returned."""
    path = object_path(PIPELINE_API_VERSION, KIND, NAMESPACE)
    req = urllib.request.Request(
        kube.server + path,
        data=json.dumps(pipeline_body(name)).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {kube.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60, context=_tls()) as resp:
        resp.read()
    return time.monotonic()


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def environment(kube: KubeControlPlane) -> dict[str, str]:
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.machine(),
    )
    bin_dir = kube.bin_dir
    return {
        "machine": f"{os.cpu_count()} cores ({model}), {mem_kb / 1024**2:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        "kube-apiserver": _version([str(bin_dir / "kube-apiserver"), "--version"]),
        "etcd": _version([str(bin_dir / "etcd"), "--version"]),
        "python": platform.python_version(),
        "kopf": metadata.version("kopf"),
        "aiohttp": metadata.version("aiohttp"),
    }


def scrape_metrics(port: int) -> dict[str, float]:
    """The operator's reconcile counters and duration histogram sum/count from /metrics."""
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("cryptopipe_operator_reconcile") and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


# --- the run -------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cryptopipe_dev.bench_operator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--latency-pipelines", type=int, default=40, help="pipelines created one at a time (default 40)")
    p.add_argument("--spacing", type=float, default=0.3, help="seconds between their creates (default 0.3)")
    p.add_argument("--burst", type=int, default=100, help="pipelines created at once (default 100)")
    p.add_argument("--burst-threads", type=int, default=8, help="concurrent create calls in the burst (default 8)")
    p.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="seconds to keep sampling RSS after the burst, status timers running (default 15)",
    )
    p.add_argument("--timeout", type=float, default=180.0, help="give up waiting for a phase after this (default 180)")
    p.add_argument("--rss-interval", type=float, default=0.1, help="RSS sampling interval, s (default 0.1)")
    p.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the operator, e.g. CRYPTOPIPE_OPERATOR_STATUS_INTERVAL_S=30 "
        "(default: settings.py's defaults, as the chart runs it)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write every figure as JSON")
    p.add_argument("--work-dir", type=Path, help="keep the control plane's data and logs here (default: temp, removed)")
    p.add_argument("--log-level", default="WARNING", help="this process's diagnostic logs on stderr (default WARNING)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    began = time.monotonic()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="cryptopipe-bench-operator-"))
    keep = args.work_dir is not None
    crds = [UPSTREAM_CRDS / name for name in UPSTREAM] + [CRD_PATH]
    kube = KubeControlPlane(work_dir / "kube", crds=crds, die_with_parent=True)
    operator: ManagedProcess | None = None
    failed = False
    try:
        print("CryptoPipeline operator benchmark  " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), flush=True)
        kube.start()
        for key, value in environment(kube).items():
            print(f"  {key}: {value}")
        print(
            f"  control plane up in {kube.startup_seconds:.1f} s (etcd, kube-apiserver, "
            "kube-controller-manager; KafkaTopic, SparkApplication, CryptoPipeline CRDs)",
            flush=True,
        )
        kube.ensure_namespace(NAMESPACE)
        load = {"start": os.getloadavg()[0]}

        overrides = dict(item.split("=", 1) for item in args.operator_env)
        health_port, metrics_port = free_port(), free_port()
        env = {
            **kube.env(),
            "CRYPTOPIPE_OPERATOR_HEALTH_HOST": LOOPBACK,
            "CRYPTOPIPE_OPERATOR_HEALTH_PORT": str(health_port),
            "CRYPTOPIPE_OPERATOR_METRICS_PORT": str(metrics_port),
            **overrides,
        }
        operator = ManagedProcess(
            [sys.executable, "-m", "cryptopipe_operator"],
            log_path=work_dir / "operator.log",
            env=env,
            name="cryptopipe-operator",
            die_with_parent=True,
        ).start()
        t_op = time.monotonic()

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{health_port}/healthz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(healthy, 60, "operator liveness endpoint", interval=0.1, process=operator)
        print(
            f"  operator (pid {operator.pid}) healthy {time.monotonic() - t_op:.1f} s after start; "
            f"settings: defaults{' + ' + ', '.join(args.operator_env) if args.operator_env else ''}",
            flush=True,
        )

        children, paths = expected_children("example")
        kinds = sorted({k for k, _ in children})
        print(
            f"  children per pipeline (render_children): {len(children)} "
            f"({', '.join(f'{k} x{sum(1 for c in children if c[0] == k)}' for k in kinds)})"
        )
        watcher = Watcher(kube, {**paths, KIND: object_path(PIPELINE_API_VERSION, KIND, NAMESPACE)})
        watcher.start()
        sampler = RssSampler(operator.pid, args.rss_interval)
        sampler.start()
        cpu = {"operator": operator.pid, "kube-apiserver": kube.apiserver.pid, "etcd": kube.etcd.pid}  # type: ignore[union-attr]
        cpu_marks: dict[str, dict[str, float]] = {}

        def mark(phase: str) -> None:
            cpu_marks[phase] = {name: cpu_seconds(pid) for name, pid in cpu.items()}
            cpu_marks[phase]["wall"] = time.monotonic()

        def expect(name: str) -> None:
            with watcher.cond:
                watcher.expected[name] = expected_children(name)[0]

        # warm-up: the first pipeline after start pays for first-use costs (connection pool, imports)
        time.sleep(1.0)
        idle_rss = sampler.last_mib("idle")
        expect("warmup")
        created = create_pipeline(kube, "warmup")
        if not watcher.wait(["warmup"], reconciled=True, timeout=60):
            raise RuntimeError("the warm-up pipeline was not reconciled in 60 s")
        with watcher.cond:
            warmup = watcher.children_at("warmup") - created  # type: ignore[operator]
        print(
            f"\n  warm-up pipeline (not counted): children {warmup:.3f} s after create; "
            f"operator RSS idle {idle_rss:.1f} MiB",
            flush=True,
        )

        # (1) latency, one at a time
        n = args.latency_pipelines
        print(f"\n[1/2] latency: {n} pipelines, one every {args.spacing:g} s ...", flush=True)
        sampler.phase = "latency"
        mark("latency")
        lat_names = [f"lat-{i:03d}" for i in range(n)]
        lat_created: dict[str, float] = {}
        for name in lat_names:
            expect(name)
            start = time.monotonic()
            lat_created[name] = create_pipeline(kube, name)
            time.sleep(max(0.0, args.spacing - (time.monotonic() - start)))
        ok1 = watcher.wait(lat_names, reconciled=True, timeout=args.timeout)
        mark("burst")
        with watcher.cond:
            lat = {nm: watcher.children_at(nm) - t for nm, t in lat_created.items() if watcher.children_at(nm)}  # type: ignore[operator]
            lat_obs = {nm: watcher.reconciled_at(nm) - t for nm, t in lat_created.items() if watcher.reconciled_at(nm)}  # type: ignore[operator]
        lat_values = list(lat.values())
        if not ok1:
            print(f"  !! only {len(lat)}/{n} had all children within {args.timeout:g} s")

        # (2) throughput: a burst of creates
        m = args.burst
        print(
            f"[2/2] throughput: {m} pipelines created at once ({args.burst_threads} concurrent creates) ...", flush=True
        )
        sampler.phase = "burst"
        burst_names = [f"burst-{i:03d}" for i in range(m)]
        for name in burst_names:
            expect(name)
        t0 = time.monotonic()
        with ThreadPoolExecutor(args.burst_threads) as pool:
            burst_created = dict(
                zip(burst_names, pool.map(lambda nm: create_pipeline(kube, nm), burst_names), strict=True)
            )
        t_created = time.monotonic()
        ok2 = watcher.wait(burst_names, reconciled=True, timeout=args.timeout)
        time.monotonic()
        mark("settle")
        with watcher.cond:
            burst_children = {nm: watcher.children_at(nm) for nm in burst_names}
            burst_reconciled = {nm: watcher.reconciled_at(nm) for nm in burst_names}
        reconciled = [t for t in burst_reconciled.values() if t is not None]
        all_children = [t for t in burst_children.values() if t is not None]
        reconcile_100 = (max(reconciled) - t0) if ok2 else float("inf")
        children_100 = (max(all_children) - t0) if len(all_children) == m else float("inf")
        burst_lat = [t - burst_created[nm] for nm, t in burst_children.items() if t is not None]
        if not ok2:
            print(f"  !! only {len(reconciled)}/{m} reconciled within {args.timeout:g} s")

        # (3) steady state: every pipeline's status timer ticking
        sampler.phase = "settle"
        time.sleep(args.settle)
        mark("end")
        sampler.stop()
        watcher.stop()
        hwm = proc_status_kb(operator.pid, "VmHWM") / 1024
        final_metrics = scrape_metrics(metrics_port)
        load["end"] = os.getloadavg()[0]

        def cpu_use(phase: str, nxt: str) -> dict[str, float]:
            a, b = cpu_marks[phase], cpu_marks[nxt]
            wall = b["wall"] - a["wall"]
            return {"wall_s": wall, **{k: b[k] - a[k] for k in cpu}}

        usage = {
            "latency": cpu_use("latency", "burst"),
            "burst": cpu_use("burst", "settle"),
            "settle": cpu_use("settle", "end"),
        }
        peak_phases = max(sampler.peak_mib("latency"), sampler.peak_mib("burst"))
        peak_all = max(peak_phases, sampler.peak_mib("settle"))
        rss_peak_mb = max(peak_all, hwm) * 1.048576  # MiB -> MB (10^6 B), the target's unit

        p50 = percentile(lat_values, 50) if lat_values else float("inf")
        p99 = percentile(lat_values, 99) if lat_values and ok1 else float("inf")
        print()
        print(
            f"  latency phase: {len(lat_values)} pipelines; create -> all {len(children)} children: "
            f"p50 {p50:.3f} s, p90 {percentile(lat_values, 90):.3f} s, p99 {p99:.3f} s, "
            f"max {max(lat_values):.3f} s, min {min(lat_values):.3f} s"
        )
        if lat_obs:
            obs = list(lat_obs.values())
            print(
                f"                 create -> children + status.observedGeneration: p50 {percentile(obs, 50):.3f} s, "
                f"p99 {percentile(obs, 99):.3f} s"
            )
        print(
            f"  burst phase:   {m} create calls took {t_created - t0:.2f} s; all children of all {m} after "
            f"{children_100:.2f} s; all reconciled (children + observedGeneration) after {reconcile_100:.2f} s"
        )
        if burst_lat:
            print(
                f"                 per pipeline create -> children under the burst: p50 {percentile(burst_lat, 50):.2f} s, "
                f"p99 {percentile(burst_lat, 99):.2f} s, max {max(burst_lat):.2f} s"
            )
        print(
            f"  operator RSS (VmRSS every {args.rss_interval:g} s, MiB): idle {idle_rss:.1f}, "
            f"latency peak {sampler.peak_mib('latency'):.1f}, burst peak {sampler.peak_mib('burst'):.1f}, "
            f"settle ({args.settle:g} s, {n + m + 1} pipelines) peak {sampler.peak_mib('settle'):.1f}; "
            f"VmHWM {hwm:.1f}"
        )
        for phase, u in usage.items():
            print(
                f"  CPU s during {phase:7s} ({u['wall_s']:5.1f} s wall): " + ", ".join(f"{k} {u[k]:.1f}" for k in cpu)
            )
        if final_metrics:
            count = final_metrics.get("cryptopipe_operator_reconcile_duration_seconds_count", 0)
            total = final_metrics.get("cryptopipe_operator_reconcile_duration_seconds_sum", 0)
            results = {
                k.split('"')[1]: v
                for k, v in final_metrics.items()
                if k.startswith("cryptopipe_operator_reconciles_total")
            }
            print(
                f"  operator /metrics: {count:.0f} reconciles, mean {total / count if count else 0:.3f} s each; "
                f"by result {results}"
            )
        print(
            f"  load average (1 min): {load['start']:.2f} at start, {load['end']:.2f} at end; "
            f"watch events seen {watcher.events}; watch errors {len(watcher.errors)}"
        )

        rows = [
            ("apply -> children p50", f"{p50:.3f} s", f"<= {P50_TARGET_S:g} s", p50 <= P50_TARGET_S),
            ("apply -> children p99", f"{p99:.3f} s", f"<= {P99_TARGET_S:g} s", p99 <= P99_TARGET_S),
            (
                f"{m} pipelines reconciled",
                f"{reconcile_100:.2f} s",
                f"<= {RECONCILE_100_TARGET_S:g} s",
                reconcile_100 <= RECONCILE_100_TARGET_S,
            ),
            ("operator peak RSS", f"{rss_peak_mb:.1f} MB", f"<= {RSS_TARGET_MB:g} MB", rss_peak_mb <= RSS_TARGET_MB),
        ]
        print(f"\n  {'metric':28s} {'measured':>12s} {'target':>12s}  met")
        for metric, measured, target, met in rows:
            print(f"  {metric:28s} {measured:>12s} {target:>12s}  {'yes' if met else 'NO'}")
        print(
            f"\n  (MB = 10^6 bytes; peak RSS is the max of the samples and VmHWM over all phases. "
            f"Total run {time.monotonic() - began:.0f} s.)"
        )
        failed = not all(r[3] for r in rows)

        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "latency_s": lat,
                        "latency_to_observed_s": lat_obs,
                        "p50_s": p50,
                        "p99_s": p99,
                        "burst_create_calls_s": t_created - t0,
                        "burst_children_s": children_100,
                        "burst_reconciled_s": reconcile_100,
                        "burst_latency_s": burst_lat,
                        "rss_mib": {
                            "idle": idle_rss,
                            "latency": sampler.peak_mib("latency"),
                            "burst": sampler.peak_mib("burst"),
                            "settle": sampler.peak_mib("settle"),
                            "hwm": hwm,
                        },
                        "rss_samples": sampler.samples,
                        "cpu_s": usage,
                        "metrics": final_metrics,
                        "load": load,
                        "targets_met": {r[0]: r[3] for r in rows},
                    },
                    indent=1,
                )
            )
    except BaseException:
        if operator is not None:
            print("\noperator log tail:\n" + operator.log_tail(), file=sys.stderr)
        raise
    finally:
        if operator is not None:
            operator.stop()
        kube.stop()
        if not keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
