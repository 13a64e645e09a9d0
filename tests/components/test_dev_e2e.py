"""``cryptopipe dev cluster e2e`` on one ``up --node --platform`` cluster (root): each real recording
goes through the whole platform in pods (the replay server, ingestion, Kafka, spark-operator's
driver and executor in the restricted namespace, the S3 pod), and the CSV must equal, decimal-exact,
the independent reference the replay tests use (cryptopipe_dev/reference.py). Nothing is marked
ready by the test: the command itself waits for the pipeline's Ready=True from real status.

One cluster serves the module (its start, with the Spark images, is most of the cost); ``down``
then restores the host, compared with before. Its Prometheus (prometheus-operator's, part of
``--platform``) is checked against a live pipeline first: targets, every dashboard query, the rules.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.commands.cluster_e2e import attached_cluster
from cryptopipe_dev.reference import csv_candles, recorded_trades, reference_candles
from cryptopipe_dev.stack import node_addons, node_monitoring
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
from tests.support.paths import DERIVED_RECORDINGS

pytestmark = pytest.mark.node

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
    up = _cli("up", "--node", "--platform", "--work-dir", str(work_dir), timeout=2400)
    try:
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


def _wait(predicate: Any, timeout: float, what: str) -> Any:
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
    manifest = live_pipeline(LIVE, namespace, urls, LIVE_PRODUCTS, node_addons.image_refs(), platform)
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

        targets = _wait(scraped, 600, "the pipeline's targets up")
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

        _wait(all_answer, 600, "every dashboard query answering")
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

        rules = _wait(evaluated, 120, "the rules evaluated") or []
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
