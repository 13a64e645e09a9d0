"""One client connection to the replay server, and the timeline all connections share.

A connection: wait for subscribe frame(s) (error + close after ``subscribe_timeout``), ack each,
then stream the source's frames the subscriptions select, paced by their recorded ts, through the
fault hooks. After the last frame the connection stays open, optionally sending heartbeats whose
time keeps advancing so that downstream event-time windows can close.

The timeline: ``on_connect="resume"`` makes a new connection continue where the replay stands (as
reconnecting to the live feed does; a drop with ``drop_lose`` loses frames in between), and
``"restart"`` replays the source from its first frame on every connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from cryptopipe_dev.replay.faults import FaultState
from cryptopipe_dev.replay.source import FrameSource, SourceFrame
from cryptopipe_dev.replay.subscriptions import SubscribeError, Subscriptions

if TYPE_CHECKING:
    from cryptopipe_dev.replay.server import ReplayServer

log = logging.getLogger("cryptopipe_dev.replay")

OnConnect = Literal["resume", "restart"]
_SEQUENCE_NUM = re.compile(r'"sequence_num":\s*-?\d+')
_PRICE = re.compile(r'"price":\s*"[^"]*"')
_HEARTBEAT_COUNTER = re.compile(r'"heartbeat_counter":\s*(\d+)')
# At speed "max" nothing else would make the stream yield to the event loop (REST, control, other
# clients) while the socket buffer has room.
_YIELD_EVERY = 64


class Timeline:
    """Where the replay stands, shared by every connection (all access from the server's loop)."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.done = threading.Event()  # some connection has gone past the source's last frame
        self.reset()

    def reset(self) -> None:
        self.position = 0  # index of the first source frame no connection has reached yet
        self.last_match: dict[str, SourceFrame] = {}  # Exchange: latest match per product up to position
        self._parked: tuple[int, Iterator[SourceFrame]] | None = None
        self.done.clear()

    def observe(self, frame: SourceFrame) -> None:
        if frame.index >= self.position:
            self.position = frame.index + 1
            if frame.kind in ("match", "last_match") and frame.products:
                self.last_match[frame.products[0]] = frame

    def open(self, start: int) -> Iterator[SourceFrame]:
        """An iterator from ``start``; reuses a parked one so that resuming a lazy (synthetic)
        source does not regenerate it from the beginning."""
        parked, self._parked = self._parked, None
        if parked is not None and parked[0] <= start:
            next_index, frames = parked
            for _ in range(start - next_index):
                next(frames, None)
            return frames
        return self.source.frames(start)

    def park(self, next_index: int, frames: Iterator[SourceFrame]) -> None:
        if next_index == self.position:
            self._parked = (next_index, frames)


@dataclasses.dataclass
class _EndState:
    """What the stream had reached, for the heartbeats sent after its end."""

    last_ts: float = 0.0
    last_trade_id: dict[str, int] = dataclasses.field(default_factory=dict)
    sequence: dict[str, int] = dataclasses.field(default_factory=dict)
    heartbeat_counter: int = 0

    def observe(self, frame: SourceFrame) -> None:
        self.last_ts = max(self.last_ts, frame.ts)
        for trade in frame.trades:
            if trade.trade_id > self.last_trade_id.get(trade.product_id, 0):
                self.last_trade_id[trade.product_id] = trade.trade_id
        if frame.products and frame.sequence is not None:
            self.sequence[frame.products[0]] = frame.sequence
        if frame.last_trade_id is not None and frame.products:
            product = frame.products[0]
            self.last_trade_id[product] = max(self.last_trade_id.get(product, 0), frame.last_trade_id)
        if frame.kind == "heartbeats" and (m := _HEARTBEAT_COUNTER.search(frame.raw)):
            self.heartbeat_counter = int(m.group(1))


class _Gone(Exception):
    """The client went away (or the server is stopping): end the session quietly."""


class _Dropped(Exception):
    """The drop fault fired."""


class Session:
    def __init__(self, server: ReplayServer, ws: ServerConnection, connection_id: int) -> None:
        self.server = server
        self.ws = ws
        self.id = connection_id
        address = ws.remote_address
        self.peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        self.feed = server.source.feed
        self.subs = Subscriptions(self.feed, server.source.products)
        self.data_sent = 0
        self.messages_sent = 0
        self.start_index: int | None = None
        self.state = "awaiting_subscribe"
        self._subscribed = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._seq = 0  # Advanced Trade sequence_num, per connection like the real feed
        self._last_trade_text: str | None = None
        self._last_text: str | None = None
        self._end = _EndState()
        self._closed: asyncio.Task[None] | None = None

    @property
    def faults(self) -> FaultState:
        return self.server.fault_state

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "peer": self.peer,
            "state": self.state,
            "start_index": self.start_index,
            "data_frames_sent": self.data_sent,
            "messages_sent": self.messages_sent,
            "subscriptions": {k: list(v) for k, v in self.subs.channels.items()},
        }

    async def run(self) -> None:
        self._closed = asyncio.ensure_future(self.ws.wait_closed())
        reader = asyncio.ensure_future(self._read_client())
        try:
            subscribed = asyncio.ensure_future(self._subscribed.wait())
            await asyncio.wait(
                {subscribed, self._closed}, timeout=self.server.subscribe_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            subscribed.cancel()
            if self._closed.done():
                return
            if not self._subscribed.is_set():
                await self._subscribe_timed_out()
                return
            await self._pause(self.server.subscribe_settle)  # let a multi-frame subscribe complete
            self.state = "streaming"
            await self._stream()
        except (_Gone, ConnectionClosed):
            pass
        finally:
            if self.state not in ("dropped", "subscribe_timeout"):  # keep the why
                self.state = "closed"
            reader.cancel()
            self._closed.cancel()

    # -- client frames ---------------------------------------------------------------------------

    async def _read_client(self) -> None:
        try:
            async for message in self.ws:
                try:
                    self.subs.apply(message)
                except SubscribeError as exc:
                    log.info("subscribe rejected", extra={"connection": self.id, "reason": exc.reason})
                    await self._send(exc.frame())
                    continue
                await self._send_ack()
                if self.subs:
                    self._subscribed.set()
        except ConnectionClosed:
            pass

    async def _subscribe_timed_out(self) -> None:
        seconds = self.server.subscribe_timeout
        reason = f"no subscribe message received within {seconds:g} seconds"
        log.info("subscribe timeout", extra={"connection": self.id})
        self.state = "subscribe_timeout"
        frame = orjson.dumps({"type": "error", "message": "Failed to subscribe", "reason": reason}).decode()
        try:
            await self._send(frame)
            await self.ws.close(1008, "subscribe timeout")
        except ConnectionClosed:
            pass

    async def _send_ack(self) -> None:
        if self.feed == "exchange":
            ack = self.subs.exchange_ack(self.server.source.ack_style.get("account_ids", True))
            await self._send(orjson.dumps(ack).decode())
            return
        envelope: dict[str, Any] = {"channel": "subscriptions"}
        if self.server.source.ack_style.get("client_id"):
            envelope["client_id"] = ""
        envelope["timestamp"] = _iso_nanos(self._now_ts())
        envelope["sequence_num"] = self._next_seq()
        envelope["events"] = [self.subs.advanced_trade_ack_event()]
        await self._send(orjson.dumps(envelope).decode())

    # -- the stream --------------------------------------------------------------------------------

    async def _stream(self) -> None:
        timeline = self.server.timeline
        start = timeline.position if self.server.on_connect == "resume" else 0
        self.start_index = start
        frames = timeline.open(start)
        log.info("streaming", extra={"connection": self.id, "start_index": start, "subscriptions": self.subs.channels})
        pacer = _Pacer(self.server.speed, self.server.max_gap)
        held: tuple[str, SourceFrame] | None = None  # a frame the reorder fault holds back
        next_index = start
        try:
            await self._resume_last_matches(start)
            await self._counted_faults()  # drop_after=0 etc.
            for count, frame in enumerate(frames, 1):
                next_index = frame.index + 1
                timeline.observe(frame)
                self._end.observe(frame)
                if count % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                text = self._select(frame)
                if text is None:
                    continue
                await pacer.wait(frame.ts, self._pause)
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
        except _Dropped:
            await self._drop(frames, next_index)
            return
        except (_Gone, ConnectionClosed):
            timeline.park(next_index, frames)
            raise
        timeline.done.set()
        self.state = "ended"
        log.info("recording ended", extra={"connection": self.id, "data_frames_sent": self.data_sent})
        if self.server.heartbeat_after_end:
            await self._heartbeats_after_end()
        else:
            await self._pause(math.inf)

    def _select(self, frame: SourceFrame) -> str | None:
        faults = self.faults.faults
        withheld = frozenset(
            t.trade_id for t in frame.trades if faults.skips_trades and faults.skip_trade(t.trade_id, t.ordinal)
        )
        selected = self.subs.select(frame, withheld)
        if self.feed == "exchange":
            return selected  # type: ignore[return-value]  # Exchange selection is always raw text
        if selected is None:
            if withheld and self.subs.select(frame) is not None:
                self._next_seq()  # the real feed numbered the frame we withhold: leave the gap
            return None
        if isinstance(selected, dict):
            selected["sequence_num"] = self._next_seq()
            return orjson.dumps(selected).decode()
        return _SEQUENCE_NUM.sub(f'"sequence_num":{self._next_seq()}', selected, count=1)

    async def _resume_last_matches(self, start: int) -> None:
        """A real Exchange subscribe to ``matches`` starts with one last_match per product; a
        resumed replay starts mid-recording, so it sends the latest match before its start as one."""
        if self.feed != "exchange" or start == 0 or "matches" not in self.subs.channels:
            return
        for product in self.subs.channels["matches"]:
            frame = self.server.timeline.last_match.get(product)
            if frame is not None:
                text = frame.raw.replace('"type":"match"', '"type":"last_match"', 1)
                await self._send_data(text, frame)

    async def _send_data(self, text: str, frame: SourceFrame) -> None:
        await self._send(text)
        self.data_sent += 1
        self.server.frames_sent += 1
        self._last_text = text
        if frame.trades:
            self._last_trade_text = text
        await self._counted_faults()

    async def _counted_faults(self) -> None:
        faults, n = self.faults.faults, self.data_sent
        if faults.malformed_after == n and self.faults.take("malformed_after", self.id):
            bad = self._malformed_frame(faults.malformed_kind)
            log.info("fault: malformed frame", extra={"connection": self.id, "after": n, "kind": faults.malformed_kind})
            await self._send(bad)
        if faults.stall_after == n and self.faults.take("stall_after", self.id):
            log.info("fault: stall", extra={"connection": self.id, "after": n, "seconds": faults.stall_seconds})
            self.state = "stalled"
            await self._pause(faults.stall_seconds)
            self.state = "streaming"
        if faults.drop_after == n and self.faults.take("drop_after", self.id):
            raise _Dropped()

    def _malformed_frame(self, kind: str) -> str:
        if kind == "bad_price" and self._last_trade_text:
            return _PRICE.sub('"price":"not-a-price"', self._last_trade_text, count=1)
        if kind in ("truncated", "bad_price") and self._last_text:
            return self._last_text[: max(1, len(self._last_text) // 2)]
        return "this is not JSON {"

    async def _drop(self, frames: Iterator[SourceFrame], next_index: int) -> None:
        faults = self.faults.faults
        timeline = self.server.timeline
        for frame in itertools.islice(frames, faults.drop_lose):
            timeline.observe(frame)  # lost to the client, not to the timeline (nor to REST)
            next_index = frame.index + 1
        timeline.park(next_index, frames)
        self.state = "dropped"
        log.info("fault: drop", extra={"connection": self.id, "after": self.data_sent, "lose": faults.drop_lose})
        if faults.drop_close_code is None:
            self.ws.transport.abort()
        else:
            await self.ws.close(faults.drop_close_code, "replay fault: drop")

    async def _heartbeats_after_end(self) -> None:
        interval = self.server.end_heartbeat_interval
        if interval is None:
            interval = 0.05 if self.server.speed is None else 1.0 / self.server.speed
        second = math.floor(self._end.last_ts) + 1
        while True:
            for text in self._end_heartbeats(second):
                await self._send(text)
                self.server.frames_sent += 1
            second += 1
            await self._pause(interval)

    def _end_heartbeats(self, second: int) -> list[str]:
        if self.feed == "exchange":
            return [
                orjson.dumps(
                    {
                        "type": "heartbeat",
                        "last_trade_id": self._end.last_trade_id.get(product, 0),
                        "product_id": product,
                        "sequence": self._end.sequence.get(product, 0),
                        "time": datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                    }
                ).decode()
                for product in self.subs.channels.get("heartbeat", ())
            ]
        if "heartbeats" not in self.subs.channels:
            return []
        self._end.heartbeat_counter += 1
        counter = self._end.heartbeat_counter
        stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S")
        envelope = {
            "channel": "heartbeats",
            "timestamp": _iso_nanos(second),
            "sequence_num": self._next_seq(),
            "events": [
                {"current_time": f"{stamp}.000000000 +0000 UTC m=+{counter}.000000000", "heartbeat_counter": counter}
            ],
        }
        return [orjson.dumps(envelope).decode()]

    # -- plumbing ----------------------------------------------------------------------------------

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            await self.ws.send(text)
        self.messages_sent += 1

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up (raising _Gone) as soon as the connection closes: a stalled or
        slow-paced session must not hold up the server's shutdown."""
        assert self._closed is not None
        if seconds <= 0:
            if self._closed.done():
                raise _Gone()
            return
        timeout = None if math.isinf(seconds) else seconds
        done, _ = await asyncio.wait({self._closed}, timeout=timeout)
        if done:
            raise _Gone()

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def _now_ts(self) -> float:
        """Recording time at the replay's current position (acks carry it, like the real feed's)."""
        return self._end.last_ts or self.server.source.start_ts or time.time()


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


def _iso_nanos(ts: float) -> str:
    """Advanced Trade style: 2026-08-09T21:05:48.228846629Z."""
    whole = math.floor(ts)
    nanos = int(round((ts - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"
