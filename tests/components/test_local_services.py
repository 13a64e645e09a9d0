"""The local services the pipeline runs on, exercised through the clients the pipeline uses:
kafka-python against the real KRaft broker; boto3, pyarrow and s3fs against the local S3 server
(versitygw); and Spark's Kafka source and s3a (batch Parquet and a streaming checkpoint) against both.

Each S3 test names the behaviour of real S3 that a client depends on. They were written against
s3s-fs 0.14, which failed four of them (hence the switch to versitygw), and keep any replacement
server honest.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import s3fs
from boto3.s3.transfer import TransferConfig
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from pyarrow import fs as pafs

from cryptopipe_dev.stack.kafka import KafkaBroker
from cryptopipe_dev.stack.s3server import S3Server

pytestmark = pytest.mark.components

MiB = 1 << 20
BUCKET = "lake"


def unique(name: str) -> str:
    """Tests share the session's broker and bucket: every test writes under its own names."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=unique("test"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    try:
        consumer.subscribe([topic])
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(consumer)  # stops after consumer_timeout_ms without records
        consumer.commit()
        committed = {p: consumer.committed(TopicPartition(topic, p)) for p in consumer.partitions_for_topic(topic)}
        assert sum(v or 0 for v in committed.values()) == len(records), "group offsets not committed"
        return records
    finally:
        consumer.close()


# --- Kafka ----------------------------------------------------------------------------------------


def test_idempotent_producer_round_trip_keeps_per_key_order(kafka: KafkaBroker) -> None:
    topic = unique("roundtrip")
    kafka.create_topic(topic, partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    sent = [(f"BTC-USD-{i % 5}".encode(), str(i).encode()) for i in range(500)]
    for key, value in sent:
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=30)
    producer.close()

    records = consume_all(kafka.bootstrap, topic, expected=len(sent))

    assert sorted((r.key, r.value) for r in records) == sorted(sent)
    by_key: dict[bytes, list[int]] = {}
    partitions: dict[bytes, set[int]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(r.key, []).append(int(r.value))
        partitions.setdefault(r.key, set()).add(r.partition)
    assert all(values == sorted(values) for values in by_key.values()), "a key's records were reordered"
    assert all(len(p) == 1 for p in partitions.values()), "a key was spread over partitions"
    assert len({p for ps in partitions.values() for p in ps}) > 1, "all keys in one partition: the test proves little"


def test_create_topic_sets_partitions_and_config_and_is_idempotent(kafka: KafkaBroker) -> None:
    topic = unique("created")
    kafka.create_topic(topic, partitions=4, config={"retention.ms": "3600000", "cleanup.policy": "delete"})
    kafka.create_topic(topic, partitions=4)  # already there, same shape: fine

    admin = kafka.admin()
    try:
        (described,) = admin.describe_topics([topic])
        assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2, 3]
        assert all(p["leader_id"] == 1 for p in described["partitions"])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
        assert configs["retention.ms"]["value"] == "3600000"
    finally:
        admin.close()
    with pytest.raises(ValueError, match="4 partitions"):
        kafka.create_topic(topic, partitions=2)


def test_broker_refuses_unknown_topics(kafka: KafkaBroker) -> None:
    # auto.create.topics.enable=false: a misspelt topic must fail, not appear silently
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, max_block_ms=2000)
    try:
        with pytest.raises(Exception, match="(?i)timeout|not present|unknown"):
            producer.send(unique("typo"), b"x").get(timeout=5)
    finally:
        producer.close(timeout=2)
    admin = kafka.admin()
    try:
        assert not [t for t in admin.list_topics() if t.startswith("typo-")]
    finally:
        admin.close()


