"""(2) throughput: a burst of pipelines created at once (a thread pool of POSTs); the time from the
first create call to all of them having every child and status.observedGeneration == metadata.generation."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cryptopipe_dev.bench_operator.memory import CpuMeter, RssSampler
from cryptopipe_dev.bench_operator.pipelines import create_pipeline, expected_children
from cryptopipe_dev.bench_operator.watch import Watcher
from cryptopipe_dev.stack.kube import KubeControlPlane


@dataclass
class BurstResult:
    pipelines: int
    all_reconciled: bool
    create_calls_s: float  # the first create call to the last one returning
    children_s: float  # the first create call to all children of all pipelines (inf: not all)
    reconciled_s: float  # ... to all reconciled: children + observedGeneration (inf: not all)
    latencies_s: list[float]  # per pipeline, its create call returning -> all its children
    reconcile_s: list[float]  # per pipeline, its create call returning -> children + observedGeneration

    @property
    def slowest_s(self) -> float:
        """The slowest pipeline's reconcile under the burst (inf: one never finished)."""
        return max(self.reconcile_s) if self.all_reconciled and self.reconcile_s else float("inf")


def run_burst(
    kube: KubeControlPlane,
    watcher: Watcher,
    sampler: RssSampler,
    cpu: CpuMeter,
    *,
    pipelines: int,
    threads: int,
    timeout: float,
) -> BurstResult:
    m = pipelines
    print(f"[2/2] throughput: {m} pipelines created at once ({threads} concurrent creates) ...", flush=True)
    sampler.phase = "burst"
    names = [f"burst-{i:03d}" for i in range(m)]
    for name in names:
        watcher.expect(name, expected_children(name)[0])
    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        created = dict(zip(names, pool.map(lambda nm: create_pipeline(kube, nm), names), strict=True))
    t_created = time.monotonic()
    ok = watcher.wait(names, reconciled=True, timeout=timeout)
    cpu.mark("settle")  # the burst ends when its pipelines are reconciled
    with watcher.cond:
        children = {nm: watcher.children_at(nm) for nm in names}
        reconciled_at = {nm: watcher.reconciled_at(nm) for nm in names}
    reconciled = [t for t in reconciled_at.values() if t is not None]
    all_children = [t for t in children.values() if t is not None]
    if not ok:
        print(f"  !! only {len(reconciled)}/{m} reconciled within {timeout:g} s")
    return BurstResult(
        pipelines=m,
        all_reconciled=ok,
        create_calls_s=t_created - t0,
        children_s=(max(all_children) - t0) if len(all_children) == m else float("inf"),
        reconciled_s=(max(reconciled) - t0) if ok else float("inf"),
        latencies_s=[t - created[nm] for nm, t in children.items() if t is not None],
        reconcile_s=[t - created[nm] for nm, t in reconciled_at.items() if t is not None],
    )
