"""/metrics, /healthz and /readyz on one small stdlib HTTP server thread, for each product service
(ingestion, lake monitor). It lives beside them, not in either, so that they stay independent.

- ``/healthz``: 200 while the process serves HTTP at all (Kubernetes liveness).
- ``/readyz``: 200 when the service's readiness check returns None (ingestion: feed connected and
  subscribed, producer has the topic's metadata); otherwise 503 with
  ``{"ready": false, "reason": "..."}`` (readiness).
- ``/metrics``: the service's own registry in the Prometheus text format.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# () -> None when ready, else the reason it is not
ReadinessCheck = Callable[[], str | None]


class HealthServer:
    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, readiness: ReadinessCheck, *, name: str
    ) -> None:
        handler = _handler_class(registry, readiness)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        # the thread's name says whose server it is in a thread dump (each service runs one)
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{name}-http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()
        log.info("http server listening", extra={"port": self.port, "paths": ["/metrics", "/healthz", "/readyz"]})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_class(registry: CollectorRegistry, readiness: ReadinessCheck) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._reply(200, b'{"status":"ok"}', "application/json")
            elif path == "/readyz":
                try:
                    reason = readiness()
                except Exception as exc:  # noqa: BLE001 - a failing check means not ready, not a 500
                    reason = f"readiness check failed: {exc!r}"
                if reason is None:
                    self._reply(200, b'{"ready":true}', "application/json")
                else:
                    self._reply(503, orjson.dumps({"ready": False, "reason": reason}), "application/json")
            else:
                self._reply(404, b'{"error":"not found"}', "application/json")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the JSON logs

    return Handler
