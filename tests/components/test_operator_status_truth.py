"""Status that tells the truth (issue 11, points 7-9), against the real kube-apiserver and
controller-manager: observedGeneration never goes backwards while the status timer races spec
changes; a reconcile the API server refuses is reported (Ready False, ReconcileFailed), retried
with a growing delay and one Event, and converges once the fault is gone; children deleted or
changed by hand are put back without a spec change.

The module runs its own operator: a status timer every 0.2 s (many refreshes to race the
reconciles), drift repair every second, a retry backoff of 1 s doubling up to 8 s."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.stack.kube import KubeControlPlane, insecure_tls
from tests.components.test_operator_lifecycle import scrape_samples
from tests.support.admission_webhook import AdmissionWebhook
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import PATHS, conditions, events, get, mark_children_ready, patch_status
from tests.support.local_services import register
from tests.support.operator_process import OperatorProcess, eventually

pytestmark = pytest.mark.kube

BACKOFF_BASE_S, BACKOFF_CAP_S = 1, 8
ENV = {
    "CRYPTOPIPE_OPERATOR_STATUS_INTERVAL_S": "0.2",
    "CRYPTOPIPE_OPERATOR_DRIFT_REPAIR_INTERVAL_S": "1",
    "CRYPTOPIPE_OPERATOR_RETRY_BACKOFF_S": str(BACKOFF_BASE_S),
    "CRYPTOPIPE_OPERATOR_RETRY_BACKOFF_MAX_S": str(BACKOFF_CAP_S),
}


@pytest.fixture(scope="module")
def operator(kube: KubeControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    process = OperatorProcess(kube, tmp_path_factory.mktemp("operator-status-truth") / "operator.log", env=ENV)
    register("operator", process)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _create(kube: KubeControlPlane, body: dict[str, Any]) -> None:
    kube.kubectl("create", "-f", "-", input=json.dumps(body))


def _pipeline(kube: KubeControlPlane, ns: str, name: str) -> dict[str, Any]:
    obj = get(kube, "CryptoPipeline", ns, name)
    assert obj is not None
    return obj


def _merge(kube: KubeControlPlane, resource: str, ns: str, patch: dict[str, Any]) -> None:
    kube.kubectl("patch", resource, "-n", ns, "--type=merge", "-p", json.dumps(patch))


def _applied(kube: KubeControlPlane, ns: str, name: str) -> dict[str, Any]:
    """The pipeline once the operator has written the status of its current generation."""
    obj = _pipeline(kube, ns, name)
    st = obj.get("status") or {}
    assert st.get("observedGeneration") == obj["metadata"]["generation"], st
    return obj


class StatusRecorder:
    """Every version of one CryptoPipeline, as watches through the API server deliver them (a watch
    from a resourceVersion sends each change, none coalesced): (generation, observedGeneration).
    Short watches, each resumed from the last version seen, so that stop() ends within seconds."""

    def __init__(self, kube: KubeControlPlane, ns: str, name: str) -> None:
        self._kube, self._ns, self._name = kube, ns, name
        self._version = _pipeline(kube, ns, name)["metadata"]["resourceVersion"]
        self._stopping = threading.Event()
        self.versions: list[tuple[int, int | None]] = []
        self._thread = threading.Thread(target=self._read, name="status-recorder", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        path = PATHS["CryptoPipeline"].format(ns=self._ns)
        while not self._stopping.is_set():
            query = f"?watch=1&fieldSelector=metadata.name%3D{self._name}&resourceVersion={self._version}"
            request = urllib.request.Request(
                f"{self._kube.server}{path}{query}&timeoutSeconds=1",
                headers={"Authorization": f"Bearer {self._kube.token}"},
            )
            with urllib.request.urlopen(request, timeout=30, context=insecure_tls()) as response:
                for line in response:
                    event = json.loads(line)
                    assert event["type"] in ("ADDED", "MODIFIED"), event  # never ERROR (a gap) nor DELETED
                    obj = event["object"]
                    self._version = obj["metadata"]["resourceVersion"]
                    observed = (obj.get("status") or {}).get("observedGeneration")
                    self.versions.append((obj["metadata"]["generation"], observed))

    def stop(self) -> list[tuple[int, int | None]]:
        self._stopping.set()
        self._thread.join(30)
        assert not self._thread.is_alive()
        return self.versions


def test_observed_generation_never_goes_backwards_while_the_timer_runs(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, tmp_path: Path
) -> None:
    """Spec changes land while the status timer's write is in flight. The write is widened to the
    window a busy API server gives: an admission webhook holds each status write that keeps
    observedGeneration (a refresh, not a reconcile) for two seconds, and each spec change is made
    inside that hold. The reconcile that follows must not end with the refresh's older generation
    written over its own (the API server re-applies a merge patch to the newer object unless it
    carries a resourceVersion).

    Event-driven, not timed: each round waits for its generation to be applied, gives the timer a
    new Spark state to write, and changes the spec once the webhook holds that write. (Spec changes
    at random intervals raced the reconciles instead: with each reconcile slower than the interval,
    the timer found no applied generation to refresh and wrote 1 time in 80 changes.)"""
    ns, name = kube_namespace, "b"
    rounds = 8
    held: list[int] = []
    holding = threading.Event()

    def review(request: dict[str, Any]) -> dict[str, Any]:
        before = ((request.get("oldObject") or {}).get("status") or {}).get("observedGeneration")
        after = ((request.get("object") or {}).get("status") or {}).get("observedGeneration")
        if request["name"] == name and before == after:
            held.append(after)
            holding.set()
            time.sleep(2.0)
            holding.clear()
        return {"allowed": True}

    _create(kube, pipeline(name, ns))
    eventually(lambda: get(kube, "SparkApplication", ns, f"{name}-candles"), "children", operator=operator)
    eventually(lambda: _applied(kube, ns, name), "first status", operator=operator)
    rule = {
        "apiGroups": ["cryptopipeline.io"],
        "apiVersions": ["v1alpha1"],
        "operations": ["UPDATE"],
        "resources": ["cryptopipelines/status"],
    }
    inside_hold = 0
    with AdmissionWebhook(tmp_path, review) as hook:
        configuration = hook.configuration(f"hold-status-{ns}", ns, rule)
        kube.apply(configuration)
        recorder = StatusRecorder(kube, ns, name)
        try:
            for i in range(rounds):
                eventually(lambda: _applied(kube, ns, name), f"generation of round {i} applied", operator=operator)
                writes = len(held)
                # a new Spark state: the timer's next tick has a status to write, which the webhook holds
                patch_status(
                    kube,
                    f"sparkapplication/{name}-candles",
                    ns,
                    {"applicationState": {"state": "RUNNING" if i % 2 else "SUBMITTED"}, "driverInfo": {}},
                )
                eventually(
                    lambda writes=writes: len(held) > writes, f"round {i}: the timer's write held", operator=operator
                )
                _merge(kube, f"cryptopipeline/{name}", ns, {"spec": {"sink": {"prefix": f"{ns}/{name}-{i}"}}})
                inside_hold += holding.is_set()
            final = eventually(lambda: _applied(kube, ns, name), "status of the last generation", operator=operator)
        finally:
            versions = recorder.stop()
            kube.kubectl("delete", "validatingwebhookconfiguration", configuration["metadata"]["name"])
            # checked first, even when a round stalled: a generation written backwards leaves the
            # pipeline's newest generation never applied, and that stall is only its symptom
            observed = [o for _, o in versions if o is not None]
            backwards = [
                (before, after) for before, after in zip(observed, observed[1:], strict=False) if after < before
            ]
            assert not backwards, f"observedGeneration went backwards {backwards} in {observed}"
    # the race was run: most spec changes landed while a refresh's write was held
    assert inside_hold >= rounds // 2, (inside_hold, held)
    # each change a new generation
    assert observed[-1] == final["metadata"]["generation"] == rounds + 1, observed


def _quota_in_force(kube: KubeControlPlane, ns: str) -> bool:
    result = kube.kubectl("create", "deployment", "probe", "--image=x", "-n", ns, "--dry-run=server", check=False)
    assert "exceeded quota" in result.stderr, result.stderr
    return True


def _failure_metrics(operator: OperatorProcess, ns: str, name: str) -> tuple[float, float] | None:
    """(failed attempts, delay before the next) from the operator's /metrics; None: no failure."""
    values: dict[str, float] = {}
    for metric, labels, value in scrape_samples(f"http://127.0.0.1:{operator.metrics_port}/metrics"):
        if labels.get("namespace") == ns and labels.get("pipeline") == name:
            values[metric] = value
    attempts = values.get("cryptopipe_operator_reconcile_failed_attempts")
    delay = values.get("cryptopipe_operator_reconcile_retry_delay_seconds")
    return None if attempts is None or delay is None else (attempts, delay)


