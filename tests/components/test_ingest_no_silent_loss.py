"""Issue 10, holes 1, 4 and 12 at the ingestion service: every trade the feed published reaches
Kafka once, or its loss is counted -- never silent, never stuck.

Real replay server (its recording written here, so each fault sits on a known trade id), real
Kafka broker; the service runs in-process.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from cryptopipe.contracts import Trade
from cryptopipe.ingest.service import IngestService
from cryptopipe.pipeline import PipelineConfig, ingestion_env
from cryptopipe_dev.replay import ReplayServer
from cryptopipe_dev.stack.kafka import KafkaBroker
from cryptopipe_dev.stack.procs import ManagedProcess
from tests.components.test_ingest_pipeline import (
    metric_value,
    produced_trades,
    read_topic,
    running,
    settings_for,
    trades_by_product,
    unique_topics,
    wait_for,
)
from tests.support.http_probe import http_get

pytestmark = pytest.mark.components

PRODUCT = "BTC-USD"
T0 = 1_783_465_097.0  # 2026-07-07T22:58:17Z
FIRST_ID = 1000


def write_recording(path: Path, trade_ids: list[int], overrides: dict[int, dict[str, str]] | None = None) -> Path:
    """An Exchange recording of ``PRODUCT``: the subscriptions ack, one match per id (fields in
    ``overrides[id]`` replace the normal ones, exactly as strings) and a heartbeat every 10 trades."""
    overrides = overrides or {}

    def row(ts: float, frame: dict[str, Any]) -> str:
        return json.dumps(
            {"ts": ts, "dir": "recv", "url": "wss://ws-feed.exchange.coinbase.com", "data": json.dumps(frame)}
        )

    ack = {
        "type": "subscriptions",
        "channels": [{"name": n, "product_ids": [PRODUCT], "account_ids": None} for n in ("matches", "heartbeat")],
    }
    lines = [row(T0, ack)]
    for n, trade_id in enumerate(trade_ids):
        ts = T0 + 0.5 + n * 0.1
        second, micros = divmod(int(round((ts - T0) * 1e6)) + 17_000_000, 1_000_000)
        when = f"2026-07-07T22:58:{second:02d}.{micros:06d}Z"
        match = {
            "type": "match",
            "trade_id": trade_id,
            "maker_order_id": "m",
            "taker_order_id": "t",
            "side": "sell" if n % 2 else "buy",
            "size": f"0.{n + 1:08d}",
            "price": f"{63500 + n}.5",
            "product_id": PRODUCT,
            "sequence": 10_000 + n,
            "time": when,
        } | overrides.get(trade_id, {})
        lines.append(row(ts, match))
        if n % 10 == 9:
            beat = {
                "type": "heartbeat",
                "last_trade_id": trade_id,
                "product_id": PRODUCT,
                "sequence": 10_000 + n,
                "time": when,
            }
            lines.append(row(ts + 0.01, beat))
    path.write_text("\n".join(lines) + "\n")
    return path


def trades_in(kafka: Any, topic: str) -> dict[int, list[Trade]]:
    by_id: dict[int, list[Trade]] = collections.defaultdict(list)
    for trade in trades_by_product(read_topic(kafka.bootstrap, topic)).get(PRODUCT, []):
        by_id[trade.trade_id].append(trade)
    return by_id


def run_to_the_end(service: Any, server: ReplayServer, gaps: int, produced: int) -> None:
    """Until the replay is sent, its ``gaps`` gaps were found, the backfill has nothing pending and
    Kafka acknowledged ``produced`` trades (the server having sent its last frame does not mean
    the service has read it: stopped earlier, it leaves the tail for its next start)."""
    wait_for(lambda: server.wait_done(0), 30, "the replay")
    wait_for(lambda: produced_trades(service) >= produced, 30, f"{produced} trades acknowledged")
    wait_for(
        lambda: metric_value(service, "cryptopipe_ingest_gaps_detected_total", product_id=PRODUCT) >= gaps,
        30,
        f"{gaps} gaps detected",
    )
    assert service.backfiller.wait_idle(30), "backfill still pending"
    assert metric_value(service, "cryptopipe_ingest_backfill_pending") == 0


# --- hole 12: an exponent-form size ----------------------------------------------------------------


def test_a_size_in_exponent_form_is_taken_exactly_from_the_socket_and_from_rest(kafka: Any, tmp_path: Path) -> None:
    ids = list(range(FIRST_ID, FIRST_ID + 40))
    over_rest, over_ws = FIRST_ID + 12, FIRST_ID + 25
    recording = write_recording(tmp_path / "exp.jsonl", ids, {over_rest: {"size": "1E-8"}, over_ws: {"size": "2.5E-7"}})
    topic, dlq = unique_topics(kafka, "exponent")
    # the REST one is withheld from the socket: only the REST page (size "1E-8") can deliver it
    with (
        ReplayServer([recording], speed="max", faults={"skip_trade_ids": [over_rest]}) as server,
        running(settings_for(kafka, server, topic, dlq, products=[PRODUCT], watchdog_s=10.0)) as service,
    ):
        run_to_the_end(service, server, gaps=1, produced=len(ids))
        assert metric_value(service, "cryptopipe_ingest_trades_unfilled_total", product_id=PRODUCT) == 0
    produced = trades_in(kafka, topic)
    assert sorted(produced) == ids, f"missing {sorted(set(ids) - set(produced))}"
    assert all(len(copies) == 1 for copies in produced.values())
    assert produced[over_rest][0].source == "rest" and produced[over_rest][0].size == Decimal("0.00000001")
    assert produced[over_ws][0].source == "ws" and produced[over_ws][0].size == Decimal("0.00000025")
    assert read_topic(kafka.bootstrap, dlq) == []


# --- hole 4: a partial REST answer -----------------------------------------------------------------


def test_a_partial_rest_answer_keeps_what_it_found_and_counts_exactly_what_it_could_not(
    kafka: Any, tmp_path: Path
) -> None:
    gap = list(range(FIRST_ID + 20, FIRST_ID + 26))  # withheld from the socket, one gap of six ids
    absent, bad = gap[2], gap[4]  # REST never had `absent`; it serves `bad` with a price that is no number
    ids = [i for i in range(FIRST_ID, FIRST_ID + 40) if i != absent]
    recording = write_recording(tmp_path / "partial.jsonl", ids, {bad: {"price": "abc"}})
    topic, dlq = unique_topics(kafka, "partial")
    with (
        ReplayServer([recording], speed="max", faults={"skip_trade_ids": gap}) as server,
        running(settings_for(kafka, server, topic, dlq, products=[PRODUCT], watchdog_s=10.0)) as service,
    ):
        run_to_the_end(service, server, gaps=1, produced=len(ids) - 1)  # all but `bad`
        assert metric_value(service, "cryptopipe_ingest_trades_unfilled_total", product_id=PRODUCT) == 2
        for reason in ("not_returned", "bad_row"):
            assert (
                metric_value(service, "cryptopipe_ingest_gaps_unfilled_total", product_id=PRODUCT, reason=reason) == 1
            )
    produced = trades_in(kafka, topic)
    assert sorted(produced) == sorted(set(ids) - {bad}), f"missing {sorted(set(ids) - {bad} - set(produced))}"
    assert all(len(copies) == 1 for copies in produced.values())
    assert {i for i, (t,) in produced.items() if t.source == "rest"} == set(gap) - {absent, bad}
    records = [orjson.loads(value) for _key, value, _p in read_topic(kafka.bootstrap, dlq)]
    (letter,) = [r for r in records if r["kind"] == "dead_letter"]
    assert "price" in letter["reason"] and PRODUCT in letter["reason"], letter
    assert orjson.loads(letter["raw"])["trade_id"] == bad
    # the two ids given up, published for the lake monitor (its continuity audit counts them)
    given_up = sorted((r["first_trade_id"], r["last_trade_id"], r["reason"]) for r in records if r is not letter)
    assert given_up == [(absent, absent, "not_returned"), (bad, bad, "bad_row")]


# --- hole 1: failed deliveries ---------------------------------------------------------------------


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test alone: it is frozen (SIGSTOP) for a while, which the session's shared
    broker must not be."""
    broker = KafkaBroker(tmp_path / "kafka", die_with_parent=True).start()
    try:
        yield broker
    finally:
        if broker.alive:
            os.kill(broker.process.pid, signal.SIGCONT)
        broker.stop()


