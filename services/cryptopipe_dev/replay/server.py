"""The replay server: stands in for Coinbase's WebSocket feed and REST trades endpoint on 127.0.0.1.

One port serves the WebSocket feed (any path, Coinbase uses ``/``) and, through websockets'
``process_request`` hook, ``GET /products/{id}/trades`` and ``GET /_replay/status``. A second,
optional control port also takes POST bodies (``POST /_replay/faults``), which the WebSocket port
cannot (see control.py).

In a test::

    with ReplayServer(["derived/exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"], speed="max") as server:
        ws = websocket.create_connection(server.url)
        ...
        server.wait_done(5)

``start()`` runs the server on its own event loop in a background thread; ``serve()`` runs it on
the caller's loop (the CLI).

This module is the shell: ports, threads, the event loop. What the replay knows and decides is in
state.py (shared state), session.py (one connection) and the modules they name.
"""

from __future__ import annotations

import asyncio
import http
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from cryptopipe_dev.replay.api import HttpApi
from cryptopipe_dev.replay.connection import Connection
from cryptopipe_dev.replay.control import start_control_server
from cryptopipe_dev.replay.faults import Faults
from cryptopipe_dev.replay.options import OnConnect, StreamOptions, parse_speed
from cryptopipe_dev.replay.recording import Recording, RecordingSource, load_recording
from cryptopipe_dev.replay.source import FrameSource
from cryptopipe_dev.replay.state import ReplayState

log = logging.getLogger("cryptopipe_dev.replay")

T = TypeVar("T")


def open_source(recordings: Sequence[str | Path | Recording] | str | Path | Recording | FrameSource) -> FrameSource:
    if hasattr(recordings, "frames") and hasattr(recordings, "trade_book"):
        return recordings  # type: ignore[return-value]  # already a FrameSource
    if isinstance(recordings, (str, Path, Recording)):
        recordings = [recordings]
    loaded = [r if isinstance(r, Recording) else load_recording(r) for r in recordings]  # type: ignore[union-attr]
    return RecordingSource(loaded)


