"""The operator's settings: one object, from ``CRYPTOPIPE_OPERATOR_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, model_validator
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
    # How many pipelines kopf handles at once (settings.queueing.worker_limit; 0: no limit, kopf's
    # default). Measured (docs/benchmarks-operator.md, 2026-12-06): the operator's memory grows with
    # the reconciles in flight (a burst of 100 peaked at ~200-250 MiB unbounded, ~155-165 MiB at 20,
    # ~145 MiB at 10), while a lower limit lengthens the burst when the API server is the bottleneck
    # (fewer requests in flight), and unbounded overran a loaded API server (request timeouts). 20:
    # memory near its target, and a burst of 100 in five rounds of one reconcile each.
    worker_limit: int = Field(20, ge=0)
    # How long kopf keeps an idle pipeline's worker, and with a limit its slot, after its last event
    # (settings.queueing.idle_timeout; kopf's default 5 s). At 5 s every reconcile holds a slot 5 s
    # longer than it works, throttling a burst to worker_limit pipelines per 5 s (what made the
    # limit of 20 twice as slow as no limit before); a worker is cheap to start again.
    worker_idle_s: float = Field(0.5, gt=0)

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

    # Leader election (leader.py): with a Lease name, only the process holding the Lease
    # LEASE_NAMESPACE/LEASE_NAME reconciles; the others wait (replicas, a rolling update, a second
    # release given the same Lease). Empty: no election, the process reconciles at once (one replica
    # only; the tests' and the benchmark's single operator). The chart always sets both.
    lease_name: str = ""
    lease_namespace: str = ""
    # A Role in lease_namespace that owns the Lease, so that deleting it (helm uninstall) deletes
    # the Lease too (leader.LeaseConfig.owner_role). Empty: the Lease has no owner.
    lease_owner_role: str = ""
    # The Lease is taken over lease_duration_s after its holder's last renewal; the holder renews
    # every lease_retry_s and stops reconciling (the process exits) when no renewal succeeded for
    # lease_renew_deadline_s, before anyone may take over. client-go's defaults: 15 / 10 / 2 s.
    lease_duration_s: float = Field(15.0, gt=0)
    lease_renew_deadline_s: float = Field(10.0, gt=0)
    lease_retry_s: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _lease_complete(self) -> OperatorConfig:
        if self.lease_name and not self.lease_namespace:
            raise ValueError("CRYPTOPIPE_OPERATOR_LEASE_NAMESPACE must be set with CRYPTOPIPE_OPERATOR_LEASE_NAME")
        if self.lease_name and not 0 < self.lease_retry_s < self.lease_renew_deadline_s < self.lease_duration_s:
            raise ValueError("leader election needs lease_retry_s < lease_renew_deadline_s < lease_duration_s")
        return self

    @property
    def liveness_endpoint(self) -> str:
        return f"http://{self.health_host}:{self.health_port}/healthz"
