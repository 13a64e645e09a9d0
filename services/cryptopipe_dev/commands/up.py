"""`cryptopipe up`: the local stack, live against Coinbase or on the replay server, until Ctrl-C.

Writes ``stack.json`` in the work dir (endpoints, lake, logs) so `cryptopipe candles|plot|monitor report`
find the lake. Starts Debian's Prometheus too, scraping every component (with the chart's alert rules).
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from cryptopipe.coinbase.frames import FEED_URLS
from cryptopipe.pipeline import PipelineConfig
from cryptopipe_dev.commands.lake_access import write_stack_state
from cryptopipe_dev.commands.scrape import scrape
from cryptopipe_dev.stack.local import LocalStack
from cryptopipe_dev.stack.procs import free_port
from cryptopipe_dev.stack.prometheus import PrometheusServer

log = logging.getLogger("cryptopipe.up")


class NoNetwork(SystemExit):
    pass


def check_reachable(url: str, timeout: float = 3.0) -> None:
    """Fail fast, before starting anything, when the live feed cannot be reached."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme in ("wss", "https") else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise NoNetwork(
            f"cannot reach {parsed.hostname}:{port} ({exc}). No network? Run on recorded data instead:\n"
            f"  cryptopipe up --replay ../shared/data/coinbase/derived/exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl\n"
            f"  cryptopipe up --synthetic"
        ) from None


def _source(args):
    """(ReplayServer or None, products) for the chosen source."""
    if args.replay:
        from cryptopipe_dev.replay.recording import load_recording, recording_products
        from cryptopipe_dev.replay.server import ReplayServer

        recordings = [load_recording(p) for p in args.replay]
        products = args.products or sorted({p for r in recordings for p in recording_products(r)})
        return ReplayServer(recordings, speed=args.speed, heartbeat_after_end=True), products, recordings[0].feed
    if args.synthetic:
        from cryptopipe_dev.replay.server import ReplayServer
        from cryptopipe_dev.replay.synthetic import SyntheticConfig, SyntheticSource

        products = args.products or ["BTC-USD", "ETH-USD"]
        # endless, starting now: candles close on wall-clock time as they would live
        source = SyntheticSource(
            SyntheticConfig(
                products=tuple(products), rate=args.rate, duration=None, start_time=time.time(), seed=int(time.time())
            )
        )
        return ReplayServer(source, speed=1), products, "exchange"
    check_reachable(args.ws_url or FEED_URLS[args.feed])
    return None, args.products or ["BTC-USD", "ETH-USD"], args.feed


def run_up(args, *, work_dir: Path) -> int:
    server, products, feed = _source(args)
    config = PipelineConfig(
        products=tuple(products), feed=feed, windows=tuple(args.windows), watermark=args.watermark, trigger=args.trigger
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    work_dir.mkdir(parents=True, exist_ok=True)
    prometheus: PrometheusServer | None = None
    with LocalStack(work_dir, config) as stack:
        if server is not None:
            server.start()
        try:
            ingestion = stack.start_ingestion(
                ws_url=server.url if server else args.ws_url, rest_url=server.rest_url if server else None
            )
            job_port = free_port()
            job = stack.start_job(metrics_port=job_port)
            monitor = stack.start_monitor()
            prometheus = start_prometheus(stack, work_dir, job_port=job_port)
            state = write_stack_state(
                work_dir,
                stack,
                metrics=f"http://127.0.0.1:{stack.ingestion_port}/metrics",
                job_metrics=f"http://127.0.0.1:{job_port}/metrics",
                monitor_metrics=f"http://127.0.0.1:{stack.monitor_port}/metrics",
                prometheus=prometheus.url if prometheus else None,
                logs=[str(p.log_path) for p in stack.processes],
                source="replay" if args.replay else "synthetic" if args.synthetic else "live",
            )
            print(f"lake: {state['lake']} at {stack.s3.endpoint} (files under {stack.s3.root})", flush=True)
            print(
                f"metrics: ingestion {state['metrics']}   lake monitor {state['monitor_metrics']}"
                "   anomaly report: cryptopipe monitor report",
                flush=True,
            )
            if prometheus:
                print(
                    f"prometheus: {prometheus.url} (scrapes every component, evaluates the chart's alert rules)",
                    flush=True,
                )
            print(f"logs: {work_dir}   read candles: cryptopipe candles --format table   stop: Ctrl-C", flush=True)
            while not stop.wait(5):
                for proc in (ingestion, job, monitor):
                    if not proc.alive:
                        log.error(
                            "process exited",
                            extra={
                                "process": proc.name,
                                "code": proc.returncode,
                                "log": str(proc.log_path),
                                "tail": proc.log_tail(10),
                            },
                        )
                        return 1
                _report(stack)
        finally:
            if prometheus is not None:
                prometheus.stop()
            if server is not None:
                server.stop()
    return 0


def start_prometheus(stack: LocalStack, work_dir: Path, *, job_port: int) -> PrometheusServer | None:
    """Debian's Prometheus scraping the stack with the labels a cluster's PodMonitor attaches, and
    the chart's alert rules when helm is there to render them; None when it is not installed."""
    from cryptopipe_dev.stack.alert_rules import render_rule_groups, write_rules_file
    from cryptopipe_dev.stack.kube import require_binary
    from cryptopipe_dev.stack.paths import MissingDependency, prometheus_bin

    if not prometheus_bin().exists():
        log.warning("prometheus not installed (scripts/bootstrap.sh installs it): running without it")
        return None
    prometheus = PrometheusServer(work_dir / "prometheus", scrape_interval="5s", evaluation_interval="5s")
    pipeline = {"namespace": "local", "pipeline": "local"}
    for component, port in (
        ("ingestion", stack.ingestion_port),
        ("spark", job_port),
        ("lake-monitor", stack.monitor_port),
    ):
        prometheus.add_target(component, f"127.0.0.1:{port}", {**pipeline, "component": component})
    rule_files = []
    try:
        rule_files = [write_rules_file(render_rule_groups(require_binary("helm")), work_dir / "alert-rules.yml")]
    except MissingDependency:
        log.info("helm not installed (scripts/build-control-plane.sh): Prometheus runs without the alert rules")
    return prometheus.start(rule_files=rule_files)


def _report(stack: LocalStack) -> None:
    try:
        metrics = scrape(f"http://127.0.0.1:{stack.ingestion_port}/metrics")
    except OSError:
        metrics = {}
    queries = stack.job_progress().get("queries", {})
    print(
        time.strftime("%H:%M:%S"),
        f"trades in: {int(metrics.get('cryptopipe_ingest_trades_produced_total', 0))}",
        "candles written: " + (", ".join(f"{w}={q['candles_written']}" for w, q in sorted(queries.items())) or "-"),
        "watermark: " + (", ".join(f"{w}={q['watermark']}" for w, q in sorted(queries.items())) or "-"),
        flush=True,
    )
