"""The figures as printed (next to issue 3's targets) and as JSON (``--json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptopipe_dev.bench_operator.latency import LatencyResult, WarmUp, percentile
from cryptopipe_dev.bench_operator.memory import RssSampler
from cryptopipe_dev.bench_operator.throughput import BurstResult
from cryptopipe_dev.commands.scrape import samples
from cryptopipe_dev.stack.procs import LOOPBACK

# issue 3's targets
P50_TARGET_S, P99_TARGET_S, RECONCILE_100_TARGET_S, RSS_TARGET_MB = 1.0, 3.0, 60.0, 150.0


def verdict(met: bool | None) -> str:
    return "reported" if met is None else "met" if met else "MISSED"


def operator_metrics(port: int) -> dict[str, float]:
    """The operator's reconcile counters and duration histogram from /metrics, by series as exposed
    (``cryptopipe_operator_reconciles_total{result="applied"}``); {} if it cannot be read."""
    try:
        found = samples(f"http://{LOOPBACK}:{port}/metrics", timeout=5)
    except OSError:
        return {}
    out: dict[str, float] = {}
    for sample in found:
        if sample.name.startswith("cryptopipe_operator_reconcile"):
            labels = ",".join(f'{key}="{value}"' for key, value in sample.labels.items())
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


@dataclass
class Report:
    children: int  # per pipeline
    warmup: WarmUp
    latency: LatencyResult
    burst: BurstResult
    sampler: RssSampler
    rss_interval_s: float
    settle_s: float
    hwm_mib: float  # the operator's VmHWM at the end
    cpu: dict[str, dict[str, float]]  # phase -> wall_s and CPU-seconds per process
    metrics: dict[str, float]
    load: dict[str, float]  # 1-minute load average at start and end
    watch_events: int
    watch_errors: int

    @property
    def rss_peak_mb(self) -> float:
        peak_phases = max(self.sampler.peak_mib("latency"), self.sampler.peak_mib("burst"))
        peak_all = max(peak_phases, self.sampler.peak_mib("settle"))
        return max(peak_all, self.hwm_mib) * 1.048576  # MiB -> MB (10^6 B), the target's unit

    def rows(self) -> list[tuple[str, str, str, bool | None]]:
        """(metric, measured, target, met) for each of issue 3's targets, and the burst's slowest
        reconcile (issue 11: reported, no target: met None)."""
        p50, p99, reconciled, rss = self.latency.p50, self.latency.p99, self.burst.reconciled_s, self.rss_peak_mb
        return [
            ("apply -> children p50", f"{p50:.3f} s", f"<= {P50_TARGET_S:g} s", p50 <= P50_TARGET_S),
            ("apply -> children p99", f"{p99:.3f} s", f"<= {P99_TARGET_S:g} s", p99 <= P99_TARGET_S),
            (
                f"{self.burst.pipelines} pipelines reconciled",
                f"{reconciled:.2f} s",
                f"<= {RECONCILE_100_TARGET_S:g} s",
                reconciled <= RECONCILE_100_TARGET_S,
            ),
            ("operator peak RSS", f"{rss:.1f} MB", f"<= {RSS_TARGET_MB:g} MB", rss <= RSS_TARGET_MB),
            (
                f"slowest reconcile, {self.burst.pipelines} at once",
                f"{self.burst.slowest_s:.2f} s",
                "(reported)",
                None,
            ),
        ]

    def print(self, total_s: float) -> bool:
        """Print every figure and the targets table; whether every target was met."""
        lat, burst, sampler = self.latency, self.burst, self.sampler
        lat_values = lat.values
        print()
        print(
            f"  latency phase: {len(lat_values)} pipelines; create -> all {self.children} children: "
            f"p50 {lat.p50:.3f} s, p90 {percentile(lat_values, 90):.3f} s, p99 {lat.p99:.3f} s, "
            f"max {max(lat_values):.3f} s, min {min(lat_values):.3f} s"
        )
        if lat.to_observed_s:
            obs = list(lat.to_observed_s.values())
            print(
                f"                 create -> children + status.observedGeneration: p50 {percentile(obs, 50):.3f} s, "
                f"p99 {percentile(obs, 99):.3f} s"
            )
        m = burst.pipelines
        print(
            f"  burst phase:   {m} create calls took {burst.create_calls_s:.2f} s; all children of all {m} after "
            f"{burst.children_s:.2f} s; all reconciled (children + observedGeneration) after {burst.reconciled_s:.2f} s"
        )
        if burst.latencies_s:
            bl = burst.latencies_s
            print(
                f"                 per pipeline create -> children under the burst: p50 {percentile(bl, 50):.2f} s, "
                f"p99 {percentile(bl, 99):.2f} s, max {max(bl):.2f} s"
            )
        if burst.reconcile_s:
            br = burst.reconcile_s
            print(
                f"                 per pipeline create -> reconciled (+ observedGeneration): p50 "
                f"{percentile(br, 50):.2f} s, p99 {percentile(br, 99):.2f} s, max (the slowest) {max(br):.2f} s"
            )
        print(
            f"  operator RSS (VmRSS every {self.rss_interval_s:g} s, MiB): idle {self.warmup.idle_rss_mib:.1f}, "
            f"latency peak {sampler.peak_mib('latency'):.1f}, burst peak {sampler.peak_mib('burst'):.1f}, "
            f"settle ({self.settle_s:g} s, {lat.pipelines + m + 1} pipelines) peak {sampler.peak_mib('settle'):.1f}; "
            f"VmHWM {self.hwm_mib:.1f}"
        )
        for phase, u in self.cpu.items():
            processes = [k for k in u if k != "wall_s"]
            print(
                f"  CPU s during {phase:7s} ({u['wall_s']:5.1f} s wall): "
                + ", ".join(f"{k} {u[k]:.1f}" for k in processes)
            )
        if self.metrics:
            count = self.metrics.get("cryptopipe_operator_reconcile_duration_seconds_count", 0)
            total = self.metrics.get("cryptopipe_operator_reconcile_duration_seconds_sum", 0)
            results = {
                k.split('"')[1]: v
                for k, v in self.metrics.items()
                if k.startswith("cryptopipe_operator_reconciles_total")
            }
            print(
                f"  operator /metrics: {count:.0f} reconciles, mean {total / count if count else 0:.3f} s each; "
                f"by result {results}"
            )
        print(
            f"  load average (1 min): {self.load['start']:.2f} at start, {self.load['end']:.2f} at end; "
            f"watch events seen {self.watch_events}; watch errors {self.watch_errors}"
        )

        rows = self.rows()
        print(f"\n  {'metric':34s} {'measured':>12s} {'target':>12s}  result")
        for metric, measured, target, met in rows:
            print(f"  {metric:34s} {measured:>12s} {target:>12s}  {verdict(met)}")
        print(
            f"\n  (MB = 10^6 bytes; peak RSS is the max of the samples and VmHWM over all phases. "
            f"Total run {total_s:.0f} s.)"
        )
        return self.targets_met

    @property
    def targets_met(self) -> bool:
        return all(r[3] is not False for r in self.rows())

    def as_json(self) -> dict[str, Any]:
        sampler = self.sampler
        return {
            "latency_s": self.latency.to_children_s,
            "latency_to_observed_s": self.latency.to_observed_s,
            "p50_s": self.latency.p50,
            "p99_s": self.latency.p99,
            "burst_create_calls_s": self.burst.create_calls_s,
            "burst_children_s": self.burst.children_s,
            "burst_reconciled_s": self.burst.reconciled_s,
            "burst_latency_s": self.burst.latencies_s,
            "burst_reconcile_s": self.burst.reconcile_s,
            "burst_slowest_reconcile_s": self.burst.slowest_s,
            "rss_mib": {
                "idle": self.warmup.idle_rss_mib,
                "latency": sampler.peak_mib("latency"),
                "burst": sampler.peak_mib("burst"),
                "settle": sampler.peak_mib("settle"),
                "hwm": self.hwm_mib,
            },
            "rss_samples": sampler.samples,
            "cpu_s": self.cpu,
            "metrics": self.metrics,
            "load": self.load,
            "targets_met": {r[0]: r[3] for r in self.rows()},
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_json(), indent=1))