# both clients behind RecordProducer: a real outage is counted and refilled the same way
PRODUCERS = [
    "kafka-python",
    pytest.param(
        "confluent",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("confluent_kafka") is None, reason="the ingestion-fast extra is not installed"
        ),
    ),
]


@pytest.mark.parametrize("producer", PRODUCERS)
def test_trades_whose_delivery_times_out_are_refilled_and_counted_only_once_acknowledged(
    own_kafka: KafkaBroker, tmp_path: Path, producer: str
) -> None:
    ids = list(range(FIRST_ID, FIRST_ID + 300))  # 30 s of trades, replayed 3x faster
    recording = write_recording(tmp_path / "outage.jsonl", ids)
    topic, dlq = unique_topics(own_kafka, "expiry")
    with ReplayServer([recording], speed=3.0) as server:
        settings = settings_for(
            own_kafka,
            server,
            topic,
            dlq,
            products=[PRODUCT],
            watchdog_s=30.0,
            linger_ms=5,
            request_timeout_ms=1000,
            delivery_timeout_ms=2500,
            backfill_retries=8,
            backfill_retry_delay_s=0.5,
            producer=producer,
        )
        with running(settings) as service:
            wait_for(lambda: produced_trades(service) >= 20, 30, "the first trades acknowledged")
            # the broker stops answering (a frozen JVM: connections stay open, nothing comes back)
            # for longer than the delivery timeout, while trades keep arriving
            os.kill(own_kafka.process.pid, signal.SIGSTOP)
            try:
                wait_for(
                    lambda: metric_value(service, "cryptopipe_ingest_delivery_errors_total", topic=topic) > 0,
                    30,
                    "deliveries to expire",
                )
            finally:
                os.kill(own_kafka.process.pid, signal.SIGCONT)
            wait_for(lambda: server.wait_done(0), 60, "the replay")
            # while the service runs: every trade reaches Kafka (the ones whose delivery failed
            # fetched again over REST), and the producer keeps working after the outage
            deadline = time.monotonic() + 90
            while set(ids) - set(produced := trades_in(own_kafka, topic)):
                lost = sorted(set(ids) - set(produced))
                assert time.monotonic() < deadline, (
                    f"{len(lost)} trades never reached Kafka, e.g. {lost[:10]}; "
                    f"acknowledged {produced_trades(service)}, producer: {service.readiness()}"
                )
                time.sleep(1.0)
            wait_for(lambda: produced_trades(service) >= len(ids), 30, "every trade acknowledged")
            assert service.backfiller.wait_idle(60), "backfill still pending"
            assert metric_value(service, "cryptopipe_ingest_trades_unfilled_total", product_id=PRODUCT) == 0
            assert metric_value(service, "cryptopipe_ingest_delivery_errors_total", topic=topic) > 0
            assert metric_value(service, "cryptopipe_ingest_trades_redelivered_total", product_id=PRODUCT) > 0
            assert metric_value(service, "cryptopipe_ingest_trades_backfilled_total", product_id=PRODUCT) > 0
            assert service.readiness() is None, "a broker outage the producer survived leaves it ready"
            acknowledged = produced_trades(service)
    produced = trades_in(own_kafka, topic)
    assert sorted(produced) == ids
    # "produced" means acknowledged: never more than Kafka holds. (A batch that timed out in the
    # client may still have been written by the broker: Kafka can hold a trade twice, from the
    # socket and from REST, which the Spark job dedupes by trade id.)
    assert len(ids) <= acknowledged <= sum(len(copies) for copies in produced.values())
    assert any(t.source == "rest" for copies in produced.values() for t in copies)


