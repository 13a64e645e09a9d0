"""Issue 10, hole 12: SIGTERM or SIGINT to a ``cryptopipe`` command stops every process it started,
and a replay that cannot finish says why instead of waiting out its timeout.

``cryptopipe replay`` runs as a real subprocess with its real stack (Kafka, S3 server, ingestion,
replay server); the test signals it mid-run and then looks for any process it had started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cryptopipe.pipeline import PipelineConfig, ingestion_env
from cryptopipe_dev.commands.replay import wait_caught_up
from cryptopipe_dev.replay import ReplayServer
from cryptopipe_dev.stack.procs import ManagedProcess, free_port
from tests.components.test_ingest_no_silent_loss import FIRST_ID, write_recording

pytestmark = pytest.mark.components


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a live process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], fields[19]


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root``: pid -> start time (to tell a reused pid apart)."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None and stat[1] != "Z":
            parents[int(entry.name)] = (stat[0], stat[2])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def survivors(started: dict[int, str]) -> dict[int, str]:
    """The processes of ``started`` still alive (same pid, same start time, not a zombie)."""
    alive = {}
    for pid, start_time in started.items():
        stat = _stat(pid)
        if stat is not None and stat[2] == start_time and stat[1] != "Z":
            alive[pid] = cmdline(pid)
    return alive


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_replay_command_leaves_no_process_behind(tmp_path: Path, sig: signal.Signals) -> None:
    # real time over 60 s of trades: the command is still replaying when the signal comes
    recording = write_recording(tmp_path / "long.jsonl", list(range(FIRST_ID, FIRST_ID + 600)))
    command = [
        sys.executable,
        "-m",
        "cryptopipe_dev.cli",
        "replay",
        str(recording),
        "--output-csv",
        str(tmp_path / "out.csv"),
        "--speed",
        "1",
        "--work-dir",
        str(tmp_path / "stack"),
    ]
    log = (tmp_path / "command.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    started: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 180
        # wait until the stack is up and ingestion runs: Kafka, the S3 server and ingestion are children
        while not any("cryptopipe.ingest" in cmdline(pid) for pid in started):
            assert process.poll() is None, (tmp_path / "command.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "ingestion never started"
            time.sleep(0.5)
            started |= descendants(process.pid)
        time.sleep(1.0)
        started |= descendants(process.pid)
        assert any("kafka.Kafka" in cmdline(pid) for pid in started)
        process.send_signal(sig)
        code = process.wait(90)
        left = survivors(started)
        assert not left, f"exit code {code}; still running after the command exited: {left}"
        assert code != 0, "a command stopped by a signal did not finish: it must not exit 0"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in survivors(started):  # never leave a JVM behind on a shared machine, even on failure
            os.kill(pid, signal.SIGKILL)
        log.close()


def test_replay_that_cannot_finish_says_why_and_stops_before_its_timeout(tmp_path: Path) -> None:
    """Ingestion whose Kafka never answers cannot take the recording: the wait ends with the reason
    ingestion's /readyz gives, on the stall rule, not by running out the timeout."""
    recording = write_recording(tmp_path / "rec.jsonl", list(range(FIRST_ID, FIRST_ID + 50)))
    port, dead_kafka = free_port(), free_port()  # nothing listens on dead_kafka
    with ReplayServer([recording], speed="max") as server:
        env = ingestion_env(
            PipelineConfig(products=("BTC-USD",)),
            kafka_bootstrap=f"127.0.0.1:{dead_kafka}",
            ws_url=server.url,
            rest_url=server.rest_url,
            http_port=port,
            extra={"CRYPTOPIPE_INGEST_HTTP_HOST": "127.0.0.1"},
        )
        ingestion = ManagedProcess(
            [sys.executable, "-m", "cryptopipe.ingest"], env=env, log_path=tmp_path / "ingest.log", name="ingest"
        )
        with ingestion, pytest.raises(SystemExit) as stopped:
            wait_caught_up(ingestion, port, server, timeout=60)
    message = str(stopped.value.code)
    assert message.startswith("cryptopipe replay cannot finish"), message
    assert f"not ready: kafka producer not connected to 127.0.0.1:{dead_kafka}" in message, message
