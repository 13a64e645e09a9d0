"""Kubernetes API access: the few calls the operator makes, and its login.

Through ``kubernetes_asyncio`` (the asyncio twin of the official ``kubernetes`` client; kopf's
handlers are async): its config loaders read the credentials, build the TLS context and keep the
token fresh, its ApiClient sends the requests. Only the REST transport is used (``call_api`` with
the object's path, the body as a plain dict, the answer as a plain dict): the generated models
would add a conversion for nothing, and CRDs (KafkaTopic, SparkApplication) have none.

Credentials (``load_configuration``), the same for these calls and for kopf's watches (``login``,
registered as kopf's login handler):

- ``$KUBECONFIG`` when set (explicit wins: tests, ``cryptopipe dev cluster``, an operator run
  outside a pod), with everything a kubeconfig may hold: a ``token``, a ``tokenFile`` (re-read on
  a reload), client certificates, ``exec`` and OIDC plugins;
- else the pod's ServiceAccount: the projected token file, which the kubelet rewrites before the
  token expires; the loader re-reads it every minute.

A 401 reloads the credentials and retries the request once: a rotated token (a new projected
token, a new ``tokenFile`` content, a re-created ServiceAccount) is picked up at the first
request it fails, not only at the next periodic re-read. kopf does the same for its watches: on
a 401 it calls ``login`` again.

Children are written with server-side apply (field manager ``cryptopipe-operator``, ``force``):
the same request creates or updates, names are deterministic, so a reconcile repeated after a
crash converges on the same objects and never duplicates one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

from cryptopipe_operator import metrics
from cryptopipe_operator.spec import PLURAL

log = logging.getLogger(__name__)

FIELD_MANAGER = "cryptopipe-operator"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# The plural of every kind the operator reads or writes (no discovery round-trip needed).
PLURALS = {
    "ServiceAccount": "serviceaccounts",
    "Service": "services",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "Deployment": "deployments",
    "NetworkPolicy": "networkpolicies",
    "KafkaTopic": "kafkatopics",
    "SparkApplication": "sparkapplications",
    "CryptoPipeline": PLURAL,
    "Event": "events",
    "Secret": "secrets",
}

Emit = Callable[[str, str, str], None]  # (type Normal|Warning, reason, message)


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str, *, retry_after: float | None = None) -> None:
        self.status = status
        self.body = body  # the API server's Status object as JSON, usually
        self.retry_after = retry_after  # the server's Retry-After, in seconds
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")

    @property
    def transient(self) -> bool:
        """Whether the same request can succeed later by itself: a conflict, too many requests, or
        the server's own failure (5xx). Other 4xx need a change first (RBAC, a CRD, the object)."""
        return self.status in (409, 429) or self.status >= 500


def transient_delay(exc: BaseException, default: float) -> float | None:
    """Seconds to wait before retrying after ``exc``, when it is an API failure that retrying fixes
    by itself (ApiError.transient, or no answer at all: connection refused or reset, a timeout):
    the server's Retry-After if it sent one, else ``default``. None for anything else."""
    if isinstance(exc, ApiError):
        return (exc.retry_after or default) if exc.transient else None
    if isinstance(exc, aiohttp.ClientError | TimeoutError):
        return default
    return None


def _retry_after(value: str | None) -> float | None:
    # the API server sends whole seconds (Status.details.retryAfterSeconds); an HTTP date is not used
    try:
        return float(value) if value else None
    except ValueError:
        return None


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{PLURALS[kind]}"
    return f"{path}/{name}" if name else path


def verb_and_resource(method: str, path: str, content_type: str = "application/json") -> tuple[str, str]:
    """A request as the API server's metrics and audit name it: (verb, resource), e.g. ("list",
    "cryptopipelines") for a GET of a collection, ("apply", "deployments") for a server-side apply,
    ("patch", "cryptopipelines/status")."""
    parts = [part for part in path.split("?", 1)[0].split("/") if part]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]  # after /api/v1 or /apis/GROUP/VERSION
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]  # a namespaced resource
    resource = "/".join([rest[0], *rest[2:3]]) if rest else ""
    named = len(rest) >= 2
    verb = {
        "GET": "get" if named else "list",
        "POST": "create",
        "PUT": "update",
        "DELETE": "delete",
        "PATCH": "apply" if content_type == APPLY_CONTENT_TYPE else "patch",
    }.get(method, method.lower())
    return verb, resource


