"""ManagedProcess and wait_for with real child processes (no services needed)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from cryptopipe_dev.stack.procs import ManagedProcess, free_port, port_open, wait_for


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purpose
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


def test_stop_takes_down_the_whole_process_group(tmp_path: Path) -> None:
    # a shell that starts a grandchild, as spark-submit starts its JVM
    script = f"sleep 300 & echo $! > {tmp_path / 'grandchild'}; echo started; wait"
    proc = ManagedProcess(["bash", "-c", script], log_path=tmp_path / "p.log").start()
    wait_for(lambda: (tmp_path / "grandchild").exists() and "started" in proc.log_tail(), 10, "the grandchild")
    grandchild = int((tmp_path / "grandchild").read_text())
    assert proc.alive and pid_alive(grandchild)

    proc.stop(timeout=5)

    assert not proc.alive
    assert proc.returncode == -signal.SIGTERM
    assert not pid_alive(grandchild), "the grandchild outlived stop()"
    assert proc.stop() == -signal.SIGTERM  # idempotent


def test_sigkill_after_timeout_when_sigterm_is_ignored(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(300)"
    )
    proc = ManagedProcess([sys.executable, "-c", code], log_path=tmp_path / "p.log", name="stubborn").start()
    wait_for(lambda: "ready" in proc.log_tail(), 10, "the child")
    began = time.monotonic()
    assert proc.stop(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - began < 5


def test_env_cwd_log_and_exit_code(tmp_path: Path) -> None:
    code = "import os, sys; print(os.environ['GREETING'], os.getcwd()); sys.exit(3)"
    with ManagedProcess(
        [sys.executable, "-c", code], log_path=tmp_path / "logs" / "p.log", env={"GREETING": "hello"}, cwd=tmp_path
    ) as proc:
        assert proc.wait(10) == 3
    assert (tmp_path / "logs" / "p.log").read_text().strip() == f"hello {tmp_path}"


def test_kill_sends_the_signal_and_wait_returns_the_code(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
        "print('ready', flush=True); time.sleep(300)"
    )
    with ManagedProcess([sys.executable, "-c", code], log_path=tmp_path / "p.log") as proc:
        wait_for(lambda: "ready" in proc.log_tail(), 10, "the child")
        proc.kill(signal.SIGTERM)
        assert proc.wait(10) == 0  # exited through its handler: a clean shutdown


def test_wait_for_fails_fast_with_the_log_when_the_process_dies(tmp_path: Path) -> None:
    proc = ManagedProcess([sys.executable, "-c", "print('boom: bad config')"], log_path=tmp_path / "p.log").start()
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="boom: bad config"):
        wait_for(lambda: False, 30, "readiness", process=proc)
    assert time.monotonic() - began < 10


def test_wait_for_times_out_with_the_last_error_and_does_not_swallow_bugs() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(TimeoutError, match="nobody home"):
        wait_for(refused, 0.3, "the service", interval=0.05)
    with pytest.raises(KeyError):
        wait_for(lambda: {}["missing"], 30, "the service", retry_on=(OSError,))


def test_free_port_is_free() -> None:
    port = free_port()
    assert 1024 < port < 65536
    assert not port_open("127.0.0.1", port)
