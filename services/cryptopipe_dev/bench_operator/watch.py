"""Observing what the operator does: one API watch stream per kind in the benchmark's namespace,
each object's first appearance timestamped when its event arrives, so nothing polls."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from cryptopipe_dev.bench_operator.pipelines import Child
from cryptopipe_dev.stack.kube import KubeControlPlane, insecure_tls
from cryptopipe_operator.spec import KIND


class Watcher:
    """First-appearance time of every object of the watched kinds in NAMESPACE, and for each
    CryptoPipeline the first time its status.observedGeneration equalled its generation."""

    def __init__(self, kube: KubeControlPlane, paths: Mapping[str, str]) -> None:
        self.kube = kube
        self.paths = dict(paths)
        self.cond = threading.Condition()
        self.first_seen: dict[Child, float] = {}
        self.observed: dict[str, float] = {}
        self.expected: dict[str, set[Child]] = {}
        self.events = 0
        self._ready = {kind: threading.Event() for kind in self.paths}
        self._halt = threading.Event()
        self.errors: list[str] = []

    def start(self, timeout: float = 30.0) -> None:
        for kind, path in self.paths.items():
            threading.Thread(target=self._run, args=(kind, path), name=f"watch-{kind}", daemon=True).start()
        for kind, ready in self._ready.items():
            if not ready.wait(timeout):
                raise RuntimeError(f"watch on {kind} not established in {timeout:.0f} s: {self.errors}")

    def stop(self) -> None:
        self._halt.set()

    def _run(self, kind: str, path: str) -> None:
        rv = ""
        while not self._halt.is_set():
            query = "watch=1&timeoutSeconds=1800" + (f"&resourceVersion={rv}" if rv else "")
            req = urllib.request.Request(
                f"{self.kube.server}{path}?{query}", headers={"Authorization": f"Bearer {self.kube.token}"}
            )
            try:
                with urllib.request.urlopen(req, timeout=1900, context=insecure_tls()) as resp:
                    self._ready[kind].set()
                    for line in resp:  # one JSON event per line (chunk)
                        now = time.monotonic()
                        event = json.loads(line)
                        if event["type"] == "ERROR":  # e.g. 410 Gone: start over with a fresh list
                            rv = ""
                            break
                        obj = event["object"]
                        rv = obj["metadata"].get("resourceVersion", rv)
                        if event["type"] != "BOOKMARK":
                            self._record(kind, event["type"], obj, now)
            except (OSError, ValueError) as exc:
                if self._halt.is_set():
                    return
                self.errors.append(f"{kind}: {exc!r}")
                time.sleep(0.2)

    def _record(self, kind: str, type_: str, obj: Mapping[str, Any], now: float) -> None:
        meta = obj["metadata"]
        with self.cond:
            self.events += 1
            if type_ == "DELETED":
                return
            if kind == KIND:
                status = obj.get("status") or {}
                if status.get("observedGeneration") == meta.get("generation"):
                    self.observed.setdefault(meta["name"], now)
            else:
                self.first_seen.setdefault((kind, meta["name"]), now)
            self.cond.notify_all()

    def expect(self, name: str, children: set[Child]) -> None:
        """Pipeline ``name`` is done when all of ``children`` have appeared (and, reconciled, its status)."""
        with self.cond:
            self.expected[name] = children

    def children_at(self, name: str) -> float | None:
        """When the last of pipeline ``name``'s children appeared (None: not all yet). Caller holds cond."""
        times = [self.first_seen.get(child) for child in self.expected[name]]
        return None if None in times else max(times)  # type: ignore[type-var]

    def reconciled_at(self, name: str) -> float | None:
        children = self.children_at(name)
        observed = self.observed.get(name)
        return None if children is None or observed is None else max(children, observed)

    def wait(self, names: Iterable[str], *, reconciled: bool, timeout: float) -> bool:
        names = list(names)
        done = self.reconciled_at if reconciled else self.children_at
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(done(n) is not None for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
        return True
