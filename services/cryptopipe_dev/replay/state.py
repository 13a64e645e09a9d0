"""The replay's state, all on the server's event loop: the source, the timeline every connection
shares, the faults in force, the connections and what they sent. No sockets and no threads: the
server (server.py) feeds it connections, the control endpoints (api.py) read and change it.
"""

from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from cryptopipe.contracts import Feed
from cryptopipe_dev.replay.connection import Connection
from cryptopipe_dev.replay.dialect import FeedDialect
from cryptopipe_dev.replay.dialect_advanced_trade import AdvancedTradeDialect
from cryptopipe_dev.replay.dialect_exchange import ExchangeDialect
from cryptopipe_dev.replay.faults import Faults, FaultState
from cryptopipe_dev.replay.injector import FaultInjector
from cryptopipe_dev.replay.options import StreamOptions
from cryptopipe_dev.replay.session import Session, Tally
from cryptopipe_dev.replay.source import FrameSource
from cryptopipe_dev.replay.subscriptions import Subscriptions
from cryptopipe_dev.replay.timeline import Timeline

log = logging.getLogger("cryptopipe_dev.replay")

DIALECTS: dict[Feed, Callable[[Subscriptions, Mapping[str, bool]], FeedDialect]] = {
    "exchange": ExchangeDialect,
    "advanced_trade": AdvancedTradeDialect,
}
_KEEP_CLOSED_SESSIONS = 50  # enough history for a status page, bounded for an endless run


class ReplayState:
    def __init__(self, source: FrameSource, options: StreamOptions, faults: Faults) -> None:
        self.source = source
        self.options = options
        self.fault_state = FaultState(faults)
        self.timeline = Timeline(source)
        self.tally = Tally()
        self._ids = itertools.count(1)
        self._open: set[Session] = set()
        self._closed: collections.deque[Session] = collections.deque(maxlen=_KEEP_CLOSED_SESSIONS)

    def open_session(self, conn: Connection) -> Session:
        """A session for a new client, wired to the shared state; ``close_session`` it when it ends."""
        connection_id = next(self._ids)
        subs = Subscriptions(self.source.feed, self.source.products)
        session = Session(
            connection_id,
            conn,
            subs,
            DIALECTS[self.source.feed](subs, self.source.ack_style),
            timeline=self.timeline,
            faults=FaultInjector(self.fault_state, connection_id),
            options=self.options,
            tally=self.tally,
        )
        self._open.add(session)
        return session

    def close_session(self, session: Session) -> None:
        self._open.discard(session)
        self._closed.append(session)

    def status_now(self) -> dict[str, Any]:
        sessions = sorted([*self._closed, *self._open], key=lambda s: s.id)
        speed = self.options.speed
        return {
            "feed": self.source.feed,
            "products": list(self.source.products),
            "speed": speed if speed is not None else "max",
            "on_connect": self.options.on_connect,
            "frames_total": self.source.frame_count,
            "position": self.timeline.position,
            "done": self.timeline.done.is_set(),
            "frames_sent": self.tally.frames_sent,
            "connections_open": len(self._open),
            "connections": [s.info() for s in sessions],
            "faults": self.fault_state.faults.to_dict(),
            "faults_fired": dict(self.fault_state.fired),
        }

    def faults_now(self) -> Faults:
        return self.fault_state.faults

    def set_faults_now(self, faults: Faults) -> None:
        self.fault_state.arm(faults)
        log.info("faults set", extra={"faults": faults.to_dict()})

    def reset_now(self) -> None:
        self.timeline.reset()
        self.fault_state.arm(self.fault_state.faults)
        log.info("timeline reset")
