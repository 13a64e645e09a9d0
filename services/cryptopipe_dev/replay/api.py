"""The replay server's HTTP side: Coinbase Exchange's REST trades endpoint plus the control endpoints.

- ``GET /products/{id}/trades?limit=N&after=X|before=X`` as Coinbase Exchange: newest first,
  ``after=X`` -> trade ids < X, ``before=X`` -> ids > X; ``CB-AFTER`` / ``CB-BEFORE`` headers are
  the smallest / largest id of the page; limit 1..1000 (larger is clamped), default 100.
  Served from every trade of the source, including trades a fault withheld from the WebSocket,
  except the ``rest_missing_ids`` fault's (never served); ``rest_delay_s`` delays each answer (server.py).
- ``GET /_replay/status``: frames sent, done, connections, faults.
- ``GET /_replay/faults``, ``POST /_replay/faults`` (JSON body: replaces the faults and re-arms
  them), ``POST /_replay/reset`` (timeline back to the first frame, faults re-armed).

Pure request -> response, so the same code answers on the WebSocket port (through websockets'
``process_request``, which cannot read request bodies) and on the control port (which can).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from cryptopipe_dev.replay.faults import Faults
from cryptopipe_dev.replay.source import TradeBook

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


@dataclasses.dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(payload), {"Content-Type": "application/json", **(headers or {})})


def _error(status: int, message: str) -> HttpResponse:
    return json_response(status, {"message": message})


class Controls(Protocol):
    """What the control endpoints read and change: the replay server's state, on its loop."""

    def status_now(self) -> dict[str, Any]: ...

    def faults_now(self) -> Faults: ...

    def set_faults_now(self, faults: Faults) -> None: ...

    def reset_now(self) -> None: ...


class HttpApi:
    def __init__(self, trade_book: TradeBook, controls: Controls) -> None:
        self.trade_book = trade_book
        self.controls = controls

    def handle(self, method: str, target: str, body: bytes = b"") -> HttpResponse:
        """Must run on the server's event loop (the controls read and change server state)."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query, keep_blank_values=True)
        segments = path.split("/")
        if len(segments) == 4 and segments[1] == "products" and segments[3] == "trades":
            if method != "GET":
                return _error(405, "method not allowed")
            return self._trades(unquote(segments[2]), query)
        if path == "/_replay/status" and method == "GET":
            return json_response(200, self.controls.status_now())
        if path == "/_replay/faults":
            if method == "GET":
                return json_response(200, self.controls.faults_now().to_dict())
            if method == "POST":
                return self._set_faults(body)
            return _error(405, "method not allowed")
        if path == "/_replay/reset" and method == "POST":
            self.controls.reset_now()
            return json_response(200, self.controls.status_now())
        return _error(404, "NotFound")

    def _set_faults(self, body: bytes) -> HttpResponse:
        try:
            data = orjson.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            faults = Faults.from_dict(data)
        except (orjson.JSONDecodeError, ValueError) as exc:
            return _error(400, f"bad faults: {exc}")
        self.controls.set_faults_now(faults)
        return json_response(200, faults.to_dict())

    def _trades(self, product_id: str, query: dict[str, list[str]]) -> HttpResponse:
        book = self.trade_book
        if product_id not in book:
            return _error(404, "NotFound")
        try:
            limit = _integer(query, "limit", DEFAULT_LIMIT)
            after = _cursor(query, "after")
            before = _cursor(query, "before")
        except ValueError as exc:
            return _error(400, str(exc))
        if limit < 1:
            return _error(400, "Invalid limit")
        if after is not None and before is not None:
            return _error(400, "after and before are mutually exclusive")
        page = book.page(product_id, min(limit, MAX_LIMIT), after=after, before=before)
        if missing := self.controls.faults_now().rest_missing_ids:
            page = [t for t in page if t.trade_id not in missing]
        rows = [
            {"time": t.time, "trade_id": t.trade_id, "price": t.price, "size": t.size, "side": t.side} for t in page
        ]
        headers = {"CB-BEFORE": str(page[0].trade_id), "CB-AFTER": str(page[-1].trade_id)} if page else {}
        return json_response(200, rows, headers)


def _integer(query: dict[str, list[str]], name: str, default: int) -> int:
    value = _cursor(query, name)
    return default if value is None else value


def _cursor(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values or values[0] == "":
        return None
    try:
        return int(values[0])
    except ValueError:
        raise ValueError(f"Invalid {name}") from None
