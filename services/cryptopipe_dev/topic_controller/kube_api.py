"""The few Kubernetes API calls the dev stand-in for Strimzi's topic operator makes (list, watch,
merge-patch), over the standard library: blocking calls, which suit a controller whose other half
(kafka-python's admin client) is blocking too.

Credentials come from a kubeconfig (bearer token or client certificate, a CA or
``insecure-skip-tls-verify``) or, inside a pod, from the mounted ServiceAccount.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")


@dataclass(frozen=True)
class Connection:
    server: str
    token: str | None
    ssl_context: ssl.SSLContext | None


def _data_file(data: str, suffix: str) -> str:
    """ssl wants files: kubeconfig's base64 ``*-data`` goes to a private temporary file."""
    fd, name = tempfile.mkstemp(prefix="cryptopipe-topic-controller-", suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data))
    return name


def _pick(items: list[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    return next(i for i in items if i.get("name") == name)


def load_kubeconfig(path: Path, context: str | None = None) -> Connection:
    config = yaml.safe_load(path.read_text())
    ctx = _pick(config["contexts"], context or config["current-context"])["context"]
    cluster = _pick(config["clusters"], ctx["cluster"])["cluster"]
    user = _pick(config.get("users") or [], ctx["user"]).get("user") or {}
    server = cluster["server"].rstrip("/")
    ssl_context = None
    if server.startswith("https"):
        ssl_context = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        elif cluster.get("certificate-authority-data"):
            ssl_context.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif cluster.get("certificate-authority"):
            ssl_context.load_verify_locations(cafile=cluster["certificate-authority"])
        cert = user.get("client-certificate") or (
            user.get("client-certificate-data") and _data_file(user["client-certificate-data"], ".crt")
        )
        key = user.get("client-key") or (user.get("client-key-data") and _data_file(user["client-key-data"], ".key"))
        if cert and key:
            ssl_context.load_cert_chain(cert, key)
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    return Connection(server, token, ssl_context)


def in_cluster() -> Connection:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    ssl_context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT_DIR / "ca.crt"))
    token = (SERVICE_ACCOUNT_DIR / "token").read_text().strip()
    return Connection(f"https://{host}:{port}", token, ssl_context)


def connect(kubeconfig: Path | None = None) -> Connection:
    """``kubeconfig``, else $KUBECONFIG, else the pod's ServiceAccount, else ~/.kube/config."""
    if kubeconfig is None and os.environ.get("KUBECONFIG"):
        kubeconfig = Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
    if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ and SERVICE_ACCOUNT_DIR.is_dir():
        return in_cluster()
    return load_kubeconfig(kubeconfig or Path.home() / ".kube" / "config")


class KubeApi:
    def __init__(self, connection: Connection, *, timeout: float = 15.0) -> None:
        self.connection = connection
        self.timeout = timeout

    def _open(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any, timeout: float) -> Any:
        url = self.connection.server + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"Accept": "application/json"}
        if self.connection.token:
            headers["Authorization"] = f"Bearer {self.connection.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/merge-patch+json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=timeout, context=self.connection.ssl_context)
        except urllib.error.HTTPError as err:
            raise ApiError(method, path, err.code, err.read().decode(errors="replace")) from None

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        with self._open("GET", path, params, None, self.timeout) as resp:
            return json.loads(resp.read())

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> Any:
        """A JSON merge patch; ``metadata.resourceVersion`` in it makes it conditional (409 if stale)."""
        with self._open("PATCH", path, None, patch, self.timeout) as resp:
            return json.loads(resp.read())

    def watch(self, path: str, params: Mapping[str, Any], timeout_seconds: int) -> Iterator[dict[str, Any]]:
        """The events of one watch request, which the server ends after ``timeout_seconds``."""
        query = {**params, "watch": "true", "timeoutSeconds": timeout_seconds, "allowWatchBookmarks": "true"}
        with self._open("GET", path, query, None, timeout_seconds + self.timeout) as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)
