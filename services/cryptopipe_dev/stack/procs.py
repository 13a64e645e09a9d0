"""Helpers to run local services as child processes: free ports, readiness polling, and a managed
subprocess with its own log file and process group.

Shared by the Kafka broker, the S3 server, the Spark job runner and the ingestion supervisor, so it
knows nothing about any of them.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Self, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that nobody listens on right now.

    Racy by nature (someone may take it before our child binds it); callers that bind it in a
    child process should retry start-up once on "address already in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(
    check: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    process: ManagedProcess | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """Call ``check`` until it returns something truthy and return that.

    Exceptions in ``retry_on`` count as "not yet"; narrow it so a bug in ``check`` fails at once
    instead of after ``timeout``. If ``process`` is given and it exits, fail at once
    with its log tail instead of waiting out the timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except retry_on as exc:
            last_error = exc
        if process is not None and not process.alive:
            raise RuntimeError(
                f"{process.name} exited with code {process.returncode} while waiting for {what}; "
                f"log {process.log_path}:\n{process.log_tail()}"
            )
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            tail = f"\nlog {process.log_path}:\n{process.log_tail()}" if process else ""
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s{detail}{tail}")
        time.sleep(interval)


# Children still running when the interpreter exits (pytest crash, Ctrl-C) are stopped then, so
# no JVM is left behind on a shared machine.
_running: set[ManagedProcess] = set()


@atexit.register
def _stop_all() -> None:
    for proc in list(_running):
        proc.stop(timeout=5)


# how long stop() waits for the members of a SIGKILLed group to be gone (reaped by their parent)
GROUP_EXIT_TIMEOUT_S = 5.0


def _wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)
    log.warning("process group outlived SIGKILL", extra={"pgid": pgid, "timeout_s": timeout})


class ManagedProcess:
    """A child process in its own process group, with stdout and stderr appended to ``log_path``.

    ``stop()`` signals the whole group, so wrappers such as ``spark-submit`` (bash -> java) do not
    leave their JVM behind. With ``die_with_parent`` the child also gets SIGKILL when this Python
    process dies without cleaning up (e.g. ``kill -9``); that relies on Linux's PDEATHSIG, which
    fires when the *thread* that started the child exits, so only use it from a long-lived thread.
    """

    def __init__(
        self,
        args: Sequence[str | os.PathLike[str]],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        name: str | None = None,
        inherit_env: bool = True,
        die_with_parent: bool = False,
    ) -> None:
        self.args = [os.fspath(a) for a in args]
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.name = name or Path(self.args[0]).name
        self.die_with_parent = die_with_parent
        self.env = {**os.environ, **(env or {})} if inherit_env else dict(env or {})
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Self:
        if self._popen is not None:
            raise RuntimeError(f"{self.name} already started")
        args = self.args
        if self.die_with_parent and (setpriv := shutil.which("setpriv")):
            # setpriv execs the real program, so the death signal stays on the service itself
            args = [setpriv, "--pdeathsig", "KILL", "--", *args]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()/stop()
        self._popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,  # own process group: signals reach every descendant
        )
        _running.add(self)
        log.info("process started", extra={"service": self.name, "child_pid": self.pid, "log": str(self.log_path)})
        return self

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} not started")
        return self._popen.pid

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the process group (no-op once the leader has exited and been reaped)."""
        if self._popen is None or self._popen.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for exit and return the exit code; raises ``subprocess.TimeoutExpired``."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} not started")
        code = self._popen.wait(timeout)
        self._closed()
        return code

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the group, then SIGKILL it after ``timeout`` seconds. Idempotent."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("process ignored SIGTERM, killing", extra={"service": self.name, "child_pid": self.pid})
                self.kill(signal.SIGKILL)
                self._popen.wait()
        # The leader is gone; reap stragglers that stayed in its group (e.g. a JVM under a shell),
        # and return only once none is left: a signal is delivered asynchronously, and a caller
        # that stops the stack must not leave a process behind it, even for a moment.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signal.SIGKILL)
        _wait_group_gone(self._popen.pid, GROUP_EXIT_TIMEOUT_S)
        self._closed()
        log.info("process stopped", extra={"service": self.name, "child_pid": self.pid, "code": self._popen.returncode})
        return self._popen.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _closed(self) -> None:
        _running.discard(self)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self if self._popen is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "not started" if self._popen is None else f"pid={self._popen.pid} rc={self.returncode}"
        return f"<ManagedProcess {self.name} {state}>"
