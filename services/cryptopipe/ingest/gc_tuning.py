"""The ingestion process's settings of Python's cyclic garbage collector (``gc_gen0_threshold``).

Every trade allocates short-lived container objects (the parsed dicts and tuples, kafka-python's
futures and records): with Python's default gen0 threshold (700) a young collection runs every
few hundred trades, and every tenth of those also scans generation 1, every hundredth the whole
heap, start-up's immortal objects (imported modules, their functions and classes) included.
Both are pure overhead here: nearly everything a trade allocates is freed by reference counting.

Measured (the benchmark's in-process hot path, kafka-python, 100k trades a run, the time spent in
collections read with gc.callbacks): with Python's defaults ~900 gen0, ~80 gen1 and 7 full
collections a run, 8.7 µs per trade (gen0 2.6, gen1 0.6, full 5.4; on a machine also busy with a
build, so ~2-3x a quiet one's). Freezing alone takes the full collections to 0.08 µs; a gen0
threshold of 20,000 alone leaves 3-4 gen0 collections a run, 0.01 µs a trade: what is alive at any
time (the records kafka-python holds in flight) stays below 20,000 containers. 100,000 measured the
same as 20,000; the higher the threshold, the more cyclic garbage may wait for a collection.

``apply`` therefore, once start-up is done: frees the cyclic garbage start-up left (one full
collection), freezes what remains (``gc.freeze()``: the permanent generation, never scanned
again), and raises the gen0 threshold, keeping Python's ratios for the older generations. It
returns the previous state, which ``restore`` puts back (the benchmark runs the service's hot
path and then a bare client, which must run with Python's defaults).
"""

from __future__ import annotations

import dataclasses
import gc


@dataclasses.dataclass(frozen=True)
class GcState:
    """What ``apply`` changed: the thresholds before it, and whether it froze the heap."""

    thresholds: tuple[int, int, int]
    froze: bool


def apply(gen0_threshold: int) -> GcState:
    """Freeze what is alive now and set the gen0 threshold to ``gen0_threshold``; 0 leaves the
    collector as it is (Python's defaults). Returns the state for ``restore``."""
    if gen0_threshold < 0:
        raise ValueError(f"gen0_threshold must be >= 0, not {gen0_threshold}")
    before = gc.get_threshold()
    state = GcState((before[0], before[1], before[2]), froze=False)
    if gen0_threshold == 0:
        return state
    gc.collect()  # start-up's cyclic garbage is freed, not frozen for good
    gc.freeze()
    gc.set_threshold(gen0_threshold, before[1], before[2])
    return dataclasses.replace(state, froze=True)


def restore(state: GcState) -> None:
    """Undo ``apply``: the previous thresholds; the frozen objects back in the oldest generation
    (``gc.unfreeze`` releases every frozen object: nothing else in these processes freezes)."""
    gc.set_threshold(*state.thresholds)
    if state.froze:
        gc.unfreeze()
