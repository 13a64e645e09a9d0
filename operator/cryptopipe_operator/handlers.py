"""kopf registrations for CryptoPipeline: thin wrappers around reconcile.py (create, update,
resume, the status timer) and deletion.py (the deletion policies), over kube_api.py's client.

Status comes from a per-pipeline timer that reads the four children, not from watches on
KafkaTopics, Deployments and SparkApplications: one watch per child kind would cache every such
object in the cluster (memory), need list/watch RBAC on all of them, and fail to start when a
kind's CRD is missing; the timer costs 5 GETs per pipeline per interval (the pipeline, read anew,
and 4 children) and picks up any change within ``status_interval_s``, restarts included.

A handler's error says what retrying can do: kopf.PermanentError for what no retry of the same
object can change (an invalid spec; a lake deletion refused), run once and not retried;
kopf.TemporaryError with its delay for what a retry can fix (the API server's conflicts, 429s and
5xx, after its Retry-After if it sent one; S3 or the sink Secret during a lake deletion); anything
else is unexpected and kopf retries it after the handler's backoff, its traceback in the log.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import aiohttp
import kopf

from cryptopipe_operator import deletion, kube_api, lake_claims, metrics, reconcile, retry_policy, secret_access
from cryptopipe_operator.object_locks import ObjectLocks
from cryptopipe_operator.settings import OperatorConfig
from cryptopipe_operator.spec import API_GROUP, API_VERSION, PLURAL

log = logging.getLogger(__name__)
# read at import: kopf takes the timer's interval and handlers' backoff when they are registered
CONFIG = OperatorConfig()
RESOURCE = (API_GROUP, API_VERSION, PLURAL)
# kopf's state (progress of handlers, the last handled spec) in annotations under our group: the
# CRD's structural status schema would prune kopf's default status.kopf
STATE_PREFIX = API_GROUP
# Both policies act before a pipeline goes: Retain unowns the Kafka topics, Delete removes the lake
# prefix (the children go by garbage collection). The finalizer's name predates Delete's handler
# and is kept: renaming it would strand the finalizer already on existing pipelines.
FINALIZER = f"{API_GROUP}/retain-topics"
# the reconcile, the status timer and the drift repair of one pipeline never run at once
# (object_locks.py: why)
LOCKS = ObjectLocks()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    settings.watching.server_timeout = CONFIG.watch_server_timeout_s
    settings.watching.client_timeout = CONFIG.watch_client_timeout_s
    settings.watching.connect_timeout = CONFIG.watch_connect_timeout_s
    settings.networking.request_timeout = CONFIG.request_timeout_s
    settings.networking.connect_timeout = CONFIG.request_connect_timeout_s
    settings.queueing.worker_limit = CONFIG.worker_limit or None  # see settings.py for why bounded
    settings.queueing.idle_timeout = CONFIG.worker_idle_s
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STATE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=STATE_PREFIX)
    settings.persistence.finalizer = FINALIZER
    # kopf would turn every "Handler succeeded" log line into an Event; ours say what changed
    settings.posting.level = logging.WARNING
    memo.api = await kube_api.KubeApi.connect(
        total_timeout=CONFIG.request_timeout_s, connect_timeout=CONFIG.request_connect_timeout_s
    )


# kopf's watches log in as memo.api does ($KUBECONFIG, else the pod's ServiceAccount), again on a 401
kopf.on.login()(kube_api.login)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    if "api" in memo:
        await memo.api.close()


def _emitter(body: kopf.Body) -> kube_api.Emit:
    def emit(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    return emit


def _plain(body: kopf.Body) -> dict[str, Any]:
    # a detached copy: kopf's body is a live view, and pydantic wants plain dicts
    return copy.deepcopy(dict(body))


@kopf.index(*RESOURCE)
def lake_spaces(body: kopf.Body, **_: Any) -> dict[str, lake_claims.LakeClaim] | None:
    """Every watched pipeline's lake space, by bucket, for the lake-overlap check (lake_claims.py):
    kept from kopf's watch, so a reconcile looks it up instead of listing every pipeline. kopf
    passes the index to every handler as ``lake_spaces``, and starts none before it is filled."""
    claim = lake_claims.claim_of_body(_plain(body))
    return {claim.bucket_key: claim} if claim is not None else None


@kopf.on.resume(*RESOURCE, backoff=CONFIG.retry_backoff_s)
@kopf.on.create(*RESOURCE, backoff=CONFIG.retry_backoff_s)
@kopf.on.update(*RESOURCE, backoff=CONFIG.retry_backoff_s)
async def apply_pipeline(body: kopf.Body, memo: kopf.Memo, retry: int, **kwargs: Any) -> None:
    # kopf passes each index as a keyword named after its handler (kopf's typing of handlers
    # cannot name it, hence kwargs)
    lake_spaces: kopf.Index[str, lake_claims.LakeClaim] = kwargs["lake_spaces"]
    async with LOCKS.hold(body["metadata"]["uid"]):
        await _apply_pipeline(body, memo, retry, lake_spaces)


async def _apply_pipeline(
    body: kopf.Body, memo: kopf.Memo, retry: int, lake_spaces: kopf.Index[str, lake_claims.LakeClaim]
) -> None:
    with metrics.RECONCILE_SECONDS.time():
        try:
            conditions = await reconcile.reconcile(
                memo.api,
                _plain(body),
                _emitter(body),
                spark_driver_role=CONFIG.spark_driver_cluster_role,
                lake_claims=lake_spaces,
                conflict_retry_s=CONFIG.misconfig_retry_s,
            )
            await secret_access.warn_if_delete_cannot_read_secret(memo.api, _plain(body), _emitter(body))
        except reconcile.Conflict:
            metrics.RECONCILES.labels("conflict").inc()
            raise  # nothing applied; retried after its delay (the other pipeline or object may go)
        except kopf.PermanentError:
            metrics.RECONCILES.labels("invalid").inc()
            raise  # an invalid spec: not retried, the next change of the spec runs this again
        except Exception as exc:
            metrics.RECONCILES.labels("error").inc()
            raise await _failed_reconcile(body, memo, exc, retry) from exc
    metrics.RECONCILES.labels("applied").inc()
    metrics.forget_failures(body["metadata"])
    metrics.record_conditions(body["metadata"], conditions)


async def _failed_reconcile(body: kopf.Body, memo: kopf.Memo, exc: Exception, retry: int) -> kopf.TemporaryError:
    """Any failure of the reconcile: told in status (Ready False, ReconcileFailed) and one Event
    per distinct failure; the error that has kopf retry it with exponential backoff
    (retry_policy.py), never sooner than the API server's Retry-After."""
    message = retry_policy.describe(exc)
    cause = retry_policy.root_cause(exc)
    if not isinstance(cause, kube_api.ApiError | aiohttp.ClientError | TimeoutError):
        log.error("reconcile of %s failed unexpectedly", body["metadata"]["name"], exc_info=exc)
    retry_after = cause.retry_after if isinstance(cause, kube_api.ApiError) else None
    delay = retry_policy.backoff_delay(
        retry, base=CONFIG.retry_backoff_s, cap=CONFIG.retry_backoff_max_s, retry_after=retry_after
    )
    await reconcile.record_failure(memo.api, _plain(body), _emitter(body), message)
    metrics.record_failed_attempt(body["metadata"], retry + 1, delay)
    return kopf.TemporaryError(f"{message}; retrying in {delay:g}s", delay=delay)