def test_broker_keeps_data_and_port_across_clean_and_crash_restarts(tmp_path: Path) -> None:
    # its own broker: the session's is shared with every other test
    with KafkaBroker(tmp_path / "kafka", die_with_parent=True) as broker:
        bootstrap = broker.bootstrap
        broker.create_topic("durable", partitions=2)
        producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
        for i in range(50):
            producer.send("durable", key=b"k", value=str(i).encode())
        producer.flush()
        producer.close()

        broker.stop()
        assert not broker.alive
        broker.start()
        assert broker.bootstrap == bootstrap
        broker.kill()  # SIGKILL: acked records are in the page cache, so they survive a crash too
        broker.start()

        values = [int(r.value) for r in consume_all(bootstrap, "durable", expected=50)]
        assert values == list(range(50))
        assert broker.startup_seconds < 60


# --- S3 ---------------------------------------------------------------------------------------------


def test_boto3_put_get_list_copy_delete_and_multipart(s3: S3Server) -> None:
    client = s3.boto3_client()
    prefix = unique("boto3")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/small.txt", Body=b"hello")
    assert client.get_object(Bucket=BUCKET, Key=f"{prefix}/small.txt")["Body"].read() == b"hello"

    big = os.urandom(12 * MiB)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    client.upload_fileobj(io.BytesIO(big), BUCKET, f"{prefix}/big.bin", Config=config)
    head = client.head_object(Bucket=BUCKET, Key=f"{prefix}/big.bin")
    assert head["ContentLength"] == len(big)
    assert head["ETag"].strip('"').endswith("-3"), "not a 3-part multipart upload"
    assert "ContentEncoding" not in head, "the upload's aws-chunked transfer encoding was stored"
    ranged = client.get_object(Bucket=BUCKET, Key=f"{prefix}/big.bin", Range=f"bytes={6 * MiB}-{6 * MiB + 99}")
    assert ranged["Body"].read() == big[6 * MiB : 6 * MiB + 100]

    # Hadoop s3a renames by CopyObject + DeleteObject(s)
    source = {"Bucket": BUCKET, "Key": f"{prefix}/big.bin"}
    client.copy_object(Bucket=BUCKET, Key=f"{prefix}/moved/big.bin", CopySource=source)
    client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": f"{prefix}/big.bin"}]})
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    assert [o["Key"] for o in listing["Contents"]] == [f"{prefix}/moved/big.bin", f"{prefix}/small.txt"]
    assert client.get_object(Bucket=BUCKET, Key=f"{prefix}/moved/big.bin")["Body"].read() == big

    top = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/", Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == [f"{prefix}/small.txt"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == [f"{prefix}/moved/"]


def test_prefixes_and_directory_markers_behave_as_on_s3(s3: S3Server) -> None:
    client = s3.boto3_client()
    prefix = unique("markers")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/table/p=1/part-0.parquet", Body=b"x")

    # a prefix is not an object: 404 (s3s-fs 0.14 answered 500 "Is a directory"; s3a retried forever)
    with pytest.raises(client.exceptions.ClientError, match="404"):
        client.head_object(Bucket=BUCKET, Key=f"{prefix}/table")
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket=BUCKET, Key=f"{prefix}/table/p=1")

    # an empty directory marker (what s3a's mkdirs writes) lists and HEADs as an object
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/checkpoint/offsets/", Body=b"")
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/checkpoint/offsets/", Delimiter="/")
    assert [o["Key"] for o in listed["Contents"]] == [f"{prefix}/checkpoint/offsets/"]
    assert client.head_object(Bucket=BUCKET, Key=f"{prefix}/checkpoint/offsets/")["ContentLength"] == 0

    # deleting the last object under a prefix makes the prefix disappear
    client.delete_object(Bucket=BUCKET, Key=f"{prefix}/table/p=1/part-0.parquet")
    client.delete_object(Bucket=BUCKET, Key=f"{prefix}/checkpoint/offsets/")
    assert client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")["KeyCount"] == 0


