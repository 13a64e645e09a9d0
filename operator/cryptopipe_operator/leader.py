"""One reconciling operator at a time: leader election over a ``coordination.k8s.io/v1`` Lease.

Every replica (and every release configured with the same Lease) starts here; only the holder of
the Lease runs kopf, the others wait without watching or reconciling anything. The holder renews
the Lease every ``retry_s``; a replica takes it over once it has seen the same renewal for
``duration_s`` on its own clock (never by comparing its clock with the holder's timestamps, which
may be skewed). A holder that has not renewed within ``renew_deadline_s`` (< ``duration_s``)
stops at once (``on_lost``), before anyone else may take over. A holder that stops cleanly
(SIGTERM, a rolling update) releases the Lease, so the next one takes over at its next try.

Why a Lease and not kopf's peering: kopf 1.45 pauses *every* operator of the same priority when it
sees two (all replicas of a Deployment have the same one), so two replicas would both stop; it
needs cluster-scoped peering CRDs and has no takeover deadline of its own choosing. The Lease is
Kubernetes' own mechanism (kube-controller-manager, client-go's leaderelection), needs a Role on
one object, and its takeover time is ``duration_s`` after the holder's last renewal.

The decisions (``LeaseClock``, ``claim``) are pure; ``LeaderElector`` does the three requests
(GET, create, replace with the resourceVersion read: two candidates racing for an expired Lease
cannot both win, the second gets a 409).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptopipe_operator.kube_api import ApiError, KubeApi

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str  # unique per process: hostname (the pod's name) and pid
    duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_s: float = 2.0
    # A Role in the Lease's namespace that owns the Lease (its ownerReference): the operator makes
    # the Lease, so nothing else would ever remove it; owned by the chart's leader-election Role, the
    # garbage collector deletes it once `helm uninstall` deletes that Role. Empty: no owner.
    owner_role: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.retry_s < self.renew_deadline_s < self.duration_s:
            raise ValueError(
                "leader election needs 0 < retry_s < renew_deadline_s < duration_s, got "
                f"{self.retry_s} / {self.renew_deadline_s} / {self.duration_s}"
            )

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    @property
    def owner_role_path(self) -> str:
        return f"/apis/rbac.authorization.k8s.io/v1/namespaces/{self.namespace}/roles/{self.owner_role}"


def owner_reference(role: Mapping[str, Any]) -> dict[str, str]:
    """The ownerReference naming ``role`` (a Role as the API server returns it)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "name": role["metadata"]["name"],
        "uid": role["metadata"]["uid"],
    }


def _unowned(lease: Mapping[str, Any] | None) -> bool:
    return lease is None or not (lease.get("metadata") or {}).get("ownerReferences")


