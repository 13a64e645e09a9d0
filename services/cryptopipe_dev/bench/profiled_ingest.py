"""``python -m cryptopipe.ingest`` under cProfile in every thread (the feed reads and produces on a
thread of its own, kafka-python sends on another; ``python -m cProfile`` sees only the main one).

    python -m cryptopipe_dev.bench.profiled_ingest OUT.prof

Each thread started after this module runs gets its own profiler; at exit their stats are merged
into OUT.prof (pstats format). Used by ``bench --peers --profile``.
"""

from __future__ import annotations

import atexit
import cProfile
import pstats
import sys
import threading
from types import FrameType
from typing import Any

_profilers: list[cProfile.Profile] = []


def _start_thread_profiler(frame: FrameType, event: str, arg: Any) -> None:
    sys.setprofile(None)
    profiler = cProfile.Profile()
    _profilers.append(profiler)
    profiler.enable()  # replaces this hook for the rest of the thread


def _dump(path: str) -> None:
    for profiler in _profilers:
        profiler.create_stats()  # disables it and snapshots its figures
    with_calls = [p for p in _profilers if p.stats]  # type: ignore[attr-defined]
    if with_calls:
        pstats.Stats(*with_calls).dump_stats(path)


def main() -> None:
    out = sys.argv[1]
    threading.setprofile(_start_thread_profiler)
    main_profiler = cProfile.Profile()
    _profilers.append(main_profiler)
    atexit.register(_dump, out)
    from cryptopipe.ingest.__main__ import main as ingest_main

    main_profiler.enable()
    code = ingest_main()
    raise SystemExit(code)


if __name__ == "__main__":
    main()
