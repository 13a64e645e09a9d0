"""Coinbase Advanced Trade: every frame of a connection carries that connection's ``sequence_num``
(0, 1, 2, ...), so a frame the client does not get still leaves its gap when the real feed would
have numbered it; an envelope with unsubscribed products (or withheld trades) is cut down to the
rest; heartbeats count on from the recording's ``heartbeat_counter``."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from cryptopipe_dev.replay.source import SourceFrame
from cryptopipe_dev.replay.subscriptions import Subscriptions

_SEQUENCE_NUM = re.compile(r'"sequence_num":\s*-?\d+')
_HEARTBEAT_COUNTER = re.compile(r'"heartbeat_counter":\s*(\d+)')


class AdvancedTradeDialect:
    def __init__(self, subs: Subscriptions, ack_style: Mapping[str, bool]) -> None:
        self.subs = subs
        self.ack_style = ack_style
        self.heartbeat_counter = 0
        self._seq = 0

    def ack(self, now_ts: float) -> str:
        envelope: dict[str, Any] = {"channel": "subscriptions"}
        if self.ack_style.get("client_id"):
            envelope["client_id"] = ""
        envelope["timestamp"] = iso_nanos(now_ts)
        envelope["sequence_num"] = self._next_seq()
        envelope["events"] = [self.subs.advanced_trade_ack_event()]
        return orjson.dumps(envelope).decode()

    def select(self, frame: SourceFrame, withheld: frozenset[int]) -> str | None:
        selected = self.subs.select(frame, withheld)
        if selected is None:
            if withheld and self.subs.select(frame) is not None:
                self._next_seq()  # the real feed numbered the frame we withhold: leave the gap
            return None
        if isinstance(selected, dict):
            selected["sequence_num"] = self._next_seq()
            return orjson.dumps(selected).decode()
        return _SEQUENCE_NUM.sub(f'"sequence_num":{self._next_seq()}', selected, count=1)

    def resumed(self, last_match: Mapping[str, SourceFrame]) -> Iterator[tuple[str, SourceFrame]]:
        return iter(())  # market_trades has no last-trade frame on subscribe

    def observe(self, frame: SourceFrame) -> None:
        if frame.kind == "heartbeats" and (m := _HEARTBEAT_COUNTER.search(frame.raw)):
            self.heartbeat_counter = int(m.group(1))

    def end_heartbeats(self, second: int) -> list[str]:
        if "heartbeats" not in self.subs.channels:
            return []
        self.heartbeat_counter += 1
        counter = self.heartbeat_counter
        stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S")
        envelope = {
            "channel": "heartbeats",
            "timestamp": iso_nanos(second),
            "sequence_num": self._next_seq(),
            "events": [
                {"current_time": f"{stamp}.000000000 +0000 UTC m=+{counter}.000000000", "heartbeat_counter": counter}
            ],
        }
        return [orjson.dumps(envelope).decode()]

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq


def iso_nanos(ts: float) -> str:
    """Advanced Trade style: 2026-08-09T21:05:48.228846629Z."""
    whole = math.floor(ts)
    nanos = int(round((ts - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"
