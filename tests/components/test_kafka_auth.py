"""``python -m cryptopipe.ingest`` and the candle job against a broker's SASL_SSL listener (TLS verified against a test
CA, SCRAM-SHA-512), as spec.kafka.tls + spec.kafka.authentication render it: the replay server's
trades arrive, read back by an authenticated consumer; a wrong password is named on /readyz; and
the Spark candle job reads the topic through the same listener."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from cryptopipe.contracts import Trade, UnfillableTradeIds, decode_record
from cryptopipe.kafka_security import KafkaSecurity
from cryptopipe.monitor.unfillable import UnfillableLog
from cryptopipe.pipeline import PipelineConfig
from cryptopipe_dev.replay import ReplayServer
from cryptopipe_dev.stack.kafka import KafkaBroker
from cryptopipe_dev.stack.kafka_tls import SaslSslListener
from cryptopipe_dev.stack.procs import ManagedProcess, free_port
from tests.components.test_ingest_no_silent_loss import PRODUCERS
from tests.components.test_ingest_process import EXCHANGE, log_lines, recorded_ids, scrape, wait_for
from tests.support.candle_job_process import JobRun, produce, trade, unique_name
from tests.support.http_probe import http_get

pytestmark = pytest.mark.components

USER, PASSWORD = "btc-ingest", "pw-4f9b2c81-not-in-logs"


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaBroker, SaslSslListener]]:
    work = tmp_path_factory.mktemp("secured-kafka")
    listener = SaslSslListener.create(work / "tls", users={USER: PASSWORD})
    with KafkaBroker(work / "kafka", sasl_ssl=listener, die_with_parent=True) as broker:
        yield broker, listener


def ingestion(
    broker: KafkaBroker,
    listener: SaslSslListener,
    topic: str,
    replay_port: int,
    password: str,
    log_path: Path,
    producer: str = "kafka-python",
) -> ManagedProcess:
    env = {
        "CRYPTOPIPE_INGEST_PRODUCER": producer,
        "CRYPTOPIPE_INGEST_FEED": "exchange",
        "CRYPTOPIPE_INGEST_PRODUCTS": "BTC-USD,ETH-USD",
        "CRYPTOPIPE_INGEST_WS_URL": f"ws://127.0.0.1:{replay_port}",
        "CRYPTOPIPE_INGEST_REST_URL": f"http://127.0.0.1:{replay_port}",
        "CRYPTOPIPE_INGEST_KAFKA_BOOTSTRAP": broker.sasl_ssl_bootstrap,
        "CRYPTOPIPE_INGEST_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CRYPTOPIPE_INGEST_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CRYPTOPIPE_INGEST_KAFKA_SASL_USERNAME": USER,
        "CRYPTOPIPE_INGEST_KAFKA_SASL_PASSWORD": password,
        "CRYPTOPIPE_INGEST_KAFKA_SSL_CAFILE": str(listener.ca_file),
        "CRYPTOPIPE_INGEST_TOPIC": topic,
        "CRYPTOPIPE_INGEST_DLQ_TOPIC": f"{topic}.dlq",
        "CRYPTOPIPE_INGEST_HTTP_HOST": "127.0.0.1",
        "CRYPTOPIPE_INGEST_HTTP_PORT": "0",
        "CRYPTOPIPE_INGEST_BACKOFF_INITIAL_S": "0.1",
        "CRYPTOPIPE_INGEST_BACKOFF_MAX_S": "0.5",
        "CRYPTOPIPE_INGEST_LOG_LEVEL": "info",
    }
    return ManagedProcess(
        [sys.executable, "-m", "cryptopipe.ingest"], log_path=log_path, env=env, name="ingest", die_with_parent=True
    )


def read_trades(bootstrap: str, security: KafkaSecurity, topic: str) -> dict[str, list[int]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **security.kafka_python())
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        ids: dict[str, list[int]] = {}
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=500).values():
                for r in batch:
                    record = decode_record(r.value)
                    if isinstance(record, Trade):
                        ids.setdefault(record.product_id, []).append(record.trade_id)
        return ids
    finally:
        consumer.close()


@pytest.mark.parametrize("producer", PRODUCERS)
def test_ingestion_produces_over_tls_with_scram(
    secured_kafka: tuple[KafkaBroker, SaslSslListener], tmp_path: Path, producer: str
) -> None:
    """Both producers behind the seam: kafka-python (the default) and librdkafka's (the option
    the throughput benchmark measures), each through the same SASL_SSL settings."""
    broker, listener = secured_kafka
    topic = f"secured-trades-{producer}"
    broker.create_topic(topic, 2)
    broker.create_topic(f"{topic}.dlq", 1)
    replay_port = free_port()
    log_path = tmp_path / "ingest.log"
    process = ingestion(broker, listener, topic, replay_port, PASSWORD, log_path, producer)
    with ReplayServer([EXCHANGE], speed=20.0, port=replay_port), process:
        listening = wait_for(
            lambda: [line for line in log_lines(log_path) if line["msg"] == "http server listening"],
            30,
            "the http server",
            process,
        )
        base = f"http://127.0.0.1:{listening[0]['port']}"
        wait_for(lambda: http_get(base + "/readyz")[0] == 200, 60, "/readyz 200", process)
        wait_for(lambda: scrape(base, "cryptopipe_ingest_trades_produced_total") >= 100, 60, "100 trades", process)
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", USER, PASSWORD, str(listener.ca_file))
    in_kafka = read_trades(broker.sasl_ssl_bootstrap, security, topic)
    expected = recorded_ids(EXCHANGE)
    assert sum(len(ids) for ids in in_kafka.values()) >= 100
    for product, ids in in_kafka.items():
        # the recording's trades, in order, from its first: nothing lost on the way through TLS
        assert sorted(set(ids)) == expected[product][: len(set(ids))], product
    assert PASSWORD not in log_path.read_text(errors="replace")
    assert PASSWORD not in broker.log_path.read_text(errors="replace")


def test_wrong_password_is_named_as_an_authentication_failure(
    secured_kafka: tuple[KafkaBroker, SaslSslListener], tmp_path: Path
) -> None:
    broker, listener = secured_kafka
    topic = "secured-refused"
    broker.create_topic(topic, 1)
    broker.create_topic(f"{topic}.dlq", 1)
    log_path = tmp_path / "ingest.log"
    process = ingestion(broker, listener, topic, free_port(), "not-the-password", log_path)
    with process:
        listening = wait_for(
            lambda: [line for line in log_lines(log_path) if line["msg"] == "http server listening"],
            30,
            "the http server",
            process,
        )
        base = f"http://127.0.0.1:{listening[0]['port']}"

        def refused() -> str | None:
            status, body = http_get(base + "/readyz")
            text = body.decode() if isinstance(body, bytes) else str(body)
            return text if status == 503 and "authentication failed" in text.lower() else None

        reason = wait_for(refused, 60, "/readyz naming the authentication failure", process)
        assert USER in reason and "not-the-password" not in reason
    assert "not-the-password" not in log_path.read_text(errors="replace")


def test_candle_job_reads_over_tls_with_scram(
    secured_kafka: tuple[KafkaBroker, SaslSslListener], s3: Any, tmp_path: Path
) -> None:
    """The Spark job's Kafka source, configured from the env the SparkApplication renders (the JAAS
    line built in the job from the password variable), reads the topic through the SASL_SSL listener."""
    broker, listener = secured_kafka
    topic = unique_name("secured-job")
    broker.create_topic(topic, 1)
    config = PipelineConfig(
        topic=topic, prefix=topic, windows=("1m",), watermark="30s", trigger="1s", products=("AUTH-USD",)
    )
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", USER, PASSWORD, str(listener.ca_file))
    run = JobRun(
        broker,
        s3,
        config,
        tmp_path,
        kafka_bootstrap=broker.sasl_ssl_bootstrap,
        extra_env=security.env("CRYPTOPIPE_JOB_"),
    ).start()
    try:
        # written through the plaintext listener: what is under test is the job's reading
        sent = produce(
            broker, topic, [trade("AUTH-USD", i, "100", "1", f"2026-11-26T10:00:{10 + i}Z") for i in range(5)]
        )
        progress = run.wait_input(sent, timeout=300)
        assert progress["1m"]["input_rows"] >= sent
    finally:
        run.stop()
    assert run.process is not None
    assert PASSWORD not in run.process.log_path.read_text(errors="replace")


def test_lake_monitor_reads_the_dead_letter_topic_over_tls_with_scram(
    secured_kafka: tuple[KafkaBroker, SaslSslListener],
) -> None:
    """The lake monitor's consumer of counted-unfillable trade ids, with the settings it is rendered."""
    broker, listener = secured_kafka
    topic = unique_name("secured-dlq")
    broker.create_topic(topic, 1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    producer.send(topic, UnfillableTradeIds("BTC-USD", 10, 12, "not_returned", 1_780_000_000_000_000).to_json()).get(30)
    producer.close()
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", USER, PASSWORD, str(listener.ca_file))
    log_ = UnfillableLog(broker.sasl_ssl_bootstrap, topic, timeout_s=30, security=security)
    try:
        assert log_.refresh() == {"BTC-USD": [(10, 12)]}
    finally:
        log_.close()
