"""What the operator costs while the phases run: its resident memory sampled every few tenths of a
second, labelled with the phase, and the CPU time of the operator, kube-apiserver and etcd per phase
(both from /proc, with the data-plane benchmark's readers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from cryptopipe_dev.bench.procmem import process_cpu_s, rss_kb


class RssSampler(threading.Thread):
    """VmRSS of one process every ``interval`` seconds, each sample labelled with ``phase`` as it was then."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self.phase = "idle"
        self.samples: list[tuple[str, float, int]] = []  # (phase, t, VmRSS KiB)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            kb = rss_kb(self.pid)
            if kb:
                self.samples.append((self.phase, time.monotonic(), kb))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def peak_mib(self, phase: str | None = None) -> float:
        kbs = [kb for p, _, kb in self.samples if phase is None or p == phase]
        return max(kbs, default=0) / 1024

    def last_mib(self, phase: str) -> float:
        kbs = [kb for p, _, kb in self.samples if p == phase]
        return (kbs[-1] if kbs else 0) / 1024


class CpuMeter:
    """CPU-seconds of named processes between marks: ``mark(phase)`` starts a phase and ends the one before."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)  # name -> pid, in the order the report lists them
        self.marks: dict[str, dict[str, float]] = {}

    def mark(self, phase: str) -> None:
        self.marks[phase] = {name: process_cpu_s(pid) for name, pid in self.pids.items()}
        self.marks[phase]["wall"] = time.monotonic()

    def usage(self) -> dict[str, dict[str, float]]:
        """Per phase (all marks but the last): its wall time and each process's CPU-seconds."""
        phases = list(self.marks)
        out = {}
        for phase, nxt in zip(phases, phases[1:], strict=False):
            a, b = self.marks[phase], self.marks[nxt]
            out[phase] = {"wall_s": b["wall"] - a["wall"], **{k: b[k] - a[k] for k in self.pids}}
        return out


def settle(sampler: RssSampler, cpu: CpuMeter, seconds: float) -> None:
    """(3) steady state: every pipeline's status timer ticking while the RSS samples go on."""
    sampler.phase = "settle"
    time.sleep(seconds)
    cpu.mark("end")
    sampler.stop()
