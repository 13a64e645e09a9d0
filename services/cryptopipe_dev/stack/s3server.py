"""A real on-disk S3 server on 127.0.0.1: Versity's S3 gateway (versitygw) over a folder, standing in
for MinIO. Built by scripts/bootstrap.sh from the Go module proxy.

    with S3Server(tmp_path / "s3") as s3:
        s3.create_bucket("lake")
        pq.write_table(table, "lake/t.parquet", filesystem=s3.connection.arrow_filesystem())

Clients get their settings from ``s3.connection`` (cryptopipe.lake.s3.S3Connection), the same
object the Spark job and the lake reader use against MinIO in a cluster.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Self

from cryptopipe.lake.s3 import S3Connection
from cryptopipe_dev.stack import paths
from cryptopipe_dev.stack.procs import LOOPBACK, ManagedProcess, free_port, port_open, wait_for

log = logging.getLogger(__name__)

DEFAULT_ACCESS_KEY = "cryptopipe"
DEFAULT_SECRET_KEY = "cryptopipe-secret"


class S3Server:
    """versitygw serving ``work_dir/data`` (buckets are folders) on a free port; log ``work_dir/versitygw.log``.

    Data survives ``stop()``/``start()``, and the port is kept, so a restart is invisible to clients.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        binary: Path | None = None,
        startup_timeout: float = 30.0,
        die_with_parent: bool = False,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.data_dir = self.work_dir / "data"
        self.log_path = self.work_dir / "versitygw.log"
        self.access_key = access_key
        self.secret_key = secret_key
        self.binary = binary or paths.versitygw_bin()
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.port = 0
        self.startup_seconds = 0.0
        self.process: ManagedProcess | None = None

    @property
    def endpoint(self) -> str:
        if not self.port:
            raise RuntimeError("s3 server not started")
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def connection(self) -> S3Connection:
        return S3Connection(self.endpoint, self.access_key, self.secret_key)

    @property
    def root(self) -> Path:
        """The folder holding the buckets: a bucket's objects are plain files under root/bucket/."""
        return self.data_dir

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.alive

    def start(self) -> Self:
        if self.alive:
            return self
        binary = paths.require_file(self.binary, "versitygw")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        for attempt in range(3):
            self.port = self.port or free_port()
            self.process = ManagedProcess(
                [
                    binary,
                    "--port",
                    f"{LOOPBACK}:{self.port}",
                    "--access",
                    self.access_key,
                    "--secret",
                    self.secret_key,
                    "--region",
                    self.connection.region,
                    # VGW_LOG_LEVEL=debug in the environment logs every request, for diagnosing clients
                    "posix",
                    self.data_dir,
                ],
                log_path=self.log_path,
                name="versitygw",
                die_with_parent=self.die_with_parent,
            ).start()
            try:
                wait_for(
                    lambda: port_open(LOOPBACK, self.port), self.startup_timeout, "versitygw", process=self.process
                )
                # A signed request, so a wrong key or a broken server fails here, not in a test.
                boto3_client(self.connection).list_buckets()
                break
            except BaseException as exc:
                taken = isinstance(exc, RuntimeError) and "in use" in self.process.log_tail(20).lower()
                self.process.stop()
                if not taken or attempt == 2:
                    raise
                self.port = 0  # someone took the free port first
        self.startup_seconds = time.monotonic() - began
        log.info("versitygw ready", extra={"endpoint": self.endpoint, "seconds": round(self.startup_seconds, 2)})
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            self.process.stop(timeout)

    def create_bucket(self, name: str) -> None:
        """Create ``name``; an existing bucket is fine (idempotent)."""
        client = boto3_client(self.connection)
        try:
            client.create_bucket(Bucket=name)
        except (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
            # some servers answer BucketAlreadyExists (AWS: "someone else's") for our own bucket,
            # so check that we can use it rather than trusting the error code
            client.head_bucket(Bucket=name)

    def storage_options(self) -> dict[str, Any]:
        return self.connection.storage_options()

    def arrow_filesystem(self) -> Any:
        return self.connection.arrow_filesystem()

    def boto3_client(self) -> Any:
        return boto3_client(self.connection)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def boto3_client(connection: S3Connection) -> Any:
    """A boto3 S3 client for ``connection`` (path-style): the harness's bucket set-up and the tests'
    direct object checks. boto3 is a dev dependency; the product reads and writes through pyarrow."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=connection.endpoint,
        aws_access_key_id=connection.access_key,
        aws_secret_access_key=connection.secret_key,
        region_name=connection.region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
    )
