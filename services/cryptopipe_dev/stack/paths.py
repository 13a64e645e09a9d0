"""Where scripts/bootstrap.sh installs the local stack (same defaults as scripts/env.sh)."""

from __future__ import annotations

import os
from pathlib import Path


class MissingDependency(RuntimeError):
    """A jar or binary that scripts/bootstrap.sh installs is not there."""


def cache_dir() -> Path:
    return Path(os.environ.get("CRYPTOPIPE_CACHE", Path.home() / ".cache" / "cryptopipe"))


def kafka_libs() -> Path:
    return Path(os.environ.get("KAFKA_LIBS", cache_dir() / "kafka-libs"))


def spark_jars_dir() -> Path:
    return Path(os.environ.get("SPARK_JARS", cache_dir() / "spark-jars"))


def versitygw_bin() -> Path:
    return Path(os.environ.get("VERSITYGW_BIN", cache_dir() / "versitygw" / "bin" / "versitygw"))


def prometheus_bin() -> Path:
    """Debian's prometheus package (scripts/bootstrap.sh installs it with apt-get)."""
    return Path(os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus"))


def promtool_bin() -> Path:
    return Path(os.environ.get("PROMTOOL_BIN", "/usr/bin/promtool"))


def require_jars(folder: Path, what: str) -> list[Path]:
    """The jars in ``folder``, sorted; raises MissingDependency when it has none."""
    jars = sorted(folder.glob("*.jar"))
    if not jars:
        raise MissingDependency(f"{what}: no jars in {folder}. Run scripts/bootstrap.sh")
    return jars


def require_file(path: Path, what: str) -> Path:
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise MissingDependency(f"{what}: {path} is missing. Run scripts/bootstrap.sh")
    return path


def spark_jars() -> list[Path]:
    """Absolute paths of the Kafka source and s3a connector jars for ``spark.jars``."""
    return require_jars(spark_jars_dir(), "Spark connector jars")
