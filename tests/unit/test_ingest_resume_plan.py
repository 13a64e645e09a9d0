"""Where a restart resumes (ingest/resume.py): the resume points' encoding, and per product the
newest id and the pending holes from what the trades topic holds past the point."""

from __future__ import annotations

import pytest

from cryptopipe.ingest.resume import Resume, ResumePoint, decode_point, encode_point, holes, plan


def test_a_point_round_trips_and_a_bad_one_is_named() -> None:
    point = ResumePoint(trade_id=42, event_time_us=1_783_465_080_000_000, partition=2, offset=9001)
    key, value = encode_point("BTC-USD", point)
    assert key == b"BTC-USD" and decode_point(value) == point
    for bad, what in ((b"not json", "not JSON"), (b'{"v": 2}', "version"), (b'{"v": 1, "trade_id": "7"}', "integer")):
        with pytest.raises(ValueError, match=what):
            decode_point(bad)


def test_holes_are_the_contiguous_ranges_missing_after_the_point() -> None:
    assert holes(10, {11, 12, 15, 18}, 18) == ((13, 14), (16, 17))
    assert holes(10, set(), 12) == ((11, 12),)
    assert holes(10, {11}, 11) == ()


def test_each_product_resumes_after_its_newest_trade_with_the_holes_past_its_point() -> None:
    points = {
        "BTC-USD": ResumePoint(100, 5_000, 0, 7),
        "LTC-USD": ResumePoint(20, 1_000, 0, 3),  # quiet: nothing newer in the topic
    }
    seen = {"BTC-USD": {99: 4_000, 101: 6_000, 104: 9_000}, "ETH-USD": {7: 700, 9: 900}}
    assert plan(points, seen) == {
        # a failed delivery (102, 103) was pending at the crash while 104 was acknowledged
        "BTC-USD": Resume(104, 9_000, ((102, 103),), 5_000),
        "LTC-USD": Resume(20, 1_000, (), 1_000),
        # no point yet (first start with a state topic): after its newest trade, nothing pending
        "ETH-USD": Resume(9, 900, (), 900),
    }
