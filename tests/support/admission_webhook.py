"""A validating admission webhook the test API server calls, served on the loopback address over
HTTPS (a self-signed certificate made with openssl), whose answers a test writes as a function of
the AdmissionReview request: to refuse, throttle or slow down chosen requests of the real API
server."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptopipe_dev.stack.procs import LOOPBACK

# the AdmissionReview request -> the response's fields (``allowed``, optionally ``status``)
Review = Callable[[dict[str, Any]], dict[str, Any]]


class AdmissionWebhook:
    def __init__(self, workdir: Path, review: Review) -> None:
        self.review = review
        cert, key = workdir / "webhook.crt", workdir / "webhook.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={LOOPBACK}"]
            + ["-addext", f"subjectAltName=IP:{LOOPBACK}", "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
        )
        self.ca_bundle = base64.b64encode(cert.read_bytes()).decode()
        self.server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://{LOOPBACK}:{self.server.server_address[1]}/validate"
        self.thread = threading.Thread(target=self.server.serve_forever, name="admission-webhook", daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["request"]
                response = {"uid": request["uid"], **hook.review(request)}
                review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
                out = json.dumps(review).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def configuration(self, name: str, namespace: str, rule: dict[str, Any]) -> dict[str, Any]:
        """A ValidatingWebhookConfiguration sending the requests ``rule`` matches in ``namespace`` here."""
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name[:63]},
            "webhooks": [
                {
                    "name": "review.cryptopipe-tests.io",
                    "clientConfig": {"url": self.url, "caBundle": self.ca_bundle},
                    "rules": [{"scope": "Namespaced", **rule}],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 10,
                }
            ],
        }

    def __enter__(self) -> AdmissionWebhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
