"""Exactly once, proven by killing: the job SIGKILLed mid-stream (twice) and restarted from its
checkpoint leaves the lake equal to an uninterrupted run over the same topic, with no duplicates,
and both equal the independent reference."""

from __future__ import annotations

import signal
import time

import pytest

from cryptopipe.coinbase import parse_frame
from cryptopipe.contracts import Tick
from cryptopipe.pipeline import PipelineConfig
from cryptopipe_dev.reference import reference_candles
from cryptopipe_dev.replay import SyntheticConfig, synthetic_frames
from tests.support.candle_job_process import JobRun, produce, unique_name

pytestmark = [pytest.mark.components, pytest.mark.spark]


def synthetic_records(minutes: int):
    """~20 trades/s over ``minutes`` of market time, plus a heartbeat tick per product per second."""
    config = SyntheticConfig(products=("BTC-USD", "ETH-USD"), rate=20.0, duration=minutes * 60.0, seed=11)
    records = []
    for frame in synthetic_frames(config):
        # received when sent: a receive time far behind the event time would be rejected by the job
        # (event_time_ahead_of_receipt)
        result = parse_frame(frame.raw, "exchange", int(frame.ts * 1_000_000))
        assert result.error is None, result.error
        records += [*result.trades, *result.ticks]
    return records


def as_rows(table):
    return [{k: v for k, v in row.items() if k not in ("first_trade_id", "last_trade_id")} for row in table.to_pylist()]


def test_sigkill_and_restart_leaves_the_lake_equal_to_an_uninterrupted_run(kafka, s3, tmp_path):
    topic = unique_name("exactly-once")
    kafka.create_topic(topic, 1)
    records = synthetic_records(minutes=8)
    trades = [r for r in records if r.kind == "trade"]
    last = max(r.event_time_us for r in records)
    # heartbeat-like ticks two minutes past the last record: every window closes
    closing = [Tick(p, last + 120_000_000, last + 120_000_000, "exchange") for p in ("BTC-USD", "ETH-USD")]
    produce(kafka, topic, records + closing)
    watermark_target = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((last + 90_000_000) // 1_000_000))

    base = {"topic": topic, "windows": ("1m",), "watermark": "30s", "trigger": "1s"}
    uninterrupted = JobRun(kafka, s3, PipelineConfig(prefix=f"{topic}-a", **base), tmp_path).start()
    try:
        uninterrupted.wait_watermark(watermark_target, timeout=300)
        expected = uninterrupted.candles()
    finally:
        uninterrupted.stop()

    # small batches so that kills land between and inside many of them
    killed = JobRun(
        kafka,
        s3,
        PipelineConfig(prefix=f"{topic}-b", **base),
        tmp_path,
        extra_args=["--max-offsets-per-trigger", "700"],
    ).start()
    try:
        for after_batch in (3, 8):
            killed.wait(
                lambda p, n=after_batch: (p.get("1m") or {}).get("batch_id") is not None and p["1m"]["batch_id"] >= n,
                f"batch {after_batch}",
                timeout=300,
            )
            killed.process.kill(signal.SIGKILL)
            killed.process.wait(30)
            killed.start()  # same checkpoint, same lake prefix
        killed.wait_watermark(watermark_target, timeout=300)
        got = killed.candles()
    finally:
        killed.stop()

    assert got.num_rows == expected.num_rows > 8
    assert got.equals(expected)
    keys = [(r["product_id"], r["window_start"]) for r in got.to_pylist()]
    assert len(keys) == len(set(keys))
    # and both are right, by the independent reference
    reference = reference_candles({(t.product_id, t.trade_id): (t.event_time_us, t.price, t.size) for t in trades})
    assert as_rows(got) == reference
