"""(1) latency: pipelines created one at a time; for each, the wall time from its create call
returning to the last of its children appearing in the API server (and to its status catching up).
A warm-up pipeline goes first and is not counted."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from cryptopipe_dev.bench.stats import nearest_rank
from cryptopipe_dev.bench_operator.memory import CpuMeter, RssSampler
from cryptopipe_dev.bench_operator.pipelines import create_pipeline, expected_children
from cryptopipe_dev.bench_operator.watch import Watcher
from cryptopipe_dev.stack.kube import KubeControlPlane


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with 40 values, p99 is the maximum)."""
    return nearest_rank(values, q / 100)


@dataclass
class WarmUp:
    children_s: float  # create -> all children
    idle_rss_mib: float  # the operator's RSS before it


def warm_up(kube: KubeControlPlane, watcher: Watcher, sampler: RssSampler) -> WarmUp:
    """The first pipeline after start pays for first-use costs (connection pool, imports)."""
    time.sleep(1.0)
    idle_rss = sampler.last_mib("idle")
    watcher.expect("warmup", expected_children("warmup")[0])
    created = create_pipeline(kube, "warmup")
    if not watcher.wait(["warmup"], reconciled=True, timeout=60):
        raise RuntimeError("the warm-up pipeline was not reconciled in 60 s")
    with watcher.cond:
        children_s = watcher.children_at("warmup") - created  # type: ignore[operator]
    print(
        f"\n  warm-up pipeline (not counted): children {children_s:.3f} s after create; "
        f"operator RSS idle {idle_rss:.1f} MiB",
        flush=True,
    )
    return WarmUp(children_s, idle_rss)


@dataclass
class LatencyResult:
    pipelines: int
    all_reconciled: bool  # every pipeline reconciled within the timeout
    to_children_s: dict[str, float]  # pipeline -> create -> all children
    to_observed_s: dict[str, float]  # pipeline -> create -> children + status.observedGeneration

    @property
    def values(self) -> list[float]:
        return list(self.to_children_s.values())

    @property
    def p50(self) -> float:
        return percentile(self.values, 50) if self.values else math.inf

    @property
    def p99(self) -> float:
        return percentile(self.values, 99) if self.values and self.all_reconciled else math.inf


def run_latency(
    kube: KubeControlPlane,
    watcher: Watcher,
    sampler: RssSampler,
    cpu: CpuMeter,
    *,
    pipelines: int,
    spacing: float,
    timeout: float,
) -> LatencyResult:
    n = pipelines
    print(f"\n[1/2] latency: {n} pipelines, one every {spacing:g} s ...", flush=True)
    sampler.phase = "latency"
    cpu.mark("latency")
    names = [f"lat-{i:03d}" for i in range(n)]
    created: dict[str, float] = {}
    for name in names:
        watcher.expect(name, expected_children(name)[0])
        start = time.monotonic()
        created[name] = create_pipeline(kube, name)
        time.sleep(max(0.0, spacing - (time.monotonic() - start)))
    ok = watcher.wait(names, reconciled=True, timeout=timeout)
    cpu.mark("burst")  # the latency phase ends when its pipelines are reconciled
    with watcher.cond:
        lat = {nm: watcher.children_at(nm) - t for nm, t in created.items() if watcher.children_at(nm)}  # type: ignore[operator]
        lat_obs = {nm: watcher.reconciled_at(nm) - t for nm, t in created.items() if watcher.reconciled_at(nm)}  # type: ignore[operator]
    if not ok:
        print(f"  !! only {len(lat)}/{n} had all children within {timeout:g} s")
    return LatencyResult(n, ok, lat, lat_obs)
