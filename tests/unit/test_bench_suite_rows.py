"""``make bench``'s table rows from each part's result: the targets of issue 12 applied to known
figures (met exactly at the bound, missed past it), the ratio's direction (times better than the
peer whatever the unit), and the chart drawn from them. No benchmark runs here."""

from __future__ import annotations

import json
from pathlib import Path

from cryptopipe_dev.bench import suite_rows
from cryptopipe_dev.bench.latency import LatencyResult, MemoryResult
from cryptopipe_dev.bench.procmem import MemorySample


def latency(latencies_s: list[float], expected: int) -> LatencyResult:
    return LatencyResult(
        products=("BTC-USD",), rate=20.0, poll_s=0.5, window="1m", watermark="30s", trigger="5s",
        latencies_s=sorted(latencies_s), expected=expected, warmup_s=60.0, skipped_warmup=0, connect_s=0.5,
        spark_ready_s=10.0, first_candle_s=40.0, stack_start_s=3.0, batch_mean_s=1.0, batches=10,
        trades_produced=100,
    )  # fmt: skip


def test_freshness_targets_are_watermark_plus_2_and_watermark_plus_trigger_plus_2() -> None:
    p50, p99, missing = suite_rows.freshness(latency([30.0, 32.0, 37.0], expected=3))
    assert (p50.target, p50.this, p50.met) == ("<= 32 s", "32.0 s", True)
    assert (p99.target, p99.this, p99.met) == ("<= 37 s", "37.0 s", True)
    assert missing.met is True and missing.this == "0"

    p50, p99, missing = suite_rows.freshness(latency([33.0, 38.0], expected=3))
    assert p50.met is False and p99.met is False
    assert missing.this == "1" and missing.met is False


def test_the_jobs_cpu_at_live_rate_is_reported_beside_the_freshness_without_a_target() -> None:
    result = latency([30.0, 32.0, 37.0], expected=3)
    result.job_cpu_s, result.feed_s = 66.0, 330.0
    cost = suite_rows.freshness(result)[-1]
    assert cost.this == "0.20" and cost.met is None and cost.target == ""
    assert "10 micro-batches in 330 s" in cost.figure
    # no CPU measured (an older result): no row
    assert len(suite_rows.freshness(latency([30.0], expected=1))) == 3


def test_no_candle_at_all_is_a_miss_not_a_pass() -> None:
    p50, p99, missing = suite_rows.freshness(latency([], expected=0))
    assert p50.met is False and p99.met is False and missing.met is False


def test_footprint_names_the_biggest_consumers_against_one_and_a_half_gib() -> None:
    mib = 1024
    samples = [
        MemorySample(0.0, {"spark JVM": 700 * mib, "kafka": 200 * mib, "ingestion": 50 * mib}),
        MemorySample(2.0, {"spark JVM": 900 * mib, "kafka": 300 * mib, "ingestion": 50 * mib}),
    ]
    (row,) = suite_rows.footprint(MemoryResult(samples, 2.0))
    assert row.this == "1.22 GiB" and row.met is True
    assert "spark JVM 900" in row.figure and "kafka 300" in row.figure
    (row,) = suite_rows.footprint(MemoryResult([MemorySample(0.0, {"spark JVM": 1600 * mib})], 2.0))
    assert row.met is False


def test_the_ratio_is_times_better_than_the_peer_whatever_the_unit() -> None:
    assert suite_rows._times_better(4.0, 2.0, higher_is_better=True) == 2.0  # rates
    assert suite_rows._times_better(0.5, 5.0, higher_is_better=False) == 10.0  # seconds, CPU, latency
    assert suite_rows.ratio_text(2.0) == "2.00x"
    assert suite_rows.ratio_text(164 / 490_591) == "1/2,991x"  # not a 0.00x that hides how far
    lake = {
        "median_s": {"today": 8.0, "ours": 0.5, "compacted": 0.1, "cli": 1.5},
        "days": 2, "products": 2, "files": 288, "startup_s": 1.0,
    }  # fmt: skip
    uncompacted, compacted, read, command = suite_rows.lake(lake)
    assert uncompacted.ratio == 16.0 and uncompacted.met is None
    assert compacted.ratio == 80.0 and compacted.target == ">= 10x" and compacted.met is True
    assert read.met is True and command.met is False


def test_the_table_has_every_column_and_the_chart_is_a_png(tmp_path: Path) -> None:
    rows = suite_rows.freshness(latency([31.0, 40.0], expected=2)) + [
        suite_rows.failed("catchup", RuntimeError("job exited 1"))
    ]
    text = suite_rows.table_text(rows)
    for header in suite_rows.HEADER:
        assert header in text
    assert "MISSED" in text and "met" in text and "job exited 1" in text
    written = suite_rows.write(rows, {}, tmp_path / "r.json", None)
    assert written == [tmp_path / "r.json", tmp_path / "r.png"]
    assert (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert suite_rows.from_json(json.loads((tmp_path / "r.json").read_text())) == rows
