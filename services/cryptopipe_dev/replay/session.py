"""One client connection to the replay server.

A connection: wait for subscribe frame(s) (error + close after ``subscribe_timeout``), ack each,
then stream the source's frames the subscriptions select, paced by their recorded ts, through the
fault hooks. After the last frame the connection stays open, optionally sending heartbeats whose
time keeps advancing so that downstream event-time windows can close.

The session gets what it works with, wired by ``ReplayState.open_session`` (state.py): the socket
(connection.py), the feed's dialect (dialect.py), the shared timeline (timeline.py), this
connection's faults (injector.py), the stream options (options.py) and the tally of all
connections it adds its frames to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson

from cryptopipe_dev.replay.connection import Connection, Gone
from cryptopipe_dev.replay.dialect import FeedDialect
from cryptopipe_dev.replay.injector import Drop, FaultInjector, SendMalformed, Stall
from cryptopipe_dev.replay.options import StreamOptions
from cryptopipe_dev.replay.source import SourceFrame
from cryptopipe_dev.replay.subscriptions import SubscribeError, Subscriptions
from cryptopipe_dev.replay.timeline import Timeline

log = logging.getLogger("cryptopipe_dev.replay")

# At speed "max" nothing else would make the stream yield to the event loop (REST, control, other
# clients) while the socket buffer has room.
_YIELD_EVERY = 64


@dataclasses.dataclass
class Tally:
    """What all connections sent: data frames, and heartbeats after the end (the server's status)."""

    frames_sent: int = 0


class _Dropped(Exception):
    """The drop fault fired."""

    def __init__(self, drop: Drop) -> None:
        super().__init__(drop)
        self.drop = drop


class Session:
    def __init__(
        self,
        connection_id: int,
        conn: Connection,
        subs: Subscriptions,
        dialect: FeedDialect,
        *,
        timeline: Timeline,
        faults: FaultInjector,
        options: StreamOptions,
        tally: Tally,
    ) -> None:
        self.id = connection_id
        self.conn = conn
        self.subs = subs
        self.dialect = dialect
        self.timeline = timeline
        self.faults = faults
        self.options = options
        self.tally = tally
        self.data_sent = 0
        self.start_index: int | None = None
        self.state = "awaiting_subscribe"
        self._subscribed = asyncio.Event()
        self._last_ts = 0.0  # the latest recorded ts the stream has passed

    @property
    def peer(self) -> str:
        return self.conn.peer

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "peer": self.peer,
            "state": self.state,
            "start_index": self.start_index,
            "data_frames_sent": self.data_sent,
            "messages_sent": self.conn.messages_sent,
            "subscriptions": {k: list(v) for k, v in self.subs.channels.items()},
        }

    async def run(self) -> None:
        self.conn.watch()
        reader = asyncio.ensure_future(self._read_client())
        try:
            await self.conn.wait(self._subscribed, self.options.subscribe_timeout)
            if self.conn.closed:
                return
            if not self._subscribed.is_set():
                await self._subscribe_timed_out()
                return
            await self.conn.pause(self.options.subscribe_settle)  # let a multi-frame subscribe complete
            self.state = "streaming"
            await self._stream()
        except Gone:
            pass
        finally:
            if self.state not in ("dropped", "subscribe_timeout"):  # keep the why
                self.state = "closed"
            reader.cancel()
            self.conn.unwatch()

    # -- client frames ---------------------------------------------------------------------------

    async def _read_client(self) -> None:
        try:
            while True:
                message = await self.conn.recv()
                try:
                    self.subs.apply(message)
                except SubscribeError as exc:
                    log.info("subscribe rejected", extra={"connection": self.id, "reason": exc.reason})
                    await self.conn.send(exc.frame())
                    continue
                await self.conn.send(self.dialect.ack(self._now_ts()))
                if self.subs:
                    self._subscribed.set()
        except Gone:
            pass

    async def _subscribe_timed_out(self) -> None:
        seconds = self.options.subscribe_timeout
        reason = f"no subscribe message received within {seconds:g} seconds"
        log.info("subscribe timeout", extra={"connection": self.id})
        self.state = "subscribe_timeout"
        frame = orjson.dumps({"type": "error", "message": "Failed to subscribe", "reason": reason}).decode()
        try:
            await self.conn.send(frame)
            await self.conn.close(1008, "subscribe timeout")
        except Gone:
            pass

    # -- the stream --------------------------------------------------------------------------------

    async def _stream(self) -> None:
        timeline = self.timeline
        start = timeline.position if self.options.on_connect == "resume" else 0
        self.start_index = start
        frames = timeline.open(start)
        log.info("streaming", extra={"connection": self.id, "start_index": start, "subscriptions": self.subs.channels})
        pacer = _Pacer(self.options.speed, self.options.max_gap)
        held: tuple[str, SourceFrame] | None = None  # a frame the reorder fault holds back
        next_index = start
        try:
            if start:  # a real subscribe starts with the latest trades; mid-source, the dialect says which
                for resumed in self.dialect.resumed(timeline.last_match):
                    await self._send_data(*resumed)
            await self._counted_faults()  # drop_after=0 etc.
            for count, frame in enumerate(frames, 1):
                next_index = frame.index + 1
                timeline.observe(frame)
                self._last_ts = max(self._last_ts, frame.ts)
                self.dialect.observe(frame)
                if count % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                text = self.dialect.select(frame, self.faults.withheld(frame))
                if text is None:
                    continue
                text = self.faults.retimed(text, frame)
                await pacer.wait(frame.ts, self.conn.pause)
                faults = self.faults.faults
                if held is None and faults.reorder(frame.index):
                    held = (text, frame)
                    continue
                await self._send_data(text, frame)
                if faults.duplicate(frame.index):
                    await self._send_data(text, frame)
                if held is not None:
                    await self._send_data(*held)
                    held = None
            if held is not None:
                await self._send_data(*held)
        except _Dropped as dropped:
            await self._drop(dropped.drop, frames, next_index)
            return
        except Gone:
            timeline.park(next_index, frames)
            raise
        timeline.done.set()
        self.state = "ended"
        log.info("recording ended", extra={"connection": self.id, "data_frames_sent": self.data_sent})
        if self.options.heartbeat_after_end:
            await self._heartbeats_after_end()
        else:
            await self.conn.pause(math.inf)

    async def _send_data(self, text: str, frame: SourceFrame) -> None:
        await self.conn.send(text)
        self.data_sent += 1
        self.tally.frames_sent += 1
        self.faults.sent(text, frame)
        await self._counted_faults()

    async def _counted_faults(self) -> None:
        n = self.data_sent
        for fault in self.faults.due(n):
            if isinstance(fault, SendMalformed):
                log.info("fault: malformed frame", extra={"connection": self.id, "after": n, "kind": fault.kind})
                await self.conn.send(fault.text)
            elif isinstance(fault, Stall):
                log.info("fault: stall", extra={"connection": self.id, "after": n, "seconds": fault.seconds})
                self.state = "stalled"
                await self.conn.pause(fault.seconds)
                self.state = "streaming"
            else:
                raise _Dropped(fault)

    async def _drop(self, drop: Drop, frames: Iterator[SourceFrame], next_index: int) -> None:
        timeline = self.timeline
        for frame in itertools.islice(frames, drop.lose):
            timeline.observe(frame)  # lost to the client, not to the timeline (nor to REST)
            next_index = frame.index + 1
        timeline.park(next_index, frames)
        self.state = "dropped"
        log.info("fault: drop", extra={"connection": self.id, "after": self.data_sent, "lose": drop.lose})
        if drop.close_code is None:
            self.conn.abort()
        else:
            await self.conn.close(drop.close_code, "replay fault: drop")

    async def _heartbeats_after_end(self) -> None:
        interval = self.options.heartbeat_interval
        second = math.floor(self._last_ts) + 1
        while True:
            for text in self.dialect.end_heartbeats(second):
                await self.conn.send(text)
                self.tally.frames_sent += 1
            second += 1
            await self.conn.pause(interval)

    def _now_ts(self) -> float:
        """Recording time at the replay's current position (acks carry it, like the real feed's)."""
        return self._last_ts or self.timeline.source.start_ts or time.time()


class _Pacer:
    """Sends frame i at (ts_i - ts_0) / speed after the first; speed None = as fast as the client reads."""

    def __init__(self, speed: float | None, max_gap: float | None) -> None:
        self.speed = speed
        self.max_gap = max_gap
        self._origin: float | None = None
        self._virtual = 0.0
        self._prev_ts = 0.0

    async def wait(self, ts: float, pause: Callable[[float], Awaitable[None]]) -> None:
        if self.speed is None:
            return
        loop = asyncio.get_running_loop()
        if self._origin is None:
            self._origin, self._prev_ts = loop.time(), ts
            return
        gap = max(0.0, ts - self._prev_ts)
        if self.max_gap is not None:
            gap = min(gap, self.max_gap)
        self._prev_ts = max(self._prev_ts, ts)
        self._virtual += gap
        delay = self._origin + self._virtual / self.speed - loop.time()
        if delay > 0.0005:
            await pause(delay)
