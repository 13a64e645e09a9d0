"""Resident memory of process trees, read from /proc (no psutil on the machine).

A ManagedProcess is the root of its tree: spark-submit is java, which starts the Python driver,
which the JVM's Python workers are forked beside. Children are found from each process's ppid,
so a process that appears between two samples is counted from the next one.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _parents() -> dict[int, int]:
    """pid -> ppid of every process now."""
    out: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
        out[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return out


def tree(root: int, parents: Mapping[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in parents:
            found.append(pid)
            todo.extend(children.get(pid, ()))
    return found


def rss_kb(pid: int) -> int:
    """VmRSS in KiB (0 if the process is gone): resident pages, shared ones included."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB
    except (OSError, IndexError):
        return 0


def peak_rss_kb(pid: int) -> int:
    """VmHWM in KiB (0 if the process is gone): the kernel's high-water mark of its resident memory."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def exe_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


@dataclasses.dataclass
class MemorySample:
    at: float
    by_component: dict[str, int]  # KiB

    @property
    def total_kb(self) -> int:
        return sum(self.by_component.values())


class MemorySampler:
    """Samples the RSS of named process trees every ``interval`` seconds on a daemon thread.

    ``roots`` is called at every sample and returns {component: root pid} (or a pid and whether
    to count only that process, not its tree): processes can start after the sampler.
    ``split`` may refine a component per process, e.g. Spark's JVM vs its Python processes.
    """

    def __init__(
        self,
        roots: Callable[[], Mapping[str, tuple[int, bool]]],
        interval: float = 2.0,
        split: Callable[[str, int], str] = lambda component, _pid: component,
    ) -> None:
        self._roots = roots
        self._interval = interval
        self._split = split
        self.samples: list[MemorySample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def sample(self) -> MemorySample:
        parents = _parents()
        by: dict[str, int] = {}
        for component, (root, whole_tree) in self._roots().items():
            for pid in tree(root, parents) if whole_tree else [root]:
                name = self._split(component, pid)
                by[name] = by.get(name, 0) + rss_kb(pid)
        return MemorySample(time.time(), by)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self._interval)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> list[MemorySample]:
        self._stop.set()
        self._thread.join(10)
        return self.samples


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU-seconds all cores have spent busy since boot (everything but idle and iowait)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def tree_cpu_s(root: int) -> float:
    """CPU-seconds (user + system) the live processes of ``root``'s tree have used."""
    return sum(_cpu_ticks(pid) for pid in tree(root, _parents())) / CLOCK_TICKS


def process_cpu_s(pid: int) -> float:
    """CPU-seconds (user + system) one process has used, its threads included (0 if it is gone)."""
    return _cpu_ticks(pid) / CLOCK_TICKS


def _cpu_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
