"""One client's WebSocket, as a session uses it: the only replay module that touches the socket.

Every way the client can go away (closed, aborted, the server stopping) surfaces as ``Gone``, so
the session handles one exception, not websockets' own.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed


class Gone(Exception):
    """The client went away (or the server is stopping): end the session quietly."""


class Connection:
    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws
        address = ws.remote_address
        self.peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        self.messages_sent = 0  # every frame, acks and error frames included (clients count on it)
        self._send_lock = asyncio.Lock()  # the reader's acks and the stream send concurrently
        self._closed: asyncio.Future[None] | None = None

    def watch(self) -> None:
        """Start noticing the client going away; ``unwatch()`` when the session ends."""
        self._closed = asyncio.ensure_future(self._ws.wait_closed())

    def unwatch(self) -> None:
        if self._closed is not None:
            self._closed.cancel()

    @property
    def closed(self) -> bool:
        return self._closed is not None and self._closed.done()

    async def recv(self) -> str | bytes:
        """The client's next frame."""
        try:
            return await self._ws.recv()
        except ConnectionClosed:
            raise Gone() from None

    async def send(self, text: str) -> None:
        try:
            async with self._send_lock:
                await self._ws.send(text)
        except ConnectionClosed:
            raise Gone() from None
        self.messages_sent += 1

    async def wait(self, event: asyncio.Event, timeout: float) -> None:
        """Until ``event`` is set, the client goes or ``timeout`` passes, whichever comes first."""
        assert self._closed is not None
        waiting: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
        await asyncio.wait({waiting, self._closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake up (raising Gone) as soon as the connection closes: a stalled or
        slow-paced session must not hold up the server's shutdown."""
        assert self._closed is not None
        if seconds <= 0:
            if self._closed.done():
                raise Gone()
            return
        timeout = None if math.isinf(seconds) else seconds
        done, _ = await asyncio.wait({self._closed}, timeout=timeout)
        if done:
            raise Gone()

    async def close(self, code: int, reason: str) -> None:
        try:
            await self._ws.close(code, reason)
        except ConnectionClosed:
            raise Gone() from None

    def abort(self) -> None:
        """Drop the TCP connection without a close frame: what a network failure looks like."""
        self._ws.transport.abort()
