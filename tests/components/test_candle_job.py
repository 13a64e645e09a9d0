"""The candle job's streaming semantics, on the real job process, Kafka and S3 server.

One job run covers several scenarios, each on its own product id so they cannot interfere:
records go in over several micro-batches, the watermark is then moved by ticks alone, and the
lake is read back. Expected values are written out by hand.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from cryptopipe.pipeline import PipelineConfig
from tests.support.candle_job_process import JobRun, at, produce, rows_by_product, tick, trade, unique_name

pytestmark = [pytest.mark.components, pytest.mark.spark]

M = "2026-11-26T10:00"  # the minute most scenarios trade in
WATERMARK = "30s"


@pytest.fixture(scope="module")
def job_scenarios(kafka, s3, tmp_path_factory):
    topic = unique_name("job-semantics")
    kafka.create_topic(topic, 2)
    config = PipelineConfig(
        topic=topic, prefix=topic, windows=("1m",), watermark=WATERMARK, trigger="1s", products=("OOO-USD",)
    )
    run = JobRun(kafka, s3, config, tmp_path_factory.mktemp("job-semantics")).start()
    observed = {"prefix": config.prefix}
    try:
        # batch A: the newest trade of OOO-USD first, so the watermark moves to M:10
        sent = produce(kafka, topic, [trade("OOO-USD", 4, "104", "1", f"{M}:40Z")])
        run.wait_input(sent)
        # batch B: older trades, still within the watermark (>= M:10); duplicates; boundary; ties
        sent += produce(
            kafka,
            topic,
            [
                trade("OOO-USD", 2, "102", "1", f"{M}:15Z"),
                trade("OOO-USD", 1, "101", "1", f"{M}:12Z"),
                trade("OOO-USD", 3, "103", "2", f"{M}:25Z"),
                # the same trade three times (a re-sent frame, last_match, a backfill overlap)
                trade("DUP-USD", 7, "50.5", "0.1", f"{M}:20Z"),
                trade("DUP-USD", 7, "50.5", "0.1", f"{M}:20Z"),
                trade("DUP-USD", 8, "50.7", "0.3", f"{M}:21Z"),
                trade("DUP-USD", 7, "50.5", "0.1", f"{M}:20Z"),
                # exactly on the boundary: belongs to the later minute
                trade("BND-USD", 1, "10", "1", f"{M}:59.999999Z"),
                trade("BND-USD", 2, "11", "1", "2026-11-26T10:01:00Z"),
                # ten trades at one timestamp, produced in scrambled id order: open/close go by id
                *[
                    trade("TIE-USD", i, str(200 + i), "0.5", f"{M}:30Z")
                    for i in (15, 11, 19, 13, 10, 17, 12, 18, 14, 16)
                ],
                # a quiet product: one trade, then nothing but heartbeats
                trade("QUIET-USD", 1, "3.25", "4", "2026-11-26T10:01:10Z"),
            ],
        )
        run.wait_input(sent)
        # append mode: nothing is final yet (watermark = 10:01:10 - 30s = 10:00:40 < 10:01:00)
        observed["before_ticks"] = run.candles().num_rows
        # only ticks from now on: they alone must close both minutes
        produce(kafka, topic, [tick("QUIET-USD", "2026-11-26T10:02:45Z")])
        run.wait_watermark("2026-11-26T10:02:15")
        observed["after_ticks"] = run.candles()
        late_before = run.progress()["1m"]["late_rows_dropped"]
        # a trade for a window the watermark has passed is late: dropped, and counted
        produce(kafka, topic, [trade("LATE-USD", 1, "1", "1", f"{M}:50Z")])
        run.wait(lambda p: p["1m"]["late_rows_dropped"] > late_before, "late row counted")
        observed["late_dropped"] = run.progress()["1m"]["late_rows_dropped"] - late_before
        observed["final"] = run.candles()
    finally:
        run.stop()
    return observed


def test_nothing_is_written_before_its_window_closes(job_scenarios):
    assert job_scenarios["before_ticks"] == 0


def test_out_of_order_trades_within_the_watermark_all_count(job_scenarios):
    (candle,) = rows_by_product(job_scenarios["after_ticks"])["OOO-USD"]
    assert candle["trade_count"] == 4
    assert (candle["open"], candle["close"]) == (Decimal("101"), Decimal("104"))  # by event time, not arrival
    assert (candle["low"], candle["high"]) == (Decimal("101"), Decimal("104"))
    assert candle["volume"] == Decimal("5")
    assert candle["vwap"] == Decimal("102.6")  # (101 + 102 + 206 + 104) / 5
    assert (candle["first_trade_id"], candle["last_trade_id"]) == (1, 4)


def test_duplicates_count_once(job_scenarios):
    (candle,) = rows_by_product(job_scenarios["after_ticks"])["DUP-USD"]
    assert candle["trade_count"] == 2
    assert candle["volume"] == Decimal("0.4")
    assert candle["vwap"] == Decimal("50.65")  # (5.05 + 15.21) / 0.4


def test_a_trade_on_the_boundary_lands_in_the_later_minute(job_scenarios):
    candles = rows_by_product(job_scenarios["after_ticks"])["BND-USD"]
    assert [(c["window_start"], c["trade_count"], c["open"]) for c in candles] == [
        (at(f"{M}:00Z"), 1, Decimal("10")),
        (at("2026-11-26T10:01:00Z"), 1, Decimal("11")),
    ]


def test_simultaneous_trades_order_by_trade_id(job_scenarios):
    (candle,) = rows_by_product(job_scenarios["after_ticks"])["TIE-USD"]
    assert candle["trade_count"] == 10
    assert (candle["open"], candle["close"]) == (Decimal("210"), Decimal("219"))
    assert (candle["first_trade_id"], candle["last_trade_id"]) == (10, 19)


def test_a_quiet_products_minute_closes_on_heartbeat_ticks_alone(job_scenarios):
    (candle,) = rows_by_product(job_scenarios["after_ticks"])["QUIET-USD"]
    assert candle["window_start"] == at("2026-11-26T10:01:00Z")
    assert (candle["trade_count"], candle["open"], candle["volume"]) == (1, Decimal("3.25"), Decimal("4"))


def test_ticks_never_make_candles(job_scenarios):
    # QUIET-USD's tick at 10:02:45 is in a window with no trade: no candle for it
    starts = {(c["product_id"], c["window_start"]) for c in job_scenarios["final"].to_pylist()}
    assert ("QUIET-USD", at("2026-11-26T10:02:00Z")) not in starts


def test_late_rows_are_dropped_and_counted(job_scenarios):
    assert job_scenarios["late_dropped"] == 1
    assert "LATE-USD" not in rows_by_product(job_scenarios["final"])
    # and what was final stays final
    assert job_scenarios["final"].equals(job_scenarios["after_ticks"])


def test_duckdb_reads_the_same_lake(job_scenarios, s3):
    """DuckDB given the committed files (those the batch manifests name) reads what the project's
    reader reads. DuckDB reads the S3 server's folder directly (its httpfs extension would be a
    download)."""
    import duckdb

    from cryptopipe.lake.layout import LakeLocation
    from cryptopipe.lake.reader import committed_paths

    table = job_scenarios["final"]
    lake = LakeLocation("lake", job_scenarios["prefix"])
    files = [str(s3.root / path) for path in committed_paths(lake, s3.connection.arrow_filesystem())]
    rows = duckdb.sql(
        # epoch_us: DuckDB hands timestamptz to Python through pytz, which this project does not need
        f"select product_id, epoch_us(window_start), open, close, volume, trade_count, vwap "
        f"from read_parquet({files!r}, hive_partitioning=true) "
        f"order by product_id, window_start"
    ).fetchall()
    expected = [
        (
            r["product_id"],
            int(r["window_start"].timestamp()) * 1_000_000,
            r["open"],
            r["close"],
            r["volume"],
            r["trade_count"],
            r["vwap"],
        )
        for r in table.to_pylist()
    ]
    assert rows == expected