def test_refused_child_is_reported_retried_with_backoff_and_recovers(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    """A ResourceQuota allowing no Deployments: the API server refuses the ingestion Deployment."""
    ns, name = kube_namespace, "quota"
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-deployments", "namespace": ns},
        "spec": {"hard": {"count/deployments.apps": "0"}},
    }
    kube.kubectl("create", "-f", "-", input=json.dumps(quota))
    eventually(lambda: _quota_in_force(kube, ns), "quota in force")
    _create(kube, pipeline(name, ns))

    def reported() -> dict[str, Any]:
        obj = _pipeline(kube, ns, name)
        ready = conditions(obj).get("Ready") or {}
        assert ready.get("reason") == "ReconcileFailed", obj.get("status")
        return obj

    failed = eventually(reported, "Ready False, ReconcileFailed", operator=operator)
    ready = conditions(failed)["Ready"]
    assert ready["status"] == "False", ready
    assert f"Deployment/{name}-ingestion" in ready["message"] and "exceeded quota" in ready["message"], ready
    assert failed["status"]["observedGeneration"] == failed["metadata"]["generation"] == 1
    assert failed["status"]["phase"] == "Degraded"

    # each attempt as the operator counts it, with the delay it then waits, first seen by polling
    attempts: dict[int, tuple[float, float]] = {}

    def five_attempts() -> bool:
        seen = _failure_metrics(operator, ns, name)
        if seen is not None:
            attempts.setdefault(int(seen[0]), (seen[1], time.monotonic()))
        assert len(attempts) >= 5 and max(attempts) >= 5, attempts
        return True

    eventually(five_attempts, "five failed attempts", timeout=60, operator=operator)
    numbers = sorted(attempts)
    delays = [attempts[n][0] for n in numbers]
    assert delays == [min(BACKOFF_BASE_S * 2 ** (n - 1), BACKOFF_CAP_S) for n in numbers], attempts
    assert delays[-1] == BACKOFF_CAP_S and delays[0] < delays[-1]
    seen_at = [attempts[n][1] for n in numbers]
    gaps = [later - earlier for earlier, later in zip(seen_at, seen_at[1:], strict=False)]
    assert gaps[-1] > gaps[0], f"the retries did not slow down: {gaps}"  # 8 s apart, then 1 s apart

    warnings = [e for e in events(kube, ns, name) if e["reason"] == "ReconcileFailed"]
    assert len(warnings) == 1, [(e["reason"], e["message"], e.get("count")) for e in warnings]
    assert warnings[0]["type"] == "Warning" and "exceeded quota" in warnings[0]["message"]

    kube.kubectl("delete", "resourcequota", "no-deployments", "-n", ns)

    def recovered() -> dict[str, Any]:
        obj = _applied(kube, ns, name)
        assert conditions(obj)["Ready"]["reason"] != "ReconcileFailed", obj["status"]
        assert get(kube, "Deployment", ns, f"{name}-ingestion") is not None
        return obj

    eventually(recovered, "reconciled once the quota is gone", timeout=30, operator=operator)
    mark_children_ready(kube, ns, name)
    eventually(
        lambda: conditions(_pipeline(kube, ns, name))["Ready"]["status"] == "True", "Ready True", operator=operator
    )
    assert _failure_metrics(operator, ns, name) is None  # the retry series go with the failure
    assert len([e for e in events(kube, ns, name) if e["reason"] == "ReconcileFailed"]) == 1


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_children_deleted_or_changed_by_hand_are_put_back(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    ns, name = kube_namespace, "drift"
    _create(kube, pipeline(name, ns))
    eventually(lambda: get(kube, "SparkApplication", ns, f"{name}-candles"), "children", operator=operator)
    eventually(lambda: _applied(kube, ns, name), "first status", operator=operator)
    deployment = get(kube, "Deployment", ns, f"{name}-ingestion")
    topic = get(kube, "KafkaTopic", ns, f"{name}-trades")
    assert deployment is not None and topic is not None
    image = _container(deployment)["image"]

    kube.kubectl("delete", "deployment", f"{name}-ingestion", "-n", ns)

    def recreated(kind: str, child: str, old: dict[str, Any]) -> dict[str, Any]:
        now = get(kube, kind, ns, child)
        assert now is not None and now["metadata"]["uid"] != old["metadata"]["uid"], f"{kind}/{child} not recreated"
        return now

    deployment = eventually(
        lambda: recreated("Deployment", f"{name}-ingestion", deployment), "Deployment recreated", operator=operator
    )
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "someone/else:1"}]
    kube.kubectl("patch", "deployment", f"{name}-ingestion", "-n", ns, "--type=json", "-p", json.dumps(patch))
    assert _container(get(kube, "Deployment", ns, f"{name}-ingestion") or {})["image"] == "someone/else:1"

    def image_back() -> bool:
        now = get(kube, "Deployment", ns, f"{name}-ingestion")
        assert now is not None and _container(now)["image"] == image, now and _container(now)["image"]
        return True

    eventually(image_back, "image set back", operator=operator)

    kube.kubectl("delete", "kafkatopic", f"{name}-trades", "-n", ns)
    topic = eventually(
        lambda: recreated("KafkaTopic", f"{name}-trades", topic), "KafkaTopic recreated", operator=operator
    )
    assert topic["metadata"]["ownerReferences"][0]["name"] == name

    obj = _pipeline(kube, ns, name)
    assert obj["metadata"]["generation"] == 1  # no spec change did it
    repairs = [e["message"] for e in events(kube, ns, name) if e["reason"] == "DriftRepaired"]
    assert any(f"Deployment/{name}-ingestion" in m for m in repairs), repairs
    assert any(f"KafkaTopic/{name}-trades" in m for m in repairs), repairs


