"""spark_conf: the one place the Spark job, the local stack and the tests get their settings."""

from __future__ import annotations

from pathlib import Path

from cryptopipe.lake.s3 import S3Connection
from cryptopipe.spark_conf import spark_conf

JARS = [Path("/cache/spark-jars/hadoop-aws-3.4.2.jar"), Path("/cache/spark-jars/bundle-2.29.52.jar")]


def test_local_mode_puts_jars_on_the_driver_class_path_and_binds_loopback() -> None:
    conf = spark_conf(jars=JARS, cores=2, python="/venv/bin/python")
    assert conf["spark.master"] == "local[2]"
    assert conf["spark.driver.extraClassPath"] == ":".join(str(j) for j in JARS)
    assert "spark.jars" not in conf  # would copy 600+ MB per start
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.sql.shuffle.partitions"] == "2"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.pyspark.python"] == conf["spark.pyspark.driver.python"] == "/venv/bin/python"


def test_cluster_mode_ships_jars_and_keeps_the_driver_address() -> None:
    conf = spark_conf(master="k8s://https://kubernetes.default.svc", jars=JARS, cores=4)
    assert conf["spark.jars"] == ",".join(str(j) for j in JARS)
    assert "spark.driver.extraClassPath" not in conf
    assert "spark.driver.host" not in conf
    assert conf["spark.sql.shuffle.partitions"] == "4"


def test_s3_lookalike_gets_path_style_plain_http_and_a_region() -> None:
    conf = spark_conf(s3=S3Connection("http://127.0.0.1:8014", "ak", "sk"))
    assert {k: v for k, v in conf.items() if k.startswith("spark.hadoop.fs.s3a.")} == {
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:8014",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.access.key": "ak",
        "spark.hadoop.fs.s3a.secret.key": "sk",
    }
    minio = spark_conf(s3=S3Connection("https://minio.lake.svc:9000", "ak", "sk"))
    assert minio["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"


def test_aws_needs_no_endpoint_settings() -> None:
    conf = spark_conf(s3=S3Connection(None, "ak", "sk"))
    s3a = {k for k in conf if k.startswith("spark.hadoop.fs.s3a.")}
    assert s3a and not s3a & {"spark.hadoop.fs.s3a.endpoint", "spark.hadoop.fs.s3a.path.style.access"}
    assert "spark.jars" not in spark_conf()