def _now_micro() -> str:
    # a Lease's MicroTime: RFC 3339 with microseconds
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseClock:
    """When this process may take a Lease over: ``duration`` after it last saw the Lease change
    (holder or renewTime), measured on this process's monotonic clock."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._seen: tuple[Any, Any] | None = None
        self._seen_at = 0.0

    def expired(self, spec: Mapping[str, Any]) -> bool:
        holder = spec.get("holderIdentity") or ""
        if not holder:
            return True  # released (or never held)
        record = (holder, spec.get("renewTime"))
        now = self._monotonic()
        if record != self._seen:
            self._seen, self._seen_at = record, now
            return False
        return now - self._seen_at >= float(spec.get("leaseDurationSeconds") or 0)


def claim(
    lease: Mapping[str, Any] | None, config: LeaseConfig, expired: bool, owner: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """The Lease to write to hold it (None: someone else holds it, wait). ``lease`` is the current
    object (None: there is none); ``expired`` the LeaseClock's verdict on it; ``owner`` the
    ownerReference a Lease without any is given (one made by an operator that set none is adopted)."""
    now = _now_micro()
    duration = max(1, round(config.duration_s))
    if lease is None:
        metadata: dict[str, Any] = {"name": config.name, "namespace": config.namespace}
        if owner is not None:
            metadata["ownerReferences"] = [dict(owner)]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": config.identity,
                "leaseDurationSeconds": duration,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
    spec = dict(lease.get("spec") or {})
    ours = spec.get("holderIdentity") == config.identity
    if not ours and not expired:
        return None
    if not ours:
        spec["acquireTime"] = now
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
    spec |= {"holderIdentity": config.identity, "leaseDurationSeconds": duration, "renewTime": now}
    if owner is not None and _unowned(lease):
        return {**lease, "metadata": {**lease["metadata"], "ownerReferences": [dict(owner)]}, "spec": spec}
    return {**lease, "spec": spec}


def released(lease: Mapping[str, Any]) -> dict[str, Any]:
    """The Lease as the holder leaves it on a clean stop: no holder, so the next candidate takes it
    at once (a 1 s duration, as client-go's ReleaseOnCancel leaves it)."""
    spec = {**(lease.get("spec") or {}), "holderIdentity": None, "leaseDurationSeconds": 1}
    return {**lease, "spec": spec}


class LostLease(RuntimeError):
    pass


class LeaderElector:
    def __init__(self, api: KubeApi, config: LeaseConfig) -> None:
        self.api = api
        self.config = config
        self._clock = LeaseClock()
        self._owner: dict[str, str] | None = None

    async def _owner_reference(self) -> dict[str, str] | None:
        """The ownerReference to config.owner_role (read once); None without one, or while the Role
        cannot be read (the Lease then goes unowned until a later renewal)."""
        if self._owner is None and self.config.owner_role:
            try:
                role = await self.api.get(self.config.owner_role_path)
            except ApiError as exc:
                log.warning("leader election: cannot read the Lease's owner Role: %s", exc, extra=self._extra())
                return None
            if role is None:
                log.warning("leader election: the Lease's owner Role does not exist", extra=self._extra())
                return None
            self._owner = owner_reference(role)
        return self._owner

    async def _try_once(self) -> bool:
        """One attempt to take or renew the Lease; whether this process holds it now."""
        lease = await self.api.get(self.config.path)
        owner = await self._owner_reference() if _unowned(lease) else None
        wanted = claim(lease, self.config, self._clock.expired((lease or {}).get("spec") or {}), owner)
        if wanted is None:
            return False
        try:
            if lease is None:
                collection = self.config.path.rpartition("/")[0]
                await self.api.request("POST", collection, body=wanted)
            else:
                await self.api.request("PUT", self.config.path, body=wanted)  # carries resourceVersion
        except ApiError as exc:
            if exc.status in (404, 409):  # someone else wrote it first (or deleted it): look again
                return False
            raise
        return True

    async def acquire(self) -> None:
        """Wait until this process holds the Lease."""
        waiting_logged = False
        while True:
            try:
                if await self._try_once():
                    log.info("leader election: holding the Lease", extra=self._extra())
                    return
            except Exception as exc:  # noqa: BLE001 - the API server may be away; keep trying
                log.warning("leader election: cannot read or write the Lease: %s", exc, extra=self._extra())
            if not waiting_logged:
                log.info("leader election: another operator holds the Lease; waiting", extra=self._extra())
                waiting_logged = True
            await asyncio.sleep(self.config.retry_s)

    async def keep(self) -> None:
        """Renew the Lease every retry_s until cancelled; raise LostLease when another process holds
        it, or when no renewal succeeded for renew_deadline_s."""
        last_renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.config.retry_s)
            try:
                if not await self._try_once():
                    raise LostLease(f"Lease {self.config.namespace}/{self.config.name} is held by another operator")
                last_renewed = time.monotonic()
            except LostLease:
                raise
            except Exception as exc:  # noqa: BLE001 - retried until the renew deadline
                log.warning("leader election: renewal failed: %s", exc, extra=self._extra())
            if time.monotonic() - last_renewed >= self.config.renew_deadline_s:
                raise LostLease(
                    f"Lease {self.config.namespace}/{self.config.name} not renewed for "
                    f"{self.config.renew_deadline_s:g} s"
                )

    async def release(self) -> None:
        """Give the Lease up if this process still holds it (a clean stop); errors only logged."""
        try:
            lease = await self.api.get(self.config.path)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.config.identity:
                await self.api.request("PUT", self.config.path, body=released(lease))
                log.info("leader election: Lease released", extra=self._extra())
        except Exception as exc:  # noqa: BLE001 - the Lease then expires by itself
            log.warning("leader election: could not release the Lease: %s", exc, extra=self._extra())

    def _extra(self) -> dict[str, str]:
        return {"lease": f"{self.config.namespace}/{self.config.name}", "identity": self.config.identity}