async def load_configuration() -> Configuration:
    """The client's configuration (server, TLS, credentials): $KUBECONFIG when set, else the pod's
    ServiceAccount. Read anew on each call: a token file's current content, a kubeconfig's."""
    configuration = Configuration()
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        # persist_config=False: never write a refreshed OIDC token back into the user's file
        await kube_config.load_kube_config(
            config_file=kubeconfig, client_configuration=configuration, persist_config=False
        )
    else:
        try:
            kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration, try_refresh_token=True
            )
        except kube_config.ConfigException as exc:
            raise kopf.LoginError(f"neither $KUBECONFIG nor a ServiceAccount token is available: {exc}") from exc
    return configuration


class KubeApi:
    """The few API calls the operator makes, over one pooled ``kubernetes_asyncio`` ApiClient."""

    def __init__(self, configuration: Configuration, *, total_timeout: float, connect_timeout: float) -> None:
        configuration.connection_pool_maxsize = 50
        self._client = ApiClient(configuration)
        self._timeout = aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout)
        self._reload_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, *, total_timeout: float, connect_timeout: float) -> KubeApi:
        return cls(await load_configuration(), total_timeout=total_timeout, connect_timeout=connect_timeout)

    async def close(self) -> None:
        await self._client.close()

    async def _reload_credentials(self, rejected: str | None) -> None:
        """After a 401: the credentials read anew into the live configuration (the TLS context and
        pooled connections stay). Once for a burst of 401s: a request that failed with the token
        another one has already replaced only retries."""
        async with self._reload_lock:
            live = self._client.configuration
            if await live.get_api_key_with_prefix("BearerToken") != rejected:
                return  # already reloaded by a concurrent request
            fresh = await load_configuration()
            live.api_key = fresh.api_key
            live.api_key_prefix = fresh.api_key_prefix
            live.refresh_api_key_hook = fresh.refresh_api_key_hook
            live.username, live.password = fresh.username, fresh.password
            log.info("credentials reloaded after HTTP 401")

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        metrics.API_REQUESTS.labels(*verb_and_resource(method, path, content_type)).inc()
        for attempt in (1, 2):
            token = await self._client.configuration.get_api_key_with_prefix("BearerToken")
            try:
                return await self._call(method, path, body=body, content_type=content_type, params=params)
            except ApiException as exc:
                if exc.status == 401 and attempt == 1:
                    await self._reload_credentials(token)
                    continue
                if exc.status == 404 and missing_ok:
                    return None
                headers: Mapping[str, str] = exc.headers or {}
                text = exc.body if isinstance(exc.body, str) else (exc.body or b"").decode(errors="replace")
                raise ApiError(
                    method, path, exc.status or 0, text, retry_after=_retry_after(headers.get("Retry-After"))
                ) from None
        raise AssertionError("unreachable")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None,
        content_type: str,
        params: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        # response type "object": the JSON as plain dicts and lists, no generated model; 202 is a
        # DELETE the garbage collector finishes later (foreground propagation, finalizers)
        result: dict[str, Any] | None = await self._client.call_api(
            path,
            method,
            query_params=list((params or {}).items()),
            header_params=headers,
            # JSON is valid YAML: the apply content type takes a dict as is (the client dumps it)
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
            response_types_map={200: "object", 201: "object", 202: "object"},
            _return_http_data_only=True,
            _request_timeout=self._timeout,
        )
        return result or {}  # any other success (no content): still not None, which means missing

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None if it does not exist."""
        return await self.request("GET", path, missing_ok=True)

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply; force: the operator owns its children's fields, even ones a human
        edited with kubectl (drift is put back, not reported as a conflict)."""
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
        params = {"fieldManager": FIELD_MANAGER, "force": "true"}
        result = await self.request("PATCH", path, body=manifest, content_type=APPLY_CONTENT_TYPE, params=params)
        assert result is not None
        return result

    async def patch_status(
        self, pipeline_path: str, status: Mapping[str, Any], *, resource_version: str | None = None
    ) -> None:
        """A merge patch of the status subresource: lists (conditions) are replaced as a whole, the
        fields not named (e.g. checkpoint fields in a status refresh) are kept. With
        ``resource_version``: only if the object is still at that version (an optimistic lock),
        else ApiError 409 and nothing written."""
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        await self.request("PATCH", f"{pipeline_path}/status", body=body, content_type="application/merge-patch+json")


async def login(logger: kopf.Logger, **_: Any) -> kopf.ConnectionInfo:
    """kopf's login handler: the credentials of ``load_configuration``, so kopf's watches and the
    operator's calls use the same identity. kopf calls it at start and again after a 401."""
    configuration = await load_configuration()
    header = await configuration.get_api_key_with_prefix("BearerToken")
    scheme, _sep, token = header.partition(" ") if header else ("", "", "")
    if not configuration.host:
        raise kopf.LoginError("no API server in the Kubernetes configuration")
    logger.debug("logged in to %s", configuration.host)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )
