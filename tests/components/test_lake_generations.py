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

import pyarrow.parquet as pq
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


# -- the job's generation at start (issue 11, point 4) ---------------------------------------------


def job_settings(s3: Any, prefix: str, *, handed: int, fingerprint: str | None, windows: str = "1m") -> Any:
    from candles_job.settings import parse_args

    return parse_args(
        ["--kafka-bootstrap", "unused:9092", "--bucket", LAKE_BUCKET, "--prefix", prefix, "--windows", windows]
        + ["--checkpoint-generation", str(handed), "--s3-endpoint", s3.endpoint]
        + (["--state-fingerprint", fingerprint] if fingerprint else [])
        + ["--s3-access-key", s3.access_key, "--s3-secret-key", s3.secret_key]
    )


def start(s3: Any, prefix: str, **kwargs: Any) -> Any:
    from candles_job.generation import start_generation

    settings = job_settings(s3, prefix, **kwargs)
    return start_generation(settings, settings.s3.arrow_filesystem(), now_us=1)


def test_a_lost_status_never_takes_the_job_back_to_a_stale_generation(s3: Any) -> None:
    from cryptopipe.lake.generations import read_generations

    prefix = f"generations-{uuid.uuid4().hex[:8]}"
    lake = LakeLocation(LAKE_BUCKET, prefix)
    filesystem = s3.connection.arrow_filesystem()
    # the operator's first run: generation 1 of fingerprint "aaa", recorded in the lake
    first = start(s3, prefix, handed=1, fingerprint="aaa")
    assert (first.settings.checkpoint_generation, first.first_window_us("1m")) == (1, None)
    # a windows change: the operator handed generation 2 ("bbb"); its 1m windows hand over at
    # generation 1's complete-through, rounded down to the minute
    through = int((START + timedelta(minutes=7, seconds=30)).timestamp() * 1e6)
    write_complete_through(filesystem, lake, window="1m", generation=1, batch_id=3, complete_through_us=through)
    second = start(s3, prefix, handed=2, fingerprint="bbb", windows="1m,5m")
    assert second.settings.checkpoint_generation == 2
    assert second.first_window_us("1m") == int((START + timedelta(minutes=7)).timestamp() * 1e6)
    assert second.first_window_us("5m") is None  # no older generation had 5m: from earliest
    assert second.kafka_starting_options("5m") == {"startingOffsets": "earliest"}
    assert second.kafka_starting_options("1m")["startingTimestamp"] == str(
        int((START + timedelta(minutes=7) - timedelta(minutes=2)).timestamp() * 1000)
    )

    # the pipeline deleted with Retain and created again: its status starts over at generation 1
    same_spec = start(s3, prefix, handed=1, fingerprint="bbb", windows="1m,5m")
    assert same_spec.settings.checkpoint_generation == 2, same_spec.resolution
    assert same_spec.record.first_window_us == second.record.first_window_us  # the record is write-once
    old_spec = start(s3, prefix, handed=1, fingerprint="aaa")  # generation 1's spec: stale, not resumed
    assert old_spec.settings.checkpoint_generation == 3, old_spec.resolution
    assert old_spec.first_window_us("1m") == second.first_window_us("1m")
    # and the operator's next bump from its lost status (2) does not go back either
    assert start(s3, prefix, handed=2, fingerprint="ccc").settings.checkpoint_generation == 4
    assert [(r.generation, r.fingerprint) for r in read_generations(lake, filesystem)] == [
        (1, "aaa"),
        (2, "bbb"),
        (3, "aaa"),
        (4, "ccc"),
    ]


def test_a_lake_from_before_records_resumes_as_handed_and_never_goes_back(s3: Any) -> None:
    prefix = f"generations-{uuid.uuid4().hex[:8]}"
    lake = LakeLocation(LAKE_BUCKET, prefix)
    filesystem = s3.connection.arrow_filesystem()
    with filesystem.open_output_stream(f"{lake.checkpoint_root(2)}/window=1m/offsets/0") as out:
        out.write(b"v1\n{}\n")  # what Spark left of generation 2, no record
    assert start(s3, prefix, handed=2, fingerprint="aaa").settings.checkpoint_generation == 2
    prefix2 = f"generations-{uuid.uuid4().hex[:8]}"
    lake2 = LakeLocation(LAKE_BUCKET, prefix2)
    with filesystem.open_output_stream(f"{lake2.checkpoint_root(2)}/window=1m/offsets/0") as out:
        out.write(b"v1\n{}\n")
    assert start(s3, prefix2, handed=1, fingerprint="aaa").settings.checkpoint_generation == 3


