"""Closing on the watermark (candles_job/pacing.py), on the real job process, Kafka and S3 server.

Spark applies a watermark one batch after the batch that moved it; with a processing-time trigger
that next batch waits for the next slot of the trigger's grid. The job now runs it at once. The
trigger here is ten minutes: the grid would hold the candle back for up to ten minutes after the
batch that read the crossing trade, the job must write it right after that batch, in the very next
one, reading no new data. The same candle must come out exactly as before.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from cryptopipe.pipeline import PipelineConfig
from tests.support.candle_job_process import JobRun, at, produce, rows_by_product, trade, unique_name

pytestmark = [pytest.mark.components, pytest.mark.spark]

M = "2026-11-26T10:00"
TRIGGER = "10m"


def test_the_window_closes_in_the_batch_right_after_the_crossing_one(kafka, s3, tmp_path):
    topic = unique_name("close-on-wm")
    kafka.create_topic(topic, 2)
    config = PipelineConfig(
        topic=topic, prefix=topic, windows=("1m",), watermark="10s", trigger=TRIGGER, products=("CLS-USD",)
    )
    # all on the topic before the job starts, so its first batch reads them: the last trade, at
    # M+1:15, moves the watermark to M+1:05, past the end of minute M
    sent = produce(
        kafka,
        topic,
        [
            trade("CLS-USD", 1, "100", "1", f"{M}:05Z"),
            trade("CLS-USD", 2, "103", "2", f"{M}:20Z"),
            trade("CLS-USD", 3, "99", "1", f"{M}:40Z"),
            trade("CLS-USD", 4, "101", "1", "2026-11-26T10:01:15Z"),
        ],
    )
    run = JobRun(kafka, s3, config, tmp_path).start()
    try:
        run.wait_input(sent)
        # well inside the ten-minute trigger: the grid would not have run the next batch yet
        progress = run.wait(
            lambda p: (p.get("1m") or {}).get("candles_written", 0) >= 1 and p["1m"],
            "minute M's candle written",
            timeout=150,
        )
        candles = rows_by_product(run.candles())["CLS-USD"]
    finally:
        run.stop()

    assert [(c["window_start"], c["open"], c["high"], c["low"], c["close"], c["volume"], c["trade_count"])
            for c in candles] == [(at(f"{M}:00Z"), Decimal("100"), Decimal("103"), Decimal("99"), Decimal("99"),
                                   Decimal("4"), 3)]  # fmt: skip
    # batch 0 read the four trades and moved the watermark; batch 1, the next one, read nothing
    # new, applied the watermark and wrote the candle
    assert progress["last_written_batch_id"] == 1
    assert progress["input_rows"] == sent
    assert progress["watermark"] == "2026-11-26T10:01:05.000Z"