def test_long_keys_keep_their_metadata(s3: S3Server) -> None:
    # as long as the keys of s3a's task attempts (s3s-fs 0.14 failed with "File name too long")
    client = s3.boto3_client()
    attempt = "_temporary/0/_temporary/attempt_202611260123352180198597164943966_0000_m_000000_0"
    key = f"{unique('long')}/{attempt}/{attempt}/{attempt}/part-00000.parquet"
    assert len(key) > 255
    client.put_object(
        Bucket=BUCKET, Key=key, Body=b"v", ContentType="application/x-parquet", Metadata={"writer": "test"}
    )
    head = client.head_object(Bucket=BUCKET, Key=key)
    assert (head["ContentType"], head["Metadata"]) == ("application/x-parquet", {"writer": "test"})
    client.copy_object(Bucket=BUCKET, Key=key + ".copy", CopySource={"Bucket": BUCKET, "Key": key})
    client.delete_object(Bucket=BUCKET, Key=key)
    assert client.get_object(Bucket=BUCKET, Key=key + ".copy")["Body"].read() == b"v"


def test_pyarrow_dataset_round_trip_and_large_stream(s3: S3Server) -> None:
    filesystem = s3.arrow_filesystem()
    root = f"{BUCKET}/{unique('arrow')}"
    products = ["BTC-USD", "ETH-USD", "SOL-USD"]
    table = pa.table({"minute": list(range(600)), "product": [products[i % 3] for i in range(600)]})
    pq.write_to_dataset(table, f"{root}/candles", partition_cols=["product"], filesystem=filesystem)

    assert filesystem.get_file_info(f"{root}/candles").type == pafs.FileType.Directory
    read = ds.dataset(f"{root}/candles", filesystem=filesystem, partitioning="hive").to_table()
    assert sorted(read.column("minute").to_pylist()) == list(range(600))
    assert set(read.column("product").to_pylist()) == {"BTC-USD", "ETH-USD", "SOL-USD"}

    big = os.urandom(12 * MiB)  # above pyarrow's part size: a multipart upload
    with filesystem.open_output_stream(f"{root}/big.bin") as out:
        out.write(big)
    filesystem.move(f"{root}/big.bin", f"{root}/moved.bin")
    with filesystem.open_input_file(f"{root}/moved.bin") as f:
        assert f.read() == big
    assert filesystem.get_file_info(f"{root}/big.bin").type == pafs.FileType.NotFound

    filesystem.delete_dir(f"{root}/candles")
    assert filesystem.get_file_info(f"{root}/candles").type == pafs.FileType.NotFound


def test_s3fs_write_find_move_and_recursive_delete(s3: S3Server) -> None:
    fs = s3fs.S3FileSystem(**s3.storage_options(), skip_instance_cache=True)
    root = f"{BUCKET}/{unique('s3fs')}"
    fs.pipe({f"{root}/a.json": b"{}", f"{root}/d/b.json": b"[]", f"{root}/d/e/c.json": b"1"})

    # find is a listing with an empty Delimiter
    assert fs.find(root) == [f"{root}/a.json", f"{root}/d/b.json", f"{root}/d/e/c.json"]
    assert fs.ls(root, detail=False) == [f"{root}/a.json", f"{root}/d"]
    assert fs.info(f"{root}/d")["type"] == "directory"

    big = os.urandom(11 * MiB)
    with fs.open(f"{root}/big.bin", "wb", block_size=5 * MiB) as f:  # 3 parts
        f.write(big)
    fs.mv(f"{root}/big.bin", f"{root}/d/big.bin")
    assert fs.cat(f"{root}/d/big.bin") == big

    fs.rm(f"{root}/d", recursive=True)
    fs.invalidate_cache()
    assert fs.find(root) == [f"{root}/a.json"]
    assert not fs.exists(f"{root}/d")


