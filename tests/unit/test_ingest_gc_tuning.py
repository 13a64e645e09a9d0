"""gc_tuning: the ingestion process's garbage-collector settings, applied and undone."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cryptopipe.ingest import gc_tuning

# CPython's own thresholds (gc.get_threshold() of a fresh interpreter): each test starts from them
PYTHON_DEFAULT_THRESHOLDS = (700, 10, 10)


@pytest.fixture(autouse=True)
def python_defaults() -> Iterator[None]:
    """Every test starts from Python's defaults and leaves them, whatever it asserted."""
    before = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(*PYTHON_DEFAULT_THRESHOLDS)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_apply_freezes_start_up_raises_gen0_and_restore_undoes_both() -> None:
    alive = _Cycle()  # start-up's objects: frozen
    state = gc_tuning.apply(20_000)
    try:
        assert gc.get_threshold() == (20_000, 10, 10), "the older generations keep Python's ratios"
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(alive)
        assert state == gc_tuning.GcState((700, 10, 10), froze=True)
    finally:
        gc_tuning.restore(state)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_start_up_garbage_is_collected_not_frozen() -> None:
    gc.disable()  # no automatic collection may free the cycle before apply() does
    try:
        garbage = _Cycle()
        del garbage
        state = gc_tuning.apply(5_000)
        frozen = gc.get_freeze_count()
        gc_tuning.restore(state)
        assert not any(isinstance(o, _Cycle) for o in gc.get_objects()), "a cycle of start-up was frozen"
        assert frozen > 0
    finally:
        gc.enable()


def test_zero_leaves_python_defaults_alone() -> None:
    state = gc_tuning.apply(0)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
    assert state == gc_tuning.GcState((700, 10, 10), froze=False)
    gc_tuning.restore(state)
    assert gc.get_threshold() == (700, 10, 10)


def test_restore_puts_back_whatever_was_there_before() -> None:
    gc.set_threshold(1_234, 5, 6)
    state = gc_tuning.apply(50_000)
    assert gc.get_threshold() == (50_000, 5, 6)
    gc_tuning.restore(state)
    assert gc.get_threshold() == (1_234, 5, 6)


def test_negative_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="gen0_threshold"):
        gc_tuning.apply(-1)
    assert gc.get_threshold() == (700, 10, 10)
