"""Every transition of a CryptoPipeline's Ready condition, as a `kubectl get --watch` sees it.

A thread reads ``kubectl get cryptopipeline NAME -o json --watch`` (restarted when the watch ends
or the object does not exist yet) and records each change of the Ready condition's status, with
its reason and when it was seen (``time.monotonic()``). Tests then wait for a transition *after* an
event they caused (``wait_for("False", after=t)``), instead of sleeping.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import threading
import time
from typing import Any


@dataclasses.dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the watch delivered it
    status: str  # "True" / "False" / "Unknown" / "" (no Ready condition yet)
    reason: str
    message: str


class ReadyWatch:
    def __init__(self, kubectl: list[str], env: dict[str, str], namespace: str, name: str) -> None:
        self._command = [*kubectl, "-n", namespace, "get", "cryptopipeline", name, "-o", "json", "--watch"]
        self._env = {**os.environ, **env}
        self.transitions: list[Seen] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, name=f"ready-watch-{name}", daemon=True)

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._proc = subprocess.Popen(
                self._command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=self._env
            )
            assert self._proc.stdout is not None
            if self._stopping.is_set():  # stopped while this kubectl was starting: __exit__ missed it
                self._proc.terminate()
            decoder, buffer = json.JSONDecoder(), ""
            for line in self._proc.stdout:
                buffer += line
                try:  # kubectl prints one pretty-printed object after another
                    obj, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    continue
                buffer = buffer.lstrip()[end:]
                self._observe(obj)
            self._proc.wait()
            self._stopping.wait(1)  # the object does not exist yet, or the watch timed out

    def _observe(self, obj: dict[str, Any]) -> None:
        ready = next(
            (c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
            {},
        )
        seen = Seen(time.monotonic(), ready.get("status", ""), ready.get("reason", ""), ready.get("message", ""))
        with self._changed:
            if not self.transitions or self.transitions[-1].status != seen.status:
                self.transitions.append(seen)
                self._changed.notify_all()

    def wait_for(self, status: str, *, after: float, timeout: float) -> Seen:
        """The first transition to ``status`` seen after the monotonic time ``after`` (or the
        current status, if it became ``status`` after then). AssertionError naming every
        transition seen when ``timeout`` runs out."""

        def found() -> Seen | None:
            return next((s for s in self.transitions if s.at >= after and s.status == status), None)

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, timeout=timeout):
                raise AssertionError(f"Ready never went {status} within {timeout:.0f} s; seen: {self.history()}")
            seen = found()
            assert seen is not None
            return seen

    def history(self) -> list[str]:
        return [f"{s.status or '-'} ({s.reason}) at {s.at:.1f}" for s in self.transitions]