# -- the hand-over with the real job (issue 11, point 5) -------------------------------------------


def recent_minutes() -> Any:
    """t(m, s): an ISO time m minutes after the start of the hour two hours ago. Kafka keeps records
    by their timestamp, so the receive times the test stamps must be within the topic's retention."""
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)

    def t(m: int, second: int = 0) -> str:
        return (base + timedelta(minutes=m, seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")

    return t


@pytest.mark.spark
def test_a_new_generation_continues_where_the_old_one_is_final(kafka: Any, s3: Any, tmp_path_factory) -> None:
    """Generation 1 (1m) is final through minute 8 (written with the job's own sink, as its batches
    would be); the pipeline then adds 5m, a new generation, run by the real job. Its 1m query starts
    from Kafka record time (not earliest) and writes no minute generation 1 had final; its new 5m
    query reads from earliest. Before the hand-over, generation 2 wrote every minute again."""
    from cryptopipe.lake.commits import read_manifests
    from cryptopipe.pipeline import PipelineConfig
    from tests.support.candle_job_process import JobRun, at, produce, tick, trade, unique_name

    t = recent_minutes()
    topic = unique_name("generations")
    kafka.create_topic(topic, 1)
    trades = [trade("HAND-USD", 1 + m, str(100 + m), "1", t(m, 5)) for m in (*range(8), 9, 10)]
    produce(kafka, topic, [*trades, tick("HAND-USD", t(8, 40)), tick("HAND-USD", t(11, 40))], receipt_timestamps=True)
    lake = LakeLocation(LAKE_BUCKET, topic)
    filesystem = s3.connection.arrow_filesystem()
    old = candle_rows("HAND-USD", at(t(0)), 8, seed=3)  # generation 1's minutes 0-7
    write_candles(old, lake=lake, filesystem=filesystem, batch_id=0, generation=1)
    through = int(at(t(8, 10)).timestamp() * 1e6)
    write_complete_through(filesystem, lake, window="1m", generation=1, batch_id=0, complete_through_us=through)

    config = PipelineConfig(
        topic=topic, prefix=topic, windows=("1m", "5m"), watermark="30s", trigger="1s", checkpoint_generation=2
    )
    job = JobRun(kafka, s3, config, tmp_path_factory.mktemp("generations"), extra_args=["--state-fingerprint", "two"])
    job.start()
    try:
        # generous: the job's start on a busy machine
        progress = job.wait_watermark(t(11, 10).removesuffix("Z"), timeout=600)
    finally:
        job.stop()
    total = len(trades) + 2
    assert progress["5m"]["input_rows"] == total  # a new window size: from earliest
    assert progress["1m"]["input_rows"] < total  # from record time minute 6 (2 min before the cut)

    gen2_1m = {
        entry["path"]
        for m in read_manifests(lake, filesystem, window="1m")
        if m["generation"] == 2
        for entry in m["files"]
    }
    starts_by_gen2 = {
        row["window_start"]
        for path in gen2_1m
        for row in pq.read_table(f"{lake.candles_root}/{path}", filesystem=filesystem).to_pylist()
    }
    assert starts_by_gen2 == {at(t(9)), at(t(10))}, sorted(starts_by_gen2)
    one_minute = read_candles(lake, filesystem, window="1m").to_pylist()
    assert [r["window_start"] for r in one_minute] == [at(t(m)) for m in (*range(8), 9, 10)]
    assert [r["close"] for r in one_minute[:8]] == [r["close"] for r in old]  # generation 1's, kept
    five = read_candles(lake, filesystem, window="5m")
    assert [(r["window_start"], r["trade_count"]) for r in five.to_pylist()] == [(at(t(0)), 5), (at(t(5)), 4)]
