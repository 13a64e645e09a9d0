"""`cryptopipe up`: the local stack, live against Coinbase or on the replay server, until Ctrl-C.

Writes ``stack.json`` in the work dir (endpoints, lake, logs) so `cryptopipe candles` finds the lake.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from cryptopipe.commands.lake_access import STATE_FILE
from cryptopipe.coinbase.frames import FEED_URLS
from cryptopipe.commands.scrape import scrape
from cryptopipe.pipeline import PipelineConfig
from cryptopipe.stack.local import LocalStack

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
        from cryptopipe.replay.recording import load_recording, recording_products
        from cryptopipe.replay.server import ReplayServer

        recordings = [load_recording(p) for p in args.replay]
        products = args.products or sorted({p for r in recordings for p in recording_products(r)})
        return ReplayServer(recordings, speed=args.speed, heartbeat_after_end=True), products, recordings[0].feed
    if args.synthetic:
        from cryptopipe.replay.server import ReplayServer
        from cryptopipe.replay.synthetic import SyntheticConfig, SyntheticSource

        products = args.products or ["BTC-USD", "ETH-USD"]
        # endless, starting now: candles close on wall-clock time as they would live
        source = SyntheticSource(SyntheticConfig(products=tuple(products), rate=args.rate, duration=None,
                                                 start_time=time.time(), seed=int(time.time())))
        return ReplayServer(source, speed=1), products, "exchange"
    check_reachable(args.ws_url or FEED_URLS[args.feed])
    return None, args.products or ["BTC-USD", "ETH-USD"], args.feed


def run_up(args, *, work_dir: Path) -> int:
    server, products, feed = _source(args)
    config = PipelineConfig(products=tuple(products), feed=feed, windows=tuple(args.windows),
                            watermark=args.watermark, trigger=args.trigger)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    work_dir.mkdir(parents=True, exist_ok=True)
    with LocalStack(work_dir, config) as stack:
        if server is not None:
            server.start()
        try:
            ingestion = stack.start_ingestion(ws_url=server.url if server else args.ws_url,
                                              rest_url=server.rest_url if server else None)
            job = stack.start_job()
            state = {
                "work_dir": str(work_dir), "kafka": stack.kafka.bootstrap, "s3_endpoint": stack.s3.endpoint,
                "s3_root": str(stack.s3.root), "bucket": config.bucket, "prefix": config.prefix,
                "lake": f"s3://{config.bucket}/{config.prefix}/candles/",
                "metrics": f"http://127.0.0.1:{stack.ingestion_port}/metrics",
                "logs": [str(p.log_path) for p in stack.processes],
                "source": "replay" if args.replay else "synthetic" if args.synthetic else "live",
            }
            (work_dir / STATE_FILE).write_text(json.dumps(state, indent=2))
            print(f"lake: {state['lake']} at {stack.s3.endpoint} (files under {stack.s3.root})", flush=True)
            print(f"logs: {work_dir}   read candles: cryptopipe candles --format table   stop: Ctrl-C", flush=True)
            while not stop.wait(5):
                for proc in (ingestion, job):
                    if not proc.alive:
                        log.error("process exited", extra={"process": proc.name, "code": proc.returncode,
                                                           "log": str(proc.log_path), "tail": proc.log_tail(10)})
                        return 1
                _report(stack)
        finally:
            if server is not None:
                server.stop()
    return 0


def _report(stack: LocalStack) -> None:
    try:
        metrics = scrape(f"http://127.0.0.1:{stack.ingestion_port}/metrics")
    except OSError:
        metrics = {}
    queries = stack.job_progress().get("queries", {})
    print(
        time.strftime("%H:%M:%S"),
        f"trades in: {int(metrics.get('cryptopipe_ingest_trades_produced_total', 0))}",
        "candles written: " + ", ".join(f"{w}={q['candles_written']}" for w, q in sorted(queries.items())) or "-",
        "watermark: " + ", ".join(f"{w}={q['watermark']}" for w, q in sorted(queries.items())),
        flush=True,
    )
