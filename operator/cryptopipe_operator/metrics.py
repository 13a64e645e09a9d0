"""The operator's Prometheus metrics (served on CRYPTOPIPE_OPERATOR_METRICS_PORT when set)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cryptopipe_operator.status import SUSPENDED_REASON

REGISTRY = CollectorRegistry()

RECONCILES = Counter(
    "cryptopipe_operator_reconciles",
    "Reconciles of a CryptoPipeline, by result (applied, invalid, conflict, error)",
    ["result"],
    registry=REGISTRY,
)
# every result exists at 0 from the start: the reconcile-errors alert uses increase(), which cannot
# see a counter's first step from absent to 1
for _result in ("applied", "invalid", "conflict", "error"):
    RECONCILES.labels(_result)
RECONCILE_SECONDS = Histogram(
    "cryptopipe_operator_reconcile_duration_seconds",
    "Wall time of one reconcile (render + apply + status)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CONDITION = Gauge(
    "cryptopipe_operator_pipeline_condition",
    "1 when the pipeline's condition of this type is True, else 0",
    ["namespace", "pipeline", "type"],
    registry=REGISTRY,
)

SUSPENDED = Gauge(
    "cryptopipe_operator_pipeline_suspended",
    "1 while the pipeline is suspended (spec.suspend: its pods are stopped on purpose), else 0; no "
    "series once the pipeline is deleted. The down alerts leave such pipelines out",
    ["namespace", "pipeline"],
    registry=REGISTRY,
)

LEADER = Gauge(
    "cryptopipe_operator_leader",
    "1 while this operator process reconciles (it holds the leader-election Lease, or runs without "
    "election); 0 while it waits for the Lease",
    registry=REGISTRY,
)


RETRY_DELAY = Gauge(
    "cryptopipe_operator_reconcile_retry_delay_seconds",
    "Delay before the next attempt of the pipeline's failing reconcile (no series once it succeeds)",
    ["namespace", "pipeline"],
    registry=REGISTRY,
)
FAILED_ATTEMPTS = Gauge(
    "cryptopipe_operator_reconcile_failed_attempts",
    "Consecutive failed attempts of the pipeline's reconcile (no series once it succeeds)",
    ["namespace", "pipeline"],
    registry=REGISTRY,
)
DRIFT_REPAIRS = Counter(
    "cryptopipe_operator_drift_repairs",
    "Children re-created or re-applied because they were deleted or changed by hand, by kind",
    ["kind"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "cryptopipe_operator_api_requests",
    "Requests the operator's own client sent to the API server (kopf's watches not included), by "
    "verb (get, list, apply, patch, create, update, delete) and resource (plural, /subresource)",
    ["verb", "resource"],
    registry=REGISTRY,
)


def record_failed_attempt(meta: Mapping[str, Any], attempts: int, delay: float) -> None:
    FAILED_ATTEMPTS.labels(meta["namespace"], meta["name"]).set(attempts)
    RETRY_DELAY.labels(meta["namespace"], meta["name"]).set(delay)


def forget_failures(meta: Mapping[str, Any]) -> None:
    for gauge in (FAILED_ATTEMPTS, RETRY_DELAY):
        if (meta["namespace"], meta["name"]) in gauge._metrics:  # prometheus_client: no has-labels
            gauge.remove(meta["namespace"], meta["name"])


def record_conditions(meta: Mapping[str, Any], conditions: Iterable[Mapping[str, Any]]) -> None:
    """Set the pipeline's condition series; a type no longer reported (LakeMonitorReady after
    spec.monitor is turned off) loses its series instead of keeping its last value."""
    namespace, name = meta["namespace"], meta["name"]
    reported = set()
    conditions = list(conditions)
    SUSPENDED.labels(namespace, name).set(any(c.get("reason") == SUSPENDED_REASON for c in conditions))
    for condition in conditions:
        CONDITION.labels(namespace, name, condition["type"]).set(condition["status"] == "True")
        reported.add(condition["type"])
    for labels in list(CONDITION._metrics):  # prometheus_client has no per-prefix removal
        if labels[:2] == (namespace, name) and labels[2] not in reported:
            CONDITION.remove(*labels)


def forget_pipeline(meta: Mapping[str, Any]) -> None:
    """A deleted pipeline's series must go, or dashboards would show it forever."""
    for labels in list(CONDITION._metrics):  # prometheus_client has no per-prefix removal
        if labels[:2] == (meta["namespace"], meta["name"]):
            CONDITION.remove(*labels)
    if (meta["namespace"], meta["name"]) in SUSPENDED._metrics:
        SUSPENDED.remove(meta["namespace"], meta["name"])
    forget_failures(meta)
