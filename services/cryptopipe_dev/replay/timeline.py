"""Where the replay stands, shared by every connection.

``on_connect="resume"`` makes a new connection continue from ``position`` (a drop with
``drop_lose`` loses the frames in between), ``"restart"`` from the source's first frame.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from cryptopipe_dev.replay.source import FrameSource, SourceFrame


class Timeline:
    """All access from the server's loop, except ``done`` (a thread-safe event tests wait on)."""

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
