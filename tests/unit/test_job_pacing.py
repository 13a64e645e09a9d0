"""The candle job's batch pacing (candles_job/pacing.py): which trigger, Kafka gate and session conf
each setting gives. Whether Spark then closes windows right after the crossing batch is measured by
tests/components/test_job_close_on_watermark.py against a real Kafka and Spark."""

from __future__ import annotations

import pytest

from candles_job.pacing import POLL_MS, pacing
from candles_job.settings import parse_args

BASE = ["--kafka-bootstrap", "k:9092", "--s3-access-key", "a", "--s3-secret-key", "s", "--bucket", "lake"]


def test_the_default_closes_on_the_watermark_and_reads_data_once_per_trigger():
    settings = parse_args(BASE)
    assert settings.close_on_watermark is True
    plan = pacing(
        trigger=settings.trigger,
        available_now=settings.available_now,
        close_on_watermark=settings.close_on_watermark,
        max_offsets_per_trigger=settings.max_offsets_per_trigger,
    )
    # batches may start at any time (the closing one at once) ...
    assert plan.processing_time == "0 seconds"
    # ... but data batches wait for the trigger interval: the gate is never met by a count
    assert plan.source_options["maxTriggerDelay"] == "5000ms"
    assert int(plan.source_options["minOffsetsPerTrigger"]) > 10**15
    assert "maxOffsetsPerTrigger" not in plan.source_options
    assert plan.session_conf == {"spark.sql.streaming.pollingDelay": f"{POLL_MS}ms"}


def test_a_capped_batch_size_starts_a_full_batch_at_once():
    plan = pacing(trigger="10s", available_now=False, close_on_watermark=True, max_offsets_per_trigger=50_000)
    # Spark refuses minOffsetsPerTrigger > maxOffsetsPerTrigger; equal: a backlog is read back to back
    assert plan.source_options == {
        "maxOffsetsPerTrigger": "50000",
        "minOffsetsPerTrigger": "50000",
        "maxTriggerDelay": "10000ms",
    }


def test_off_is_sparks_processing_time_grid():
    plan = pacing(trigger="1m", available_now=False, close_on_watermark=False, max_offsets_per_trigger=None)
    assert plan.processing_time == "60 seconds"
    assert plan.source_options == {}
    assert plan.session_conf == {}


@pytest.mark.parametrize("close", [True, False])
def test_available_now_ignores_the_gate(close):
    plan = pacing(trigger="5s", available_now=True, close_on_watermark=close, max_offsets_per_trigger=7000)
    assert plan.processing_time is None  # availableNow
    # a gate would hold availableNow's batches back for the trigger interval each
    assert plan.source_options == {"maxOffsetsPerTrigger": "7000"}
    assert plan.session_conf == {}


def test_close_on_watermark_is_a_flag_and_an_env_setting(monkeypatch):
    assert parse_args([*BASE, "--close-on-watermark", "false"]).close_on_watermark is False
    monkeypatch.setenv("CRYPTOPIPE_JOB_CLOSE_ON_WATERMARK", "false")
    assert parse_args(BASE).close_on_watermark is False
