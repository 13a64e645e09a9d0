"""GET a component's HTTP endpoint (/healthz, /readyz, /metrics) from a test: status and body,
with an error status returned rather than raised."""

from __future__ import annotations

import urllib.error
import urllib.request


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
