"""Fault settings: validation, determinism and the trade book REST pages come from."""

from __future__ import annotations

import pytest

from cryptopipe_dev.replay.faults import Faults, FaultState
from cryptopipe_dev.replay.source import TradeBook, TradeRef


def test_unknown_or_invalid_settings_are_errors_not_silently_ignored():
    with pytest.raises(ValueError, match="drop_afer"):
        Faults.from_dict({"drop_afer": 3})
    with pytest.raises(ValueError, match="duplicate_rate"):
        Faults.from_dict({"duplicate_rate": 1.5})
    with pytest.raises(ValueError, match="malformed_kind"):
        Faults.from_dict({"malformed_kind": "weird"})
    with pytest.raises(ValueError, match="skip_every"):
        Faults.from_dict({"skip_every": 0})
    faults = Faults.from_dict({"skip_trade_ids": [3, 1], "drop_after": 2})
    assert faults.skip_trade_ids == frozenset({1, 3})
    assert Faults.from_dict(faults.to_dict()) == faults  # round trip through JSON form


def test_per_frame_decisions_depend_only_on_seed_and_index():
    a, b, c = (
        Faults(seed=7, duplicate_rate=0.2, reorder_rate=0.1),
        Faults(seed=7, duplicate_rate=0.2),
        Faults(seed=8, duplicate_rate=0.2),
    )
    dup_a = [i for i in range(10_000) if a.duplicate(i)]
    assert dup_a == [i for i in range(10_000) if b.duplicate(i)]
    assert dup_a != [i for i in range(10_000) if c.duplicate(i)]
    assert 1_800 < len(dup_a) < 2_200  # rate 0.2 of 10,000
    reordered = [i for i in range(10_000) if a.reorder(i)]
    assert 850 < len(reordered) < 1_150
    assert len(set(dup_a) & set(reordered)) < 400  # independent streams, not the same frames (~200 expected)
    assert not any(Faults().duplicate(i) or Faults().reorder(i) for i in range(1000))


def test_skip_every_kth_trade_counts_non_snapshot_ordinals():
    faults = Faults(skip_every=3, skip_trade_ids=frozenset({100}))
    assert [o for o in range(10) if faults.skip_trade(1, o)] == [2, 5, 8]
    assert not faults.skip_trade(1, -1)  # snapshot repeats have no ordinal
    assert faults.skip_trade(100, -1)


def test_counted_faults_fire_once_per_arming():
    state = FaultState(Faults(drop_after=5))
    assert state.take("drop_after", 1) and not state.take("drop_after", 2)
    assert state.fired == {"drop_after": 1}
    state.arm(Faults(drop_after=5))
    assert state.take("drop_after", 3)


def trade(trade_id: int) -> TradeRef:
    return TradeRef("BTC-USD", trade_id, "t", "1.00", "0.00000001", "buy")


def test_trade_book_pages_like_coinbase():
    book = TradeBook(["BTC-USD"])
    for trade_id in [5, 3, 4, 1, 2, 3]:  # out of order, with a repeat
        book.add(trade(trade_id))
    assert [t.trade_id for t in book.trades("BTC-USD")] == [1, 2, 3, 4, 5]
    ids = lambda page: [t.trade_id for t in page]  # noqa: E731
    assert ids(book.page("BTC-USD", 2)) == [5, 4]  # newest first
    assert ids(book.page("BTC-USD", 2, after=4)) == [3, 2]  # older than the cursor
    assert ids(book.page("BTC-USD", 10, after=1)) == []
    assert ids(book.page("BTC-USD", 2, before=1)) == [3, 2]  # the two just above the cursor, newest first
    assert ids(book.page("BTC-USD", 10, before=3)) == [5, 4]


def test_bounded_trade_book_keeps_the_newest():
    book = TradeBook(["BTC-USD"], capacity=10)
    for trade_id in range(1, 101):
        book.add(trade(trade_id))
    kept = [t.trade_id for t in book.trades("BTC-USD")]
    assert 10 <= len(kept) <= 20 and kept[-1] == 100 and kept == sorted(kept)


def test_pacer_spaces_frames_by_recorded_time_over_speed_with_gaps_capped():
    import asyncio

    from cryptopipe_dev.replay.session import _Pacer

    async def run() -> list[float]:
        pacer, delays = _Pacer(speed=2.0, max_gap=5.0), []

        async def record(seconds: float) -> None:  # no real sleeping: only what was asked for
            delays.append(seconds)

        for ts in [100.0, 101.0, 101.0, 103.0, 102.0, 113.0]:  # a step back, then a 10 s gap
            await pacer.wait(ts, record)
        return delays

    # Recording offsets 1, 1, 3, 3 (a step back adds nothing), 3 + min(10, 5) = 8, halved; each
    # frame is asked to wait for its own due time, as none of the waits really slept.
    assert asyncio.run(run()) == pytest.approx([0.5, 0.5, 1.5, 1.5, 4.0], abs=0.05)


def test_future_timestamp_ids_set_the_trade_time_ahead_of_the_wall_clock():
    import time as _time

    import orjson

    from cryptopipe.contracts import parse_time_us
    from cryptopipe_dev.replay.injector import FaultInjector
    from cryptopipe_dev.replay.source import SourceFrame

    faults = Faults.from_dict({"future_timestamp_ids": [7]})
    assert Faults.from_dict(faults.to_dict()) == faults and faults.future_timestamp_s == 86_400
    injector = FaultInjector(FaultState(faults), 1)
    raw = '{"type":"match","trade_id":7,"product_id":"BTC-USD","time":"2021-01-01T00:00:00.000000Z"}'
    frame = SourceFrame(
        0, 0.0, raw, "match", ("BTC-USD",), (TradeRef("BTC-USD", 7, "2021-01-01T00:00:00.000000Z", "1", "1", "buy"),)
    )
    ahead_s = parse_time_us("time", orjson.loads(injector.retimed(raw, frame))["time"]) / 1e6 - _time.time()
    assert 86_300 < ahead_s <= 86_400
    other = SourceFrame(
        1,
        0.0,
        raw.replace(":7,", ":8,"),
        "match",
        ("BTC-USD",),
        (TradeRef("BTC-USD", 8, "2021-01-01T00:00:00.000000Z", "1", "1", "buy"),),
    )
    assert injector.retimed(other.raw, other) == other.raw  # untouched, byte for byte
