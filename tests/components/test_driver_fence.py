"""Two drivers on one checkpoint (issue 10, hole 10): the newest driver's claim fences the older
one out, on the real S3 server with the Spark job's own sink. The job itself with a second driver
is the fault suite's `driver-zombie` scenario (docs/reliability.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from candles_job.sink import write_batch
from cryptopipe.lake import fence
from cryptopipe.lake.layout import LakeLocation
from cryptopipe.lake.reader import read_candles
from tests.support.local_services import LAKE_BUCKET
from tests.support.synthetic_candles import candle_rows, candle_table

pytestmark = pytest.mark.components

START = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def table(first_minute: int, seed: int):
    rows = candle_rows("BTC-USD", START + timedelta(minutes=first_minute), 2, seed=seed)
    return candle_table(rows).sort_by([("product_id", "ascending"), ("window_start", "ascending")])


def test_a_superseded_driver_cannot_commit_and_its_successor_can(s3: Any) -> None:
    filesystem = s3.connection.arrow_filesystem()
    lake = LakeLocation(LAKE_BUCKET, f"fence-{uuid.uuid4().hex[:8]}")
    where = {"window": "1m", "generation": 1}

    def driver(token: str):
        fence.claim(filesystem, lake, token=token, claimed_us=1, **where)
        return lambda: fence.check(filesystem, lake, token=token, **where)

    old = driver("old")
    old()  # the only driver: it owns the window
    write_batch(table(0, 1), lake=lake, filesystem=filesystem, generation=1, batch_id=0, before_commit=old)

    new = driver("new")  # a successor on the same checkpoint (a resubmission)
    with pytest.raises(fence.FencedOut, match="claimed by new"):
        old()
    # the zombie's next batch, cut off after its files: no manifest, so the reader sees none of it
    with pytest.raises(fence.FencedOut):
        write_batch(table(2, 9), lake=lake, filesystem=filesystem, generation=1, batch_id=1, before_commit=old)
    assert read_candles(lake, filesystem, window="1m").num_rows == 2

    write_batch(table(2, 3), lake=lake, filesystem=filesystem, generation=1, batch_id=1, before_commit=new)
    got = read_candles(lake, filesystem, window="1m").to_pylist()
    assert len(got) == 4
    assert got[2:] == candle_rows("BTC-USD", START + timedelta(minutes=2), 2, seed=3)


def test_no_claim_at_all_is_fenced_out(s3: Any) -> None:
    filesystem = s3.connection.arrow_filesystem()
    lake = LakeLocation(LAKE_BUCKET, f"fence-{uuid.uuid4().hex[:8]}")
    with pytest.raises(fence.FencedOut, match="claimed by nobody"):
        fence.check(filesystem, lake, window="1m", generation=1, token="t")