def _retry_if_transient(exc: Exception) -> None:
    """kopf.TemporaryError for an API failure that retrying fixes by itself (a conflict, 429, 5xx,
    no answer), after the server's Retry-After or the configured backoff; nothing for the rest."""
    delay = kube_api.transient_delay(exc, CONFIG.retry_backoff_s)
    if delay is not None:
        raise kopf.TemporaryError(f"{str(exc) or repr(exc)}; retrying in {delay:g}s", delay=delay) from exc


@kopf.timer(*RESOURCE, interval=CONFIG.status_interval_s)
async def refresh_status(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    async with LOCKS.hold(body["metadata"]["uid"]):
        conditions = await reconcile.refresh_status(memo.api, _plain(body), _emitter(body))
    if conditions is not None:
        metrics.record_conditions(body["metadata"], conditions)


# the first pass one interval after the operator starts: the resume handler has just applied
@kopf.timer(*RESOURCE, interval=CONFIG.drift_repair_interval_s, initial_delay=CONFIG.drift_repair_interval_s)
async def repair_drift(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    async with LOCKS.hold(body["metadata"]["uid"]):
        repaired = await reconcile.repair_drift(
            memo.api, _plain(body), _emitter(body), spark_driver_role=CONFIG.spark_driver_cluster_role
        )
    for ref in repaired:
        metrics.DRIFT_REPAIRS.labels(ref.partition("/")[0]).inc()


def _retains(spec: kopf.Spec, **_: Any) -> bool:
    policy: str = spec.get("deletionPolicy", "Retain")
    return policy == "Retain"


@kopf.on.delete(*RESOURCE, when=_retains, backoff=CONFIG.retry_backoff_s)
async def retain_topics(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    # the lock: a drift repair that began before the deletion ends first; a later one sees the
    # deletionTimestamp and re-creates nothing
    async with LOCKS.hold(body["metadata"]["uid"]):
        try:
            await deletion.retain_topics(memo.api, _plain(body), _emitter(body))
        except Exception as exc:
            _retry_if_transient(exc)
            raise


def _deletes(spec: kopf.Spec, **_: Any) -> bool:
    policy: str = spec.get("deletionPolicy", "Retain")
    return policy == "Delete"


# no retry limit: a failure (Secret missing or forbidden, S3 down) posts a Warning LakeDeleteFailed
# and kopf retries after its delay; the finalizer keeps the CryptoPipeline until the lake is gone.
# A refusal no retry can change (invalid spec, unsafe prefix) posts LakeDeleteRefused, once.
@kopf.on.delete(*RESOURCE, when=_deletes, backoff=CONFIG.retry_backoff_s)
async def delete_lake(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    # the lock: no drift repair re-creates a writer this stops (see retain_topics)
    async with LOCKS.hold(body["metadata"]["uid"]):
        await deletion.delete_lake(
            memo.api,
            _plain(body),
            _emitter(body),
            retry_s=CONFIG.retry_backoff_s,
            misconfig_retry_s=CONFIG.misconfig_retry_s,
        )


@kopf.on.delete(*RESOURCE, optional=True)
async def forget_metrics(body: kopf.Body, **_: Any) -> None:
    metrics.forget_pipeline(body["metadata"])
