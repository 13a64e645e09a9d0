"""Load Coinbase WebSocket recordings into ``(ts, raw_frame)`` lists, and serve them as a FrameSource.

Formats understood (told apart by content, not by file name):

- replay rows (``shared/data/coinbase/derived/*.jsonl``): ``{"ts", "dir": "send"|"recv", "url"?, "data"}``;
- cryptofeed's JSONL (``COINBASE.jsonl.zst``, zstd or plain): ``{"t": "header"|"http"|"connect"|"send"|"recv", "ts", "data"}``;
- cryptofeed's text log (``COINBASE.ws.28.0``): ``URL <-> ts`` / ``URL <- ts: sent`` / ``ts: received``;
- raw frames, one JSON frame per line (``flashbook/live-btc-eth.ndjson``): ts from each frame's own
  ``time`` (Exchange) or ``timestamp`` (Advanced Trade), kept non-decreasing.
"""

from __future__ import annotations

import dataclasses
import heapq
import io
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from cryptopipe.contracts import ContractError, Feed, parse_time_us
from cryptopipe_dev.replay.source import (
    CONTROL_KINDS,
    SourceFrame,
    TradeBook,
    TradeRef,
    describe_frame,
    feed_of_frame,
    feed_of_url,
    number_trades,
)

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# cryptofeed text log: "wss://host <-> 1618677816.84" (connect), "wss://host <- 1618677817.02: {...}" (sent)
_LOG_CONNECT = re.compile(r"^(\S+) <-> ([0-9.]+)\s*$")
_LOG_SENT = re.compile(r"^(\S+) <- ([0-9.]+): (.*)$")
_LOG_RECV = re.compile(r"^([0-9]+(?:\.[0-9]+)?): (.*)$")


class RecordingError(ValueError):
    """A file is not a recording this module understands; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Recording:
    path: str
    feed: Feed
    frames: list[tuple[float, str]]  # received frames in recorded order
    sent: list[tuple[float, str]] = dataclasses.field(default_factory=list)  # what the recorder sent

    def __len__(self) -> int:
        return len(self.frames)


def load_recording(path: str | Path, feed: Feed | None = None) -> Recording:
    """Read any supported recording. ``feed`` overrides detection."""
    path = Path(path)
    text = _read_text(path)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise RecordingError(f"{path}: empty recording")
    first = lines[0].lstrip()
    if _LOG_CONNECT.match(first) or _LOG_SENT.match(first) or _LOG_RECV.match(first):
        return _load_ws_log(path, lines, feed)
    try:
        head = orjson.loads(first)
    except orjson.JSONDecodeError:
        raise RecordingError(f"{path}:1: neither JSON lines nor a cryptofeed text log") from None
    if isinstance(head, dict) and "dir" in head and "data" in head:
        return _load_rows(path, lines, feed)
    if isinstance(head, dict) and head.get("t") in ("header", "http", "connect", "send", "recv"):
        return _load_cryptofeed_jsonl(path, lines, feed)
    return _load_raw_frames(path, lines, feed)


def recording_products(recording: Recording) -> tuple[str, ...]:
    """Products named by the recording's frames (and by the acks it recorded), sorted."""
    return RecordingSource([recording]).products


def recording_trades(recording: Recording) -> dict[str, list[TradeRef]]:
    """The recording's unique trades by product, oldest first (snapshot and last_match repeats merged)."""
    book = RecordingSource([recording]).trade_book
    return {product: book.trades(product) for product in book.products()}


