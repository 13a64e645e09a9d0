"""The reconcile loop of the dev stand-in for Strimzi's topic operator.

One watcher thread per watched scope (each namespace given, or all namespaces) lists the
KafkaTopics, then watches them for ``interval`` seconds, then lists again: the list is the
periodic full reconciliation that also retries whatever failed (Strimzi's topic operator resyncs
the same way, every two minutes by default). One worker thread reconciles the objects the
watchers hand over, one at a time, against Kafka through kafka-python's (blocking, not
thread-safe) admin client. Every write to a KafkaTopic carries the ``resourceVersion`` it was
computed from, so a stale object never overwrites a newer one; a conflict is simply skipped, the
newer version being already on its way from the watch.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import kafka.errors as kafka_errors
from kafka import KafkaAdminClient
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType

from cryptopipe_dev.topic_controller.kube_api import ApiError, KubeApi, connect

log = logging.getLogger("cryptopipe_dev.topic_controller")

STAND_IN = "dev stand-in for Strimzi's topic operator"
GROUP_VERSION = "kafka.strimzi.io/v1"
FINALIZER = "strimzi.io/topic-operator"  # Strimzi's own, so a real topic operator can take over
CLUSTER_LABEL = "strimzi.io/cluster"
MANAGED = "strimzi.io/managed"
PAUSED = "strimzi.io/pause-reconciliation"
BROKER_DEFAULT = -1


def _say(message: str) -> str:
    """Every log line says what this is, so nobody takes it for Strimzi."""
    return f"[{STAND_IN}] {message}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class TopicError(Exception):
    """Why a KafkaTopic is not Ready: ``reason`` is a CamelCase word, as in Strimzi's conditions."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _kafka_error(code: int, message: str | None) -> TopicError:
    error = kafka_errors.for_code(code)
    return TopicError("KafkaError", f"{error.__name__}: {message or error.description}")


# --- KafkaTopic helpers -------------------------------------------------------------------------------


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def topic_name(obj: Mapping[str, Any]) -> str:
    return (obj.get("spec") or {}).get("topicName") or obj["metadata"]["name"]


def is_managed(obj: Mapping[str, Any]) -> bool:
    return (obj["metadata"].get("annotations") or {}).get(MANAGED) != "false"


def is_paused(obj: Mapping[str, Any]) -> bool:
    return (obj["metadata"].get("annotations") or {}).get(PAUSED) == "true"


