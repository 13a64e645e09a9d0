"""Fault injection for the replay server: what can go wrong on a Coinbase connection, on demand.

Counted faults (``drop_after``, ``stall_after``, ``malformed_after``, ``error_after``) fire once per arming: when a
connection has sent N data frames (acks and error frames are not counted). Setting faults again
(Python API or ``POST /_replay/faults``) re-arms them. Reconnecting clients are therefore not
dropped again and again.

Per-frame faults (duplicate, reorder, skip) are decided from (seed, source frame index) alone, so a
run is reproducible whatever the pacing, and a frame's fate does not depend on which connection
happened to send it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

MalformedKind = Literal["truncated", "garbage", "bad_price"]
_MALFORMED_KINDS = ("truncated", "garbage", "bad_price")
_MASK64 = (1 << 64) - 1


@dataclasses.dataclass(frozen=True)
class Faults:
    seed: int = 0
    # Close the connection after N data frames. drop_close_code None: abort the TCP connection
    # without a close frame (what a network failure looks like); else a close frame with that code.
    drop_after: int | None = None
    drop_close_code: int | None = None
    # The next connection (on_connect="resume") starts this many source frames later: they are
    # lost for the WebSocket client, as frames sent while it was away are, but stay on REST.
    drop_lose: int = 0
    # Stop sending for stall_seconds after N data frames; the socket stays open and keeps
    # answering pings (a silent feed, not a dead one).
    stall_after: int | None = None
    stall_seconds: float = 0.0
    # After N data frames insert one malformed frame (nothing is replaced, so no data is lost):
    # "truncated" = first half of the frame just sent, "garbage" = not JSON, "bad_price" = a copy
    # of the last trade frame sent with an unparseable price.
    malformed_after: int | None = None
    malformed_kind: MalformedKind = "truncated"
    # After N data frames send one error frame, as Coinbase does ({"type": "error", "message": ...});
    # nothing is replaced and the stream goes on (the client decides whether to reconnect).
    error_after: int | None = None
    error_message: str = "Failed to process request"
    duplicate_rate: float = 0.0  # probability a data frame is sent twice in a row
    reorder_rate: float = 0.0  # probability a data frame is held back and sent after the next one
    # Withheld from the WebSocket stream (still served over REST): these trade ids, and every
    # k-th non-snapshot trade of the source (ordinals k-1, 2k-1, ...).
    skip_trade_ids: frozenset[int] = frozenset()
    skip_every: int | None = None
    # REST: these trade ids are missing from the REST history too (a trade that can never be
    # backfilled: combine with skip_trade_ids), and every REST answer waits rest_delay_s first
    # (a slow REST endpoint: the backfill arrives after later live trades).
    rest_missing_ids: frozenset[int] = frozenset()
    rest_delay_s: float = 0.0
    # Sent with a wild clock: these trade ids go out on the WebSocket with their "time" set to the
    # server's wall clock plus future_timestamp_s (a day by default), however old the recording;
    # REST still serves them with their recorded time.
    future_timestamp_ids: frozenset[int] = frozenset()
    future_timestamp_s: float = 86_400.0

    def __post_init__(self) -> None:
        for name in ("drop_after", "stall_after", "malformed_after", "error_after", "skip_every"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < (1 if name == "skip_every" else 0)):
                raise ValueError(f"{name} must be a non-negative integer (skip_every >= 1): {value!r}")
        for name in ("duplicate_rate", "reorder_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1: {getattr(self, name)!r}")
        if self.malformed_kind not in _MALFORMED_KINDS:
            raise ValueError(f"malformed_kind must be one of {_MALFORMED_KINDS}: {self.malformed_kind!r}")
        if self.stall_seconds < 0 or self.drop_lose < 0 or self.rest_delay_s < 0:
            raise ValueError("stall_seconds, drop_lose and rest_delay_s must be >= 0")
        object.__setattr__(self, "skip_trade_ids", frozenset(int(i) for i in self.skip_trade_ids))
        object.__setattr__(self, "rest_missing_ids", frozenset(int(i) for i in self.rest_missing_ids))
        object.__setattr__(self, "future_timestamp_ids", frozenset(int(i) for i in self.future_timestamp_ids))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        """From JSON (the control endpoint, the CLI). Unknown keys are an error, not ignored:
        a typo must not silently turn a fault test into a clean run."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["skip_trade_ids"] = sorted(self.skip_trade_ids)
        out["rest_missing_ids"] = sorted(self.rest_missing_ids)
        out["future_timestamp_ids"] = sorted(self.future_timestamp_ids)
        return out

    @property
    def skips_trades(self) -> bool:
        return bool(self.skip_trade_ids) or self.skip_every is not None

    def skip_trade(self, trade_id: int, ordinal: int) -> bool:
        if trade_id in self.skip_trade_ids:
            return True
        return self.skip_every is not None and ordinal >= 0 and (ordinal + 1) % self.skip_every == 0

    def duplicate(self, index: int) -> bool:
        return self.duplicate_rate > 0 and _unit(self.seed, 1, index) < self.duplicate_rate

    def reorder(self, index: int) -> bool:
        return self.reorder_rate > 0 and _unit(self.seed, 2, index) < self.reorder_rate


class FaultState:
    """The faults in force plus which counted faults already fired since they were armed."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.arm(faults or Faults())

    def arm(self, faults: Faults) -> None:
        self.faults = faults
        self.fired: dict[str, int] = {}  # fault setting ("drop_after", ...) -> connection id it fired on

    def take(self, name: str, connection_id: int) -> bool:
        """True exactly once per arming: the caller fires the fault."""
        if name in self.fired:
            return False
        self.fired[name] = connection_id
        return True


def _unit(seed: int, salt: int, index: int) -> float:
    """A uniform [0, 1) number from (seed, salt, index) by splitmix64: stateless, so reproducible
    whichever connection asks, and ~10x cheaper than seeding a Random per frame."""
    z = (seed * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9 + index + 1) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)
