"""Kubernetes API access: the few calls the operator makes, and its login.

Plain HTTP through aiohttp (kopf's own HTTP library, so no second Kubernetes client and its ~40 MB
of generated models) with the credentials kopf's login functions read from the pod's
ServiceAccount or from $KUBECONFIG.

Children are written with server-side apply (field manager ``cryptopipe-operator``, ``force``):
the same request creates or updates, names are deterministic, so a reconcile repeated after a
crash converges on the same objects and never duplicates one.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf

from cryptopipe_operator.spec import PLURAL

FIELD_MANAGER = "cryptopipe-operator"
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


class KubeApi:
    """The few API calls the operator makes, over one pooled aiohttp session."""

    def __init__(self, info: kopf.ConnectionInfo, *, total_timeout: float, connect_timeout: float) -> None:
        self._server = info.server.rstrip("/")
        self._headers = info.as_http_headers()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=_ssl_context(info), limit=50),
            timeout=aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout),
        )

    async def close(self) -> None:
        await self._session.close()

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
        headers = {**self._headers, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        async with self._session.request(
            method, self._server + path, json=body, headers=headers, params=params
        ) as resp:
            if resp.status == 404 and missing_ok:
                return None
            if resp.status >= 400:
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                raise ApiError(method, path, resp.status, await resp.text(), retry_after=retry_after)
            result: dict[str, Any] = await resp.json()
            return result

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None if it does not exist."""
        return await self.request("GET", path, missing_ok=True)

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply; force: the operator owns its children's fields, even ones a human
        edited with kubectl (drift is put back, not reported as a conflict)."""
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
        params = {"fieldManager": FIELD_MANAGER, "force": "true"}
        # JSON is valid YAML: the apply content type takes it as is
        result = await self.request(
            "PATCH", path, body=manifest, content_type="application/apply-patch+yaml", params=params
        )
        assert result is not None
        return result

    async def patch_status(self, pipeline_path: str, status: Mapping[str, Any]) -> None:
        # a merge patch of the status subresource: lists (conditions) are replaced as a whole,
        # the fields not named (e.g. checkpoint fields in a status refresh) are kept
        await self.request(
            "PATCH", f"{pipeline_path}/status", body={"status": status}, content_type="application/merge-patch+json"
        )


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext:
    if info.ca_data:
        ctx = ssl.create_default_context(cadata=base64.b64decode(info.ca_data).decode())
    else:
        ctx = ssl.create_default_context(cafile=info.ca_path and str(info.ca_path))
    if info.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = (
        _pem_file(info.certificate_path, info.certificate_data),
        _pem_file(info.private_key_path, info.private_key_data),
    )
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def _pem_file(path: Any, data: str | bytes | None) -> str | None:
    """ssl wants files: kubeconfig's base64 ``*-data`` is written to a private temporary one."""
    if path:
        return str(path)
    if not data:
        return None
    f = tempfile.NamedTemporaryFile(prefix="cryptopipe-operator-", suffix=".pem", delete=False)  # noqa: SIM115
    with f:
        f.write(base64.b64decode(data))
    return f.name


def login(settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any]) -> kopf.ConnectionInfo:
    """$KUBECONFIG when set (explicit wins: tests, ``cryptopipe dev cluster``), else the pod's
    ServiceAccount: kopf's own login functions, so the operator and kopf see the same identity."""
    info = None
    if os.environ.get("KUBECONFIG"):
        info = kopf.login_with_kubeconfig(logger=logger, settings=settings)
    info = info or kopf.login_with_service_account(logger=logger, settings=settings)
    if info is None:
        raise kopf.LoginError("neither $KUBECONFIG nor a ServiceAccount token is available")
    return info
