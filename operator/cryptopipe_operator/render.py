"""Every child of a CryptoPipeline, in the order to apply them (RBAC before the pods that use it),
the stages that order allows to apply at once, and the children a spec no longer wants (optional
ones turned off, and what older operators made)."""

from __future__ import annotations

import dataclasses

from cryptopipe_operator import render_monitor, render_network, render_spark
from cryptopipe_operator.render_common import Manifest
from cryptopipe_operator.render_ingestion import render_ingestion_deployment, render_metrics_service
from cryptopipe_operator.render_kafka import render_dlq_topic, render_kafka_topic, render_state_topic
from cryptopipe_operator.render_monitor import render_monitor_deployment
from cryptopipe_operator.render_network import render_ingestion_egress_policy, render_ingress_policy
from cryptopipe_operator.render_spark import (
    render_role_binding,
    render_service_account,
    render_spark_application,
)
from cryptopipe_operator.settings import DEFAULT_SPARK_DRIVER_CLUSTER_ROLE
from cryptopipe_operator.spec import Pipeline

__all__ = [
    "ChildRef",
    "Manifest",
    "render_children",
    "render_dlq_topic",
    "render_state_topic",
    "render_ingestion_deployment",
    "render_kafka_topic",
    "render_metrics_service",
    "render_monitor_deployment",
    "render_role_binding",
    "render_service_account",
    "render_spark_application",
    "apply_stages",
    "unwanted_children",
]


RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"


@dataclasses.dataclass(frozen=True)
class ChildRef:
    """A child by name, and the component label it must carry to be this pipeline's."""

    api_version: str
    kind: str
    name: str
    component: str


def render_children(
    pipeline: Pipeline,
    checkpoint_generation: int,
    *,
    starting_offsets: str | None = None,
    spark_driver_role: str = DEFAULT_SPARK_DRIVER_CLUSTER_ROLE,
) -> list[Manifest]:
    """``spark_driver_role``: the ClusterRole the driver's RoleBinding references (the operator's
    setting spark_driver_cluster_role, which the chart sets to the ClusterRole it ships)."""
    # NetworkPolicies first: the pods must never run unfenced, not even for one reconcile
    children = [*_network_policies(pipeline)] + [
        render_kafka_topic(pipeline),
        render_dlq_topic(pipeline),
        render_state_topic(pipeline),
        render_service_account(pipeline),
        render_role_binding(pipeline, spark_driver_role),
        render_metrics_service(pipeline),
        render_ingestion_deployment(pipeline),
        render_spark_application(pipeline, checkpoint_generation, starting_offsets=starting_offsets),
    ]
    if pipeline.spec.monitor.enabled:
        children.append(render_monitor_deployment(pipeline))
    return children


# the children whose controllers start pods: applied only once every other child exists
POD_MAKING_KINDS = frozenset({"Deployment", "SparkApplication"})


def apply_stages(children: list[Manifest]) -> list[list[Manifest]]:
    """``children`` (render_children's order) in two stages, the children of a stage independent of
    each other, so a reconcile applies each stage at once instead of one request after another:
    first what the pods are fenced by or need (NetworkPolicies, topics, ServiceAccount,
    RoleBinding, Service), then the workloads that start them. A stage keeps the order it had."""
    first = [child for child in children if child["kind"] not in POD_MAKING_KINDS]
    then = [child for child in children if child["kind"] in POD_MAKING_KINDS]
    return [stage for stage in (first, then) if stage]


def _network_policies(pipeline: Pipeline) -> list[Manifest]:
    if not pipeline.spec.network_policy.enabled:
        return []
    return [render_ingress_policy(pipeline), render_ingestion_egress_policy(pipeline)]


def unwanted_children(pipeline: Pipeline) -> list[ChildRef]:
    """Optional children this spec does not want, which an earlier spec may have created: the
    reconcile deletes them (by name, and only objects labelled and owned as this pipeline's)."""
    unwanted = []
    if not pipeline.spec.monitor.enabled:
        name = render_monitor.deployment_name(pipeline)
        unwanted.append(ChildRef("apps/v1", "Deployment", name, render_monitor.COMPONENT))
    if not pipeline.spec.network_policy.enabled:
        for name in (render_network.ingress_policy_name(pipeline), render_network.egress_policy_name(pipeline)):
            unwanted.append(ChildRef(render_network.API_VERSION, "NetworkPolicy", name, render_network.COMPONENT))
    # the per-pipeline Role and its RoleBinding that the Spark driver had before the chart's
    # ClusterRole (the binding first: the driver never holds a binding to a missing Role)
    legacy = render_spark.legacy_role_name(pipeline)
    for kind in ("RoleBinding", "Role"):
        unwanted.append(ChildRef(RBAC_API_VERSION, kind, legacy, render_spark.COMPONENT))
    return unwanted
