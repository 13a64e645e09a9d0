"""The CryptoPipeline's status, aggregated from its children's statuses (Strimzi's contract: one
Ready condition that says why, CamelCase reasons, observedGeneration).

Each child status argument is the child's ``status`` mapping, ``{}`` when it has none yet, or
``None`` when the child does not exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from cryptopipe_operator.render_ingestion import deployment_name
from cryptopipe_operator.render_kafka import dlq_topic_name, trades_topic_name
from cryptopipe_operator.render_monitor import deployment_name as monitor_deployment_name
from cryptopipe_operator.render_spark import spark_application_name
from cryptopipe_operator.spec import Pipeline

ConditionStatus = Literal["True", "False", "Unknown"]
Status = Mapping[str, Any] | None

CHILD_CONDITIONS = ("TopicReady", "IngestionReady", "SparkReady")
# Reported only while spec.monitor.enabled, and NOT part of Ready: the monitor watches the lake, it
# is not on the path trades take into it, so candles are written (Ready, phase Running) whether or
# not it runs; a failing monitor says so in its own condition without marking the pipeline degraded.
MONITOR_CONDITION = "LakeMonitorReady"
# spark-operator v2's application states (v1beta2 ApplicationStateType; the CRD's schema leaves
# the field a free string, so an unknown state is reported as such, not ready). Only RUNNING is
# ready. The streaming job is never meant to end: one that ends, fails or failed to start is
# Degraded; the others are steps on the way (back) to RUNNING.
SPARK_FAILURE_STATES = frozenset({"FAILED", "SUBMISSION_FAILED", "FAILING", "COMPLETED", "SUCCEEDING"})
# A submission in progress: the first one (NEW is the empty state), or a re-submission after a
# spec change (INVALIDATING, then PENDING_RERUN) or a failure under restartPolicy Always
# (FAILING, then PENDING_RERUN). The job is not producing candles until it is RUNNING again.
SPARK_SUBMITTING_STATES = frozenset({"", "SUBMITTED", "PENDING_RERUN", "INVALIDATING", "RESUMING"})
# spec.suspend on the SparkApplication (the operator sets it only with the pipeline's spec.suspend,
# which is reported as Suspended before the job's state is looked at)
SPARK_SUSPENDED_STATES = frozenset({"SUSPENDING", "SUSPENDED"})
SPARK_STATES = SPARK_FAILURE_STATES | SPARK_SUBMITTING_STATES | SPARK_SUSPENDED_STATES | {"RUNNING", "UNKNOWN"}


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: ConditionStatus
    reason: str
    message: str
    failed: bool = False  # False and not just on its way: the phase becomes Degraded


def _camel(state: str) -> str:
    return "".join(part.capitalize() for part in state.lower().split("_"))


def _ready_condition(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)


def topic_verdict(name: str, status: Status) -> Verdict:
    if status is None:
        return Verdict("False", "KafkaTopicMissing", f"KafkaTopic {name} does not exist")
    ready = _ready_condition(status)
    if ready is None:
        message = f"KafkaTopic {name} has no Ready condition yet (is Strimzi's topic operator running?)"
        return Verdict("Unknown", "KafkaTopicPending", message)
    if ready.get("status") == "True":
        return Verdict("True", "KafkaTopicReady", f"KafkaTopic {name} is ready")
    detail = ": ".join(x for x in (ready.get("reason"), ready.get("message")) if x)
    message = f"KafkaTopic {name} is not ready: {detail or 'no reason given'}"
    return Verdict("False", "KafkaTopicNotReady", message, failed=True)


def deployment_verdict(name: str, status: Status, desired_replicas: int, generation: int | None = None) -> Verdict:
    """Ready only when the newest template is rolled out and available: the Deployment controller
    has seen the Deployment's latest ``generation`` (its metadata.generation; None: not checked),
    all ``desired_replicas`` run the newest ReplicaSet, no old replica is left, and as many are
    available. A Deployment still rolling out a change reports the old pods' availability, which
    says nothing about the new spec."""
    if status is None:
        return Verdict("False", "DeploymentMissing", f"Deployment {name} does not exist")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    progressing = conditions.get("Progressing", {})
    if progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
        message = f"Deployment {name}: {progressing.get('message', 'progress deadline exceeded')}"
        return Verdict("False", "DeploymentProgressDeadlineExceeded", message, failed=True)
    if not conditions:
        return Verdict("Unknown", "DeploymentPending", f"Deployment {name} has no status yet")
    observed = status.get("observedGeneration") or 0
    if generation is not None and observed < generation:
        message = f"Deployment {name}: generation {generation} not yet observed by its controller (at {observed})"
        return Verdict("False", "DeploymentRolloutPending", message)
    # the API server omits zero counts
    updated = status.get("updatedReplicas") or 0
    total = status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < desired_replicas:
        message = f"Deployment {name}: rolling out, {updated}/{desired_replicas} replicas on the newest template"
        return Verdict("False", "DeploymentRollingOut", message)
    if total > updated:
        message = f"Deployment {name}: rolling out, {total - updated} old replica(s) pending termination"
        return Verdict("False", "DeploymentRollingOut", message)
    counted = f"Deployment {name}: {available}/{desired_replicas} replicas available"
    if conditions.get("Available", {}).get("status") == "True" and available >= desired_replicas:
        return Verdict("True", "DeploymentAvailable", counted)
    return Verdict("False", "DeploymentUnavailable", counted)


def spark_verdict(name: str, status: Status) -> Verdict:
    if status is None:
        return Verdict("False", "SparkApplicationMissing", f"SparkApplication {name} does not exist")
    app_state = status.get("applicationState") or {}
    state = app_state.get("state") or ""
    if state == "RUNNING":
        return Verdict("True", "SparkApplicationRunning", f"SparkApplication {name} is running")
    if not status or state == "UNKNOWN":
        return Verdict("Unknown", "SparkApplicationPending", f"SparkApplication {name} has no known state yet")
    error = app_state.get("errorMessage")
    if state == "":
        return Verdict("False", "SparkApplicationNew", f"SparkApplication {name} is not submitted yet")
    detail = f"SparkApplication {name} is {state}" + (f": {error}" if error else "")
    if state in SPARK_SUBMITTING_STATES:
        return Verdict("False", f"SparkApplication{_camel(state)}", f"{detail} (submitting, not running yet)")
    if state not in SPARK_STATES:
        return Verdict("Unknown", "SparkApplicationStateUnknown", f"{detail} (a state this operator does not know)")
    return Verdict("False", f"SparkApplication{_camel(state)}", detail, failed=state in SPARK_FAILURE_STATES)


# the reason of every child condition of a suspended pipeline (metrics.py reads it back)
SUSPENDED_REASON = "Suspended"


def suspended_verdict(what: str) -> Verdict:
    return Verdict("False", SUSPENDED_REASON, f"{what} is suspended (spec.suspend)")


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """Several children behind one condition (the two topics): the worst one speaks."""
    rank = {"False": 0, "Unknown": 1, "True": 2}
    worst = min(verdicts, key=lambda v: rank[v.status])
    if worst.status == "True":
        return dataclasses.replace(worst, message="; ".join(v.message for v in verdicts))
    return dataclasses.replace(
        worst,
        message="; ".join(v.message for v in verdicts if v.status != "True"),
        failed=any(v.failed for v in verdicts),
    )


def _rfc3339(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    type_: str, verdict: Verdict, generation: int, previous: Sequence[Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    before = next((c for c in previous if c.get("type") == type_), None)
    # a condition's time says when its status last flipped, not when it was last computed
    kept = before.get("lastTransitionTime") if before is not None and before.get("status") == verdict.status else None
    return {
        "type": type_,
        "status": verdict.status,
        "reason": verdict.reason,
        "message": verdict.message,
        "lastTransitionTime": kept or _rfc3339(now),
        "observedGeneration": generation,
    }


def _ready_verdict(children: Mapping[str, Verdict]) -> Verdict:
    not_ready = [(type_, v) for type_, v in children.items() if v.status != "True"]
    if not not_ready:
        return Verdict("True", "AllChildrenReady", "topics, ingestion and Spark job are ready")
    first_type, first = not_ready[0]
    status: ConditionStatus = "False" if any(v.status == "False" for _, v in not_ready) else "Unknown"
    return Verdict(
        status,
        f"{first_type.removesuffix('Ready')}NotReady",
        "; ".join(f"{type_}: {v.message}" for type_, v in not_ready),
        failed=any(v.failed for _, v in not_ready),
    )


def _phase(suspended: bool, ready: Verdict) -> str:
    if suspended:
        return "Suspended"
    if ready.status == "True":
        return "Running"
    return "Degraded" if ready.failed else "Pending"


def aggregate_conditions(
    pipeline: Pipeline,
    generation: int,
    topic_status: Status,
    dlq_status: Status,
    deployment_status: Status,
    sparkapp_status: Status,
    *,
    previous: Sequence[Mapping[str, Any]],
    now: datetime,
    monitor_status: Status = None,
    deployment_generation: int | None = None,
    monitor_generation: int | None = None,
) -> dict[str, Any]:
    """Conditions, observedGeneration and phase; ``previous`` is status.conditions as it was.
    ``monitor_status`` is the lake monitor Deployment's, read only when spec.monitor.enabled;
    ``*_generation`` the Deployments' metadata.generation (is the rollout of the latest one seen?)."""
    topics = combine(
        [
            topic_verdict(trades_topic_name(pipeline), topic_status),
            topic_verdict(dlq_topic_name(pipeline), dlq_status),
        ]
    )
    if pipeline.spec.suspend:
        ingestion, spark = suspended_verdict("ingestion"), suspended_verdict("the Spark job")
    else:
        desired = pipeline.spec.ingestion.replicas
        ingestion = deployment_verdict(deployment_name(pipeline), deployment_status, desired, deployment_generation)
        spark = spark_verdict(spark_application_name(pipeline), sparkapp_status)
    children = dict(zip(CHILD_CONDITIONS, (topics, ingestion, spark), strict=False))
    ready = _ready_verdict(children)
    verdicts = {"Ready": ready} | children
    if pipeline.spec.monitor.enabled:
        if pipeline.spec.suspend:
            verdicts[MONITOR_CONDITION] = suspended_verdict("the lake monitor")
        else:
            verdicts[MONITOR_CONDITION] = deployment_verdict(
                monitor_deployment_name(pipeline), monitor_status, 1, monitor_generation
            )
    return {
        "conditions": [_condition(t, v, generation, previous, now) for t, v in verdicts.items()],
        "observedGeneration": generation,
        "phase": _phase(pipeline.spec.suspend, ready),
    }


