"""What the cluster would run, run locally.

The operator reconciles a CryptoPipeline on the real API server. The test then reads the
Deployment and SparkApplication it wrote and runs exactly their commands: the ingestion
container's command with its env, and the Spark job with the SparkApplication's arguments and
sparkConf (local mode), as processes against the local Kafka, S3 server and replay server. The test
plays the parts that do not run here: Strimzi's topic operator (it creates the topic the KafkaTopic
describes), the kubelet (it resolves secretKeyRefs from the Secret) and cluster DNS (it swaps
service addresses for loopback ones: the only changes made to what the operator wrote).
"""

from __future__ import annotations

import base64
import sys
from typing import Any

import pytest

from cryptopipe.contracts import Tick
from cryptopipe.lake.layout import LakeLocation
from cryptopipe.lake.reader import read_candles
from cryptopipe_dev.reference import recorded_trades, reference_candles
from cryptopipe_dev.replay.server import ReplayServer
from cryptopipe_dev.stack.procs import ManagedProcess, free_port, wait_for
from cryptopipe_dev.stack.spark_job import spark_job_process
from tests.support.candle_job_process import produce
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import get
from tests.support.operator_process import eventually, run_operator
from tests.support.paths import DERIVED_RECORDINGS

pytestmark = [pytest.mark.e2e, pytest.mark.kube, pytest.mark.spark]

RECORDING = DERIVED_RECORDINGS / "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"
CLUSTER_S3 = "http://minio.lake.svc:9000"


def resolve_env(kube, namespace: str, env: list[dict[str, Any]]) -> dict[str, str]:
    """What the kubelet does: values as written, secretKeyRefs read from their Secret."""
    out = {}
    for item in env:
        if "value" in item:
            out[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            secret = kube.get_json("secret", ref["name"], "-n", namespace)
            out[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return out


def swap_arg(args: list[str], flag: str, value: str) -> list[str]:
    i = args.index(flag)
    return [*args[: i + 1], value, *args[i + 2 :]]


def test_the_operators_deployment_and_spark_application_produce_candles(kube, kube_namespace, kafka, s3, tmp_path):
    ns, name = kube_namespace, "local"
    body = pipeline(name, ns, windows=["1m"], sink={"endpoint": CLUSTER_S3, "prefix": f"cluster-{ns}"})
    operators = run_operator(kube, tmp_path / "operator.log")
    operator = next(operators)
    try:
        kube.apply(body)
        deployment = eventually(
            lambda: get(kube, "Deployment", ns, f"{name}-ingestion"), "Deployment written", operator=operator
        )
        app = eventually(
            lambda: get(kube, "SparkApplication", ns, f"{name}-candles"), "SparkApplication written", operator=operator
        )
        topics = [
            eventually(lambda n=n: get(kube, "KafkaTopic", ns, n), f"KafkaTopic {n} written", operator=operator)
            for n in (f"{name}-trades", f"{name}-trades-dlq")
        ]
    finally:
        next(operators, None)

    # the sink's Secret, with the keys the SparkApplication refers to
    refs = {e["valueFrom"]["secretKeyRef"]["key"]: e["name"] for e in app["spec"]["driver"]["env"] if "valueFrom" in e}
    secret_name = next(e["valueFrom"]["secretKeyRef"]["name"] for e in app["spec"]["driver"]["env"] if "valueFrom" in e)
    creds = {"CRYPTOPIPE_JOB_S3_ACCESS_KEY": s3.access_key, "CRYPTOPIPE_JOB_S3_SECRET_KEY": s3.secret_key}
    kube.kubectl(
        "create",
        "secret",
        "generic",
        secret_name,
        "-n",
        ns,
        *[f"--from-literal={key}={creds[var]}" for key, var in refs.items()],
    )

    # Strimzi's part: the topics the KafkaTopics describe
    for topic in topics:
        kafka.create_topic(topic["spec"].get("topicName", topic["metadata"]["name"]), topic["spec"]["partitions"])
    topic_name = topics[0]["spec"].get("topicName", topics[0]["metadata"]["name"])

    # the ingestion container, as the Deployment says, fed by the replay server instead of Coinbase
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][:3] == ["python", "-m", "cryptopipe.ingest"]
    env = resolve_env(kube, ns, container["env"])
    assert env["CRYPTOPIPE_INGEST_TOPIC"] == topic_name
    with ReplayServer([RECORDING], speed="max") as server:
        env |= {
            "CRYPTOPIPE_INGEST_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "CRYPTOPIPE_INGEST_WS_URL": server.url,
            "CRYPTOPIPE_INGEST_REST_URL": server.rest_url,
            "CRYPTOPIPE_INGEST_HTTP_PORT": str(free_port()),
            "CRYPTOPIPE_INGEST_HTTP_HOST": "127.0.0.1",
        }
        ingestion = ManagedProcess(
            [sys.executable, *container["command"][1:], *container.get("args", [])],
            env=env,
            log_path=tmp_path / "ingestion.log",
            name="ingestion",
        ).start()
        try:
            server.wait_done(60)
            expected = recorded_trades(RECORDING)
            # every trade of the recording is in the topic: stop (SIGTERM flushes)
            wait_for(
                lambda: _count_trades(kafka, topic_name) >= len(expected),
                60,
                "trades in Kafka",
                process=ingestion,
                interval=0.5,
            )
        finally:
            ingestion.stop(timeout=30)
    assert ingestion.returncode == 0, ingestion.log_tail()

    # a tick past the last window, so that every candle of the recording closes
    last_us = max(t for t, _, _ in expected.values())
    produce(
        kafka,
        topic_name,
        [Tick(p, last_us + 120_000_000, last_us + 120_000_000, "exchange") for p in ("BTC-USD", "ETH-USD")],
    )

    # the Spark job, with the SparkApplication's arguments, sparkConf and env
    spec = app["spec"]
    assert spec["mainApplicationFile"].endswith("spark-apps/candles_job/main.py")
    args = swap_arg(spec["arguments"], "--kafka-bootstrap", kafka.bootstrap)
    args = swap_arg(args, "--s3-endpoint", s3.endpoint)
    args = swap_arg(args, "--metrics-port", str(free_port()))
    conf = {k: (s3.endpoint if v == CLUSTER_S3 else v) for k, v in spec["sparkConf"].items()}
    job = spark_job_process(
        args, spark_conf=conf, env=resolve_env(kube, ns, spec["driver"]["env"]), log_path=tmp_path / "spark-job.log"
    ).start()
    try:
        lake = LakeLocation("lake", f"cluster-{ns}")
        reference = reference_candles(expected)

        def all_candles():
            table = read_candles(lake, s3.arrow_filesystem(), window="1m")
            return table if table.num_rows >= len(reference) else None

        table = wait_for(all_candles, 240, "candles in the lake", process=job, interval=1)
    finally:
        job.stop(timeout=20)
    got = [{k: v for k, v in row.items() if k not in ("first_trade_id", "last_trade_id")} for row in table.to_pylist()]
    assert got == reference


def _count_trades(kafka, topic: str) -> int:
    from kafka import KafkaConsumer

    from cryptopipe.contracts import decode_record

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1500,
        enable_auto_commit=False,
    )
    try:
        return len({(r.product_id, r.trade_id) for m in consumer if (r := decode_record(m.value)).kind == "trade"})
    finally:
        consumer.close()
