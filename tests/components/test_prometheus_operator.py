"""The real prometheus-operator reads the operator chart's monitoring objects.

Against the real control plane (no node: nothing runs in pods), with prometheus-operator v0.85.0
built from the Go module proxy (scripts/build-go-tools.sh; the fixture builds it, instant when
built) running on the host, and its CRDs as its Go module ships them:
cluster_manifests/monitoring.yaml (the dev Prometheus and the operator's Deployment and RBAC, as
stack/node_monitoring.py renders them) is applied, the chart is installed with its monitoring
objects (`helm template | kubectl apply`), and prometheus-operator writes the Prometheus config
Secret and the rule ConfigMap from them. The assertions read what it generated: the scrape jobs of
the chart's PodMonitor and ServiceMonitor, the rule groups of its PrometheusRule. A second
Prometheus selecting by labels the chart does not set gets neither, so a change of the chart's
labels that the dev Prometheus's selector no longer matches fails here.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cryptopipe_dev.repo import CHART
from cryptopipe_dev.stack import node_monitoring as nm
from cryptopipe_dev.stack.alert_rules import render_rule_groups
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.node_addons import image_refs
from cryptopipe_dev.stack.procs import ManagedProcess, free_port, wait_for
from cryptopipe_operator.render_common import MANAGED_BY, PART_OF

# a cold build of prometheus-operator takes ~2-10 min on 2 busy cores
pytestmark = [pytest.mark.kube, pytest.mark.timeout(1800)]

RELEASE = "cpo"  # the chart's fullname is then "cpo-cryptopipe-operator"
FULLNAME = f"{RELEASE}-cryptopipe-operator"


@dataclass(frozen=True)
class Scene:
    kube: KubeControlPlane
    monitoring_ns: str
    release_ns: str
    refs: dict[str, str]
    operator: ManagedProcess


def _helm_template_monitoring(helm: Path, namespace: str) -> str:
    args = [str(helm), "template", RELEASE, str(CHART), "--namespace", namespace]
    for value in nm.CHART_MONITORING_VALUES:
        args += ["--set", value]
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout


@pytest.fixture(scope="module")
def scene(kube: KubeControlPlane, helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    work = tmp_path_factory.mktemp("prometheus-operator")
    try:
        binary = nm.build_prometheus_operator(log_path=work / "build.log")
    except subprocess.CalledProcessError:
        pytest.fail(
            f"scripts/build-go-tools.sh prometheus-operator failed:\n{(work / 'build.log').read_text()[-3000:]}"
        )
    kube.install_crds(nm.prometheus_operator_crds(), timeout=120)
    refs = image_refs()
    monitoring_ns, release_ns = "t-prom-monitoring", "t-prom-release"
    kube.kubectl("apply", "--server-side", "-f", "-", input=nm.monitoring_manifest(refs, namespace=monitoring_ns))
    kube.ensure_namespace(release_ns)
    kube.kubectl(
        "-n", release_ns, "apply", "--server-side", "-f", "-", input=_helm_template_monitoring(helm, release_ns)
    )
    proc = nm.prometheus_operator_process(
        binary,
        env=kube.env(),
        reloader_image=refs["dev-prometheus-config-reloader"],
        listen_port=free_port(),
        log_path=work / "prometheus-operator.log",
        die_with_parent=True,
    )
    proc.start()
    try:
        yield Scene(kube, monitoring_ns, release_ns, refs, proc)
    finally:
        proc.stop()
        for ns in (monitoring_ns, release_ns):
            kube.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def _generated_config(scene: Scene, namespace: str, name: str, *, want_jobs: int) -> dict[str, Any]:
    """prometheus.yaml of the config Secret prometheus-operator writes for Prometheus ``name``,
    once it holds ``want_jobs`` scrape jobs (the operator writes it first, then again as it reads
    the monitors)."""

    def read() -> dict[str, Any] | None:
        got = scene.kube.kubectl("-n", namespace, "get", "secret", f"prometheus-{name}", "-o", "json", check=False)
        if got.returncode != 0:
            return None
        data = json.loads(got.stdout)["data"]["prometheus.yaml.gz"]
        config = yaml.safe_load(gzip.decompress(base64.b64decode(data)))
        return config if len(config.get("scrape_configs") or []) >= want_jobs else None

    what = f"prometheus-operator's config Secret prometheus-{name} in {namespace} with {want_jobs} jobs"
    return wait_for(read, 120, what, interval=1.0, process=scene.operator)


def _reconciled(scene: Scene, namespace: str, name: str) -> None:
    """Wait until prometheus-operator reports the Prometheus reconciled (its status condition)."""

    def done() -> bool:
        got = scene.kube.get_json("-n", namespace, "prometheus", name)
        generation = got["metadata"]["generation"]
        return any(
            c["type"] == "Reconciled" and c["status"] == "True" and c.get("observedGeneration") == generation
            for c in (got.get("status") or {}).get("conditions") or []
        )

    try:
        wait_for(done, 120, f"Prometheus {namespace}/{name} reconciled", interval=1.0, process=scene.operator)
    except TimeoutError:
        status = scene.kube.get_json("-n", namespace, "prometheus", name).get("status")
        pytest.fail(f"Prometheus {namespace}/{name} not reconciled; status: {status}")


def _job(config: dict[str, Any], name: str) -> dict[str, Any]:
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert name in jobs, f"no scrape job {name}; jobs: {sorted(jobs)}"
    return jobs[name]


def test_the_chart_podmonitor_becomes_a_scrape_job_selecting_the_operators_children(scene: Scene) -> None:
    config = _generated_config(scene, scene.monitoring_ns, nm.PROMETHEUS_NAME, want_jobs=2)
    job = _job(config, f"podMonitor/{scene.release_ns}/{FULLNAME}-pipelines/0")
    # the PodMonitor's selector became keep rules on pod labels: the labels the operator gives the
    # pods it creates (ingestion, Spark driver, lake monitor) pass them, and a pod without them not
    child = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": MANAGED_BY, "x": "y"}
    assert _kept_by_pod_label_rules(job, child)
    assert not _kept_by_pod_label_rules(job, {**child, "app.kubernetes.io/part-of": "something-else"})
    # the relabelings that give each series the pipeline and component labels
    targets = {rule.get("target_label") for rule in job["relabel_configs"]}
    assert {"pipeline", "component", "namespace"} <= targets, targets
    # the PodMonitor's namespaceSelector `any: true`: every namespace
    assert "namespaces" not in job["kubernetes_sd_configs"][0] or not job["kubernetes_sd_configs"][0]["namespaces"].get(
        "names"
    ), job["kubernetes_sd_configs"]


def _kept_by_pod_label_rules(job: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    """Prometheus' `keep` relabeling over a pod target with these labels, for the rules that read
    pod labels (the PodMonitor's selector): source values joined by the separator, the regex anchored."""
    meta = {}
    for key, value in pod_labels.items():
        name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
        meta[f"__meta_kubernetes_pod_label_{name}"] = value
        meta[f"__meta_kubernetes_pod_labelpresent_{name}"] = "true"
    rules = [
        rule
        for rule in job["relabel_configs"]
        if rule.get("action") == "keep"
        and all(src.startswith("__meta_kubernetes_pod_label") for src in rule["source_labels"])
    ]
    assert rules, f"no keep rule on pod labels in {job['job_name']}"
    return all(
        re.fullmatch(
            rule.get("regex", "(.*)"),
            rule.get("separator", ";").join(meta.get(src, "") for src in rule["source_labels"]),
        )
        for rule in rules
    )


def test_the_chart_servicemonitor_becomes_a_scrape_job(scene: Scene) -> None:
    config = _generated_config(scene, scene.monitoring_ns, nm.PROMETHEUS_NAME, want_jobs=2)
    job = _job(config, f"serviceMonitor/{scene.release_ns}/{FULLNAME}/0")
    assert job["honor_labels"] is True


def test_the_chart_rule_groups_are_in_the_generated_rule_file(scene: Scene, helm: Path) -> None:
    config = _generated_config(scene, scene.monitoring_ns, nm.PROMETHEUS_NAME, want_jobs=2)
    assert any(nm.RULES_CONFIGMAP_PREFIX in path for path in config["rule_files"]), config["rule_files"]

    def rule_files() -> list[dict[str, Any]] | None:
        got = scene.kube.get_json(
            "-n", scene.monitoring_ns, "configmaps", "-l", f"prometheus-name={nm.PROMETHEUS_NAME}"
        )
        files = [
            yaml.safe_load(text) for cm in got["items"] for key, text in cm["data"].items() if scene.release_ns in key
        ]
        return files or None

    files = wait_for(rule_files, 120, "the rule ConfigMap with the chart's PrometheusRule", interval=1.0)
    generated = {g["name"]: [r.get("alert") for r in g["rules"]] for f in files for g in f["groups"]}
    chart = {g["name"]: [r.get("alert") for r in g["rules"]] for g in render_rule_groups(helm)}
    assert generated == chart
    assert set(generated) == {"cryptopipe.ingestion", "cryptopipe.spark", "cryptopipe.lake", "cryptopipe.operator"}


def test_a_prometheus_selecting_other_labels_gets_none_of_the_chart_objects(scene: Scene) -> None:
    """The control for the tests above: the same manifest with a selector the chart's labels do not
    match generates no job and no rule of the chart."""
    other_ns = "t-prom-unmatched"
    scene.kube.ensure_namespace(other_ns)
    selector = {**nm.CHART_MONITOR_LABELS, "app.kubernetes.io/name": "not-the-chart"}
    docs = yaml.safe_load_all(nm.monitoring_manifest(scene.refs, namespace=other_ns, selector=selector))
    (prometheus,) = [d for d in docs if d["kind"] == "Prometheus"]
    try:
        scene.kube.apply(prometheus)
        # the operator writes the config for every Prometheus; with nothing selected, no job at all
        _reconciled(scene, other_ns, nm.PROMETHEUS_NAME)
        config = _generated_config(scene, other_ns, nm.PROMETHEUS_NAME, want_jobs=0)
        assert not [j["job_name"] for j in config.get("scrape_configs") or [] if FULLNAME in j["job_name"]]
        rule_maps = scene.kube.get_json("-n", other_ns, "configmaps", "-l", f"prometheus-name={nm.PROMETHEUS_NAME}")
        assert [cm["metadata"]["name"] for cm in rule_maps["items"]], "the operator writes its rule ConfigMap anyway"
        assert not [key for cm in rule_maps["items"] for key in cm.get("data") or {}], rule_maps["items"]
    finally:
        scene.kube.kubectl("delete", "namespace", other_ns, "--wait=false", check=False)


def test_the_prometheus_and_operator_pods_pass_the_restricted_standard(scene: Scene) -> None:
    """kube-controller-manager creates the pods of the generated StatefulSet and of the operator's
    Deployment; the namespace enforces `restricted`, so each exists only if it was admitted (with no
    node they stay Pending)."""
    ns = scene.kube.get_json("namespace", scene.monitoring_ns)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    def pods() -> dict[str, dict[str, Any]] | None:
        got = scene.kube.get_json("-n", scene.monitoring_ns, "pods")
        by_owner = {p["metadata"]["name"]: p for p in got["items"]}
        have_prometheus = f"{nm.STATEFULSET}-0" in by_owner
        have_operator = any(n.startswith("prometheus-operator-") for n in by_owner)
        return by_owner if have_prometheus and have_operator else None

    try:
        found = wait_for(pods, 120, "the Prometheus and prometheus-operator pods", interval=1.0)
    except TimeoutError:
        events = scene.kube.kubectl("-n", scene.monitoring_ns, "get", "events", check=False).stdout
        pytest.fail(f"pods not created (refused by admission?):\n{events[-4000:]}")
    prometheus = found[f"{nm.STATEFULSET}-0"]
    images = {c["name"]: c["image"] for c in prometheus["spec"]["containers"]}
    assert images["prometheus"] == scene.refs["dev-prometheus"]
    assert images["config-reloader"] == scene.refs["dev-prometheus-config-reloader"]
    assert prometheus["spec"]["securityContext"]["runAsNonRoot"] is True
