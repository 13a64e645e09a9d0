"""Spark settings for running on this machine or submitting to a cluster: a pure function, so the
local job runner, the tests' SparkSession and spark-submit agree on every key.

    conf = spark_conf(s3=s3.connection, jars=paths.spark_jars())
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)

The candle job sets its own job-level settings (shuffle partitions, s3a from its JobSettings) when
it builds its session; those win over these defaults.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from os import PathLike, fspath

from cryptopipe.lake.s3 import S3Connection


def spark_conf(
    *,
    s3: S3Connection | None = None,
    jars: Iterable[str | PathLike[str]] = (),
    cores: int = 2,
    master: str | None = None,
    driver_memory: str = "1g",
    ui: bool = False,
    python: str | None = None,
) -> dict[str, str]:
    """Spark settings for local mode (``master`` defaults to ``local[cores]``) or a cluster.

    ``s3`` adds the s3a settings (path-style and plain http for an endpoint such as MinIO or the
    local S3 server; nothing but credentials for AWS). ``jars`` are absolute local paths (no Ivy
    resolution, which would need the network). ``python`` is the interpreter for PySpark's driver
    and workers (the venv with cryptopipe installed).

    In local mode the jars go on the driver's class path rather than into ``spark.jars``: the
    executor is the driver's JVM, and ``spark.jars`` would make it copy every jar (600+ MB with the
    AWS SDK bundle) into a temp folder at each start. In a cluster they go into ``spark.jars``.
    """
    conf: dict[str, str] = {
        "spark.master": master or f"local[{cores}]",
        "spark.driver.memory": driver_memory,
        # About the core count: the 200 default makes each micro-batch schedule 200 tiny tasks.
        "spark.sql.shuffle.partitions": str(cores),
        "spark.default.parallelism": str(cores),
        # Candles are UTC minutes; never let the JVM's default zone move window boundaries.
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": str(ui).lower(),
        # the UI is for looking: its kill links would let anyone who reaches port 4040 stop the job
        "spark.ui.killEnabled": "false",
    }
    local = conf["spark.master"].startswith("local")
    if local:
        # The driver otherwise binds a non-loopback address (192.0.2.x here) that may not route.
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    jar_list = [fspath(j) for j in jars]
    if jar_list and local:
        conf["spark.driver.extraClassPath"] = os.pathsep.join(jar_list)
    elif jar_list:
        conf["spark.jars"] = ",".join(jar_list)
    if python:
        conf["spark.pyspark.python"] = python
        conf["spark.pyspark.driver.python"] = python
    if s3 is not None:
        conf |= s3.s3a_conf()
    return conf
