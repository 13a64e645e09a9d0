"""A batch becomes visible all at once, and complete-through says which windows are final (issue 10,
hole 8), on the real S3 server and the real job process.

A micro-batch writes one object per (window, product, date). The first test does what the sink does
up to a crash (or up to the moment a reader lists): k of n files of a batch are in the bucket, its
manifest is not. The project's reader must show none of them. The second runs the job and checks
that complete-through follows the watermark, so a minute without a candle before it is known to
have had no trade.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest

from cryptopipe.contracts import candle_arrow_schema
from cryptopipe.lake.layout import LakeLocation, utc_date
from cryptopipe.lake.reader import read_candles
from cryptopipe.pipeline import PipelineConfig
from tests.support.candle_job_process import JobRun, at, produce, rows_by_product, tick, trade, unique_name
from tests.support.local_services import LAKE_BUCKET
from tests.support.synthetic_candles import candle_rows, candle_table, write_candles

pytestmark = pytest.mark.components

START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
PRODUCTS = ("AAA-USD", "BBB-USD", "CCC-USD")


def batch_rows(first_minute: int) -> list[dict]:
    """Two candles for each of three products: a batch of three files."""
    rows = []
    for seed, product in enumerate(PRODUCTS, start=1):
        rows += candle_rows(product, START + timedelta(minutes=first_minute), 2, seed=seed)
    return rows


def write_files_without_manifest(rows: list[dict], *, lake: LakeLocation, filesystem, batch_id: int, k: int) -> int:
    """The first ``k`` of the batch's files, named and written exactly as the sink writes them, and
    nothing after them: where a batch is when a reader lists mid-write, or when the driver dies."""
    written = 0
    for product in sorted({r["product_id"] for r in rows})[:k]:
        part = [r for r in rows if r["product_id"] == product]
        path = lake.candle_file(
            window="1m", product_id=product, date=utc_date(part[0]["window_start"]), generation=1, batch_id=batch_id
        )
        pq.write_table(candle_table(part).select([f.name for f in candle_arrow_schema()]), path, filesystem=filesystem)
        written += 1
    return written


def duckdb_count(source: str) -> int:
    import duckdb

    return duckdb.sql(f"select count(*) from {source}").fetchall()[0][0]


def keys(table) -> list[tuple[str, datetime]]:
    return sorted((r["product_id"], r["window_start"]) for r in table.to_pylist())


def test_a_reader_sees_none_of_a_batch_until_its_manifest(s3: Any) -> None:
    lake = LakeLocation(LAKE_BUCKET, f"commits-{uuid.uuid4().hex[:8]}")
    filesystem = s3.connection.arrow_filesystem()
    first, second = batch_rows(0), batch_rows(2)
    write_candles(first, lake=lake, filesystem=filesystem, batch_id=0)
    assert keys(read_candles(lake, filesystem)) == keys(candle_table(first))

    # batch 1 has written 2 of its 3 files
    assert write_files_without_manifest(second, lake=lake, filesystem=filesystem, batch_id=1, k=2) == 2
    assert keys(read_candles(lake, filesystem)) == keys(candle_table(first)), "half of batch 1 is visible"
    for product in PRODUCTS:  # filters by product do not let it through either
        assert {r["window_start"] for r in read_candles(lake, filesystem, products=[product]).to_pylist()} == {
            START,
            START + timedelta(minutes=1),
        }

    # DuckDB given the committed file list sees batch 0 only; a glob over the folders sees more
    # (DuckDB reads the S3 server's folder directly: its httpfs extension would be a download)
    from cryptopipe.lake.reader import committed_paths

    local = [str(s3.root / path) for path in committed_paths(lake, filesystem)]
    assert duckdb_count(f"read_parquet({local!r})") == len(first)
    glob = f"read_parquet('{s3.root / lake.candles_root}/window=1m/*/*/*.parquet')"
    assert duckdb_count(glob) == len(first) + 4

    # the batch completes (as the replay after a crash does: same names, then the manifest)
    write_candles(second, lake=lake, filesystem=filesystem, batch_id=1)
    assert keys(read_candles(lake, filesystem)) == keys(candle_table(first + second))


def test_a_replayed_batch_overwrites_its_manifest(s3: Any) -> None:
    from cryptopipe.lake.commits import read_manifests
    from cryptopipe.lake.reader import committed_paths

    lake = LakeLocation(LAKE_BUCKET, f"commits-{uuid.uuid4().hex[:8]}")
    filesystem = s3.connection.arrow_filesystem()
    rows = batch_rows(0)
    write_candles(rows, lake=lake, filesystem=filesystem, batch_id=7)
    manifest = lake.manifest_file(window="1m", generation=1, batch_id=7, date=utc_date(START))
    with filesystem.open_input_stream(manifest) as stream:
        before = stream.read()
    write_candles(rows, lake=lake, filesystem=filesystem, batch_id=7)  # the replay
    with filesystem.open_input_stream(manifest) as stream:
        assert stream.read() == before
    (only,) = read_manifests(lake, filesystem, window="1m")
    assert (only["batch_id"], len(only["files"])) == (7, len(PRODUCTS))
    table = read_candles(lake, filesystem)
    assert table.num_rows == len(rows) and keys(table) == keys(candle_table(rows))
    assert len(committed_paths(lake, filesystem)) == len(PRODUCTS)


@pytest.mark.spark
def test_complete_through_follows_the_watermark(kafka: Any, s3: Any, tmp_path_factory) -> None:
    from cryptopipe.lake.commits import complete_through

    topic = unique_name("lake-commits")
    kafka.create_topic(topic, 1)
    config = PipelineConfig(topic=topic, prefix=topic, windows=("1m",), watermark="30s", trigger="1s")
    run = JobRun(kafka, s3, config, tmp_path_factory.mktemp("lake-commits")).start()
    lake = LakeLocation(config.bucket, config.prefix)
    filesystem = run.connection.arrow_filesystem()
    try:
        # trades at 10:00 and 10:02, none at 10:01
        produce(
            kafka,
            topic,
            [
                trade("GAP-USD", 1, "10", "1", "2026-11-26T10:00:05Z"),
                trade("GAP-USD", 2, "11", "1", "2026-11-26T10:02:05Z"),
                tick("GAP-USD", "2026-11-26T10:02:40Z"),
            ],
        )
        # a generous bound for the first wait: it includes the job's start on a busy machine
        run.wait_watermark("2026-11-26T10:02:10", timeout=600)
        first = complete_through(lake, filesystem, window="1m")
        assert first is not None and first >= at("2026-11-26T10:02:10Z")
        candles = rows_by_product(run.candles())["GAP-USD"]
        # every window ending by complete-through is in the lake; 10:01 ends before it and has no
        # candle: final, no trade (not "not written yet"); 10:02 ends after it: not final yet
        assert [c["window_start"] for c in candles] == [at("2026-11-26T10:00:00Z")]
        assert at("2026-11-26T10:02:00Z") <= first < at("2026-11-26T10:03:00Z")

        produce(kafka, topic, [tick("GAP-USD", "2026-11-26T10:04:00Z")])
        run.wait_watermark("2026-11-26T10:03:30")
        second = complete_through(lake, filesystem, window="1m")
        assert second is not None and second >= at("2026-11-26T10:03:30Z") > first
        candles = rows_by_product(run.candles())["GAP-USD"]
        assert [c["window_start"] for c in candles] == [at("2026-11-26T10:00:00Z"), at("2026-11-26T10:02:00Z")]
        assert all(c["window_end"] <= second for c in candles)
    finally:
        run.stop()


@pytest.mark.parametrize(
    ("through_ago_min", "says"),
    [(1, "QUIET-USD had no trades until then"), (30, "newer windows are not written yet"), (None, "may not be")],
)
def test_the_monitor_tells_no_trades_from_not_written_yet(s3: Any, through_ago_min: int | None, says: str) -> None:
    from cryptopipe.lake.commits import write_complete_through
    from cryptopipe.monitor.anomalies import Thresholds
    from cryptopipe.monitor.scan import scan_window

    lake = LakeLocation(LAKE_BUCKET, f"commits-{uuid.uuid4().hex[:8]}")
    filesystem = s3.connection.arrow_filesystem()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # QUIET-USD's newest candle ended 30 minutes ago: stale either way
    write_candles(candle_rows("QUIET-USD", now - timedelta(minutes=40), 10), lake=lake, filesystem=filesystem)
    if through_ago_min is not None:
        write_complete_through(
            filesystem,
            lake,
            window="1m",
            generation=1,
            batch_id=1,
            complete_through_us=int((now - timedelta(minutes=through_ago_min)).timestamp() * 1_000_000),
        )
    scan = scan_window(
        lake, filesystem, window="1m", start=now - timedelta(hours=1), end=now, now=now, thresholds=Thresholds()
    )
    (stale,) = [a for a in scan.anomalies if a.kind == "stale_product"]
    assert says in stale.message, stale.message
    if through_ago_min is None:
        assert scan.complete_through is None
    else:
        assert scan.complete_through == now - timedelta(minutes=through_ago_min)
