"""Status aggregation: one Ready condition that says which child is not ready, and why."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from cryptopipe_dev import crd
from cryptopipe_operator.spec import API_VERSION, Pipeline, parse_spec
from cryptopipe_operator.status import (
    SPARK_STATES,
    aggregate_conditions,
    deployment_verdict,
    reconcile_failed_status,
    spark_verdict,
    validation_failed_status,
)

BASE_SPEC = yaml.safe_load((Path(__file__).parent / "invalid_specs.yaml").read_text())["base"]
STATUS_SCHEMA = crd.version_schema(crd.load_crd(), API_VERSION)["properties"]["status"]
EARLIER = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)

TOPIC_READY = {"conditions": [{"type": "Ready", "status": "True"}]}
TOPIC_FAILED = {
    "conditions": [{"type": "Ready", "status": "False", "reason": "KafkaError", "message": "replicas > brokers"}]
}
# as the Deployment controller writes it once generation 1 is rolled out (zero counts omitted)
DEPLOYMENT_AVAILABLE = {
    "observedGeneration": 1,
    "replicas": 1,
    "updatedReplicas": 1,
    "readyReplicas": 1,
    "availableReplicas": 1,
    "conditions": [
        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
    ],
}
# its one pod on the newest template, not ready yet
DEPLOYMENT_STARTING = {
    "observedGeneration": 1,
    "replicas": 1,
    "updatedReplicas": 1,
    "unavailableReplicas": 1,
    "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}],
}
DEPLOYMENT_STUCK = {
    "conditions": [
        {"type": "Available", "status": "False"},
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"},
    ]
}


def spark(state: str, error: str | None = None) -> dict:
    return {"applicationState": {"state": state} | ({"errorMessage": error} if error else {})}


def pipeline(**spec_changes) -> Pipeline:
    return Pipeline("btc", "data", "uid-1", parse_spec(BASE_SPEC | spec_changes))


def aggregate(
    topic=TOPIC_READY, dlq=TOPIC_READY, deployment=DEPLOYMENT_AVAILABLE, app=spark("RUNNING"), *, p=None, previous=()
):
    return aggregate_conditions(p or pipeline(), 5, topic, dlq, deployment, app, previous=list(previous), now=NOW)


def conditions(status: dict) -> dict[str, dict]:
    return {c["type"]: c for c in status["conditions"]}


def summary(status: dict) -> dict[str, tuple[str, str]]:
    return {t: (c["status"], c["reason"]) for t, c in conditions(status).items()}


@pytest.mark.parametrize(
    ("children", "phase", "expected"),
    [
        (
            {},
            "Running",
            {
                "Ready": ("True", "AllChildrenReady"),
                "TopicReady": ("True", "KafkaTopicReady"),
                "IngestionReady": ("True", "DeploymentAvailable"),
                "SparkReady": ("True", "SparkApplicationRunning"),
            },
        ),
        (
            {"topic": TOPIC_FAILED},
            "Degraded",
            {"Ready": ("False", "TopicNotReady"), "TopicReady": ("False", "KafkaTopicNotReady")},
        ),
        # missing: not applied yet, or deleted behind the operator's back; the next reconcile recreates it
        ({"dlq": None}, "Pending", {"Ready": ("False", "TopicNotReady"), "TopicReady": ("False", "KafkaTopicMissing")}),
        (
            {"topic": {}},
            "Pending",
            {"Ready": ("Unknown", "TopicNotReady"), "TopicReady": ("Unknown", "KafkaTopicPending")},
        ),
        (
            {"app": spark("FAILED", "driver OOMKilled")},
            "Degraded",
            {"Ready": ("False", "SparkNotReady"), "SparkReady": ("False", "SparkApplicationFailed")},
        ),
        (
            {"app": spark("SUBMISSION_FAILED")},
            "Degraded",
            {"SparkReady": ("False", "SparkApplicationSubmissionFailed")},
        ),
        # a streaming job that completes has stopped producing candles
        ({"app": spark("COMPLETED")}, "Degraded", {"SparkReady": ("False", "SparkApplicationCompleted")}),
        (
            {"app": spark("SUBMITTED")},
            "Pending",
            {"Ready": ("False", "SparkNotReady"), "SparkReady": ("False", "SparkApplicationSubmitted")},
        ),
        ({"app": spark("PENDING_RERUN")}, "Pending", {"SparkReady": ("False", "SparkApplicationPendingRerun")}),
        ({"app": {}}, "Pending", {"SparkReady": ("Unknown", "SparkApplicationPending")}),
        (
            {"deployment": DEPLOYMENT_STARTING},
            "Pending",
            {"Ready": ("False", "IngestionNotReady"), "IngestionReady": ("False", "DeploymentUnavailable")},
        ),
        (
            {"deployment": DEPLOYMENT_STUCK},
            "Degraded",
            {"IngestionReady": ("False", "DeploymentProgressDeadlineExceeded")},
        ),
        ({"deployment": {}}, "Pending", {"IngestionReady": ("Unknown", "DeploymentPending")}),
        # first not-ready child names the reason; the message lists them all
        ({"topic": TOPIC_FAILED, "app": spark("FAILED")}, "Degraded", {"Ready": ("False", "TopicNotReady")}),
    ],
)
def test_aggregation(children: dict, phase: str, expected: dict) -> None:
    status = aggregate(**children)
    assert status["phase"] == phase
    assert summary(status).items() >= expected.items()
    assert status["observedGeneration"] == 5
    assert all(c["observedGeneration"] == 5 for c in status["conditions"])
    assert crd.schema_problems(STATUS_SCHEMA, status) == []


def test_ready_message_names_every_child_that_is_not_ready() -> None:
    ready = conditions(aggregate(topic=TOPIC_FAILED, app=spark("FAILED", "driver OOMKilled")))["Ready"]
    assert ready["message"].startswith("TopicReady: KafkaTopic btc-trades is not ready: KafkaError: replicas > brokers")
    assert "SparkReady: SparkApplication btc-candles is FAILED: driver OOMKilled" in ready["message"]


def test_ingestion_needs_all_desired_replicas() -> None:
    both_updated_one_available = DEPLOYMENT_AVAILABLE | {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 1}
    status = aggregate(deployment=both_updated_one_available, p=pipeline(ingestion={"image": "i:1", "replicas": 2}))
    assert summary(status)["IngestionReady"] == ("False", "DeploymentUnavailable")
    assert "1/2 replicas available" in conditions(status)["IngestionReady"]["message"]


def test_suspended() -> None:
    # zero replicas and a suspended job are what was asked for, but not a working pipeline
    status = aggregate(deployment={"replicas": 0}, app=spark("SUSPENDED"), p=pipeline(suspend=True))
    assert status["phase"] == "Suspended"
    assert summary(status)["IngestionReady"] == summary(status)["SparkReady"] == ("False", "Suspended")
    assert summary(status)["Ready"] == ("False", "IngestionNotReady")


def test_last_transition_time_moves_only_with_status() -> None:
    before = aggregate(app=spark("SUBMITTED"))
    for condition in before["conditions"]:
        condition["lastTransitionTime"] = "2026-11-26T09:00:00Z"
    after = conditions(aggregate(previous=before["conditions"]))
    assert after["TopicReady"]["lastTransitionTime"] == "2026-11-26T09:00:00Z"  # True -> True
    assert after["SparkReady"]["lastTransitionTime"] == "2026-11-26T10:00:00Z"  # False -> True
    assert after["Ready"]["lastTransitionTime"] == "2026-11-26T10:00:00Z"
    # a new reason under the same status is not a transition
    failed = conditions(aggregate(app=spark("FAILED"), previous=before["conditions"]))["SparkReady"]
    assert (failed["reason"], failed["lastTransitionTime"]) == ("SparkApplicationFailed", "2026-11-26T09:00:00Z")


def test_validation_failed_status() -> None:
    previous = aggregate()["conditions"]
    status = validation_failed_status("spec.windows[1]: duplicate", generation=6, previous=previous, now=NOW)
    assert status["phase"] == "Invalid" and status["observedGeneration"] == 6
    ready = conditions(status)["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "InvalidSpec",
        "spec.windows[1]: duplicate",
    )
    assert ready["lastTransitionTime"] == "2026-11-26T10:00:00Z"
    assert conditions(status)["SparkReady"] == conditions({"conditions": previous})["SparkReady"]
    assert crd.schema_problems(STATUS_SCHEMA, status) == []


# -- the lake monitor's condition: only while enabled, and outside Ready ----------------------------


def monitored(**spec_changes) -> Pipeline:
    return pipeline(monitor={"enabled": True}, **spec_changes)


def test_no_monitor_condition_unless_enabled() -> None:
    # a Deployment of the monitor's name lying around does not make the condition appear
    status = aggregate_conditions(
        pipeline(),
        5,
        TOPIC_READY,
        TOPIC_READY,
        DEPLOYMENT_AVAILABLE,
        spark("RUNNING"),
        previous=[],
        now=NOW,
        monitor_status=DEPLOYMENT_AVAILABLE,
    )
    assert set(conditions(status)) == {"Ready", "TopicReady", "IngestionReady", "SparkReady"}


@pytest.mark.parametrize(
    ("monitor", "expected"),
    [
        (DEPLOYMENT_AVAILABLE, ("True", "DeploymentAvailable")),
        (None, ("False", "DeploymentMissing")),
        (DEPLOYMENT_STARTING, ("False", "DeploymentUnavailable")),
        (DEPLOYMENT_STUCK, ("False", "DeploymentProgressDeadlineExceeded")),
        ({}, ("Unknown", "DeploymentPending")),
    ],
)
def test_monitor_condition_does_not_count_toward_ready(monitor, expected) -> None:
    status = aggregate_conditions(
        monitored(),
        5,
        TOPIC_READY,
        TOPIC_READY,
        DEPLOYMENT_AVAILABLE,
        spark("RUNNING"),
        previous=[],
        now=NOW,
        monitor_status=monitor,
    )
    assert summary(status)["LakeMonitorReady"] == expected
    assert "btc-lake-monitor" in conditions(status)["LakeMonitorReady"]["message"]
    # the candles flow whether or not the monitor runs: Ready and phase ignore it
    assert summary(status)["Ready"] == ("True", "AllChildrenReady") and status["phase"] == "Running"
    assert conditions(status)["LakeMonitorReady"]["observedGeneration"] == 5
    assert crd.schema_problems(STATUS_SCHEMA, status) == []


def test_suspended_monitor() -> None:
    status = aggregate_conditions(
        monitored(suspend=True),
        5,
        TOPIC_READY,
        TOPIC_READY,
        {"replicas": 0},
        spark("SUSPENDED"),
        previous=[],
        now=NOW,
        monitor_status={"replicas": 0},
    )
    assert summary(status)["LakeMonitorReady"] == ("False", "Suspended")
    assert status["phase"] == "Suspended"


# -- rollout progress: a Deployment is ready once its newest template is out and available -----------


def rolled(**changes) -> dict:
    return DEPLOYMENT_AVAILABLE | changes


@pytest.mark.parametrize(
    ("deployment", "generation", "expected", "words"),
    [
        (DEPLOYMENT_AVAILABLE, 1, ("True", "DeploymentAvailable"), "1/1 replicas available"),
        (DEPLOYMENT_AVAILABLE, None, ("True", "DeploymentAvailable"), "1/1"),
        # the spec changed, the controller has not even looked yet: the old pods say nothing of it
        (DEPLOYMENT_AVAILABLE, 2, ("False", "DeploymentRolloutPending"), "generation 2 not yet observed"),
        # a new ReplicaSet started, its pod not yet up; the old pod still serves and counts as available
        (
            rolled(observedGeneration=2, replicas=2, updatedReplicas=1, unavailableReplicas=1),
            2,
            ("False", "DeploymentRollingOut"),
            "1 old replica(s) pending termination",
        ),
        (
            rolled(observedGeneration=2, updatedReplicas=None),
            2,
            ("False", "DeploymentRollingOut"),
            "0/1 replicas on the newest template",
        ),
        # all pods new, not yet available
        (
            rolled(observedGeneration=2, availableReplicas=None, readyReplicas=None)
            | {"conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]},
            2,
            ("False", "DeploymentUnavailable"),
            "0/1 replicas available",
        ),
        (
            rolled(observedGeneration=2, replicas=2, updatedReplicas=1)
            | {
                "conditions": [
                    {"type": "Available", "status": "True"},
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "x"},
                ]
            },
            2,
            ("False", "DeploymentProgressDeadlineExceeded"),
            "x",
        ),
        ({}, 1, ("Unknown", "DeploymentPending"), "no status yet"),
        (None, 1, ("False", "DeploymentMissing"), "does not exist"),
    ],
)
def test_deployment_rollout(deployment, generation, expected, words) -> None:
    verdict = deployment_verdict("btc-ingestion", deployment, 1, generation)
    assert (verdict.status, verdict.reason) == expected
    assert words in verdict.message and "btc-ingestion" in verdict.message
    assert verdict.failed == (expected[1] == "DeploymentProgressDeadlineExceeded")


def test_rollout_in_progress_makes_the_pipeline_pending() -> None:
    status = aggregate_conditions(
        pipeline(),
        5,
        TOPIC_READY,
        TOPIC_READY,
        rolled(observedGeneration=3, replicas=2, updatedReplicas=1),
        spark("RUNNING"),
        previous=[],
        now=NOW,
        deployment_generation=3,
    )
    assert summary(status)["Ready"] == ("False", "IngestionNotReady") and status["phase"] == "Pending"
    assert summary(status)["IngestionReady"] == ("False", "DeploymentRollingOut")


# -- every state of spark-operator's v1beta2 ApplicationStateType ------------------------------------


@pytest.mark.parametrize(
    ("state", "expected", "failed"),
    [
        ("RUNNING", ("True", "SparkApplicationRunning"), False),
        ("", ("False", "SparkApplicationNew"), False),
        ("SUBMITTED", ("False", "SparkApplicationSubmitted"), False),
        # re-submitting: after a spec change (INVALIDATING), a failure under restartPolicy Always
        # (PENDING_RERUN), a resume: not running the new spec yet
        ("INVALIDATING", ("False", "SparkApplicationInvalidating"), False),
        ("PENDING_RERUN", ("False", "SparkApplicationPendingRerun"), False),
        ("RESUMING", ("False", "SparkApplicationResuming"), False),
        ("SUCCEEDING", ("False", "SparkApplicationSucceeding"), True),
        ("COMPLETED", ("False", "SparkApplicationCompleted"), True),
        ("FAILING", ("False", "SparkApplicationFailing"), True),
        ("FAILED", ("False", "SparkApplicationFailed"), True),
        ("SUBMISSION_FAILED", ("False", "SparkApplicationSubmissionFailed"), True),
        ("SUSPENDING", ("False", "SparkApplicationSuspending"), False),
        ("SUSPENDED", ("False", "SparkApplicationSuspended"), False),
        ("UNKNOWN", ("Unknown", "SparkApplicationPending"), False),
        ("SOMETHING_NEW", ("Unknown", "SparkApplicationStateUnknown"), False),
    ],
)
def test_spark_states(state, expected, failed) -> None:
    verdict = spark_verdict("btc-candles", {"applicationState": {"state": state}})
    assert (verdict.status, verdict.reason, verdict.failed) == (*expected, failed)
    assert "btc-candles" in verdict.message


def test_every_known_spark_state_is_classified() -> None:
    tested = {"RUNNING", "", "SUBMITTED", "INVALIDATING", "PENDING_RERUN", "RESUMING", "SUCCEEDING", "COMPLETED"}
    tested |= {"FAILING", "FAILED", "SUBMISSION_FAILED", "SUSPENDING", "SUSPENDED", "UNKNOWN"}
    assert tested == SPARK_STATES


def test_spark_without_status_is_pending_and_missing_is_missing() -> None:
    assert spark_verdict("x", {}).reason == "SparkApplicationPending"
    assert spark_verdict("x", None).reason == "SparkApplicationMissing"


# -- a failed reconcile ------------------------------------------------------------------------------


def test_reconcile_failed_status() -> None:
    previous = aggregate()["conditions"]
    message = "applying Deployment/btc-ingestion: HTTP 403: exceeded quota: q, requested: count/deployments.apps=1"
    status = reconcile_failed_status(message, generation=7, previous=previous, now=NOW)
    assert status["observedGeneration"] == 7 and status["phase"] == "Degraded"
    ready = conditions(status)["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "ReconcileFailed", message)
    assert ready["observedGeneration"] == 7 and ready["lastTransitionTime"] == "2026-11-26T10:00:00Z"
    assert conditions(status)["IngestionReady"] == conditions({"conditions": previous})["IngestionReady"]
    assert crd.schema_problems(STATUS_SCHEMA, status) == []