def test_a_producer_gone_fatal_makes_the_service_unready_and_failed(kafka: Any, tmp_path: Path) -> None:
    recording = write_recording(tmp_path / "fatal.jsonl", list(range(FIRST_ID, FIRST_ID + 30)))
    topic, dlq = unique_topics(kafka, "fatal")
    # the broker refuses every record of this topic as too large: a non-retriable error, after which
    # kafka-python's idempotent producer is in its FATAL state and delivers nothing any more
    admin = kafka.admin()
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": "100"})])
    finally:
        admin.close()
    with ReplayServer([recording], speed="max") as server:
        service = IngestService(settings_for(kafka, server, topic, dlq, products=[PRODUCT], watchdog_s=30.0))
        service.start()
        try:
            wait_for(
                lambda: metric_value(service, "cryptopipe_ingest_delivery_errors_total", topic=topic) > 0,
                30,
                "a refused record",
            )
            wait_for(service.failed, 10, "the service to report itself failed (the process then exits 1)")
            reason = service.readiness()
            assert reason is not None and "kafka producer" in reason, reason
            status, body = http_get(f"http://127.0.0.1:{service.http_port}/readyz")
            assert status == 503 and b"kafka producer" in body, body
            assert produced_trades(service) == 0, "nothing was acknowledged, so nothing counts as produced"
        finally:
            service.stop()


def test_the_ingestion_process_exits_non_zero_when_its_producer_is_broken(kafka: Any, tmp_path: Path) -> None:
    """As the Deployment runs it: a producer gone FATAL ends the process with exit code 1 (so
    Kubernetes restarts the pod), saying why."""
    recording = write_recording(tmp_path / "fatal.jsonl", list(range(FIRST_ID, FIRST_ID + 30)))
    topic, dlq = unique_topics(kafka, "fatalproc")
    admin = kafka.admin()
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": "100"})])
    finally:
        admin.close()
    with ReplayServer([recording], speed="max") as server:
        env = ingestion_env(
            PipelineConfig(products=(PRODUCT,), topic=topic, dlq_topic=dlq),
            kafka_bootstrap=kafka.bootstrap,
            ws_url=server.url,
            rest_url=server.rest_url,
            http_port=0,
            extra={"CRYPTOPIPE_INGEST_HTTP_HOST": "127.0.0.1"},
        )
        log_path = tmp_path / "ingest.log"
        with ManagedProcess(
            [sys.executable, "-m", "cryptopipe.ingest"], env=env, log_path=log_path, name="ingest", die_with_parent=True
        ) as process:
            code = process.wait(60)
    assert code == 1, log_path.read_text()[-3000:]
    lines = [orjson.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    (failed,) = [line for line in lines if line["msg"] == "an ingestion component stopped unexpectedly; exiting"]
    assert "kafka producer failed (fatal)" in failed["reason"], failed
