"""``cryptopipe dev cluster e2e`` on one ``up --node --platform`` cluster (root): each real recording
goes through the whole platform in pods (the replay server, ingestion, Kafka, spark-operator's
driver and executor in the restricted namespace, the S3 pod), and the CSV must equal, decimal-exact,
the independent reference the replay tests use (cryptopipe_dev/reference.py). Nothing is marked
ready by the test: the command itself waits for the pipeline's Ready=True from real status.

Then, on the same cluster: the ingestion pod and the Spark driver pod deleted mid-stream (the
candles still equal the reference, Ready goes False and back to True each time, every transition
seen by a watch), and a running pipeline through ``helm upgrade`` to a new operator image tag and
``helm uninstall`` (here rather than in a module of their own: the module's cluster is the costly
part).

One cluster serves the module (its start, with the Spark images, is most of the cost); ``down``
then restores the host, compared with before. Its Prometheus (prometheus-operator's, part of
``--platform``) is checked against a live pipeline first: targets, every dashboard query, the rules.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.commands import cluster_e2e
from cryptopipe_dev.commands.cluster_e2e import attached_cluster
from cryptopipe_dev.commands.scrape import samples
from cryptopipe_dev.reference import csv_candles, recorded_trades, reference_candles
from cryptopipe_dev.stack import node_addons, node_monitoring
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.local import produce_ticks
from cryptopipe_dev.stack.procs import wait_for
from tests.components.test_dev_node import _cli, _diff, _kubectl, _require_node, host_snapshot
from tests.support.alert_rules import alert_names, render_rule_groups
from tests.support.cluster_prometheus import (
    ClusterPrometheus,
    PrometheusUnavailable,
    ingress_admits,
    live_pipeline,
    pod_memory_mb,
)
from tests.support.grafana_dashboards import load_dashboards, panel_queries, variable_queries
from tests.support.paths import DERIVED_RECORDINGS, REPO
from tests.support.ready_watch import ReadyWatch

pytestmark = pytest.mark.node
NS = node_addons.PLATFORM_NAMESPACE

RECORDINGS = [
    "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl",
    "advtrade_2026-08-09_BTC-ETH_no-l2.jsonl",
    "exchange_2021-04-17_matches-ticker-subs.jsonl",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    _require_node()
    work_dir = tmp_path_factory.mktemp("e2e") / "dev"
    before = host_snapshot(work_dir)
    began = time.monotonic()
    try:
        # in the try: a timeout or an interrupt while `up` runs must still end in `down`
        up = _cli("up", "--node", "--platform", "--work-dir", str(work_dir), timeout=2400)
        assert up.returncode == 0, up.stdout + up.stderr[-4000:]
        state = json.loads((work_dir / "state.json").read_text())
        print(f"\nup --node --platform {time.monotonic() - began:.1f} s: {state['node']}")
        yield {"work_dir": work_dir, **state}
    finally:
        down = _cli("down", "--work-dir", str(work_dir), timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _diff(before, host_snapshot(work_dir)) == {}, down.stdout


def test_spark_operator_runs_with_its_webhook(cluster: dict[str, Any]) -> None:
    kubeconfig = cluster["kubeconfig"]
    for deploy in ("spark-operator-controller", "spark-operator-webhook"):
        got = json.loads(_kubectl(kubeconfig, "-n", "spark-operator", "get", "deploy", deploy, "-o", "json").stdout)
        assert got["status"].get("availableReplicas") == 1, got["status"]
    hook = json.loads(
        _kubectl(kubeconfig, "get", "mutatingwebhookconfiguration", "spark-operator-webhook", "-o", "json").stdout
    )
    assert all(h["clientConfig"].get("caBundle") for h in hook["webhooks"])  # the webhook's own CA
    ns = json.loads(_kubectl(kubeconfig, "get", "namespace", node_addons.PLATFORM_NAMESPACE, "-o", "json").stdout)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_only_the_images_pods_run_are_loaded_into_the_node(cluster: dict[str, Any]) -> None:
    """--load-into loads what it is asked for: the Spark base image (no pod runs it) stays out."""
    refs = node_addons.image_refs()
    listed = subprocess.run(
        ["ctr", "-a", cluster["node"]["containerd_socket"], "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    held = {ref.removeprefix("docker.io/library/") for ref in listed}
    assert {refs["spark-job"], refs["spark-operator"], refs["dev-prometheus"]} <= held, held
    assert refs["spark"] not in held


LIVE = "live"
LIVE_PRODUCTS = ["BTC-USD", "ETH-USD"]
# the chart's monitoring objects, as prometheus-operator names their scrape pools
# (release cryptopipe-operator in cryptopipe-system: fullname cryptopipe-operator)
POD_MONITOR_POOL = f"podMonitor/{node_addons.OPERATOR_NAMESPACE}/cryptopipe-operator-pipelines/0"
SERVICE_MONITOR_POOL = f"serviceMonitor/{node_addons.OPERATOR_NAMESPACE}/cryptopipe-operator/0"
# dashboard queries allowed to return nothing in a healthy pipeline, with the reason: none
NO_DATA_WHEN_HEALTHY: dict[str, str] = {}


def _wait_or_none(predicate: Any, timeout: float, what: str) -> Any:
    """wait_for that lets the test's own assertion say what was seen at the deadline."""
    try:
        return wait_for(predicate, timeout, what, interval=10.0, retry_on=())
    except TimeoutError:
        return None


