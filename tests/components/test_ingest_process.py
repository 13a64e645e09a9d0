"""``python -m cryptopipe.ingest`` as the Deployment runs it: configured by env, probed over HTTP,
stopped by SIGTERM -- and nothing it accepted is lost."""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from cryptopipe.contracts import Trade, decode_record
from cryptopipe_dev.commands.scrape import scrape as scrape_metrics
from cryptopipe_dev.replay import ReplayServer
from cryptopipe_dev.stack.procs import ManagedProcess, free_port
from tests.support.http_probe import http_get
from tests.support.paths import DERIVED_RECORDINGS

pytestmark = pytest.mark.components

EXCHANGE = DERIVED_RECORDINGS / "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"


def log_lines(path: Path) -> list[dict[str, Any]]:
    """The service's JSON log lines (anything else in the file is skipped)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(orjson.JSONDecodeError):
                out.append(orjson.loads(line))
    return out


def wait_for(condition: Any, timeout: float, what: str, process: ManagedProcess) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert process.alive, f"ingestion exited ({process.returncode}) while waiting for {what}:\n{process.log_tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{process.log_tail()}"
        time.sleep(0.1)


def scrape(base: str, name: str) -> float:
    """Sum of a metric's samples on /metrics."""
    return scrape_metrics(base + "/metrics").get(name, 0.0)


def end_offsets(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def read_trades(bootstrap: str, topic: str) -> dict[str, list[int]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        ids: dict[str, list[int]] = collections.defaultdict(list)
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline
            for batch in consumer.poll(timeout_ms=500).values():
                for r in batch:
                    record = decode_record(r.value)
                    if isinstance(record, Trade):
                        ids[record.product_id].append(record.trade_id)
        return ids
    finally:
        consumer.close()


def recorded_ids(path: Path) -> dict[str, list[int]]:
    ids: dict[str, set[int]] = collections.defaultdict(set)
    for line in path.read_text().splitlines():
        row = json.loads(line)
        frame = json.loads(row["data"]) if row["dir"] == "recv" else {}
        if frame.get("type") in ("match", "last_match"):
            ids[frame["product_id"]].add(int(frame["trade_id"]))
    return {p: sorted(v) for p, v in ids.items()}


def test_process_probes_then_sigterm_flushes_everything_accepted(kafka: Any, tmp_path: Path) -> None:
    stamp = int(time.time() * 1000) % 1_000_000
    topic, dlq = f"ingest-proc-{stamp}", f"ingest-proc-{stamp}.dlq"
    kafka.create_topic(topic, 2)
    kafka.create_topic(dlq, 1)
    replay_port = free_port()
    env = {
        "CRYPTOPIPE_INGEST_FEED": "exchange",
        "CRYPTOPIPE_INGEST_PRODUCTS": "BTC-USD,ETH-USD",
        "CRYPTOPIPE_INGEST_WS_URL": f"ws://127.0.0.1:{replay_port}",
        "CRYPTOPIPE_INGEST_REST_URL": f"http://127.0.0.1:{replay_port}",
        "CRYPTOPIPE_INGEST_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CRYPTOPIPE_INGEST_TOPIC": topic,
        "CRYPTOPIPE_INGEST_DLQ_TOPIC": dlq,
        "CRYPTOPIPE_INGEST_HTTP_HOST": "127.0.0.1",
        "CRYPTOPIPE_INGEST_HTTP_PORT": "0",
        "CRYPTOPIPE_INGEST_SUBSCRIBE_TIMEOUT_S": "2",
        "CRYPTOPIPE_INGEST_WATCHDOG_S": "5",
        "CRYPTOPIPE_INGEST_BACKOFF_INITIAL_S": "0.1",
        "CRYPTOPIPE_INGEST_BACKOFF_MAX_S": "0.3",
        # a linger far past the test's length (and batches far from full): nothing reaches Kafka
        # until SIGTERM makes the service flush, so every record in the topic went through that flush
        "CRYPTOPIPE_INGEST_LINGER_MS": "60000",
        "CRYPTOPIPE_INGEST_LOG_LEVEL": "info",
    }
    log_path = tmp_path / "ingest.log"
    process = ManagedProcess(
        [sys.executable, "-m", "cryptopipe.ingest"], log_path=log_path, env=env, name="ingest", die_with_parent=True
    )
    server = ReplayServer([EXCHANGE], speed=10.0, port=replay_port)
    with process:
        listening = wait_for(
            lambda: [line for line in log_lines(log_path) if line["msg"] == "http server listening"],
            30,
            "the http server",
            process,
        )
        base = f"http://127.0.0.1:{listening[0]['port']}"
        assert http_get(base + "/healthz")[0] == 200
        # Kafka is there, the feed is not (nothing listens on the replay port yet): not ready, and why
        wait_for(lambda: scrape(base, "cryptopipe_ingest_reconnects_total") >= 1, 30, "a failed connect", process)
        status, body = http_get(base + "/readyz")
        assert status == 503
        assert orjson.loads(body) == {
            "ready": False,
            "reason": f"feed not connected and subscribed to {env['CRYPTOPIPE_INGEST_WS_URL']}",
        }
        with server:
            wait_for(lambda: http_get(base + "/readyz")[0] == 200, 30, "/readyz 200", process)
            wait_for(lambda: scrape(base, "cryptopipe_ingest_frames_received_total") >= 150, 30, "150 frames", process)
            assert end_offsets(kafka.bootstrap, topic) == 0, (
                "records were sent before the stop: the test proves nothing"
            )
            # "produced" means acknowledged by Kafka: nothing is, yet
            assert scrape(base, "cryptopipe_ingest_trades_produced_total") == 0
            process.kill(signal.SIGTERM)
            assert process.wait(30) == 0, process.log_tail()
    logs = log_lines(log_path)
    stopped = [line for line in logs if line["msg"] == "ingestion stopped"]
    assert stopped and stopped[0]["clean"] is True, process.log_tail()
    produced: dict[str, int] = stopped[0]["produced"]["trades"]
    assert sum(produced.values()) >= 100

    in_kafka = read_trades(kafka.bootstrap, topic)
    expected = recorded_ids(EXCHANGE)
    for product, count in produced.items():
        # exactly what the service accepted, and no hole: the first `count` trades of the recording
        assert sorted(in_kafka[product]) == expected[product][:count], product
    assert sum(len(v) for v in in_kafka.values()) == sum(produced.values())