def test_drift_repair_reports_a_foreign_object_in_a_deleted_childs_place(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    """A child deleted by hand and another team's object created by its name: drift repair leaves
    the object alone and the status says so (Ready False ChildConflict naming it, phase Conflict,
    one Warning Event), as the reconcile does; once the name is free the child is back and the
    conflict gone. (Before: the repair only logged it, and the status kept the old Ready.)"""
    ns, name = kube_namespace, "usurped"
    child = f"{name}-trades-dlq"
    theirs = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": child, "namespace": ns, "labels": {"strimzi.io/cluster": "lake-kafka"}},
        "spec": {"partitions": 7, "replicas": 1, "config": {"retention.ms": 3600000}},
    }
    _create(kube, pipeline(name, ns))
    eventually(lambda: get(kube, "SparkApplication", ns, f"{name}-candles"), "children", operator=operator)
    eventually(lambda: _applied(kube, ns, name), "first status", operator=operator)

    def replaced() -> bool:
        # drift repair (every second here) may re-create the child between the two calls: then again
        kube.kubectl("delete", "kafkatopic", child, "-n", ns, "--ignore-not-found")
        kube.kubectl("create", "-f", "-", input=json.dumps(theirs), check=False)
        now = get(kube, "KafkaTopic", ns, child)
        return now is not None and not now["metadata"].get("ownerReferences")

    eventually(replaced, "the child's name taken by another object", operator=operator)

    def refused() -> dict[str, Any]:
        obj = _pipeline(kube, ns, name)
        ready = conditions(obj).get("Ready") or {}
        assert (ready.get("status"), ready.get("reason")) == ("False", "ChildConflict"), ready
        assert obj["status"]["phase"] == "Conflict", obj["status"]
        return ready

    ready = eventually(refused, "ChildConflict from the drift repair", operator=operator)
    assert f"KafkaTopic/{child}" in ready["message"], ready
    warning = eventually(
        lambda: [e for e in events(kube, ns, name) if e["reason"] == "ChildConflict"], "Event", operator=operator
    )
    assert warning[0]["type"] == "Warning" and f"KafkaTopic/{child}" in warning[0]["message"], warning
    topic = get(kube, "KafkaTopic", ns, child)
    assert topic is not None and topic["spec"] == theirs["spec"] and not topic["metadata"].get("ownerReferences")

    kube.kubectl("delete", "kafkatopic", child, "-n", ns)

    def back() -> bool:
        topic = get(kube, "KafkaTopic", ns, child)
        assert topic is not None and topic["metadata"].get("ownerReferences"), "child not re-created"
        obj = _pipeline(kube, ns, name)
        assert obj["status"]["phase"] != "Conflict", obj["status"]
        assert (conditions(obj).get("Ready") or {}).get("reason") != "ChildConflict", conditions(obj)
        return True

    eventually(back, "child back, conflict gone", operator=operator)
    assert len([e for e in events(kube, ns, name) if e["reason"] == "ChildConflict"]) == 1