def config_value(value: Any) -> str:
    """spec.config values as Kafka wants them: booleans lower case, lists comma-separated."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(config_value(v) for v in value)
    return str(value)


def _object_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/kafkatopics"
    return f"{base}/{name}" if name else base


@dataclass
class _Kafka:
    """What Kafka says about one topic."""

    partitions: int
    replication_factors: set[int]
    topic_id: str | None
    configs: dict[str, str]  # the topic's own (DYNAMIC_TOPIC_CONFIG) settings


class TopicController:
    """Makes each selected KafkaTopic a real Kafka topic and reports its status as Strimzi does.

    ``namespaces`` empty means all namespaces; ``cluster`` set means only KafkaTopics labelled
    ``strimzi.io/cluster=<cluster>``. ``run()`` blocks until ``stop()``; ``start()`` runs it in a
    thread (what the tests and an in-process dev cluster do).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        kube: KubeApi | None = None,
        kubeconfig: Path | None = None,
        namespaces: Iterable[str] = (),
        cluster: str | None = None,
        interval: float = 10.0,
        admin_timeout_ms: int = 15_000,
    ) -> None:
        self.bootstrap = bootstrap
        self.kube = kube or KubeApi(connect(kubeconfig))
        self.namespaces = list(dict.fromkeys(namespaces))
        self.cluster = cluster
        self.interval = max(1, round(interval))
        self.admin_timeout_ms = admin_timeout_ms
        self._admin: KafkaAdminClient | None = None
        self._stop = threading.Event()
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}
        self._threads: list[threading.Thread] = []
        self._capped: set[tuple[tuple[str, str], int, int]] = set()

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> Self:
        worker = threading.Thread(target=self.run, name="topic-controller", daemon=True)
        worker.start()
        self._threads.append(worker)
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout if timeout is not None else self.interval + 20)
        self._threads.clear()

    def run(self) -> None:
        scopes: list[str | None] = [*self.namespaces] or [None]
        log.info(
            _say("started: bootstrap %s, namespaces %s, cluster %s"),
            self.bootstrap,
            ",".join(self.namespaces) or "(all)",
            self.cluster or "(any)",
        )
        watchers = [
            threading.Thread(target=self._watch_loop, args=(ns,), name=f"topic-watch-{ns or 'all'}", daemon=True)
            for ns in scopes
        ]
        for thread in watchers:
            thread.start()
        try:
            self._work_loop()
        finally:
            self._stop.set()
            for thread in watchers:
                thread.join(1)  # daemons: a watch still open ends by itself within `interval`
            if self._admin is not None:
                self._admin.close()
                self._admin = None
            log.info(_say("stopped"))

    # --- watching -----------------------------------------------------------------------------------

    def _list_path(self, namespace: str | None) -> str:
        return _object_path(namespace) if namespace else f"/apis/{GROUP_VERSION}/kafkatopics"

    def _watch_loop(self, namespace: str | None) -> None:
        path = self._list_path(namespace)
        params = {"labelSelector": f"{CLUSTER_LABEL}={self.cluster}" if self.cluster else None}
        while not self._stop.is_set():
            try:
                listing = self.kube.get(path, params)
                self._queue.put(("SYNC", {"namespace": namespace, "items": listing.get("items") or []}))
                version = listing["metadata"]["resourceVersion"]
                for event in self.kube.watch(path, {**params, "resourceVersion": version}, self.interval):
                    if self._stop.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._queue.put((event["type"], event["object"]))
                    elif event["type"] == "ERROR":  # e.g. 410 Gone: list again
                        break
            except Exception as exc:  # noqa: BLE001 - the API server may come and go; keep watching
                log.warning(_say("listing/watching KafkaTopics failed (retrying): %s"), exc)
                self._stop.wait(min(self.interval, 5))

    def _work_loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            batch = [first]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            todo: dict[tuple[str, str], dict[str, Any]] = {}
            for kind, obj in batch:
                if kind == "SYNC":
                    fresh = {_key(o): o for o in obj["items"]}
                    stale = [k for k in self._cache if (obj["namespace"] in (None, k[0])) and k not in fresh]
                    for k in stale:
                        self._cache.pop(k, None)
                    self._cache.update(fresh)
                    todo.update(fresh)
                elif kind == "DELETED":
                    self._cache.pop(_key(obj), None)
                    todo.pop(_key(obj), None)
                else:
                    self._cache[_key(obj)] = obj
                    todo[_key(obj)] = obj
            for obj in todo.values():
                if self._stop.is_set():
                    return
                try:
                    self.reconcile(obj)
                except Exception:  # one topic's failure must not stop the others (logged with its traceback)
                    log.exception(_say("reconciling KafkaTopic %s/%s failed"), *_key(obj))

    # --- Kafka --------------------------------------------------------------------------------------

    def admin(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                request_timeout_ms=self.admin_timeout_ms,
                bootstrap_timeout_ms=self.admin_timeout_ms,
            )
        return self._admin

    def _drop_admin(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):  # a broken client is being thrown away anyway
                self._admin.close()
            self._admin = None

    def _describe(self, name: str) -> _Kafka | None:
        admin = self.admin()
        found = admin.describe_topics([name])[0]
        if found["error_code"] == kafka_errors.UnknownTopicOrPartitionError.errno:
            return None
        if found["error_code"]:
            raise _kafka_error(found["error_code"], None)
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        entries = (described.get("topic") or {}).get(name) or {}
        configs = {
            key: entry["value"]
            for key, entry in entries.items()
            if entry.get("config_source") == "DYNAMIC_TOPIC_CONFIG" and entry.get("value") is not None
        }
        return _Kafka(
            partitions=len(found["partitions"]),
            replication_factors={len(p["replica_nodes"]) for p in found["partitions"]},
            topic_id=str(found["topic_id"]) if found.get("topic_id") else None,
            configs=configs,
        )

    def _broker_count(self) -> int:
        return len(self.admin().describe_cluster()["brokers"])

    def _replicas(self, obj: Mapping[str, Any]) -> int:
        """spec.replicas, capped at the number of brokers (a one-broker dev Kafka cannot hold 3 copies)."""
        wanted = (obj.get("spec") or {}).get("replicas")
        if wanted is None:
            return BROKER_DEFAULT
        brokers = self._broker_count()
        if wanted > brokers:
            if (_key(obj), wanted, brokers) in self._capped:
                return brokers
            self._capped.add((_key(obj), wanted, brokers))  # said once, not at every resync
            log.warning(
                _say("KafkaTopic %s/%s asks for %s replicas, Kafka has %s brokers: using %s"),
                *_key(obj),
                wanted,
                brokers,
                brokers,
            )
            return brokers
        return int(wanted)

    def _create(self, obj: Mapping[str, Any], name: str, configs: dict[str, str]) -> str | None:
        spec = obj.get("spec") or {}
        request = {
            "num_partitions": spec.get("partitions") or BROKER_DEFAULT,
            "replication_factor": self._replicas(obj),
            "configs": configs,
        }
        result = self.admin().create_topics({name: request}, timeout_ms=self.admin_timeout_ms, raise_errors=False)
        created = result["topics"][0]
        if created["error_code"] == kafka_errors.TopicAlreadyExistsError.errno:
            return None  # made meanwhile: the next reconciliation checks its settings
        if created["error_code"]:
            raise _kafka_error(created["error_code"], created.get("error_message"))
        log.info(
            _say("created topic %s (%s partitions, %s replicas, config %s) for KafkaTopic %s/%s"),
            name,
            created.get("num_partitions"),
            created.get("replication_factor"),
            configs,
            *_key(obj),
        )
        return str(created["topic_id"]) if created.get("topic_id") else None

    def _update(self, obj: Mapping[str, Any], name: str, current: _Kafka, configs: dict[str, str]) -> None:
        """Config, then partitions, then replicas; the first failure is what the status reports
        (as in Strimzi, a refused partition decrease does not stop a config change)."""
        errors: list[TopicError] = []
        ops: dict[str, Any] = {k: v for k, v in configs.items() if current.configs.get(k) != v}
        ops.update({k: (AlterConfigOp.DELETE, None) for k in current.configs if k not in configs})
        if ops:
            result = self.admin().alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, ops)], raise_on_unknown=False
            )
            outcome = (result.get("topic") or {}).get(name, "OK")
            if outcome == "OK":
                log.info(_say("altered config of topic %s: %s"), name, ops)
            else:
                errors.append(TopicError("KafkaError", str(outcome).split("] ", 1)[-1]))
        wanted = (obj.get("spec") or {}).get("partitions")
        if wanted is not None and wanted > current.partitions:
            response = self.admin().create_partitions(
                {name: int(wanted)}, timeout_ms=self.admin_timeout_ms, raise_errors=False
            )
            outcome = response.results[0]
            if outcome.error_code:
                errors.append(_kafka_error(outcome.error_code, outcome.error_message))
            else:
                log.info(_say("topic %s: partitions %s -> %s"), name, current.partitions, wanted)
        elif wanted is not None and wanted < current.partitions:
            errors.append(TopicError("NotSupported", "Decreasing partitions not supported"))
        replicas = self._replicas(obj)
        if replicas != BROKER_DEFAULT and current.replication_factors != {replicas}:
            errors.append(
                TopicError(
                    "NotSupported",
                    f"Replication factor change not supported (topic has {sorted(current.replication_factors)}, "
                    f"spec wants {replicas}); Strimzi needs Cruise Control for this, the stand-in cannot do it",
                )
            )
        if errors:
            raise errors[0]

    # --- reconciliation -----------------------------------------------------------------------------

    def _selected(self, obj: Mapping[str, Any]) -> bool:
        if self.namespaces and obj["metadata"]["namespace"] not in self.namespaces:
            return False
        return not self.cluster or (obj["metadata"].get("labels") or {}).get(CLUSTER_LABEL) == self.cluster

    def _owner(self, obj: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        """Of the live, managed KafkaTopics claiming topic ``name``, the oldest (Strimzi's rule)."""
        claimants = [
            o
            for o in [*self._cache.values(), obj]
            if topic_name(o) == name
            and is_managed(o)
            and not o["metadata"].get("deletionTimestamp")
            and self._selected(o)
        ]
        if not claimants:
            return obj
        return min(claimants, key=lambda o: (o["metadata"]["creationTimestamp"], *_key(o)))

    def reconcile(self, obj: dict[str, Any]) -> None:
        """Bring Kafka to ``obj``'s spec and write its status (or finish its deletion)."""
        if not self._selected(obj):
            return
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            self._finalize(obj)
            return
        if FINALIZER not in (meta.get("finalizers") or []):
            updated = self._patch(obj, {"metadata": {"finalizers": [*(meta.get("finalizers") or []), FINALIZER]}})
            if updated is None:
                return
            obj = updated
        status = obj.get("status") or {}
        if not is_managed(obj):
            # Strimzi leaves an unmanaged topic alone and says so with a Ready condition and no topicName
            self._write_status(obj, "Ready", None, topic_name=None, topic_id=status.get("topicId"))
            return
        if is_paused(obj):
            self._write_status(
                obj,
                "ReconciliationPaused",
                None,
                topic_name=status.get("topicName"),
                topic_id=status.get("topicId"),
                generation=status.get("observedGeneration", 0),
            )
            return
        name = topic_name(obj)
        recorded = status.get("topicName")
        if recorded and recorded != name:
            renamed = TopicError("NotSupported", "Changing spec.topicName is not supported")
            self._write_status(obj, "Ready", renamed, topic_name=recorded, topic_id=status.get("topicId"))
            return
        owner = self._owner(obj, name)
        if _key(owner) != _key(obj):
            ref = "Ref{namespace='%s', name='%s'}" % _key(owner)  # noqa: UP031 - Strimzi's wording
            conflict = TopicError("ResourceConflict", f"Managed by {ref}")
            self._write_status(obj, "Ready", conflict, topic_name=None, topic_id=None)
            return
        topic_id = status.get("topicId")
        error: TopicError | None = None
        try:
            configs = {k: config_value(v) for k, v in ((obj.get("spec") or {}).get("config") or {}).items()}
            current = self._describe(name)
            if current is None:
                topic_id = self._create(obj, name, configs) or topic_id
            else:
                topic_id = current.topic_id or topic_id
                self._update(obj, name, current, configs)
        except TopicError as exc:
            error = exc
        except (kafka_errors.KafkaError, OSError) as exc:
            self._drop_admin()  # a new connection next time
            error = TopicError("KafkaError", f"{type(exc).__name__}: {exc}")
        if error is not None:
            log.warning(_say("KafkaTopic %s/%s not ready: %s: %s"), *_key(obj), error.reason, error.message)
        self._write_status(obj, "Ready", error, topic_name=name, topic_id=topic_id)

    def _finalize(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        finalizers = meta.get("finalizers") or []
        if FINALIZER not in finalizers:
            return
        name = (obj.get("status") or {}).get("topicName") or topic_name(obj)
        # (as in Strimzi, a paused KafkaTopic's topic is deleted with it too: pausing stops updates only)
        if is_managed(obj) and _key(self._owner(obj, name)) == _key(obj):
            try:
                result = self.admin().delete_topics([name], timeout_ms=self.admin_timeout_ms, raise_errors=False)
                code = result["topics"][0]["error_code"]
                if code and code != kafka_errors.UnknownTopicOrPartitionError.errno:
                    raise _kafka_error(code, result["topics"][0].get("error_message"))
                log.info(_say("deleted topic %s with KafkaTopic %s/%s"), name, *_key(obj))
            except (TopicError, kafka_errors.KafkaError, OSError) as exc:
                if not isinstance(exc, TopicError):
                    self._drop_admin()
                    exc = TopicError("KafkaError", f"{type(exc).__name__}: {exc}")
                log.warning(_say("deleting topic %s failed (finalizer kept, retrying): %s"), name, exc.message)
                self._write_status(
                    obj, "Ready", exc, topic_name=name, topic_id=(obj.get("status") or {}).get("topicId")
                )
                return
        else:
            why = "unmanaged" if not is_managed(obj) else "another KafkaTopic owns it"
            log.info(_say("KafkaTopic %s/%s deleted; topic %s kept (%s)"), *_key(obj), name, why)
        self._patch(obj, {"metadata": {"finalizers": [f for f in finalizers if f != FINALIZER]}})

    # --- writes -------------------------------------------------------------------------------------

    def _patch(self, obj: Mapping[str, Any], patch: dict[str, Any], subresource: str = "") -> dict[str, Any] | None:
        """A merge patch conditional on ``obj``'s resourceVersion; None when the object moved on or is gone."""
        patch = {
            **patch,
            "metadata": {**patch.get("metadata", {}), "resourceVersion": obj["metadata"]["resourceVersion"]},
        }
        path = _object_path(*_key(obj)) + (f"/{subresource}" if subresource else "")
        try:
            updated = self.kube.merge_patch(path, patch)
        except ApiError as exc:
            if exc.status in (404, 409):
                return None
            raise
        self._cache[_key(updated)] = updated
        return updated

    def _write_status(
        self,
        obj: Mapping[str, Any],
        condition_type: str,
        error: TopicError | None,
        *,
        topic_name: str | None,
        topic_id: str | None,
        generation: int | None = None,
    ) -> None:
        old = obj.get("status") or {}
        previous = next((c for c in old.get("conditions") or [] if c.get("type") == condition_type), None)
        condition: dict[str, Any] = {"type": condition_type, "status": "False" if error else "True"}
        if error:
            condition["reason"] = error.reason
            condition["message"] = error.message
        unchanged = previous is not None and previous.get("status") == condition["status"]
        condition["lastTransitionTime"] = (previous or {}).get("lastTransitionTime") if unchanged else _now()
        if not condition["lastTransitionTime"]:
            condition["lastTransitionTime"] = _now()
        status: dict[str, Any] = {
            "conditions": [condition],
            "observedGeneration": obj["metadata"].get("generation") if generation is None else generation,
        }
        if topic_name:
            status["topicName"] = topic_name
        if topic_id:
            status["topicId"] = topic_id
        if status == old:
            return
        patch = {**{k: None for k in old if k not in status}, **status}
        if self._patch(obj, {"status": patch}, "status") is not None and condition != previous:
            log.info(
                _say("KafkaTopic %s/%s: %s=%s%s"),
                *_key(obj),
                condition_type,
                condition["status"],
                f" ({error.reason}: {error.message})" if error else "",
            )
