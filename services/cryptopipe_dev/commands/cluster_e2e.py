"""``cryptopipe dev cluster e2e --replay RECORDING... --output-csv PATH``: the user's path through a
running ``--node --platform`` dev cluster, checked from outside.

It deploys the dev replay server in a pod for the recordings, applies a CryptoPipeline whose
wsUrl/restUrl point at it, and decides completion exactly as ``cryptopipe replay`` does
(commands/replay.py), only watching pods instead of local processes: ``wait_caught_up`` on the
replay pod's ``/_replay/status`` and the ingestion pod's /readyz and /metrics (pod IPs are reachable
from the host over the node's bridge); then one tick per product past the recordings' last window
(``produce_ticks``, into the pipeline's topic through the broker's Service); then until the Spark
driver's watermark gauge (``cryptopipe_job_watermark_timestamp_seconds``, per window) has passed
it. The candles are read from the S3 pod's bucket with the project's lake reader and written with
``cryptopipe replay``'s CSV writer. The pipeline must also be ``Ready=True`` from its children's
real status. Every wait is bounded by ``--timeout`` and names what it waited for.

Afterwards the pipeline and its replay server are deleted (the lake stays: the pipeline is
``Retain``), so that the next run finds the node's 2 CPUs free; the cluster keeps running
(``--keep``: both stay, for checks on a running pipeline). One feed per run: a CryptoPipeline
ingests one feed.

``--follow-replaced-pods`` is for checks that delete pods mid-stream: a deleted ingestion pod is
followed to the Deployment's replacement (whose frames are then those the replay server sent to
its address), and a terminating driver is not scraped. Without it, an ingestion pod that stops or
restarts fails the run.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptopipe.contracts import parse_duration, us_to_iso
from cryptopipe_dev.commands import replay as replay_cmd
from cryptopipe_dev.commands.dev_cluster import default_work_dir, read_state, recorded
from cryptopipe_dev.commands.scrape import samples
from cryptopipe_dev.stack import node_addons, paths
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.local import produce_ticks

log = logging.getLogger("cryptopipe.cluster_e2e")

INGESTION_PORT = 8080  # render_ingestion.HTTP_PORT
JOB_METRICS_PORT = 9108  # render_spark.JOB_METRICS_PORT
WATERMARK_GAUGE = "cryptopipe_job_watermark_timestamp_seconds"
# small enough that a driver and an executor fit next to the platform on a 2-CPU node
CORE_REQUEST = "400m"


class E2EError(Exception):
    """The run cannot finish: the message says what was waited for and what was seen."""


def attached_cluster(work_dir: Path, state: dict[str, Any] | None) -> tuple[KubeControlPlane, dict[str, Any]]:
    """The recorded ``--node --platform`` cluster of ``work_dir``: its kubectl, and ``state.json``'s
    platform addresses. Raises E2EError when there is none or it is not running."""
    if state is None:
        raise E2EError(
            f"no dev cluster recorded in {work_dir} (start one: cryptopipe dev cluster up --node --platform)"
        )
    platform = (state.get("node") or {}).get("platform")
    if not platform:
        raise E2EError(
            f"the dev cluster in {work_dir} has no node and platform: e2e needs `cryptopipe dev cluster up --node "
            "--platform` (pods run only on a node; Kafka, S3 and spark-operator come with --platform)"
        )
    stopped = [p.name for p in recorded(state) if not p.alive]
    if stopped:
        raise E2EError(f"the dev cluster in {work_dir} is not fully running: {', '.join(stopped)} stopped")
    kube = KubeControlPlane(
        Path(state["kubeconfig"]).parent, bin_dir=Path(state["bin_dir"]), address=state["node"]["ip"]
    )
    return kube, platform


def platform_pipeline(
    name: str,
    namespace: str,
    urls: Mapping[str, str],
    platform: Mapping[str, Any],
    *,
    feed: str,
    products: list[str],
    small: bool = True,
) -> dict[str, Any]:
    """A CryptoPipeline on the dev cluster's platform: its Kafka and S3 server, the images loaded
    into the node (pull policy Never), the feed at ``urls`` (the replay server's pod); ``small``:
    Spark pods that fit the 2-CPU node. Callers add what their check needs to ``spec``."""
    refs = node_addons.image_refs()
    spark: dict[str, Any] = {"image": refs["spark-job"], "imagePullPolicy": "Never"}
    if small:
        spark |= {"driver": {"coreRequest": CORE_REQUEST}, "executor": {"coreRequest": CORE_REQUEST}}
    return {
        "apiVersion": "cryptopipeline.io/v1alpha1",
        "kind": "CryptoPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "feed": feed,
            "products": list(products),
            "kafka": {"clusterName": platform["kafka_cluster"], "replicas": 1},
            "sink": {
                "endpoint": platform["s3_endpoint"],
                "bucket": platform["lake_bucket"],
                "credentialsSecretRef": {"name": platform["s3_secret"]},
            },
            "ingestion": {
                "image": refs["ingestion"],
                "imagePullPolicy": "Never",
                "wsUrl": urls["ws_url"],
                "restUrl": urls["rest_url"],
            },
            "spark": spark,
        },
    }


def pipeline_manifest(
    name: str, plan: replay_cmd.ReplayPlan, urls: dict[str, str], platform: dict[str, Any], feed: str
) -> dict[str, Any]:
    manifest = platform_pipeline(name, platform["namespace"], urls, platform, feed=feed, products=list(plan.products))
    manifest["spec"] |= {
        "windows": list(plan.windows),
        "watermark": plan.watermark,
        "trigger": plan.trigger,
        "deletionPolicy": "Retain",
    }
    return manifest


class ReplayPodStatus:
    """The replay server pod as wait_caught_up asks of a replay server (its /_replay/status).

    ``peer_ip``: count only the data frames sent to connections from that address (the current
    ingestion pod's, after a replacement), and be done only once such a connection exists."""

    def __init__(self, status_url: str, peer_ip: str | None = None) -> None:
        self.status_url = status_url
        self.peer_ip = peer_ip
        self._status: dict[str, Any] = {}

    def _peer_connections(self) -> list[dict[str, Any]]:
        prefix = f"{self.peer_ip}:"
        return [c for c in self._status.get("connections") or [] if str(c.get("peer", "")).startswith(prefix)]

    def _read(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(self.status_url, timeout=3) as response:
                self._status = json.loads(response.read())
        except OSError as exc:
            log.warning("replay status not answering", extra={"url": self.status_url, "error": str(exc)})
        return self._status

    @property
    def frames_sent(self) -> int:
        if self.peer_ip is None:
            return int(self._status.get("frames_sent", 0))
        return sum(int(c.get("data_frames_sent", 0)) for c in self._peer_connections())

    def wait_done(self, timeout: float | None = None) -> bool:
        done = bool(self._read().get("done"))
        return done and (self.peer_ip is None or bool(self._peer_connections()))


class PodProcess:
    """A pod as wait_caught_up watches a process: alive while Running, not being deleted, with no
    container restart."""

    def __init__(self, kube: KubeControlPlane, namespace: str, pod: dict[str, Any]) -> None:
        self.kube, self.namespace, self.name = kube, namespace, pod["metadata"]["name"]
        self.ip = pod["status"]["podIP"]
        self.returncode: int | None = None
        self.log_path = f"kubectl -n {namespace} logs {self.name}"

    @property
    def alive(self) -> bool:
        got = self.kube.kubectl("-n", self.namespace, "get", "pod", self.name, "-o", "json", check=False)
        if got.returncode != 0:
            self.returncode = -1
            return False
        pod = json.loads(got.stdout)
        status = pod["status"]
        restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses", []))
        if status.get("phase") != "Running" or restarts or pod["metadata"].get("deletionTimestamp"):
            self.returncode = -1
            return False
        return True

    @property
    def deleted(self) -> bool:
        """The pod is gone or being deleted (not: its container exited or restarted)."""
        got = self.kube.kubectl("-n", self.namespace, "get", "pod", self.name, "-o", "json", check=False)
        return got.returncode != 0 or bool(json.loads(got.stdout)["metadata"].get("deletionTimestamp"))

    def log_tail(self, lines: int = 20) -> str:
        got = self.kube.kubectl("-n", self.namespace, "logs", self.name, f"--tail={lines}", check=False)
        return got.stdout + got.stderr


def _ready_pod(
    kube: KubeControlPlane, namespace: str, selector: str, what: str, timeout: float, *, not_named: str = ""
) -> dict[str, Any]:
    """The first pod matching ``selector`` (other than ``not_named``, not being deleted) that is
    Ready, within ``timeout`` (else E2EError)."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        pods = [
            p
            for p in kube.get_json("-n", namespace, "pods", "-l", selector)["items"]
            if p["metadata"]["name"] != not_named and not p["metadata"].get("deletionTimestamp")
        ]
        seen = [f"{p['metadata']['name']}: {p['status'].get('phase')}" for p in pods]
        for pod in pods:
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if conditions.get("Ready") == "True" and pod["status"].get("podIP"):
                return pod
        time.sleep(1)
    raise E2EError(f"no Ready pod for {what} ({selector}) within {timeout:.0f} s; pods: {seen or 'none'}")


def job_watermarks(kube: KubeControlPlane, namespace: str, app: str) -> dict[str, float] | None:
    """The running driver's watermark gauge per window (epoch seconds; empty before its first
    batch), or None when no driver runs or its metrics do not answer."""
    pods = kube.get_json("-n", namespace, "pods", "-l", f"spark-role=driver,sparkoperator.k8s.io/app-name={app}")
    running = [
        p for p in pods["items"] if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    ip = next((p["status"].get("podIP") for p in running), None)
    if not ip:
        return None
    try:
        found = samples(f"http://{ip}:{JOB_METRICS_PORT}/metrics")
    except OSError:
        return None
    return {s.labels.get("window", ""): s.value for s in found if s.name == WATERMARK_GAUGE}


def wait_watermark(
    kube: KubeControlPlane, namespace: str, app: str, windows: tuple[str, ...], target_iso: str, timeout: float
) -> None:
    """Until the driver's watermark gauge is at least ``target_iso`` for every window (the batch that
    used that watermark has committed every window before it, as the local replay's wait)."""
    target_s = parse_iso_s(target_iso)
    deadline = time.monotonic() + timeout
    seen: dict[str, float] | None = None
    while time.monotonic() < deadline:
        seen = job_watermarks(kube, namespace, app)
        if seen is not None and all(seen.get(w, 0) >= target_s for w in windows):
            return
        time.sleep(1)
    app_state = kube.kubectl(
        "-n", namespace, "get", "sparkapplication", app, "-o", "jsonpath={.status.applicationState}", check=False
    ).stdout
    raise E2EError(
        f"the Spark job's watermark did not reach {target_iso} within {timeout:.0f} s "
        f"(driver's {WATERMARK_GAUGE}: {seen or 'not scraped'}; SparkApplication {app}: {app_state or 'no state'})"
    )


def parse_iso_s(iso: str) -> float:
    from datetime import UTC, datetime

    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def wait_ready(kube: KubeControlPlane, namespace: str, name: str, timeout: float) -> dict[str, str]:
    """Until the CryptoPipeline's Ready condition is True (from its children's real status)."""
    deadline = time.monotonic() + timeout
    conditions: dict[str, str] = {}
    while time.monotonic() < deadline:
        got = kube.get_json("-n", namespace, "cryptopipeline", name)
        conditions = {
            c["type"]: f"{c['status']} ({c.get('reason')})" for c in got.get("status", {}).get("conditions") or []
        }
        if conditions.get("Ready", "").startswith("True"):
            return conditions
        time.sleep(1)
    raise E2EError(f"CryptoPipeline {namespace}/{name} not Ready within {timeout:.0f} s: {conditions}")


def run_e2e(
    work_dir: Path,
    state: dict[str, Any] | None,
    plan: replay_cmd.ReplayPlan,
    output_csv: Path,
    *,
    timeout: float = 900.0,
    name: str | None = None,
    keep: bool = False,
    follow_replaced_pods: bool = False,
) -> int:
    began = time.monotonic()
    kube, platform = attached_cluster(work_dir, state)
    feeds = sorted({r.feed for r in plan.recordings})
    if len(feeds) != 1:
        raise E2EError(f"the recordings are of {len(feeds)} feeds ({', '.join(feeds)}): one feed per e2e run")
    namespace = platform["namespace"]
    name = name or f"e2e-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    replay_name = f"{name}-replay"
    paths = [Path(r.path) for r in plan.recordings]
    urls = node_addons.deploy_replay(kube, paths, name=replay_name, namespace=namespace, speed=plan.speed)
    manifest = pipeline_manifest(name, plan, urls, platform, feeds[0])
    from cryptopipe_operator.spec import Pipeline, parse_spec

    pipeline = Pipeline(name, namespace, "", parse_spec(manifest["spec"]))
    timings: dict[str, float] = {}
    try:
        applied = time.monotonic()
        kube.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=ingestion"
        ingestion_pod = _ready_pod(kube, namespace, selector, "ingestion", min(timeout, 300))
        timings["apply_to_ingestion_ready_s"] = round(time.monotonic() - applied, 1)
        service_ip = kube.get_json("-n", namespace, "service", replay_name)["spec"]["clusterIP"]
        status_url = f"http://{service_ip}:{node_addons.REPLAY_PORT}/_replay/status"
        replaced = _wait_caught_up(kube, namespace, selector, ingestion_pod, status_url, timeout, follow_replaced_pods)
        timings["apply_to_caught_up_s"] = round(time.monotonic() - applied, 1)
        if replaced:
            timings["ingestion_pods_followed"] = replaced
        if plan.speed == "max" and job_watermarks(kube, namespace, f"{name}-candles"):
            # `cryptopipe replay --speed max` ingests everything before the job's first batch; here the
            # driver normally starts well after ingestion caught up, but nothing enforces it: say so
            print(
                "warning: the Spark job committed batches before ingestion had caught up; a frame much older "
                "than those before it (an Exchange last_match) may have been late for it",
                file=sys.stderr,
            )
        flush_us = replay_cmd.flush_time_us(plan)
        produce_ticks(platform["kafka_bootstrap_from_host"], pipeline.topic, feeds[0], plan.products, flush_us)
        target = us_to_iso(flush_us - parse_duration(plan.watermark) * 1_000_000)[:19]
        wait_watermark(kube, namespace, f"{name}-candles", plan.windows, target, timeout)
        timings["apply_to_committed_s"] = round(time.monotonic() - applied, 1)
        conditions = wait_ready(kube, namespace, name, 120)
        connection = node_addons.s3_connection(platform["s3_endpoint_from_host"])
        from cryptopipe.lake.reader import read_candles

        tables = [read_candles(pipeline.lake, connection.arrow_filesystem(), window=w) for w in plan.windows]
        rows = replay_cmd.write_candles_csv(tables, output_csv)
        print(
            f"e2e {namespace}/{name}: {rows} candles in {output_csv}; Ready: {conditions.get('Ready')}; "
            f"lake s3://{pipeline.lake.bucket}/{pipeline.lake_prefix}; {timings}; "
            f"{round(time.monotonic() - began, 1)} s",
            flush=True,
        )
    finally:
        if not keep:
            delete_run(kube, namespace, name, replay_name)
    return 0


def _wait_caught_up(
    kube: KubeControlPlane,
    namespace: str,
    selector: str,
    pod: dict[str, Any],
    status_url: str,
    timeout: float,
    follow: bool,
) -> int:
    """``cryptopipe replay``'s wait_caught_up on the ingestion pod; with ``follow``, a pod that is
    deleted is followed to the Deployment's next Ready pod (the count of pods followed is returned).
    A container that exits or restarts in a pod nobody deleted still fails the run."""
    followed = 0
    while True:
        ingestion = PodProcess(kube, namespace, pod)
        server = ReplayPodStatus(status_url, peer_ip=ingestion.ip if follow else None)
        try:
            replay_cmd.wait_caught_up(ingestion, INGESTION_PORT, server, timeout, host=ingestion.ip)
            return followed
        except SystemExit as exc:
            if not (follow and ingestion.deleted):
                raise E2EError(str(exc)) from None
        log.info("ingestion pod deleted: following its replacement", extra={"pod": ingestion.name})
        pod = _ready_pod(
            kube, namespace, selector, "the replaced ingestion", min(timeout, 300), not_named=ingestion.name
        )
        followed += 1


def delete_run(kube: KubeControlPlane, namespace: str, name: str, replay_name: str) -> None:
    """The pipeline and its replay server, so that the next run finds the node's CPUs free; the
    lake stays (Retain)."""
    kube.kubectl(
        "-n", namespace, "delete", "cryptopipeline", name, "--ignore-not-found", "--timeout=120s",
        check=False, timeout=150,
    )  # fmt: skip
    for kind in ("deployment", "service", "configmap"):
        target_name = f"{replay_name}-recordings" if kind == "configmap" else replay_name
        kube.kubectl("-n", namespace, "delete", kind, target_name, "--ignore-not-found", check=False)


def run_cluster_e2e(args: Any) -> int:
    """The CLI's ``cryptopipe dev cluster e2e``: exit 0 with the CSV written, 1 with the reason on stderr."""
    if not args.replay or args.output_csv is None:
        print("error: e2e needs --replay RECORDING... and --output-csv PATH", file=sys.stderr)
        return 2
    work_dir = (args.work_dir or default_work_dir()).resolve()
    try:
        plan = replay_cmd.plan_replay(args.replay, products=args.products, speed=args.speed, watermark=args.watermark)
        return run_e2e(
            work_dir,
            read_state(work_dir),
            plan,
            args.output_csv,
            timeout=args.timeout,
            name=args.name,
            keep=args.keep,
            follow_replaced_pods=args.follow_replaced_pods,
        )
    except (E2EError, paths.MissingDependency) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
