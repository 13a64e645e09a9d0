"""The operator's settings: one object, from ``CRYPTOPIPE_OPERATOR_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SPARK_DRIVER_CLUSTER_ROLE = "cryptopipe-operator-spark-driver"


class OperatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRYPTOPIPE_OPERATOR_", frozen=True)

    # Empty: every namespace (needs a ClusterRole); otherwise only these (Roles in each suffice).
    # A JSON list in env: CRYPTOPIPE_OPERATOR_NAMESPACES='["team-a","team-b"]'.
    namespaces: list[str] = Field(default_factory=list)
    log_level: str = "INFO"
    # kopf's liveness probe: GET http://<host>:<port>/healthz
    health_host: str = "0.0.0.0"
    health_port: int = 8080
    # The ClusterRole every pipeline's Spark driver is bound to (a RoleBinding in the pipeline's
    # namespace). The chart ships it as RELEASE-cryptopipe-operator-spark-driver and passes its
    # name; the operator holds bind on that one ClusterRole only.
    spark_driver_cluster_role: str = Field(DEFAULT_SPARK_DRIVER_CLUSTER_ROLE, min_length=1)
    # Prometheus /metrics (reconciles, their duration, pipelines by condition); unset: not served
    metrics_port: int | None = Field(None, ge=0, le=65535)
    # How often each pipeline's status is recomputed from its children (see handlers.py for why a
    # timer and not watches on the children). Each tick costs 5 GETs per pipeline: the pipeline
    # itself, read anew (reconcile.refresh_status says why), and 4 children.
    status_interval_s: float = Field(10.0, gt=0)
    # A failed reconcile (API server unavailable, conflict) is retried after this, unless the API
    # server said when (Retry-After); kopf's default of 60 s would leave a pipeline half-applied for
    # a minute after a transient error. Also the retry of a lake deletion S3 did not complete.
    retry_backoff_s: float = Field(5.0, gt=0)
    # A reconcile that keeps failing (a child refused by a quota, an admission policy or RBAC) is
    # retried after retry_backoff_s, then twice as long each time, up to this: a stuck pipeline
    # costs the API server one attempt every 5 minutes, and is picked up within 5 minutes of a fix.
    retry_backoff_max_s: float = Field(300.0, gt=0)
    # How often each applied pipeline's children are compared with what its spec renders and
    # re-created or re-applied if they were deleted or changed by hand (drift repair; Strimzi's
    # periodic reconciliation is every 2 minutes). Each pass reads every child (about 10 GETs per
    # pipeline) and writes only the drifted ones.
    drift_repair_interval_s: float = Field(60.0, gt=0)
    # A lake deletion that only a person can unblock (the sink Secret missing, lacking a key, or not
    # readable for RBAC) is retried after this: soon enough to pick up the fix, seldom enough that
    # its LakeDeleteFailed Warning does not repeat every few seconds until someone looks.
    misconfig_retry_s: float = Field(30.0, gt=0)
    # How many pipelines kopf handles at once (settings.queueing.worker_limit; kopf's default is no
    # limit). A reconcile is ~17 sequential API requests, ~0.1 s alone; unbounded, a burst of 100
    # pipelines starts 100 reconciles that share the API server and all finish near the end, each
    # taking seconds. Bounded, they are served about first come first served in about the same total
    # time, each one fast, and fewer in flight keep the operator's memory high-water mark lower.
    worker_limit: int = Field(20, ge=1)

    # Watch and request timeouts, pinned rather than left at kopf's defaults (no server timeout,
    # no client timeout): a watch stream that a proxy or load balancer silently drops otherwise
    # stays open forever and the operator stops seeing changes without any error
    # (nolar/kopf#204, #698; dask-kubernetes' operator pins the same knobs for the same reason).
    # The server ends each watch after watch_server_timeout_s and kopf re-lists/re-watches; the
    # client gives up a little later in case the server's goodbye never arrives.
    watch_server_timeout_s: int = Field(120, gt=0)
    watch_client_timeout_s: float = Field(150.0, gt=0)
    watch_connect_timeout_s: float = Field(5.0, gt=0)
    # Every other API call (SSA of a child, a status patch): long enough for a busy API server,
    # short enough that a hung connection fails the handler and kopf retries it.
    request_timeout_s: float = Field(30.0, gt=0)
    request_connect_timeout_s: float = Field(5.0, gt=0)

    @property
    def liveness_endpoint(self) -> str:
        return f"http://{self.health_host}:{self.health_port}/healthz"
