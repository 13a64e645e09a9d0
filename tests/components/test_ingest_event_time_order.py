"""Issue 10, holes 3 and 5: ingestion releases records to Kafka in event-time order around the
trades it still owes, so trades backfilled after an outage longer than the job's watermark still
reach their candles; a hold past its bound gives the owed ids up, counted.

Real replay server (with a slow REST: ``rest_delay_s``), real Kafka, and for the proof the real
Spark job; the service runs in-process.
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from cryptopipe.contracts import Tick, Trade, decode_record
from cryptopipe.pipeline import PipelineConfig
from cryptopipe_dev.replay import ReplayServer
from tests.components.test_ingest_pipeline import metric_value, produced_trades, running, settings_for, wait_for
from tests.support.candle_job_process import JobRun, produce, unique_name

pytestmark = pytest.mark.components

T0 = 1_783_465_080.0  # 2026-07-07T22:58:00Z: the recording's first second
FIRST_ID = {"BTC-USD": 1000, "ETH-USD": 5000}  # disjoint: the replay's skip fault is by trade id alone
SLACK_S = 1.0


def write_recording(path: Path, seconds: int, products: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """An Exchange recording: per product a match every 0.5 s (ids consecutive from FIRST_ID) and a
    heartbeat every 2 s. Returns (trade id, event time) per product."""
    trades: dict[str, list[tuple[int, float]]] = {p: [] for p in products}
    ack = {
        "type": "subscriptions",
        "channels": [{"name": n, "product_ids": list(products), "account_ids": None} for n in ("matches", "heartbeat")],
    }
    lines = [_row(T0, ack)]
    for step in range(seconds * 2):
        for k, product in enumerate(products):
            ts = T0 + 0.5 * step + 0.1 * k
            trade_id = FIRST_ID[product] + step
            trades[product].append((trade_id, ts))
            match = {
                "type": "match",
                "trade_id": trade_id,
                "maker_order_id": "m",
                "taker_order_id": "t",
                "side": "buy",
                "size": "0.5",
                "price": f"{100 + step}.25",
                "product_id": product,
                "sequence": step,
                "time": _iso(ts),
            }
            lines.append(_row(ts, match))
            if step % 4 == 3:
                beat = {"type": "heartbeat", "last_trade_id": trade_id, "product_id": product, "sequence": step}
                lines.append(_row(ts + 0.01, beat | {"time": _iso(ts + 0.01)}))
    path.write_text("\n".join(lines) + "\n")
    return trades


def _row(ts: float, frame: dict[str, Any]) -> str:
    return json.dumps(
        {"ts": ts, "dir": "recv", "url": "wss://ws-feed.exchange.coinbase.com", "data": json.dumps(frame)}
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Stored:
    partition: int
    offset: int
    create_ms: int  # Kafka's CreateTime: when the producer took the record
    record: Trade | Tick


def read_positions(bootstrap: str, topic: str) -> list[Stored]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=200)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        out: list[Stored] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(Stored(r.partition, r.offset, r.timestamp, decode_record(r.value)) for r in batch)
        return out
    finally:
        consumer.close()


def overtakers(stored: list[Stored], slack_s: float) -> list[str]:
    """Records that reached Kafka before a backfilled trade (earlier offset in its partition, or
    taken earlier by the producer) with an event time later than it by more than ``slack_s``."""
    slack_us = round(slack_s * 1e6)
    found = []
    backfilled = [s for s in stored if isinstance(s.record, Trade) and s.record.source == "rest"]
    assert backfilled, "nothing was backfilled: the test did not exercise the hold"
    for b in backfilled:
        for s in stored:
            later = s.record.event_time_us > b.record.event_time_us + slack_us
            before = (s.partition == b.partition and s.offset < b.offset) or s.create_ms < b.create_ms
            if later and before:
                found.append(f"{s.record.kind} {s.record.product_id} p{s.partition}@{s.offset} before rest {b.record}")
    return found


def trade_ids(stored: list[Stored]) -> dict[str, collections.Counter[int]]:
    ids: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for s in stored:
        if isinstance(s.record, Trade):
            ids[s.record.product_id][s.record.trade_id] += 1
    return ids


def test_after_an_outage_longer_than_the_watermark_backfilled_trades_reach_their_candles(
    kafka: Any, s3: Any, tmp_path: Path
) -> None:
    products = ("BTC-USD", "ETH-USD")  # partitions 0 and 2 of 3
    trades = write_recording(tmp_path / "outage.jsonl", 40, products)
    # the socket misses 15 s of both products (longer than the job's 5 s watermark); REST answers
    # each backfill request 4 s late, while the live trades after the outage keep coming
    skipped = [i for p in products for i, ts in trades[p] if T0 + 10 <= ts < T0 + 25]
    topic = unique_name("ingest-order")
    kafka.create_topic(topic, 3)
    kafka.create_topic(topic + ".dlq", 1)
    config = PipelineConfig(
        products=products,
        topic=topic,
        prefix=topic,
        windows=("1m",),
        watermark="5s",
        trigger="1s",
        hold_slack_s=SLACK_S,
    )
    job = JobRun(kafka, s3, config, tmp_path).start()
    try:
        # the job runs before ingestion starts, so it reads the live trades in their own batches
        produce(kafka, topic, [Tick("BTC-USD", round((T0 - 30) * 1e6), round((T0 - 30) * 1e6), "exchange")])
        job.wait_input(1, timeout=600)
        faults = {"skip_trade_ids": skipped, "rest_delay_s": 4.0}
        with ReplayServer([tmp_path / "outage.jsonl"], speed=4.0, faults=faults) as server:
            settings = settings_for(
                kafka,
                server,
                topic,
                topic + ".dlq",
                products=list(products),
                watchdog_s=10.0,
                backfill_timeout_s=15.0,
                hold_slack_s=SLACK_S,
            )
            with running(settings) as service:
                wait_for(lambda: server.wait_done(0), 60, "the replay")
                wait_for(
                    lambda: (
                        metric_value(service, "cryptopipe_ingest_gaps_detected_total", product_id="BTC-USD")
                        + metric_value(service, "cryptopipe_ingest_gaps_detected_total", product_id="ETH-USD")
                        >= 2
                    ),
                    30,
                    "both gaps found",
                )
                assert service.backfiller.wait_idle(60), "backfill still pending"
                wait_for(
                    lambda: metric_value(service, "cryptopipe_ingest_held_records") == 0,
                    30,
                    "every held record released",
                )
                # the server's last frame sent is not the service's last frame read
                total = sum(len(t) for t in trades.values())
                wait_for(lambda: produced_trades(service) >= total, 30, f"{total} trades acknowledged")
                for product in products:
                    assert metric_value(service, "cryptopipe_ingest_trades_unfilled_total", product_id=product) == 0
        stored = read_positions(kafka.bootstrap, topic)
        # every trade once in Kafka, and none overtaken by a record later than it by more than the slack
        ids = trade_ids(stored)
        for product in products:
            assert sorted(ids[product]) == [i for i, _ts in trades[product]], product
            assert max(ids[product].values()) == 1
        assert overtakers(stored, SLACK_S) == []
        # a tick two minutes on closes every window; then every trade is in its candle, none late
        produce(kafka, topic, [Tick("BTC-USD", round((T0 + 150) * 1e6), round((T0 + 150) * 1e6), "exchange")])
        progress = job.wait_watermark(_iso(T0 + 140)[:19])
        candles = job.candles().to_pylist()
    finally:
        job.stop()
    assert progress["1m"]["late_rows_dropped"] == 0, progress["1m"]
    for product in products:
        rows = [c for c in candles if c["product_id"] == product]
        assert sum(c["trade_count"] for c in rows) == len(trades[product]), (product, rows)


def test_a_hold_past_max_hold_s_gives_the_owed_ids_up_counted_and_releases(kafka: Any, tmp_path: Path) -> None:
    product = "BTC-USD"
    trades = write_recording(tmp_path / "expire.jsonl", 20, (product,))
    skipped = [i for i, ts in trades[product] if T0 + 5 <= ts < T0 + 8]
    topic = unique_name("ingest-expire")
    kafka.create_topic(topic, 3)
    kafka.create_topic(topic + ".dlq", 1)
    # REST answers after 6 s; the hold gives up after 2
    with ReplayServer(
        [tmp_path / "expire.jsonl"], speed="max", faults={"skip_trade_ids": skipped, "rest_delay_s": 6.0}
    ) as server:
        settings = settings_for(
            kafka,
            server,
            topic,
            topic + ".dlq",
            products=[product],
            watchdog_s=30.0,
            backfill_timeout_s=15.0,
            backfill_retries=1,
            max_hold_s=2.0,
        )
        with running(settings) as service:
            wait_for(lambda: server.wait_done(0), 30, "the replay")
            wait_for(
                lambda: metric_value(service, "cryptopipe_ingest_hold_expired_total", cause="max_hold_s") >= 1,
                30,
                "the hold to expire",
            )
            wait_for(
                lambda: metric_value(service, "cryptopipe_ingest_held_records") == 0, 10, "the held records released"
            )
            assert service.readiness() is None
            assert service.backfiller.wait_idle(30), "backfill still pending"
            live = len(trades[product]) - len(skipped)
            wait_for(lambda: produced_trades(service) >= live, 30, f"{live} trades acknowledged")
            unfilled = metric_value(service, "cryptopipe_ingest_trades_unfilled_total", product_id=product)
            expired = metric_value(
                service, "cryptopipe_ingest_gaps_unfilled_total", product_id=product, reason="hold_expired"
            )
            gaps = metric_value(service, "cryptopipe_ingest_gaps_detected_total", product_id=product)
            # the missing run may be found as two gaps (a heartbeat reveals its first ids, the next trade the rest)
            assert (unfilled, expired) == (len(skipped), gaps) and gaps >= 1
    ids = trade_ids(read_positions(kafka.bootstrap, topic))[product]
    # every live trade released; the given-up ids stay out even though REST answered them later
    assert sorted(ids) == [i for i, _ts in trades[product] if i not in skipped]
