"""One asyncio lock per object, for handlers of the same object that kopf runs concurrently.

kopf serializes a CryptoPipeline's change handlers, but its timers run beside them: without a
lock the status timer could read the pipeline, let a reconcile of a newer generation write its
status, then write the older generation's status over it (observedGeneration going backwards).
The deletion handlers hold it too, so that a drift repair never re-creates a workload a deletion
is stopping. The lock covers one process; the status timer's write also carries a
resourceVersion precondition, which holds across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class ObjectLocks:
    """Locks by key (the object's uid), dropped when no one holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
