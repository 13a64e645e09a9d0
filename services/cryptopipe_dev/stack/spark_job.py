"""Run the candle job the way a SparkApplication would: its mainApplicationFile, its arguments and
its sparkConf, here through spark-submit in local mode instead of through spark-operator.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptopipe.spark_conf import spark_conf
from cryptopipe_dev.repo import SPARK_JOB_MAIN
from cryptopipe_dev.stack.paths import spark_jars
from cryptopipe_dev.stack.procs import ManagedProcess

JOB_MAIN = SPARK_JOB_MAIN


# The local-mode JVM (driver and executor in one) with the heap kept near its live set: G1, the
# default, grew the 1 GiB heap to nearly all of it at 20 trades/s (935 MiB RSS) and kept it, plus its
# remembered sets. SerialGC gives the heap back down to MaxHeapFreeRatio after a collection; on 2
# cores its single-threaded collections cost little. -Xmx (spark.driver.memory) is unchanged: the
# job's state and a catch-up batch still have the whole 1 GiB.
LOCAL_DRIVER_JAVA_OPTIONS = "-XX:+UseSerialGC -XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=30"


def local_spark_conf(cores: int = 2, driver_memory: str = "1g") -> dict[str, str]:
    """What local mode needs on top of the job's own conf (the cluster gets these from spark-operator)."""
    conf = spark_conf(jars=spark_jars(), cores=cores, driver_memory=driver_memory, python=sys.executable)
    conf["spark.driver.extraJavaOptions"] = LOCAL_DRIVER_JAVA_OPTIONS
    return conf


def spark_submit_command(
    arguments: Sequence[str], spark_conf: Mapping[str, str], main_file: Path = JOB_MAIN
) -> list[str]:
    submit = Path(sys.executable).with_name("spark-submit")
    command = [str(submit)]
    for key, value in spark_conf.items():
        if key == "spark.master":
            command += ["--master", value]
        else:
            command += ["--conf", f"{key}={value}"]
    return [*command, str(main_file), *arguments]


def spark_job_process(
    arguments: Sequence[str],
    *,
    log_path: Path,
    spark_conf: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    cores: int = 2,
) -> ManagedProcess:
    """A ManagedProcess for the job; ``spark_conf`` is the SparkApplication's sparkConf."""
    conf = {**local_spark_conf(cores), **(spark_conf or {})}
    child_env = {"PYSPARK_PYTHON": sys.executable, "PYTHONUNBUFFERED": "1", **(env or {})}
    # cryptopipe is importable from the venv; candles_job via main.py's own sys.path entry
    child_env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return ManagedProcess(
        spark_submit_command(arguments, conf),
        log_path=log_path,
        env=child_env,
        name="spark-candles-job",
        cwd=Path(os.getcwd()),
    )
