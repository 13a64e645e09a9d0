"""The lake monitor reads the ingestion's counted-unfillable trade ids from the dead-letter topic
(issue 10): a hole in a product's ids that the ingestion counted is "unfillable", not "lost", in the
monitor service's metrics (so CryptopipeLakeTradeIdsLost stays quiet) and in `cryptopipe monitor
report`. Real Kafka, real S3 server, the monitor as a process."""

from __future__ import annotations

import json
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from cryptopipe.contracts import unfillable_ranges
from cryptopipe.ingest.producer import dead_letter_value
from cryptopipe.lake.layout import LakeLocation
from cryptopipe_dev.stack.procs import wait_for
from tests.components.test_lake_monitor import cryptopipe, iso, monitor_process, s3_env, samples, stack_dir
from tests.support.http_probe import http_get
from tests.support.local_services import LAKE_BUCKET
from tests.support.synthetic_candles import candle_rows, write_candles

pytestmark = pytest.mark.components


@pytest.fixture
def counted_hole(s3: Any, kafka: Any) -> dict[str, Any]:
    """BTC-USD candles whose ids jump by 7 after minute 5, and a dead-letter topic in which the
    ingestion counted 5 of those ids as unfillable (two runs), next to an ordinary dead letter."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=10)
    rows = candle_rows("BTC-USD", start, 10, seed=3)
    for row in rows[5:]:
        row["first_trade_id"] += 7
        row["last_trade_id"] += 7
    first, last = rows[4]["last_trade_id"] + 1, rows[5]["first_trade_id"] - 1
    prefix = f"monitor-{uuid.uuid4().hex[:8]}/counted"
    write_candles(rows, lake=LakeLocation(LAKE_BUCKET, prefix), filesystem=s3.connection.arrow_filesystem())
    dlq = f"dlq-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(dlq, 2)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    try:
        producer.send(dlq, dead_letter_value("bad json", b"{", "exchange", 1))
        counted = [*range(first, first + 3), *range(last - 1, last + 1)]  # ids first..first+2 and last-1..last
        for record in unfillable_ranges("BTC-USD", counted, "not_returned", 1):
            producer.send(dlq, record.to_json(), key=b"BTC-USD")
        producer.flush()
    finally:
        producer.close()
    return {"start": start, "end": end, "prefix": prefix, "dlq": dlq, "hole": (first, last)}


def _missing(values: dict) -> dict[str, float]:
    return {
        dict(k)["kind"]: v
        for (name, k), v in values.items()
        if name == "cryptopipe_lake_trade_ids_missing" and dict(k)["product_id"] == "BTC-USD"
    }


def test_the_service_counts_what_the_ingestion_counted_as_unfillable(
    s3: Any, kafka: Any, counted_hole: dict, tmp_path: Path
) -> None:
    env = s3_env(
        s3,
        CRYPTOPIPE_MONITOR_PREFIX=counted_hole["prefix"],
        CRYPTOPIPE_MONITOR_LOOKBACK="1h",
        CRYPTOPIPE_MONITOR_KAFKA_BOOTSTRAP=kafka.bootstrap,
        CRYPTOPIPE_MONITOR_DLQ_TOPIC=counted_hole["dlq"],
    )
    proc, base = monitor_process(tmp_path, env, "monitor-counted")
    try:
        wait_for(lambda: http_get(base + "/readyz")[0] == 200, 60, "monitor /readyz", process=proc, retry_on=(OSError,))
        _text, values = samples(base)
        # 7 ids missing: the 5 the ingestion counted are unfillable, the 2 between them lost
        assert _missing(values) == {"lost": 2.0, "unfillable": 5.0}
    finally:
        proc.kill(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, proc.log_tail()


def test_the_report_reads_the_stacks_dead_letter_topic(s3: Any, kafka: Any, counted_hole: dict, tmp_path: Path) -> None:
    work = stack_dir(tmp_path, s3, counted_hole["prefix"])
    state = json.loads((work / "stack.json").read_text())
    state |= {"kafka": kafka.bootstrap, "dlq_topic": counted_hole["dlq"]}
    (work / "stack.json").write_text(json.dumps(state))
    window = ["--from", iso(counted_hole["start"]), "--to", iso(counted_hole["end"]), "--format", "json"]
    report = cryptopipe("monitor", "report", "--work-dir", str(work), *window)
    assert report.returncode == 1, report.stderr  # 2 ids are still lost
    summary = json.loads(report.stdout.splitlines()[-1])["summary"]
    assert summary["trade_ids"] == {"lost": 2, "unfillable": 5, "duplicated": 0}
    # the 2 lost ids counted too (a file, as before): nothing left to alert on
    first, last = counted_hole["hole"]
    extra = tmp_path / "more.json"
    extra.write_text(json.dumps({"BTC-USD": [[first + 3, last - 2]]}))
    report = cryptopipe("monitor", "report", "--work-dir", str(work), "--unfillable", str(extra), *window)
    assert report.returncode == 0, report.stdout + report.stderr
    assert json.loads(report.stdout.splitlines()[-1])["summary"]["trade_ids"]["unfillable"] == 7