class RecordingSource:
    """One or more recordings of the same feed, merged by ts, as a FrameSource.

    Recorded ``subscriptions`` acks and ``error`` frames are not streamed: the server answers each
    client's own subscription instead; they only tell the ack style and the valid products.
    """

    def __init__(self, recordings: Sequence[Recording]) -> None:
        if not recordings:
            raise ValueError("no recordings given")
        feeds = {r.feed for r in recordings}
        if len(feeds) > 1:
            raise ValueError(f"recordings mix feeds {sorted(feeds)}: serve each feed from its own server")
        self.feed: Feed = recordings[0].feed
        self.names = tuple(r.path for r in recordings)
        described: list[list[SourceFrame]] = []
        acks: list[SourceFrame] = []
        for recording in recordings:
            frames = []
            running_ts = float("-inf")
            for ts, raw in recording.frames:
                running_ts = max(running_ts, ts)  # merge key must not go backwards within one file
                frame = describe_frame(raw, self.feed, running_ts)
                (acks if frame.kind in CONTROL_KINDS else frames).append(frame)
            described.append(frames)
        merged = heapq.merge(*described, key=lambda f: f.ts) if len(described) > 1 else described[0]
        self._frames = number_trades(merged)
        self.start_ts = self._frames[0].ts if self._frames else 0.0
        products: set[str] = set()
        for frame in self._frames:
            products.update(frame.products)
        for ack in acks:
            if ack.kind == "subscriptions":
                products.update(_ack_products(ack.raw))
        self.products: tuple[str, ...] = tuple(sorted(products))
        # Answer in the recording's style: Exchange acks grew "account_ids": null around 2022 (modern
        # when unknown); some Advanced Trade recordings carry "client_id": "" on every frame.
        self.ack_style = {
            "account_ids": any('"account_ids"' in a.raw for a in acks) if acks else True,
            "client_id": any('"client_id"' in f.raw for f in [*acks, *self._frames[:50]]),
        }
        self.trade_book = TradeBook(self.products)
        self.trade_book.add_frames(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def frame_count(self) -> int:
        return len(self._frames)

    def frames(self, start: int = 0) -> Iterator[SourceFrame]:
        return iter(self._frames[start:])

    @property
    def all_frames(self) -> list[SourceFrame]:
        return self._frames


def _ack_products(raw: str) -> set[str]:
    """Product ids named in a recorded subscriptions ack of either feed."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return set()
    found: set[str] = set()
    for channel in obj.get("channels") or ():  # Exchange
        if isinstance(channel, dict):
            found.update(p for p in channel.get("product_ids") or () if isinstance(p, str))
    for event in obj.get("events") or ():  # Advanced Trade
        subs = event.get("subscriptions") if isinstance(event, dict) else None
        for name, ids in (subs or {}).items():
            if name != "heartbeats":  # lists the literal "heartbeats", not a product
                found.update(p for p in ids or () if isinstance(p, str))
    return found


def _read_text(path: Path) -> str:
    with path.open("rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic == _ZSTD_MAGIC:
            import zstandard  # only zstd recordings need it

            with zstandard.ZstdDecompressor().stream_reader(f) as reader:
                return io.TextIOWrapper(reader, encoding="utf-8").read()
        return f.read().decode("utf-8")


def _detect_feed(path: Path, url: str | None, frames: list[tuple[float, str]], override: Feed | None) -> Feed:
    if override:
        return override
    if url and (feed := feed_of_url(url)):
        return feed
    for _, raw in frames:
        try:
            feed = feed_of_frame(orjson.loads(raw))
        except orjson.JSONDecodeError:
            continue
        if feed:
            return feed
    raise RecordingError(f"{path}: cannot tell the feed (no url, no frame with 'channel' or 'type')")


def _load_rows(path: Path, lines: list[str], feed: Feed | None) -> Recording:
    frames: list[tuple[float, str]] = []
    sent: list[tuple[float, str]] = []
    url = None
    for number, line in enumerate(lines, 1):
        row = _json_line(path, number, line)
        try:
            entry = (float(row["ts"]), str(row["data"]))
            direction = row["dir"]
        except (KeyError, TypeError, ValueError):
            raise RecordingError(f"{path}:{number}: a row needs ts, dir and data") from None
        url = url or row.get("url")
        (frames if direction == "recv" else sent).append(entry)
    return Recording(str(path), _detect_feed(path, url, frames, feed), frames, sent)


def _load_cryptofeed_jsonl(path: Path, lines: list[str], feed: Feed | None) -> Recording:
    frames: list[tuple[float, str]] = []
    sent: list[tuple[float, str]] = []
    url = None
    for number, line in enumerate(lines, 1):
        row = _json_line(path, number, line)
        kind = row.get("t")
        if kind == "connect":
            url = url or row.get("addr")
        elif kind in ("send", "recv"):
            (frames if kind == "recv" else sent).append((float(row["ts"]), str(row["data"])))
    return Recording(str(path), _detect_feed(path, url, frames, feed), frames, sent)


def _load_ws_log(path: Path, lines: list[str], feed: Feed | None) -> Recording:
    frames: list[tuple[float, str]] = []
    sent: list[tuple[float, str]] = []
    url = None
    for number, line in enumerate(lines, 1):
        if m := _LOG_CONNECT.match(line):
            url = url or m.group(1)
        elif m := _LOG_SENT.match(line):
            url = url or m.group(1)
            sent.append((float(m.group(2)), m.group(3)))
        elif m := _LOG_RECV.match(line):
            frames.append((float(m.group(1)), m.group(2)))
        else:
            raise RecordingError(f"{path}:{number}: not a line of a cryptofeed text log: {line[:80]!r}")
    return Recording(str(path), _detect_feed(path, url, frames, feed), frames, sent)


def _load_raw_frames(path: Path, lines: list[str], feed: Feed | None) -> Recording:
    times: list[float | None] = []
    for line in lines:
        times.append(_frame_time(line))
    known = [t for t in times if t is not None]
    if not known:
        raise RecordingError(f"{path}: no frame carries a time or timestamp to pace the replay by")
    frames: list[tuple[float, str]] = []
    running = known[0]  # frames before the first timed one (acks, book snapshots) take its time
    for t, line in zip(times, lines, strict=False):
        running = max(running, t) if t is not None else running
        frames.append((running, line))
    return Recording(str(path), _detect_feed(path, None, frames, feed), frames, [])


def _frame_time(line: str) -> float | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    stamp = obj.get("time") or obj.get("timestamp")
    try:
        return parse_time_us("time", stamp) / 1e6 if isinstance(stamp, str) else None
    except ContractError:
        return None


def _json_line(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RecordingError(f"{path}:{number}: not JSON: {exc}") from None
    if not isinstance(row, dict):
        raise RecordingError(f"{path}:{number}: not a JSON object")
    return row
