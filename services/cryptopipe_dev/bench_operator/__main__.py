"""``python -m cryptopipe_dev.bench_operator`` (``make bench-operator``): the operator against a real
kube-apiserver, measured in one run and printed side by side with the targets of issue 3:

1. latency: N CryptoPipelines created one at a time (default 40, one every 0.3 s); for each, the
   wall time from its create call returning to the last of its children (what render_children
   renders) appearing in the API server, p50/p99/max;
2. throughput: 100 more created at once (a thread pool of POSTs); the time from the first create
   call to all 100 having every child and status.observedGeneration == metadata.generation;
3. memory: the operator process's VmRSS, sampled every 0.1 s during both phases (and a steady
   period after them, with every pipeline's status timer running), peak reported.

Children and statuses are observed through API watch streams (one per kind), so nothing polls and
each object's first appearance is timestamped when its event arrives. The operator runs as the
chart runs it (``python -m cryptopipe_operator``, settings.py's defaults, metrics port on).
About 2 minutes on 2 cores. Method and figures: docs/benchmarks-operator.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cryptopipe.logs import setup_logging
from cryptopipe_dev.bench.procmem import peak_rss_kb
from cryptopipe_dev.bench_operator.latency import percentile, run_latency, warm_up
from cryptopipe_dev.bench_operator.memory import CpuMeter, RssSampler, settle
from cryptopipe_dev.bench_operator.pipelines import PIPELINES_PATH, expected_children
from cryptopipe_dev.bench_operator.report import Report, operator_metrics, verdict
from cryptopipe_dev.bench_operator.startup import control_plane, start_control_plane, start_operator
from cryptopipe_dev.bench_operator.throughput import run_burst
from cryptopipe_dev.bench_operator.watch import Watcher
from cryptopipe_dev.stack.procs import ManagedProcess
from cryptopipe_operator.spec import KIND

ENV_PREFIX = "CRYPTOPIPE_OPERATOR_"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cryptopipe_dev.bench_operator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--latency-pipelines", type=int, default=40, help="pipelines created one at a time (default 40)")
    p.add_argument("--spacing", type=float, default=0.3, help="seconds between their creates (default 0.3)")
    p.add_argument("--burst", type=int, default=100, help="pipelines created at once (default 100)")
    p.add_argument("--burst-threads", type=int, default=8, help="concurrent create calls in the burst (default 8)")
    p.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="seconds to keep sampling RSS after the burst, status timers running (default 15)",
    )
    p.add_argument("--timeout", type=float, default=180.0, help="give up waiting for a phase after this (default 180)")
    p.add_argument("--rss-interval", type=float, default=0.1, help="RSS sampling interval, s (default 0.1)")
    p.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the operator, e.g. CRYPTOPIPE_OPERATOR_STATUS_INTERVAL_S=30 "
        "(default: settings.py's defaults, as the chart runs it)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=VALUE[,NAME=VALUE]",
        help="run the whole benchmark once per --variant, each on a fresh control plane with these operator "
        "settings (CRYPTOPIPE_OPERATOR_ may be left out), and print the runs side by side; e.g. "
        "--variant WORKER_LIMIT=0 --variant WORKER_LIMIT=20",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write every figure as JSON (PATH-N per variant)")
    p.add_argument("--work-dir", type=Path, help="keep the control plane's data and logs here (default: temp, removed)")
    p.add_argument("--log-level", default="WARNING", help="this process's diagnostic logs on stderr (default WARNING)")
    return p


def _variants(args: argparse.Namespace) -> list[list[str]]:
    """The operator env of each run: --operator-env, plus each --variant's settings (one run without)."""
    if not args.variant:
        return [list(args.operator_env)]
    runs = []
    for variant in args.variant:
        items = [item.strip() for item in variant.split(",") if item.strip()]
        named = [item if item.startswith(ENV_PREFIX) else ENV_PREFIX + item for item in items]
        runs.append([*args.operator_env, *named])
    return runs


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    runs = _variants(args)
    reports: list[tuple[str, Report | None]] = []
    for number, operator_env in enumerate(runs, 1):
        label = ", ".join(item.removeprefix(ENV_PREFIX) for item in operator_env) or "defaults"
        if len(runs) > 1:
            print(f"\n=== run {number}/{len(runs)}: {label} ===", flush=True)
        work_dir = args.work_dir / f"run-{number}" if args.work_dir else None
        try:
            report: Report | None = measure(args, operator_env, work_dir)
        except Exception as exc:  # the other runs still count; this one is reported as failed
            if len(runs) == 1:
                raise
            print(f"  run {number} failed: {exc!r}", file=sys.stderr)
            report = None
        reports.append((label, report))
        if report is not None and args.json:
            path = args.json if len(runs) == 1 else args.json.with_name(f"{args.json.stem}-{number}{args.json.suffix}")
            report.write_json(path)
    if len(runs) > 1:
        print_comparison(reports)
    return 0 if all(r is not None and r.targets_met for _, r in reports) else 1


