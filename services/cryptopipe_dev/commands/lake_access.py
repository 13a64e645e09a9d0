"""Open the lake of the last `cryptopipe up` for a command that reads it (candles, plot, monitor).

The stack writes ``stack.json`` (S3 endpoint, folder, bucket, prefix) into its work dir. When the
stack is down, its lake folder is served again by a temporary S3 server for as long as the command
runs, so the lake stays readable after Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptopipe.lake.layout import LakeLocation
from cryptopipe.lake.s3 import S3Connection
from cryptopipe_dev.stack.procs import port_open
from cryptopipe_dev.stack.s3server import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, S3Server

STATE_FILE = "stack.json"


class NoStackError(RuntimeError):
    """No `cryptopipe up` has left its state in this work dir."""


@dataclass(frozen=True)
class OpenLake:
    lake: LakeLocation
    connection: S3Connection
    kafka: str | None = None  # the stack's Kafka bootstrap and dead-letter topic (stacks since issue 10)
    dlq_topic: str | None = None

    def filesystem(self):
        return self.connection.arrow_filesystem()


def parse_time(text: str | None) -> datetime | None:
    """An ISO-8601 command-line time; UTC when it has no offset."""
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def write_stack_state(work_dir: Path, stack, **extra) -> dict:
    """Record where a stack's lake is (and ``extra``, e.g. metrics URLs) in ``work_dir/stack.json``."""
    config = stack.config
    state = {
        "work_dir": str(work_dir),
        "kafka": stack.kafka.bootstrap,
        "dlq_topic": config.dlq_topic,
        "s3_endpoint": stack.s3.endpoint,
        "s3_root": str(stack.s3.root),
        "bucket": config.bucket,
        "prefix": config.prefix,
        "lake": f"s3://{config.bucket}/{config.prefix}/candles/",
        **extra,
    }
    (work_dir / STATE_FILE).write_text(json.dumps(state, indent=2))
    return state


@contextlib.contextmanager
def open_stack_lake(work_dir: Path) -> Iterator[OpenLake]:
    state_path = work_dir / STATE_FILE
    if not state_path.exists():
        raise NoStackError(f"no local stack found in {work_dir}: run `cryptopipe up` first (or pass --work-dir)")
    state = json.loads(state_path.read_text())
    endpoint = state["s3_endpoint"]
    temporary = None
    host, port = endpoint.rsplit(":", 1)
    if not port_open(host.split("//")[-1], int(port)):
        temporary = S3Server(Path(state["s3_root"]).parent).start()
        endpoint = temporary.endpoint
    try:
        yield OpenLake(
            LakeLocation(state["bucket"], state["prefix"]),
            S3Connection(endpoint, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY),
            state.get("kafka"),
            state.get("dlq_topic"),
        )
    finally:
        if temporary is not None:
            temporary.stop()