# bounded by its own waits: 600 s for the targets, 600 s for the queries, 120 s for the rules
@pytest.mark.timeout(1500)
def test_prometheus_scrapes_a_live_pipeline_and_every_dashboard_query_has_data(cluster: dict[str, Any]) -> None:
    kube, platform = attached_cluster(cluster["work_dir"], cluster)
    assert cluster["node"].get("monitoring"), "up --node --platform ran without Prometheus"
    prom = ClusterPrometheus(lambda *a: _kubectl(cluster["kubeconfig"], *a))
    namespace = platform["namespace"]
    began = time.monotonic()
    urls = node_addons.deploy_live_replay(kube, LIVE_PRODUCTS, rate=4, name=f"{LIVE}-replay", namespace=namespace)
    manifest = live_pipeline(LIVE, namespace, urls, LIVE_PRODUCTS, platform)
    kube.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    try:
        # 1. the operator, and the pipeline's ingestion, Spark driver and lake monitor, each scraped
        # through the chart's objects (PodMonitor / ServiceMonitor), up
        def scraped() -> dict[str, dict[str, Any]] | None:
            try:
                active = prom.active_targets()
            except PrometheusUnavailable:  # its pod not serving yet, or not ready for a while
                return None
            up = {}
            for target in active:
                labels = target["labels"]
                if target["scrapePool"] == SERVICE_MONITOR_POOL:
                    up["operator"] = target
                elif target["scrapePool"] == POD_MONITOR_POOL and labels.get("pipeline") == LIVE:
                    up[labels["component"]] = target
            healthy = all(t["health"] == "up" for t in up.values())
            return up if healthy and set(up) == {"operator", "ingestion", "spark", "lake-monitor"} else None

        targets = _wait_or_none(scraped, 600, "the pipeline's targets up")
        if not targets:
            seen = [(t["scrapePool"], t["labels"], t["health"], t.get("lastError")) for t in prom.active_targets()]
            raise AssertionError(f"targets not all up: {seen}")
        targets_up_s = time.monotonic() - began
        for component in ("ingestion", "spark", "lake-monitor"):
            assert targets[component]["labels"]["namespace"] == namespace
        # what an enforcing CNI would decide for these scrapes (the node's bridge does not enforce)
        policy = json.loads(
            kube.kubectl("-n", namespace, "get", "networkpolicy", f"{LIVE}-ingress", "-o", "json").stdout
        )
        monitoring_ns = json.loads(
            kube.kubectl("get", "namespace", node_monitoring.MONITORING_NAMESPACE, "-o", "json").stdout
        )
        for component in ("ingestion", "spark", "lake-monitor"):
            port = int(targets[component]["scrapeUrl"].split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
            assert ingress_admits(policy, monitoring_ns["metadata"]["labels"], port), (component, port, policy)

        # 2. every dashboard query returns at least one series (a PromQL error fails at once)
        variables = {"namespace": namespace, "pipeline": LIVE, "datasource": "prometheus"}
        queries = [
            (name, title, expr)
            for name, dashboard in load_dashboards().items()
            for title, expr in panel_queries(dashboard, variables)
            if expr not in NO_DATA_WHEN_HEALTHY
        ] + [
            (name, f"variable {var}", selector)
            for name, dashboard in load_dashboards().items()
            for var, selector in variable_queries(dashboard, variables)
        ]
        assert len(queries) >= 60
        empty: list[str] = []

        def all_answer() -> bool:
            try:
                empty[:] = [f"{name} / {title}: {expr}" for name, title, expr in queries if not prom.query(expr)]
            except PrometheusUnavailable as exc:
                empty[:] = [f"Prometheus unavailable: {exc}"]
            return not empty

        _wait_or_none(all_answer, 600, "every dashboard query answering")
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
        queries_s = time.monotonic() - began

        # 3. the chart's alert rules loaded from its PrometheusRule, evaluated without error
        expected = alert_names(render_rule_groups(kube.helm_path))

        def evaluated() -> list[dict[str, Any]] | None:
            try:
                rules = [r for g in prom.rule_groups() for r in g["rules"]]
            except PrometheusUnavailable:
                return None
            return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

        rules = _wait_or_none(evaluated, 120, "the rules evaluated") or []
        assert {r["name"] for r in rules} == expected
        assert not {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
        # 4. and none fires for this healthy pipeline or the operator. (Alerts of pipelines deleted
        # earlier in the module may: the rules on up/last-trade series look back an hour.)
        firing = [
            a for a in prom.when_available(prom.alerts)
            if a["state"] == "firing" and a["labels"].get("pipeline") in (None, LIVE)
        ]  # fmt: skip
        assert not firing, firing
        print(
            f"\nPrometheus: targets up {targets_up_s:.0f} s after apply, all {len(queries)} dashboard queries "
            f"with data {queries_s:.0f} s after apply, {len(rules)} rules ok, none firing; memory (MB): "
            f"{pod_memory_mb(kube.kubectl, node_monitoring.MONITORING_NAMESPACE)} "
            f"{pod_memory_mb(kube.kubectl, namespace)}"
        )
    finally:
        kube.kubectl("-n", namespace, "delete", "cryptopipeline", LIVE, "--ignore-not-found", "--timeout=120s",
                     check=False, timeout=150)  # fmt: skip
        for kind, target in (("deployment", "replay"), ("service", "replay"), ("configmap", "replay-recordings")):
            kube.kubectl("-n", namespace, "delete", kind, f"{LIVE}-{target}", "--ignore-not-found", check=False)


@pytest.mark.parametrize("name", RECORDINGS)
def test_e2e_candles_equal_the_reference(cluster: dict[str, Any], name: str, tmp_path: Path) -> None:
    recording = DERIVED_RECORDINGS / name
    out = tmp_path / "candles.csv"
    began = time.monotonic()
    run = _cli(
        "e2e", "--work-dir", str(cluster["work_dir"]), "--replay", str(recording), "--output-csv", str(out),
        timeout=1500,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    print(f"\n{name}: e2e {time.monotonic() - began:.1f} s: {run.stdout.strip()}")
    assert "Ready: True" in run.stdout
    got = csv_candles(out.read_text())
    trades = recorded_trades(recording)
    assert got == reference_candles(trades)
    assert sum(c["trade_count"] for c in got) == len(trades)


def test_e2e_refuses_a_cluster_without_a_node(tmp_path: Path) -> None:
    run = _cli(
        "e2e", "--work-dir", str(tmp_path / "none"), "--replay", str(DERIVED_RECORDINGS / RECORDINGS[0]),
        "--output-csv", str(tmp_path / "c.csv"),
    )  # fmt: skip
    assert run.returncode == 1 and "no dev cluster recorded" in run.stderr, run.stderr
    assert not (tmp_path / "c.csv").exists()


# --- pods deleted mid-stream ------------------------------------------------------------------------

# the longest recording (61 s of trades) at 0.15 of real time: ~7 min of stream, longer than the
# pipeline takes to be Ready, lose its ingestion pod and get it back, and commit a first batch
RESTART_RECORDING = "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"
RESTART_SPEED = "0.15"
RESTART_PIPELINE = "restarts"


def _cli_background(out: Path, *args: str) -> subprocess.Popen[bytes]:
    """``cryptopipe dev cluster ARGS`` started, not waited for (as test_dev_node's _cli runs it),
    its stdout and stderr into ``out``.stdout / ``out``.stderr (a pipe nobody reads would block it)."""
    with open(out.with_suffix(".stdout"), "wb") as stdout, open(out.with_suffix(".stderr"), "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "cryptopipe_dev.cli", "dev", "cluster", *args],
            stdout=stdout,
            stderr=stderr,
            cwd=REPO,
        )


def _kube(cluster: dict[str, Any]) -> KubeControlPlane:
    kube, _ = cluster_e2e.attached_cluster(cluster["work_dir"], cluster)
    return kube


def _watch(kube: KubeControlPlane, name: str) -> ReadyWatch:
    return ReadyWatch([str(kube.kubectl_path)], kube.env(), NS, name)


def _pods(kube: KubeControlPlane, selector: str) -> list[dict[str, Any]]:
    items = kube.get_json("-n", NS, "pods", "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _wait(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    """``probe()`` until it returns something truthy (polled every second), else fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(1)
    pytest.fail(f"{what}: not within {timeout:.0f} s")


def _replay_status(kube: KubeControlPlane, replay: str) -> dict[str, Any]:
    ip = kube.get_json("-n", NS, "service", replay)["spec"]["clusterIP"]
    with urllib.request.urlopen(f"http://{ip}:{node_addons.REPLAY_PORT}/_replay/status", timeout=5) as response:
        return dict(json.loads(response.read()))


def _produced(pod: dict[str, Any]) -> float:
    try:
        found = samples(f"http://{pod['status']['podIP']}:{cluster_e2e.INGESTION_PORT}/metrics")
    except OSError:
        return 0.0
    return sum(s.value for s in found if s.name == "cryptopipe_ingest_trades_produced_total")


def _delete_and_recover(
    kube: KubeControlPlane, watch: ReadyWatch, pod: dict[str, Any], replay: str
) -> dict[str, float]:
    """Delete ``pod`` while the replay server is still streaming; Ready must go False, then True."""
    assert not _replay_status(kube, replay)["done"], f"the stream ended before {pod['metadata']['name']} was deleted"
    deleted = time.monotonic()
    kube.kubectl("-n", NS, "delete", "pod", pod["metadata"]["name"], "--wait=false")
    down = watch.wait_for("False", after=deleted, timeout=300)
    up = watch.wait_for("True", after=down.at, timeout=900)
    return {"to_not_ready_s": round(down.at - deleted, 1), "to_ready_s": round(up.at - deleted, 1)}


# pytest's 900 s per test counts a module fixture's setup in the first test that uses it: run alone
# (-k), this one pays for `up --node --platform` (11 min here) besides its own ~7 min of stream
@pytest.mark.timeout(2400)
def test_pods_deleted_mid_stream_candles_stay_exact(cluster: dict[str, Any], tmp_path: Path) -> None:
    kube = _kube(cluster)
    recording = DERIVED_RECORDINGS / RESTART_RECORDING
    replay = f"{RESTART_PIPELINE}-replay"
    out = tmp_path / "candles.csv"
    ingestion = f"app.kubernetes.io/instance={RESTART_PIPELINE},app.kubernetes.io/component=ingestion"
    driver = f"spark-role=driver,sparkoperator.k8s.io/app-name={RESTART_PIPELINE}-candles"
    began = time.monotonic()
    with _watch(kube, RESTART_PIPELINE) as watch:
        e2e = _cli_background(
            tmp_path / "e2e",
            "e2e", "--work-dir", str(cluster["work_dir"]), "--replay", str(recording), "--output-csv", str(out),
            "--speed", RESTART_SPEED, "--name", RESTART_PIPELINE, "--follow-replaced-pods",
        )  # fmt: skip
        try:
            # everything running, and trades flowing from the ingestion pod into Kafka
            watch.wait_for("True", after=began, timeout=900)
            pod = _wait(
                "an ingestion pod that produced trades",
                lambda: next((p for p in _pods(kube, ingestion) if _produced(p) > 0), None),
                300,
            )
            ingestion_times = _delete_and_recover(kube, watch, pod, replay)
            # the job committed a batch (its watermark gauge is set) in the running driver
            _wait(
                "a committed batch",
                lambda: cluster_e2e.job_watermarks(kube, NS, f"{RESTART_PIPELINE}-candles"),
                900,
            )
            (pod,) = _pods(kube, driver)
            driver_times = _delete_and_recover(kube, watch, pod, replay)
            e2e.wait(timeout=1500)
        finally:
            if e2e.poll() is None:
                e2e.kill()
                e2e.wait()
    stdout, stderr = (tmp_path / "e2e.stdout").read_text(), (tmp_path / "e2e.stderr").read_text()
    history = watch.history()
    print(f"\ningestion pod deleted: {ingestion_times}; driver pod deleted: {driver_times}; Ready: {history}")
    print(f"e2e with the deletions {time.monotonic() - began:.1f} s: {stdout.strip()}")
    assert e2e.returncode == 0, stdout + stderr[-4000:]
    assert "'ingestion_pods_followed': 1" in stdout, stdout
    got = csv_candles(out.read_text())
    trades = recorded_trades(recording)
    assert got == reference_candles(trades)
    assert sum(c["trade_count"] for c in got) == len(trades)


# --- the operator's release: helm upgrade and helm uninstall under a running pipeline -----------------

RELEASE_RECORDING = "advtrade_2026-08-09_BTC-ETH_no-l2.jsonl"  # the shortest: 25 s of trades
RELEASE_PIPELINE = "release"
UPGRADE_TAG_SUFFIX = "-upgrade"
# what the chart can render (PodMonitor and PrometheusRule only when their CRDs exist); CRDs are
# not in the list: by Helm's convention `helm uninstall` leaves them (and with them every pipeline)
RELEASE_KINDS = (
    "deployments", "replicasets", "pods", "serviceaccounts", "services", "configmaps", "secrets", "roles",
    "rolebindings", "clusterroles", "clusterrolebindings", "leases", "validatingadmissionpolicies",
    "validatingadmissionpolicybindings", "podmonitors", "servicemonitors", "prometheusrules",
)  # fmt: skip


def _children(kube: KubeControlPlane, name: str) -> dict[str, tuple[str, int]]:
    """uid and generation of each child the operator made for the pipeline, and uid and restart
    count of its running pods."""
    got: dict[str, tuple[str, int]] = {}
    for kind in ("deployment", "sparkapplication", "kafkatopic"):
        for item in kube.get_json("-n", NS, kind, "-l", f"app.kubernetes.io/instance={name}")["items"]:
            got[f"{kind}/{item['metadata']['name']}"] = (item["metadata"]["uid"], item["metadata"]["generation"])
    for selector in (f"app.kubernetes.io/instance={name}", f"sparkoperator.k8s.io/app-name={name}-candles"):
        for pod in _pods(kube, selector):
            restarts = sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", []))
            got[f"pod/{pod['metadata']['name']}"] = (pod["metadata"]["uid"], restarts)
    return got


def _operator_pods(kube: KubeControlPlane) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={node_addons.OPERATOR_RELEASE}"
    return list(kube.get_json("-n", node_addons.OPERATOR_NAMESPACE, "pods", "-l", selector)["items"])


def _release_objects(kube: KubeControlPlane) -> list[str]:
    """Every object labelled as the operator's release, of every kind the chart renders, in any
    namespace; and the leader-election Lease (made by the operator, not rendered) by name."""
    found = []
    served = set(kube.kubectl("api-resources", "-o", "name").stdout.split())
    selector = f"app.kubernetes.io/instance={node_addons.OPERATOR_RELEASE}"
    for kind in RELEASE_KINDS:
        if not any(name.split(".")[0] == kind for name in served):
            continue  # its CRD is not installed here, so nothing of it can have been rendered
        items = kube.get_json(kind, "-A", "-l", selector)["items"]
        found += [f"{kind}/{i['metadata'].get('namespace', '')}/{i['metadata']['name']}" for i in items]
    lease = kube.kubectl(
        "-n", node_addons.OPERATOR_NAMESPACE, "get", "lease", "cryptopipe-operator", "--ignore-not-found", "-o", "name"
    ).stdout.strip()
    return found + ([lease] if lease else [])


def _leading_pod(kube: KubeControlPlane, tag: str, old_pod: dict[str, Any]) -> dict[str, Any] | None:
    lease = kube.get_json("-n", node_addons.OPERATOR_NAMESPACE, "lease", "cryptopipe-operator")
    holder = str(lease["spec"].get("holderIdentity") or "")
    return next(
        (
            p
            for p in _operator_pods(kube)
            if p["metadata"]["uid"] != old_pod["metadata"]["uid"]
            and p["spec"]["containers"][0]["image"].endswith(f":{tag}")
            and holder.startswith(p["metadata"]["name"] + "_")
        ),
        None,
    )


def _operator_saw_ready(pod: dict[str, Any], name: str) -> bool:
    port = next(p["containerPort"] for p in pod["spec"]["containers"][0]["ports"] if p["name"] == "metrics")
    try:
        found = samples(f"http://{pod['status']['podIP']}:{port}/metrics")
    except OSError:
        return False
    applied = sum(
        s.value
        for s in found
        if s.name == "cryptopipe_operator_reconciles_total" and s.labels.get("result") == "applied"
    )
    ready = [
        s.value
        for s in found
        if s.name == "cryptopipe_operator_pipeline_condition"
        and s.labels.get("pipeline") == name
        and s.labels.get("type") == "Ready"
    ]
    return applied >= 1 and ready == [1.0]


def _candles(platform: dict[str, Any], name: str) -> list[Any]:
    from cryptopipe.lake.layout import LakeLocation
    from cryptopipe.lake.reader import read_candles

    lake = LakeLocation(platform["lake_bucket"], f"cryptopipelines/{NS}/{name}")
    connection = node_addons.s3_connection(platform["s3_endpoint_from_host"])
    return read_candles(lake, connection.arrow_filesystem(), window="1m").to_pylist()


@pytest.mark.timeout(2400)  # as above: it may be the first test of the module to run
def test_helm_upgrade_and_uninstall_leave_a_running_pipeline_alone(cluster: dict[str, Any], tmp_path: Path) -> None:
    kube, platform = cluster_e2e.attached_cluster(cluster["work_dir"], cluster)
    recording = DERIVED_RECORDINGS / RELEASE_RECORDING
    began = time.monotonic()
    run = _cli(
        "e2e", "--work-dir", str(cluster["work_dir"]), "--replay", str(recording),
        "--output-csv", str(tmp_path / "candles.csv"), "--name", RELEASE_PIPELINE, "--keep", timeout=1500,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    before = _children(kube, RELEASE_PIPELINE)
    assert any(k.startswith("pod/") and "driver" in k for k in before), before
    candles = _candles(platform, RELEASE_PIPELINE)
    assert candles, "no candles in the lake"

    # helm upgrade to a new tag of the operator image (the same build, tagged anew in the node)
    repository, tag = node_addons.image_refs()["operator"].rsplit(":", 1)
    new_tag = tag + UPGRADE_TAG_SUFFIX
    node_socket = Path(cluster["work_dir"]) / "node" / "containerd" / "containerd.sock"
    subprocess.run(
        ["ctr", "--address", str(node_socket), "-n", "k8s.io", "images", "tag", "--force",
         f"docker.io/library/{repository}:{tag}", f"docker.io/library/{repository}:{new_tag}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (old_pod,) = _operator_pods(kube)
    upgraded = time.monotonic()
    node_addons.install_operator(kube, tag=new_tag)  # helm upgrade --install ... --wait
    deployment = kube.get_json("-n", node_addons.OPERATOR_NAMESPACE, "deployment", node_addons.OPERATOR_RELEASE)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"{repository}:{new_tag}"
    # the new pod holds the Lease (its identity: pod name _ pid), so it is the one reconciling
    new_pod = _wait(
        "the operator pod of the new tag holding the Lease",
        lambda: _leading_pod(kube, new_tag, old_pod),
        300,
    )
    print(f"\nhelm upgrade to {new_tag}: new operator pod {new_pod['metadata']['name']} leading after "
          f"{time.monotonic() - upgraded:.1f} s")  # fmt: skip
    # the new operator has reconciled the pipeline (its resume re-applied the children) and
    # computed its status from them: Ready
    _wait(
        "the new operator's reconcile of the pipeline and its Ready=True",
        lambda: _operator_saw_ready(new_pod, RELEASE_PIPELINE),
        300,
    )
    assert _children(kube, RELEASE_PIPELINE) == before  # nothing re-created, changed or restarted
    # and the job still commits batches: a tick 5 min past its watermark moves it on
    (tick_topic,) = [
        t["spec"]["topicName"]
        for t in kube.get_json("-n", NS, "kafkatopic", "-l", f"app.kubernetes.io/instance={RELEASE_PIPELINE}")["items"]
        if t["spec"]["topicName"].endswith(".trades")
    ]
    marks = cluster_e2e.job_watermarks(kube, NS, f"{RELEASE_PIPELINE}-candles") or {}
    assert marks, "the driver's watermark gauge is not set"
    next_mark = max(marks.values()) + 300
    produce_ticks(
        platform["kafka_bootstrap_from_host"], tick_topic, "advanced_trade", ("BTC-USD", "ETH-USD"),
        int((next_mark + 30) * 1_000_000),
    )  # fmt: skip
    _wait(
        "the driver's watermark past the new tick",
        lambda: (
            min((cluster_e2e.job_watermarks(kube, NS, f"{RELEASE_PIPELINE}-candles") or {"": 0.0}).values())
            >= next_mark
        ),
        600,
    )

    # the Retain pipeline deleted (by the operator: topics and lake stay), then helm uninstall
    kube.kubectl("-n", NS, "delete", "cryptopipeline", RELEASE_PIPELINE, "--timeout=120s", timeout=150)
    node_addons.helm(kube, "uninstall", node_addons.OPERATOR_RELEASE, "-n", node_addons.OPERATOR_NAMESPACE, "--wait")
    # deletions by the garbage collector (the ReplicaSet, its pod) may take a moment
    _wait("no object of the release left", lambda: not _release_objects(kube), 120)
    assert kube.get_json("crd", "cryptopipelines.cryptopipeline.io")["metadata"]["name"]  # CRDs stay (Helm)
    assert _candles(platform, RELEASE_PIPELINE) == candles  # the lake outlives pipeline and operator
    print(f"release test {time.monotonic() - began:.1f} s")