def validation_failed_status(
    message: str, *, generation: int, previous: Sequence[Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    """For a spec the operator refuses (SpecError): Ready False, reason InvalidSpec, children left
    as they were; the other conditions keep describing them."""
    ready = _condition("Ready", Verdict("False", "InvalidSpec", message, failed=True), generation, previous, now)
    others = [dict(c) for c in previous if c.get("type") != "Ready"]
    return {"conditions": [ready, *others], "observedGeneration": generation, "phase": "Invalid"}


def conflict_status(
    reason: str, message: str, *, generation: int, previous: Sequence[Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    """For a pipeline the operator will not act on because what it would write belongs to someone
    else (LakeConflict: its lake space; ChildConflict: an object with a child's name): Ready False
    with that reason, phase Conflict, nothing applied; the other conditions keep describing the
    children as they are."""
    ready = _condition("Ready", Verdict("False", reason, message, failed=True), generation, previous, now)
    others = [dict(c) for c in previous if c.get("type") != "Ready"]
    return {"conditions": [ready, *others], "observedGeneration": generation, "phase": "Conflict"}


def deletion_blocked_status(
    reason: str, message: str, *, generation: int, previous: Sequence[Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    """For a pipeline being deleted whose deletion policy cannot finish (or gave up): Ready False
    with that reason (LakeDeleteFailed, LakeDeleteAbandoned); the phase and other conditions kept."""
    ready = _condition("Ready", Verdict("False", reason, message, failed=True), generation, previous, now)
    return {"conditions": [ready, *(dict(c) for c in previous if c.get("type") != "Ready")]}


RECONCILE_FAILED = "ReconcileFailed"


def reconcile_failed_status(
    message: str, *, generation: int, previous: Sequence[Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    """For a reconcile that failed (a child the API server refused, an error on the way): Ready
    False, reason ReconcileFailed, the failure in the message, phase Degraded, observedGeneration
    the generation it failed on (the status is about this spec: it is not applied). The other
    conditions keep describing the children as they were."""
    ready = _condition("Ready", Verdict("False", RECONCILE_FAILED, message, failed=True), generation, previous, now)
    others = [dict(c) for c in previous if c.get("type") != "Ready"]
    return {"conditions": [ready, *others], "observedGeneration": generation, "phase": "Degraded"}
