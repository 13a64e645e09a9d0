"""The faults as one connection meets them: which trades it withholds and which counted fault is
due after its n-th data frame, with the malformed frame to send. It decides; the session acts
(sends, pauses, drops), so what a fault does is readable apart from how a stream is sent.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from cryptopipe_dev.replay.faults import Faults, FaultState
from cryptopipe_dev.replay.source import SourceFrame

_PRICE = re.compile(r'"price":\s*"[^"]*"')


@dataclasses.dataclass(frozen=True)
class SendMalformed:
    """A frame that is not data: malformed (kind truncated, garbage, bad_price) or an error frame."""

    text: str
    kind: str


@dataclasses.dataclass(frozen=True)
class Stall:
    seconds: float


@dataclasses.dataclass(frozen=True)
class Drop:
    lose: int  # source frames the next (resuming) connection will not get
    close_code: int | None  # None: abort without a close frame


CountedFault = SendMalformed | Stall | Drop


class FaultInjector:
    def __init__(self, state: FaultState, connection_id: int) -> None:
        self.state = state
        self.connection_id = connection_id
        self._last_text: str | None = None
        self._last_trade_text: str | None = None

    @property
    def faults(self) -> Faults:
        """The faults in force now (the control endpoint may replace them at any await)."""
        return self.state.faults

    def withheld(self, frame: SourceFrame) -> frozenset[int]:
        faults = self.faults
        return frozenset(
            t.trade_id for t in frame.trades if faults.skips_trades and faults.skip_trade(t.trade_id, t.ordinal)
        )

    def retimed(self, text: str, frame: SourceFrame) -> str:
        """``text`` with the "time" of each ``future_timestamp_ids`` trade set ahead of the wall clock."""
        faults = self.faults
        ids = faults.future_timestamp_ids
        if not ids or not any(t.trade_id in ids for t in frame.trades):
            return text
        wild = datetime.fromtimestamp(time.time() + faults.future_timestamp_s, UTC)
        data = orjson.loads(text)
        _retime(data, ids, wild.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        return orjson.dumps(data).decode()

    def sent(self, text: str, frame: SourceFrame) -> None:
        """A data frame went out: what a malformed frame copies."""
        self._last_text = text
        if frame.trades:
            self._last_trade_text = text

    def due(self, data_sent: int) -> Iterator[CountedFault]:
        """The counted faults that fire after ``data_sent`` data frames, in order. Lazy: each is taken
        (fired for this arming) only when the caller has acted on the one before, so a client gone
        during a malformed frame leaves the stall armed for the next connection."""
        faults = self.faults
        if faults.malformed_after == data_sent and self.state.take("malformed_after", self.connection_id):
            yield SendMalformed(self._malformed_frame(faults.malformed_kind), faults.malformed_kind)
        if faults.error_after == data_sent and self.state.take("error_after", self.connection_id):
            error = {"type": "error", "message": faults.error_message, "reason": "injected by the replay server"}
            yield SendMalformed(json.dumps(error), "error_frame")
        if faults.stall_after == data_sent and self.state.take("stall_after", self.connection_id):
            yield Stall(faults.stall_seconds)
        if faults.drop_after == data_sent and self.state.take("drop_after", self.connection_id):
            yield Drop(faults.drop_lose, faults.drop_close_code)

    def _malformed_frame(self, kind: str) -> str:
        if kind == "bad_price" and self._last_trade_text:
            return _PRICE.sub('"price":"not-a-price"', self._last_trade_text, count=1)
        if kind in ("truncated", "bad_price") and self._last_text:
            return self._last_text[: max(1, len(self._last_text) // 2)]
        return "this is not JSON {"


def _retime(node: Any, ids: frozenset[int], when: str) -> None:
    """Set "time" on every trade object (Exchange match, Advanced Trade trade) whose id is in ``ids``."""
    if isinstance(node, dict):
        trade_id = node.get("trade_id")
        if "time" in node and trade_id is not None and str(trade_id).isdigit() and int(trade_id) in ids:
            node["time"] = when
        for value in node.values():
            _retime(value, ids, when)
    elif isinstance(node, list):
        for value in node:
            _retime(value, ids, when)
