"""The operator's metrics: condition series follow what the pipeline reports."""

from __future__ import annotations

from cryptopipe_operator import metrics


def condition(namespace: str, name: str, kind: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "cryptopipe_operator_pipeline_condition", {"namespace": namespace, "pipeline": name, "type": kind}
    )


def test_a_condition_no_longer_reported_loses_its_series() -> None:
    meta = {"namespace": "md", "name": "metrics-test"}
    other = {"namespace": "md", "name": "metrics-test-other"}
    metrics.record_conditions(
        meta, [{"type": "Ready", "status": "True"}, {"type": "LakeMonitorReady", "status": "False"}]
    )
    metrics.record_conditions(other, [{"type": "LakeMonitorReady", "status": "True"}])
    assert condition("md", "metrics-test", "Ready") == 1 and condition("md", "metrics-test", "LakeMonitorReady") == 0

    metrics.record_conditions(meta, [{"type": "Ready", "status": "True"}])  # spec.monitor turned off
    assert condition("md", "metrics-test", "LakeMonitorReady") is None
    assert condition("md", "metrics-test", "Ready") == 1
    assert condition("md", "metrics-test-other", "LakeMonitorReady") == 1  # another pipeline keeps its own

    metrics.forget_pipeline(meta)
    metrics.forget_pipeline(other)
    assert condition("md", "metrics-test", "Ready") is None


def test_every_reconcile_result_exists_at_zero() -> None:
    # the reconcile-errors alert uses increase(), blind to a counter's first step from absent to 1
    for result in ("applied", "invalid", "error"):
        assert metrics.REGISTRY.get_sample_value("cryptopipe_operator_reconciles_total", {"result": result}) is not None


def test_requests_are_counted_as_the_api_server_names_them() -> None:
    from cryptopipe_operator.kube_api import APPLY_CONTENT_TYPE, verb_and_resource

    group = "/apis/cryptopipeline.io/v1alpha1"
    assert verb_and_resource("GET", f"{group}/cryptopipelines") == ("list", "cryptopipelines")
    assert verb_and_resource("GET", f"{group}/namespaces/ns/cryptopipelines") == ("list", "cryptopipelines")
    assert verb_and_resource("GET", f"{group}/namespaces/ns/cryptopipelines/p") == ("get", "cryptopipelines")
    status = f"{group}/namespaces/ns/cryptopipelines/p/status"
    assert verb_and_resource("PATCH", status, "application/merge-patch+json") == ("patch", "cryptopipelines/status")
    deployment = "/apis/apps/v1/namespaces/ns/deployments/d"
    assert verb_and_resource("PATCH", deployment, APPLY_CONTENT_TYPE) == ("apply", "deployments")
    assert verb_and_resource("GET", "/api/v1/namespaces/ns/secrets/s") == ("get", "secrets")
    assert verb_and_resource("DELETE", "/api/v1/namespaces/ns/secrets/s") == ("delete", "secrets")
    review = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    assert verb_and_resource("POST", review) == ("create", "selfsubjectaccessreviews")
    lease = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"
    assert verb_and_resource("PUT", lease) == ("update", "leases")


def test_suspended_follows_the_reported_reason_and_goes_with_the_pipeline() -> None:
    from cryptopipe_operator.status import SUSPENDED_REASON

    meta = {"namespace": "md", "name": "metrics-suspend"}

    def suspended() -> float | None:
        return metrics.REGISTRY.get_sample_value(
            "cryptopipe_operator_pipeline_suspended", {"namespace": "md", "pipeline": "metrics-suspend"}
        )

    running = [{"type": "Ready", "status": "True", "reason": "AllChildrenReady"}]
    paused = [
        {"type": "Ready", "status": "False", "reason": "NotReady"},
        {"type": "IngestionReady", "status": "False", "reason": SUSPENDED_REASON},
    ]
    metrics.record_conditions(meta, running)
    assert suspended() == 0  # the down alerts need the series at 0, not absent, for a running pipeline
    metrics.record_conditions(meta, paused)
    assert suspended() == 1
    metrics.record_conditions(meta, running)
    assert suspended() == 0
    metrics.forget_pipeline(meta)
    assert suspended() is None  # deleted: the alerts tell this from "suspended" by the series' absence
