"""``python -m cryptopipe_dev.bench`` (``make bench``): ingestion throughput, candle latency and the
stack's memory, measured in one run and printed side by side. About 5 minutes on 2 cores.

The stack part runs first so that this process (which also hosts the replay server, counted in the
memory figure) does not carry the throughput part's 200k pre-generated frames meanwhile.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from cryptopipe.logs import setup_logging
from cryptopipe_dev.bench import report
from cryptopipe_dev.bench.latency import run_latency
from cryptopipe_dev.bench.machine import package_version
from cryptopipe_dev.bench.throughput import run_throughput

log = logging.getLogger("cryptopipe_dev.bench")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cryptopipe_dev.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--trades", type=int, default=200_000, help="trades per throughput run (default 200000)")
    p.add_argument(
        "--rounds",
        type=int,
        help="alternating (hot path, bare) rounds, best of each kept (default 2; --peers: rounds of every side, "
        "default 1)",
    )
    p.add_argument("--profile", action="store_true", help="also cProfile one hot-path run and print its top functions")
    p.add_argument("--window", default="10s", help="candle window of the latency run (default 10s)")
    p.add_argument("--watermark", default="5s")
    p.add_argument("--trigger", default="2s")
    p.add_argument("--rate", type=float, default=20.0, help="synthetic trades per second, all products (default 20)")
    p.add_argument("--feed-seconds", type=float, default=200.0, help="how long the real-time feed runs (default 200)")
    p.add_argument(
        "--warmup", type=float, default=30.0, help="skip windows ending in the feed's first N s (default 30)"
    )
    p.add_argument("--poll", type=float, default=0.2, help="lake listing interval, s (default 0.2)")
    p.add_argument("--memory-interval", type=float, default=2.0, help="RSS sampling interval, s (default 2)")
    p.add_argument(
        "--peers",
        action="store_true",
        help="instead: the ingestion against cryptofeed and the bare kafka-python client (issue 12 section 1; "
        "needs the bench extra; default 200000 trades, --trades for fewer)",
    )
    p.add_argument(
        "--chart", type=Path, metavar="PATH", help="--peers: PNG of the ratios (default: the --json path as .png)"
    )
    p.add_argument(
        "--catchup",
        action="store_true",
        help="instead: a day of backlog through the job (availableNow) against DuckDB on the same trades "
        "(issue 12 section 3; --catchup-trades for a quick run)",
    )
    p.add_argument(
        "--catchup-trades", type=int, default=1_250_000, help="--catchup: trades of backlog (default 1250000: a day)"
    )
    p.add_argument(
        "--catchup-batch", type=int, default=250_000, help="--catchup: records per micro-batch (default 250000)"
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write every figure as JSON")
    p.add_argument("--work-dir", type=Path, help="keep the stacks' data and logs here (default: a temp dir, removed)")
    p.add_argument("--log-level", default="WARNING", help="diagnostic JSON logs on stderr (default WARNING)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.peers:
        return _peers(args)
    if args.catchup:
        return _catchup(args)
    began = time.monotonic()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="cryptopipe-bench-"))
    env = report.environment()
    print("CryptoPipeline benchmark  " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), flush=True)
    for key, value in env.items():
        print(f"  {key}: {value}")
    # others' work on a shared machine skews wall-clock figures: the load average says how much there was
    load = {"start": os.getloadavg()[0]}
    try:
        print(
            f"\n[1/2] local stack on a real-time synthetic feed for {args.feed_seconds:g} s "
            "(candle latency, memory) ...",
            flush=True,
        )
        latency, memory = run_latency(
            work_dir / "stack",
            rate=args.rate,
            window=args.window,
            watermark=args.watermark,
            trigger=args.trigger,
            feed_seconds=args.feed_seconds,
            warmup_s=args.warmup,
            poll_s=args.poll,
            memory_interval_s=args.memory_interval,
        )
        load["after stack run"] = os.getloadavg()[0]
        print(
            f"[2/2] ingestion throughput, {args.rounds or 2} x (hot path, bare client) of ~{args.trades:,} trades ...",
            flush=True,
        )
        throughput = run_throughput(work_dir, trades=args.trades, rounds=args.rounds or 2, profile=args.profile)
        load["after throughput"] = os.getloadavg()[0]
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    seconds = time.monotonic() - began
    print()
    for text in (report.throughput_text(throughput), report.latency_text(latency), report.memory_text(memory)):
        print(text, end="\n\n")
    print(report.summary_text(throughput, latency, memory))
    print(
        f"\n(run took {seconds:.0f} s; 1-min load average "
        + ", ".join(f"{k} {v:.1f}" for k, v in load.items())
        + f" on {os.cpu_count()} cores)"
    )
    if throughput.profile:
        print("\ncProfile of one hot-path run (main thread; profiling slows it ~3x):\n" + throughput.profile)
    if args.json:
        args.json.write_text(
            json.dumps({**report.as_json(env, throughput, latency, memory, seconds), "load_average_1m": load}, indent=2)
        )
        print(f"JSON: {args.json}")
    return 0


def _catchup(args: argparse.Namespace) -> int:
    from cryptopipe_dev.bench.catchup import as_json, result_text, run_catchup

    began = time.monotonic()
    env = report.environment()
    print("CryptoPipeline catch-up vs DuckDB  " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), flush=True)
    for key, value in env.items():
        print(f"  {key}: {value}")
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="cryptopipe-bench-catchup-"))
    try:
        result = run_catchup(
            work_dir,
            trades=args.catchup_trades,
            max_offsets=args.catchup_batch,
            progress=lambda s: print(s, flush=True),
        )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    seconds = time.monotonic() - began
    print()
    print(result_text(result))
    print(f"\n(run took {seconds:.0f} s)")
    if args.json:
        args.json.write_text(
            json.dumps({"environment": env, "seconds": round(seconds, 1), **as_json(result)}, indent=2)
        )
        print(f"JSON: {args.json}")
    return 0 if not result.mismatches else 1


def _peers(args: argparse.Namespace) -> int:
    from cryptopipe_dev.bench import peers_report
    from cryptopipe_dev.bench.peers import run_peers

    began = time.monotonic()
    env = {**report.environment(), **{name: package_version(name) for name in ("cryptofeed", "aiokafka")}}
    print("CryptoPipeline ingestion vs peers  " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), flush=True)
    for key, value in env.items():
        print(f"  {key}: {value}")
    load = {"start": os.getloadavg()[0]}
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="cryptopipe-bench-peers-"))
    try:
        result = run_peers(
            work_dir,
            trades=args.trades,
            rounds=args.rounds or 1,
            profile=args.profile,
            progress=lambda s: print(s, flush=True),
        )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    load["end"] = os.getloadavg()[0]
    seconds = time.monotonic() - began
    print()
    print(peers_report.runs_text(result), end="\n\n")
    print(peers_report.table_text(result))
    print(
        f"\n(run took {seconds:.0f} s; 1-min load average "
        + ", ".join(f"{k} {v:.1f}" for k, v in load.items())
        + f" on {os.cpu_count()} cores)"
    )
    if result.profile:
        print("\ncProfile of one Advanced Trade hot-path run (main thread; profiling slows it ~3x):\n" + result.profile)
    if result.service_profile:
        print("\ncProfile of one ingestion service run (every thread together):\n" + result.service_profile)
    extra = {"environment": env, "seconds": round(seconds, 1), "load_average_1m": load}
    for path in peers_report.write(result, args.json, args.chart, extra):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
