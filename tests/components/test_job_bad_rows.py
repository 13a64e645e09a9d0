"""Bad records on the topic (issue 10, hole 7), on the real job process, Kafka and S3 server.

Records that break the contract are produced among good trades of the same product and minute: had
any of them reached the aggregation, the candle would be wrong (a high of 1e30, a count too many).
The job must keep running, write the good candle exactly, and count every rejected row by reason.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from kafka import KafkaProducer

from cryptopipe.pipeline import PipelineConfig
from tests.support.candle_job_process import JobRun, at, produce, rows_by_product, tick, trade, unique_name, us

pytestmark = [pytest.mark.components, pytest.mark.spark]

M = "2026-11-26T10:00"
PRODUCT = "BAD-USD"


def raw_trade(id_: int, **override) -> bytes:
    """A trade record as ingestion writes it, with fields replaced (None deletes the field)."""
    record = json.loads(trade(PRODUCT, id_, "100", "1", f"{M}:30Z").to_json())
    for key, value in override.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return json.dumps(record).encode()


def raw_tick(**override) -> bytes:
    record = json.loads(tick(PRODUCT, f"{M}:30Z").to_json())
    record.update(override)
    return json.dumps(record).encode()


DAY_US = 86_400 * 1_000_000

# (reason the job must count it under, the Kafka record value)
BAD_RECORDS: list[tuple[str, bytes | None]] = [
    ("malformed_json", b"garbage{"),
    ("malformed_json", b""),
    ("malformed_json", None),  # a tombstone
    ("malformed_json", b"[1, 2]"),
    ("malformed_json", raw_trade(101, trade_id="one hundred and one")),
    ("unknown_schema_version", raw_trade(102, v=2)),
    ("unknown_schema_version", raw_trade(103, v=None)),
    ("unknown_kind", raw_trade(104, kind="quote")),
    ("missing_field", raw_trade(105, price=None)),
    ("missing_field", raw_trade(106, product_id=None)),
    ("bad_decimal", raw_trade(107, price="abc")),
    ("bad_decimal", raw_trade(108, price="1e30")),
    ("bad_decimal", raw_trade(109, size="-1")),
    # a JSON number: the JSON parser reads it as a double, which can round
    ("bad_decimal", raw_trade(110, price=1e30)),
    ("bad_decimal", raw_trade(111, price=100.5)),
    ("bad_decimal", raw_trade(122, price="100.")),  # a point with no digit after it: not plain
    ("bad_decimal", raw_trade(123, size=2.5)),  # the size a JSON number, as the price above
    ("decimal_too_precise", raw_trade(112, price="100.1234567890123")),  # 13 decimals: prices keep 12
    ("decimal_too_precise", raw_trade(117, size="1.123456789")),  # 9 decimals: sizes keep 8
    ("decimal_out_of_range", raw_trade(113, price="12345678901")),
    ("decimal_out_of_range", raw_trade(114, size="0")),
    ("decimal_out_of_range", raw_trade(118, size="1000000000000000")),  # 1e15
    # price and size fit, price*size does not: 1e12 exactly, and ~1e25 (45 digits, past Spark's 38)
    ("decimal_out_of_range", raw_trade(119, price="1000000000", size="1000")),
    ("decimal_out_of_range", raw_trade(121, price="9999999999.999999999999", size="999999999999999.99999999")),
    ("event_time_out_of_range", raw_trade(115, event_time_us=-1)),
    ("event_time_out_of_range", raw_trade(116, event_time_us=4_102_444_800_000_000)),  # 2100-01-01
    # hole 6: a day ahead of its own receive time (a wild exchange clock that slipped past
    # ingestion); had it reached the watermark, the trades and ticks below would all be "late"
    ("event_time_ahead_of_receipt", raw_trade(117, event_time_us=us(f"{M}:30Z") + DAY_US)),
    ("event_time_ahead_of_receipt", raw_tick(event_time_us=us(f"{M}:30Z") + DAY_US)),
    ("missing_field", raw_trade(118, receive_time_us=None)),  # no receive time: cannot be bounded
]


def produce_raw(kafka, topic: str, values: list[bytes | None]) -> int:
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=True, acks="all")
    try:
        for value in values:
            producer.send(topic, key=PRODUCT.encode(), value=value)
        producer.flush()
    finally:
        producer.close()
    return len(values)


@pytest.fixture(scope="module")
def bad_rows_run(kafka, s3, tmp_path_factory):
    topic = unique_name("job-bad-rows")
    kafka.create_topic(topic, 2)
    config = PipelineConfig(topic=topic, prefix=topic, windows=("1m",), watermark="30s", trigger="1s")
    run = JobRun(kafka, s3, config, tmp_path_factory.mktemp("job-bad-rows")).start()
    try:
        sent = produce(kafka, topic, [trade(PRODUCT, 1, "100", "1", f"{M}:10Z")])
        # the query runs before the first bad row arrives (a generous bound: it includes the start)
        run.wait_input(sent, timeout=600)
        sent += produce_raw(kafka, topic, [value for _, value in BAD_RECORDS])
        # the good trades come in later batches: had a record a day ahead moved the watermark, they
        # would all be dropped as late
        run.wait_input(sent)
        sent += produce(
            kafka,
            topic,
            [trade(PRODUCT, 2, "101.5", "0.25", f"{M}:20Z"), trade(PRODUCT, 3, "99.00000001", "2", f"{M}:40Z")],
        )
        run.wait_input(sent)
        # a second round of one bad row: a batch holding nothing but it must not stop the query either
        sent += produce_raw(kafka, topic, [raw_trade(120, price="abc")])
        run.wait_input(sent)
        produce(kafka, topic, [tick(PRODUCT, "2026-11-26T10:02:45Z")])
        progress = run.wait_watermark("2026-11-26T10:02:15")
        observed = {"progress": progress["1m"], "candles": run.candles(), "alive": run.process.alive}
    finally:
        run.stop()
    return observed


def test_the_job_keeps_running(bad_rows_run):
    assert bad_rows_run["alive"]


def test_the_good_candle_is_exact(bad_rows_run):
    (candle,) = rows_by_product(bad_rows_run["candles"])[PRODUCT]
    assert candle["window_start"] == at(f"{M}:00Z")
    assert candle["trade_count"] == 3
    assert (candle["first_trade_id"], candle["last_trade_id"]) == (1, 3)
    assert (candle["open"], candle["close"]) == (Decimal("100"), Decimal("99.00000001"))
    assert (candle["low"], candle["high"]) == (Decimal("99.00000001"), Decimal("101.5"))
    assert candle["volume"] == Decimal("3.25")
    assert candle["notional"] == Decimal("323.37500002")  # 100 + 25.375 + 198.00000002, exact
    # 323.37500002 / 3.25 = 99.500000006153846..., rounded half-even once at 28 places
    assert candle["vwap"] == Decimal("99.5000000061538461538461538462")


def test_every_rejected_row_is_counted_by_reason(bad_rows_run):
    expected: dict[str, int] = {}
    for reason, _ in BAD_RECORDS:
        expected[reason] = expected.get(reason, 0) + 1
    expected["bad_decimal"] += 1  # the lone bad row of the second round
    rejected = {reason: n for reason, n in bad_rows_run["progress"]["rejected_rows"].items() if n}
    assert rejected == expected
