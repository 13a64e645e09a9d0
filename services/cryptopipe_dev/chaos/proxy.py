"""A TCP fault proxy on loopback: forwards every connection to one upstream (a Kafka listener) until
told to **blackhole**, then heals.

A blackhole is what a network partition looks like to both ends: connections stay open and new ones
are accepted, but no byte goes through and nobody gets a reset or a close. The proxy simply stops
reading; what the peers send waits in the kernel's buffers (as TCP retransmits would) and is
forwarded on ``heal()`` if the peer has not given up by then. A connection accepted during the cut
is connected upstream only after the heal.

    with FaultProxy() as proxy:          # listening on proxy.port before the upstream is known
        proxy.upstream = ("127.0.0.1", broker_port)
        proxy.blackhole(); ...; proxy.heal()

Runs its own asyncio loop on a daemon thread; the public methods are thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from concurrent.futures import Future
from typing import Self

log = logging.getLogger("cryptopipe_dev.chaos.proxy")

LOOPBACK = "127.0.0.1"
CHUNK = 65536


class FaultProxy:
    def __init__(self, upstream: tuple[str, int] | None = None, *, host: str = LOOPBACK, port: int = 0) -> None:
        self.upstream = upstream  # may be set after start(): the port is needed before the upstream exists
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self.connections_accepted = 0
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def blackholed(self) -> bool:
        return self._flowing is not None and not self._flowing.is_set()

    # -- control (any thread) -------------------------------------------------------------------
    def start(self) -> Self:
        self._thread.start()
        self._call(self._start()).result(10)
        return self

    def blackhole(self) -> None:
        """From now on nothing is forwarded, in either direction, on any connection."""
        self._call(self._set_flowing(False)).result(10)
        log.info("proxy blackholed", extra={"port": self.port})

    def heal(self) -> None:
        self._call(self._set_flowing(True)).result(10)
        log.info("proxy healed", extra={"port": self.port})

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(TimeoutError, RuntimeError):
                self._call(self._stop()).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._listener.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop -------------------------------------------------------------------------------
    def _call(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, sock=self._listener)

    async def _set_flowing(self, on: bool) -> None:
        assert self._flowing is not None
        if on:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:  # connections still pumping (or held by a cut): ended, not abandoned
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.connections_accepted += 1
        self._writers.add(client_writer)
        try:
            await self._flowing.wait()  # accepted during a cut: connected upstream only after the heal
            if self.upstream is None:
                raise ConnectionError("the proxy has no upstream yet")
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._writers.discard(client_writer)
            client_writer.close()
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(self._pump(client_reader, up_writer), self._pump(up_reader, client_writer))
        finally:
            for writer in (client_writer, up_writer):
                self._writers.discard(writer)
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()  # a cut: stop reading, so the bytes wait in the kernel
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()  # bytes read just before a cut wait for the heal too
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # one side closed: close the other, so each peer sees what the other did
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()
                else:
                    writer.close()


__all__ = ["FaultProxy"]
