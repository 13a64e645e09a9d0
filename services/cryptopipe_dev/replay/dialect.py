"""What differs between the two Coinbase feeds a replay speaks, behind one protocol.

Coinbase Exchange (``matches`` + ``heartbeat``, dialect_exchange.py) sends recorded frames as they
are; Advanced Trade (``market_trades`` + ``heartbeats``, dialect_advanced_trade.py) numbers each
connection's frames and may cut an envelope down to the subscribed products. A session holds one
dialect instance for its connection and never asks which feed it speaks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from cryptopipe_dev.replay.source import SourceFrame


class FeedDialect(Protocol):
    def ack(self, now_ts: float) -> str:
        """The frame answering a (un)subscribe: every current subscription. ``now_ts``: recording
        time where the replay stands."""
        ...

    def select(self, frame: SourceFrame, withheld: frozenset[int]) -> str | None:
        """The text this client receives for ``frame``, or None; ``withheld``: trade ids a fault
        keeps off the stream."""
        ...

    def resumed(self, last_match: Mapping[str, SourceFrame]) -> Iterator[tuple[str, SourceFrame]]:
        """What a connection that starts mid-source sends first (text, the frame it stands for)."""
        ...

    def observe(self, frame: SourceFrame) -> None:
        """Every frame the stream passes, sent or not: what the heartbeats after its end continue."""
        ...

    def end_heartbeats(self, second: int) -> list[str]:
        """The heartbeat frames of recording second ``second``, after the source's end."""
        ...
