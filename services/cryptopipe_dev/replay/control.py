"""A minimal HTTP/1.1 server for the control port.

Exists because the WebSocket port cannot take a request body: websockets' handshake parser rejects
any request with ``Content-Length`` > 0, so ``POST /_replay/faults`` with JSON needs a port of its
own. One request per connection (``Connection: close``), bodies by ``Content-Length`` only: enough
for tests and curl, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from http import HTTPStatus

from cryptopipe_dev.replay.api import HttpResponse

log = logging.getLogger("cryptopipe_dev.replay")

Handler = Callable[[str, str, bytes], HttpResponse]
_MAX_BODY = 1 << 20
_TIMEOUT = 10.0


async def start_control_server(handler: Handler, host: str, port: int) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response = await asyncio.wait_for(_handle(reader, handler), _TIMEOUT)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, ValueError) as exc:
            response = HttpResponse(400, f"bad request: {exc}\n".encode(), {"Content-Type": "text/plain"})
        try:
            writer.write(_serialize(response))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, host, port)


async def _handle(reader: asyncio.StreamReader, handler: Handler) -> HttpResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if length > _MAX_BODY:
        raise ValueError("body too large")
    body = await reader.readexactly(length) if length else b""
    return handler(method.upper(), target, body)


def _serialize(response: HttpResponse) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    headers = {**response.headers, "Content-Length": str(len(response.body)), "Connection": "close"}
    head = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + response.body