def test_s3_server_restart_keeps_objects_and_endpoint(tmp_path: Path) -> None:
    with S3Server(tmp_path / "s3", die_with_parent=True) as server:
        server.create_bucket("keep")
        server.create_bucket("keep")  # idempotent
        endpoint = server.endpoint
        server.boto3_client().put_object(Bucket="keep", Key="k", Body=b"v")
        server.stop()
        server.start()
        assert server.endpoint == endpoint
        assert server.boto3_client().get_object(Bucket="keep", Key="k")["Body"].read() == b"v"


# --- Spark ------------------------------------------------------------------------------------------


@pytest.mark.spark
def test_spark_s3a_parquet_write_overwrite_and_read(spark: Any, s3: S3Server) -> None:
    path = f"{BUCKET}/{unique('spark-batch')}"
    frame = spark.range(300).selectExpr("id", "id % 3 AS p")
    frame.write.mode("overwrite").partitionBy("p").parquet(f"s3a://{path}")
    # overwrite deletes through s3a and renames the new output in (copy + delete)
    frame.where("id < 30").write.mode("overwrite").partitionBy("p").parquet(f"s3a://{path}")

    rows = spark.read.parquet(f"s3a://{path}").collect()
    assert sorted(r.id for r in rows) == list(range(30))
    assert all(r.p == r.id % 3 for r in rows), "partition column not restored from the p=N folders"

    listing = s3.boto3_client().list_objects_v2(Bucket=BUCKET, Prefix=path.split("/", 1)[1] + "/")
    keys = [o["Key"] for o in listing["Contents"]]
    assert not [k for k in keys if "_temporary" in k], f"commit left temporary files: {keys}"
    assert any(k.endswith("/_SUCCESS") for k in keys)


@pytest.mark.spark
def test_spark_stream_checkpoints_on_s3a_and_resumes_exactly_once(spark: Any, s3: S3Server) -> None:
    path = f"{BUCKET}/{unique('spark-stream')}"
    out, checkpoint = f"s3a://{path}/out", f"s3a://{path}/checkpoint"

    def run_until(batches: int) -> int:
        query = (
            spark.readStream.format("rate")
            .option("rowsPerSecond", 20)
            .load()
            .writeStream.format("parquet")
            .option("path", out)
            .option("checkpointLocation", checkpoint)
            .trigger(processingTime="500 milliseconds")
            .start()
        )
        try:
            deadline = time.monotonic() + 90
            while (query.lastProgress or {}).get("batchId", -1) < batches - 1 + first_batch:
                assert query.exception() is None, query.exception()
                assert time.monotonic() < deadline, f"no progress: {query.recentProgress}"
                time.sleep(0.2)
            return query.lastProgress["batchId"]
        finally:
            query.stop()

    first_batch = 0
    last = run_until(2)
    first_batch = last + 1
    resumed = run_until(2)  # the same checkpoint: continues after the last committed batch

    assert resumed > last
    offsets = s3.boto3_client().list_objects_v2(Bucket=BUCKET, Prefix=f"{path.split('/', 1)[1]}/checkpoint/offsets/")
    assert {o["Key"].rsplit("/", 1)[1] for o in offsets["Contents"]} >= {"0", "1", str(resumed)}
    values = [r.value for r in spark.read.parquet(out).select("value").collect()]
    assert values, "the file sink committed nothing"
    # the rate source numbers rows 0, 1, 2, ...: no gap and no duplicate across the restart
    assert sorted(values) == list(range(len(values)))


@pytest.mark.spark
def test_spark_reads_the_broker_through_the_kafka_connector(spark: Any, kafka: KafkaBroker) -> None:
    topic = unique("spark-kafka")
    kafka.create_topic(topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=True, acks="all")
    for i in range(40):
        producer.send(topic, key=f"k{i % 4}".encode(), value=str(i).encode())
    producer.flush()
    producer.close()

    rows = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka.bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
        .selectExpr("CAST(value AS STRING) AS value", "partition")
        .collect()
    )
    assert sorted(int(r.value) for r in rows) == list(range(40))
    assert {r.partition for r in rows} == {0, 1}
