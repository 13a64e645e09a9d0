"""Session-wide real services for the component and e2e tests (a pytest plugin, loaded by tests/conftest.py).

``kafka`` (a KRaft broker) and ``s3`` (versitygw with the bucket "lake") start once per session, on
free ports on 127.0.0.1, only when a test asks for them. ``spark`` is a local[2] SparkSession
wired to ``s3``. A missing jar or binary fails the test with "run scripts/bootstrap.sh"; it never
skips, so a broken machine cannot pass. When a test that used a service fails, the service's log
tail is added to the failure report, and at the end of the session the logs are copied to
.work/test-logs/<time>/. Other long-lived processes a test starts (the control plane, the
operator) join that report with ``running()`` or ``register()``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest

from cryptopipe.spark_conf import spark_conf
from cryptopipe_dev.stack.kafka import KafkaBroker
from cryptopipe_dev.stack.paths import MissingDependency, spark_jars
from cryptopipe_dev.stack.s3server import S3Server
from tests.support.paths import REPO

KEPT_LOGS = REPO / ".work" / "test-logs"
LAKE_BUCKET = "lake"
LOG_TAIL_LINES = 40


class _Service(Protocol):
    log_path: Path

    def start(self) -> Any: ...
    def stop(self) -> None: ...


# fixture name -> service, for the failure report and for keeping logs
_services: dict[str, _Service] = {}


def register(name: str, service: _Service) -> None:
    """Add ``service``'s log to the report of a failing test that uses the fixture ``name``."""
    _services[name] = service


@contextmanager
def running(name: str, service: _Service) -> Iterator[None]:
    """Start ``service`` for the fixture ``name`` and stop it afterwards; a missing dependency fails the test."""
    register(name, service)  # before start(): a failed start-up is what its log explains
    try:
        service.start()
    except MissingDependency as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield
    finally:
        service.stop()


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def kafka(services_dir: Path) -> Iterator[KafkaBroker]:
    # die_with_parent: a pytest killed with SIGKILL must not leave a JVM on a shared machine
    broker = KafkaBroker(services_dir / "kafka", die_with_parent=True)
    with running("kafka", broker):
        yield broker


@pytest.fixture(scope="session")
def s3(services_dir: Path) -> Iterator[S3Server]:
    server = S3Server(services_dir / "s3", die_with_parent=True)
    with running("s3", server):
        server.create_bucket(LAKE_BUCKET)
        yield server


@pytest.fixture(scope="session")
def spark_jar_paths() -> list[Path]:
    try:
        return spark_jars()
    except MissingDependency as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def spark(s3: S3Server, spark_jar_paths: list[Path]) -> Iterator[Any]:
    """local[2] SparkSession with the Kafka and s3a connectors, s3a pointed at ``s3``."""
    from pyspark.sql import SparkSession

    # the driver otherwise resolves the hostname and picks a non-loopback interface
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    conf = spark_conf(s3=s3.connection, jars=spark_jar_paths, cores=2)
    builder = SparkSession.builder.appName("cryptopipe-tests")
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    try:
        yield session
    finally:
        session.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for name, service in _services.items():
        if name in getattr(item, "fixturenames", ()):
            report.sections.append((f"{name} log tail ({service.log_path})", _tail(service.log_path)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not session.testsfailed or not _services:
        return
    dest = KEPT_LOGS / time.strftime("%Y%m%d-%H%M%S")
    dest.mkdir(parents=True, exist_ok=True)
    for name, service in _services.items():
        if service.log_path.exists():
            shutil.copy2(service.log_path, dest / f"{name}.log")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"service logs kept in {dest}")


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
