"""Two checkpoint generations overlapping in the lake (issue 11, point 5), on the real S3 server: a
new generation re-wrote windows the old one had written, and the reader still returns exactly one
candle per (product, window, start), the newest generation's, before and after compaction.

The lake is written with the job's own sink (candles_job.sink.write_batch); the new generation's
candles of the overlap carry other prices, so the test sees which one the reader kept.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cryptopipe.lake import compaction
from cryptopipe.lake.commits import write_complete_through
from cryptopipe.lake.layout import LakeLocation
from cryptopipe.lake.reader import read_candles
from tests.support.local_services import LAKE_BUCKET
from tests.support.synthetic_candles import candle_rows, shift_prices, write_candles

pytestmark = pytest.mark.components

START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
PRODUCTS = ("AAA-USD", "BBB-USD")


def rows(first_minute: int, count: int, *, shifted: bool) -> list[dict]:
    out: list[dict] = []
    for seed, product in enumerate(PRODUCTS, start=1):
        part = candle_rows(product, START + timedelta(minutes=first_minute), count, seed=seed)
        if shifted:
            shift_prices(part, "1.5")
        out += part
    return out


def closes(table) -> dict[tuple[str, datetime], object]:
    found: dict[tuple[str, datetime], object] = {}
    for row in table.to_pylist():
        key = (row["product_id"], row["window_start"])
        assert key not in found, f"two candles of {key}"
        found[key] = row["close"]
    return found


def expected(old: list[dict], new: list[dict]) -> dict[tuple[str, datetime], object]:
    out = {(r["product_id"], r["window_start"]): r["close"] for r in old}
    out |= {(r["product_id"], r["window_start"]): r["close"] for r in new}  # the newer generation wins
    return out


def test_the_newest_generation_wins_where_two_overlap(s3: Any) -> None:
    lake = LakeLocation(LAKE_BUCKET, f"generations-{uuid.uuid4().hex[:8]}")
    filesystem = s3.connection.arrow_filesystem()
    old = rows(0, 6, shifted=False)  # generation 1: minutes 0-5
    new = rows(3, 6, shifted=True)  # generation 2 re-read minutes 3-5 and went on to 8, other prices
    write_candles(old[: len(old) // 2], lake=lake, filesystem=filesystem, batch_id=0, generation=1)
    write_candles(old[len(old) // 2 :], lake=lake, filesystem=filesystem, batch_id=1, generation=1)
    # generation 2's batch ids start at 0 again: other names (part-g0002-b0000000000)
    write_candles(new, lake=lake, filesystem=filesystem, batch_id=0, generation=2)
    want = expected(old, new)
    assert len(want) == 9 * len(PRODUCTS)

    assert closes(read_candles(lake, filesystem)) == want
    only_aaa = {k: v for k, v in want.items() if k[0] == "AAA-USD"}
    assert closes(read_candles(lake, filesystem, products=["AAA-USD"])) == only_aaa
    window = {k: v for k, v in want.items() if START + timedelta(minutes=2) <= k[1] < START + timedelta(minutes=5)}
    got = read_candles(lake, filesystem, start=START + timedelta(minutes=2), end=START + timedelta(minutes=5))
    assert closes(got) == window

    # compaction merges both generations' files of the day into one, keeping the newest candle
    day_end = START.replace(hour=0) + timedelta(days=1, minutes=1)
    write_complete_through(
        filesystem, lake, window="1m", generation=2, batch_id=9, complete_through_us=int(day_end.timestamp() * 1e6)
    )
    results = compaction.compact_day(lake, filesystem, window="1m", date="2026-11-26")
    assert {r.action for r in results} == {"compacted"}
    assert closes(read_candles(lake, filesystem)) == want

    # a third generation overlapping the compacted file still wins over it
    third = rows(7, 3, shifted=False)
    shift_prices(third, "2")
    write_candles(third, lake=lake, filesystem=filesystem, batch_id=0, generation=3)
    assert closes(read_candles(lake, filesystem)) == want | expected([], third)