class ReplayServer:
    def __init__(
        self,
        recordings: Sequence[str | Path | Recording] | str | Path | Recording | FrameSource,
        *,
        speed: float | str | None = "max",
        faults: Faults | dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int | None = 0,  # None: no control port
        subscribe_timeout: float = 5.0,
        subscribe_settle: float = 0.05,  # wait after the first subscribe for the rest (AT sends one per channel)
        heartbeat_after_end: bool = False,
        end_heartbeat_interval: float | None = None,  # real seconds per heartbeat second; None: 1/speed, 0.05 at max
        on_connect: OnConnect = "resume",
        max_gap: float | None = None,  # cap on a pause between frames, in recording seconds
    ) -> None:
        if on_connect not in ("resume", "restart"):
            raise ValueError(f"on_connect must be resume or restart: {on_connect!r}")
        self.source = open_source(recordings)
        options = StreamOptions(
            speed=parse_speed(speed),
            max_gap=max_gap,
            subscribe_timeout=subscribe_timeout,
            subscribe_settle=subscribe_settle,
            on_connect=on_connect,
            heartbeat_after_end=heartbeat_after_end,
            end_heartbeat_interval=end_heartbeat_interval,
        )
        self.state = ReplayState(self.source, options, _as_faults(faults))
        self.host = host
        self.port = port
        self.control_port = control_port
        self.api = HttpApi(self.source.trade_book, self.state)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """Base URL of the REST API, as ``https://api.exchange.coinbase.com`` is for Coinbase."""
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str | None:
        return None if self.control_port is None else f"http://{self.host}:{self.control_port}"

    @property
    def status_url(self) -> str:
        return f"{self.rest_url}/_replay/status"

    # -- running -------------------------------------------------------------------------------------

    async def serve(self, on_listening: Callable[[ReplayServer], None] | None = None) -> None:
        """Serve on the running loop until ``request_stop()``."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        control = None
        async with serve(
            self._handle_ws,
            self.host,
            self.port,
            process_request=self._process_request,
            server_header="cryptopipe-replay",
            close_timeout=1.0,  # a client that stopped reading must not hold up stop() for 10 s
        ) as ws_server:
            self.port = ws_server.sockets[0].getsockname()[1]  # type: ignore[index]
            if self.control_port is not None:
                control = await start_control_server(self.api.handle, self.host, self.control_port)
                self.control_port = control.sockets[0].getsockname()[1]
            log.info(
                "listening",
                extra={
                    "url": self.url,
                    "rest_url": self.rest_url,
                    "control_url": self.control_url,
                    "feed": self.source.feed,
                    "frames": self.source.frame_count,
                    "speed": self.speed or "max",
                },
            )
            self._ready.set()
            if on_listening is not None:
                on_listening(self)
            try:
                await self._stop.wait()
            finally:
                if control is not None:
                    control.close()
                ws_server.close()
        log.info("stopped", extra={"frames_sent": self.frames_sent})

    def request_stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def start(self, timeout: float = 10.0) -> ReplayServer:
        """Run in a background thread with its own event loop; return once listening."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._thread_main, name="replay-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"replay server did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as exc:  # noqa: BLE001 - start() re-raises it in the caller's thread
            self._error = exc
            self._ready.set()

    # -- state, from any thread ----------------------------------------------------------------------

    @property
    def speed(self) -> float | None:
        return self.state.options.speed

    @property
    def frames_sent(self) -> int:
        """Data frames, and heartbeats after the end, sent on all connections so far."""
        return self.state.tally.frames_sent

    def status(self) -> dict[str, Any]:
        return self._on_loop(self.state.status_now)

    def set_faults(self, faults: Faults | dict[str, Any] | None) -> None:
        """Replace the faults in force and re-arm the counted ones."""
        self._on_loop(lambda: self.state.set_faults_now(_as_faults(faults)))

    def reset(self) -> None:
        """Back to the first frame for the next connection; counted faults re-armed."""
        self._on_loop(self.state.reset_now)

    def wait_done(self, timeout: float | None = None) -> bool:
        """True once a connection has been sent (or had filtered out) every frame of the source."""
        return self.state.timeline.done.wait(timeout)

    def _on_loop(self, fn: Callable[[], T]) -> T:
        loop = self._loop
        if loop is None or not loop.is_running() or _running_loop() is loop:
            return fn()

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(10)

    # -- connections ---------------------------------------------------------------------------------

    async def _handle_ws(self, ws: ServerConnection) -> None:
        session = self.state.open_session(Connection(ws))
        log.info("client connected", extra={"connection": session.id, "peer": session.peer})
        try:
            await session.run()
        finally:
            self.state.close_session(session)
            log.info(
                "client gone",
                extra={"connection": session.id, "state": session.state, "data_frames_sent": session.data_sent},
            )

    def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None | Awaitable[Response | None]:
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return None
        delay = self.state.faults_now().rest_delay_s
        if delay > 0 and request.path.startswith("/products/"):
            return self._answer_later(delay, request)  # websockets awaits it; other clients go on
        return self._answer(request)

    async def _answer_later(self, delay: float, request: Request) -> Response:
        await asyncio.sleep(delay)
        return self._answer(request)

    def _answer(self, request: Request) -> Response:
        answer = self.api.handle(request.method, request.path)
        headers = Headers({**answer.headers, "Content-Length": str(len(answer.body)), "Connection": "close"})
        return Response(answer.status, http.HTTPStatus(answer.status).phrase, headers, answer.body)


def _as_faults(faults: Faults | dict[str, Any] | None) -> Faults:
    if faults is None:
        return Faults()
    return faults if isinstance(faults, Faults) else Faults.from_dict(faults)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
