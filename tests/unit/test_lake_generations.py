"""The pure rules of checkpoint generations in the lake (cryptopipe/lake/generations.py)."""

from __future__ import annotations

import pytest

from cryptopipe.lake.generations import GenerationRecord, handover_start_us, kafka_start_ms, resolve_generation

R = GenerationRecord


@pytest.mark.parametrize(
    ("given", "fingerprint", "records", "expected"),
    [
        (1, "a", [], 1),  # an empty lake: as handed
        (3, "b", [R(1, "a"), R(2, "a")], 3),  # the operator bumped: newer than the lake's newest
        (2, "a", [R(1, "x"), R(2, "a")], 2),  # as handed, same fingerprint: resumed
        (1, "a", [R(1, "x"), R(2, "a")], 2),  # status lost, same spec: the newest resumed
        (1, "x", [R(1, "x"), R(2, "a")], 3),  # status lost, generation 1's spec: never the stale 1
        (2, "b", [R(1, "x"), R(2, "a")], 3),  # the handed one holds another state: a new one
        (2, None, [R(2, None)], 2),  # the local stack (no fingerprint) resumes its own
        (2, "a", [R(2, None, recorded=False)], 2),  # a lake from before records: as handed
        (1, "a", [R(2, None, recorded=False)], 3),  # ... but never back below it
    ],
)
def test_resolve_generation(given: int, fingerprint: str | None, records: list, expected: int) -> None:
    assert resolve_generation(given, fingerprint, records).generation == expected


def test_handover_starts_at_the_window_holding_complete_through() -> None:
    minute = 60_000_000
    assert handover_start_us(None, 60) is None
    assert handover_start_us(7 * minute + 30_000_000, 60) == 7 * minute
    assert handover_start_us(7 * minute, 60) == 7 * minute  # window 7 ends after it: not final
    assert handover_start_us(7 * minute + 1, 300) == 5 * minute
    assert kafka_start_ms(7 * minute, 120) == 5 * 60_000