def measure(args: argparse.Namespace, operator_env: list[str], work_dir: Path | None) -> Report:
    """One run on a fresh control plane; its report (printed)."""
    began = time.monotonic()
    keep = work_dir is not None
    work_dir = work_dir or Path(tempfile.mkdtemp(prefix="cryptopipe-bench-operator-"))
    kube = control_plane(work_dir)
    operator: ManagedProcess | None = None
    try:
        print("CryptoPipeline operator benchmark  " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), flush=True)
        start_control_plane(kube)
        load = {"start": os.getloadavg()[0]}
        started = start_operator(kube, work_dir / "operator.log", operator_env)
        operator = started.process

        children, paths = expected_children("example")
        kinds = sorted({k for k, _ in children})
        print(
            f"  children per pipeline (render_children): {len(children)} "
            f"({', '.join(f'{k} x{sum(1 for c in children if c[0] == k)}' for k in kinds)})"
        )
        watcher = Watcher(kube, {**paths, KIND: PIPELINES_PATH})
        watcher.start()
        sampler = RssSampler(operator.pid, args.rss_interval)
        sampler.start()
        cpu = CpuMeter({"operator": operator.pid, "kube-apiserver": kube.apiserver.pid, "etcd": kube.etcd.pid})  # type: ignore[union-attr]

        warmup = warm_up(kube, watcher, sampler)
        latency = run_latency(
            kube, watcher, sampler, cpu, pipelines=args.latency_pipelines, spacing=args.spacing, timeout=args.timeout
        )
        burst = run_burst(
            kube, watcher, sampler, cpu, pipelines=args.burst, threads=args.burst_threads, timeout=args.timeout
        )
        settle(sampler, cpu, args.settle)
        watcher.stop()
        hwm = peak_rss_kb(operator.pid) / 1024
        metrics = operator_metrics(started.metrics_port)
        load["end"] = os.getloadavg()[0]

        report = Report(
            children=len(children),
            warmup=warmup,
            latency=latency,
            burst=burst,
            sampler=sampler,
            rss_interval_s=args.rss_interval,
            settle_s=args.settle,
            hwm_mib=hwm,
            cpu=cpu.usage(),
            metrics=metrics,
            load=load,
            watch_events=watcher.events,
            watch_errors=len(watcher.errors),
        )
        report.print(time.monotonic() - began)
        return report
    except BaseException:
        if operator is not None:
            print("\noperator log tail:\n" + operator.log_tail(), file=sys.stderr)
        raise
    finally:
        if operator is not None:
            operator.stop()
        kube.stop()
        if not keep:
            shutil.rmtree(work_dir, ignore_errors=True)


def print_comparison(reports: list[tuple[str, Report | None]]) -> None:
    """The runs side by side: each target's figure and verdict, plus the burst's figures."""
    print("\n=== side by side (one process at a time on the same machine; compare ratios, not seconds) ===")
    done = [(label, r) for label, r in reports if r is not None]
    header = ["metric", *(label for label, _ in done)]
    table: list[list[str]] = []
    for index, (metric, _measured, target, _met) in enumerate(done[0][1].rows() if done else []):
        cells = []
        for _, report in done:
            _m, measured, _t, met = report.rows()[index]
            cells.append(f"{measured} {verdict(met)}")
        table.append([f"{metric} ({target})", *cells])
    extra = [
        ("burst: all children after", lambda r: f"{r.burst.children_s:.2f} s"),
        ("burst: create -> children p50", lambda r: f"{percentile(r.burst.latencies_s, 50):.2f} s"),
        ("burst: create -> reconciled p50", lambda r: f"{percentile(r.burst.reconcile_s, 50):.2f} s"),
        ("idle RSS", lambda r: f"{r.warmup.idle_rss_mib:.1f} MiB"),
        ("burst peak RSS", lambda r: f"{r.sampler.peak_mib('burst'):.1f} MiB"),
        ("load average start/end", lambda r: f"{r.load['start']:.1f}/{r.load['end']:.1f}"),
    ]
    for name, cell in extra:
        table.append([name, *(cell(r) for _, r in done)])
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  " + " | ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)))
    for label, report in reports:
        if report is None:
            print(f"  {label}: failed (see above)")


if __name__ == "__main__":
    sys.exit(main())
