"""How the replay server paces, opens and ends every connection's stream: fixed for the server's life."""

from __future__ import annotations

import dataclasses
from typing import Literal

# "resume": a new connection continues where the replay stands (as reconnecting to the live feed
# does); "restart": every connection replays the source from its first frame.
OnConnect = Literal["resume", "restart"]


def parse_speed(speed: float | str | None) -> float | None:
    """``"max"``/None -> None (as fast as the client reads); else a positive factor (1 = real time)."""
    if speed is None or (isinstance(speed, str) and speed.strip().lower() == "max"):
        return None
    value = float(speed)
    if not value > 0:
        raise ValueError(f"speed must be 'max' or a positive number: {speed!r}")
    return value


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    speed: float | None = None  # None: as fast as the client reads
    max_gap: float | None = None  # cap on a pause between frames, in recording seconds
    subscribe_timeout: float = 5.0
    subscribe_settle: float = 0.05  # wait after the first subscribe for the rest (AT sends one per channel)
    on_connect: OnConnect = "resume"
    heartbeat_after_end: bool = False
    end_heartbeat_interval: float | None = None  # real seconds per heartbeat second; None: 1/speed, 0.05 at max

    @property
    def heartbeat_interval(self) -> float:
        """Real seconds between the heartbeats sent after the end."""
        if self.end_heartbeat_interval is not None:
            return self.end_heartbeat_interval
        return 0.05 if self.speed is None else 1.0 / self.speed
