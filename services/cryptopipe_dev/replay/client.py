"""A minimal blocking client for the replay server, for tests and scripts.

Built on ``websocket-client``, the library ingestion uses, so tests exercise the same client stack.
``read_sent(server)`` reads exactly what the server says it sent on this connection, so a test
knows it has seen everything without guessing at idle timeouts.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from typing import Any, Protocol

import orjson
import websocket


class Server(Protocol):
    """What the client asks of the replay server (a ReplayServer): its status, from any thread."""

    def status(self) -> dict[str, Any]: ...


# connection states after which the server sends nothing more from the source
_FINISHED = ("ended", "closed", "dropped", "subscribe_timeout")


class ReplayClient:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        # utf-8 validation in pure Python costs websocket-client ~4x its throughput (17k vs 80k frames/s)
        self.ws = websocket.create_connection(url, timeout=timeout, skip_utf8_validation=True)
        self.timeout = timeout
        self.received: list[str] = []
        self.close_code: int | None = None  # set when the server closed with a close frame

    def __enter__(self) -> ReplayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.ws.close(timeout=1)
        # close() does nothing once the server has closed the WebSocket; the TCP socket must still
        # be shut, or the server waits for its EOF until its close timeout
        self.ws.shutdown()

    def send_json(self, message: dict[str, Any]) -> None:
        self.ws.send(orjson.dumps(message).decode())

    def subscribe_exchange(self, products: Iterable[str], channels: Iterable[str | dict[str, Any]]) -> None:
        self.send_json({"type": "subscribe", "product_ids": list(products), "channels": list(channels)})

    def subscribe_advanced_trade(self, products: Iterable[str], channels: Iterable[str]) -> None:
        for channel in channels:  # the feed takes one channel per frame
            self.send_json({"type": "subscribe", "product_ids": list(products), "channel": channel})

    def recv(self, timeout: float | None = None) -> str:
        """Next text frame. Raises websocket.WebSocketTimeoutException, or
        WebSocketConnectionClosedException when the server closed the connection: with a close
        frame (its code is then in ``close_code``) or without one (a dropped connection)."""
        self.ws.settimeout(self.timeout if timeout is None else timeout)
        opcode, data = self.ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
            raise websocket.WebSocketConnectionClosedException(f"closed by the server with code {self.close_code}")
        text = data.decode() if isinstance(data, bytes) else data
        self.received.append(text)
        return text

    def recv_json(self, timeout: float | None = None) -> Any:
        return orjson.loads(self.recv(timeout))

    @property
    def local_address(self) -> str:
        host, port = self.ws.sock.getsockname()[:2]
        return f"{host}:{port}"

    def connection_status(self, server: Server) -> dict[str, Any] | None:
        """This connection's entry in the server's status (matched by the client's own address)."""
        me = self.local_address
        return next((c for c in server.status()["connections"] if c["peer"] == me), None)

    def read_sent(self, server: Server, timeout: float = 10.0) -> list[str]:
        """Read until the server has streamed the whole source to this connection and this client
        has every message the server sent it. Returns all messages received so far."""
        deadline = time.monotonic() + timeout
        while True:
            # keep reading while the server streams: a large stream would otherwise stall on the
            # full socket buffer and never finish
            batch_end = time.monotonic() + 0.1
            while time.monotonic() < batch_end:
                try:
                    self.recv(0.05)
                except websocket.WebSocketTimeoutException:
                    break
            status = self.connection_status(server)
            if status is not None and status["state"] in _FINISHED:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"replay to {self.local_address} not done within {timeout} s: {status}")
        while len(self.received) < status["messages_sent"]:
            self.recv(max(0.01, deadline - time.monotonic()))
        return self.received

    def read_until_closed(self, timeout: float = 10.0) -> list[str]:
        """Read until the server closes the connection (or drops it); returns all messages."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.recv(max(0.01, deadline - time.monotonic()))
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                return self.received
        raise TimeoutError(f"connection still open after {timeout} s")
