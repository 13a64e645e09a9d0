"""``make bench`` (``python -m cryptopipe_dev.bench.suite``): every comparison of issue 12 in one
invocation, one table (figure, this project, the peer, ratio, target, met/missed) and a PNG bar chart
of the ratios, made here.

Parts, each alone on the machine in turn (a part that fails is a row saying so; the others still run):

1. freshness + footprint: the local stack with the shipped defaults (1m windows, watermark 30 s,
   trigger 5 s) on a live-rate synthetic feed of 5 products; every candle's window end -> visible in
   the lake; the whole stack's peak RSS meanwhile (latency.py).
2. ingestion: this project (kafka-python and confluent producers) against cryptofeed (default acks
   and acks=all) and the bare kafka-python and confluent-kafka clients, same frames, same broker
   (peers.py).
3. catch-up: a backlog through the job (availableNow) against DuckDB on the same trades (catchup.py).
4. lake: one product-day read cold, today's reader against this one before and after compaction
   (lake_growth.py).

Scale: the defaults fit ~20 minutes on the 2-core machine (docs/benchmarks.md says what each
part's size is); ``--full`` runs the issue's full sizes (200k trades, a day of backlog, 30 days x
50 products, 25 minutes of live feed: about 35 minutes, measured). ``--only`` runs some parts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptopipe.logs import setup_logging
from cryptopipe_dev.bench import report, suite_rows
from cryptopipe_dev.bench.machine import package_version
from cryptopipe_dev.bench.suite_rows import Figure

PARTS = ("freshness", "ingestion", "catchup", "lake")
# (make bench: ~20 min on 2 loaded cores, ~9 idle) / (--full: the sizes). The catch-up is the
# issue's whole day in both: on an idle machine it takes ~1.5 min, and a smaller backlog measures
# Spark's per-batch costs instead of the catch-up (3,617 trades/s at 20,000 trades, 50,786 at a day)
QUICK = {
    "trades": 50_000,
    "freshness_s": 330.0,
    "catchup_trades": 1_250_000,
    "catchup_batch": 250_000,
    "lake_days": 4,
    "lake_products": 10,
}
FULL = {
    "trades": 200_000,
    "freshness_s": 1500.0,
    "catchup_trades": 1_250_000,
    "catchup_batch": 250_000,
    "lake_days": 30,
    "lake_products": 50,
}
FRESHNESS_PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "DOGE-USD")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cryptopipe_dev.bench.suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--full", action="store_true", help="the issue's full sizes (about 35 min; default: ~20 min)")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts (default all: {','.join(PARTS)})")
    p.add_argument("--trades", type=int, help="ingestion: trades per side (default 50000; --full 200000)")
    p.add_argument("--freshness-seconds", type=float, help="live feed length, s (default 330; --full 1500)")
    p.add_argument("--freshness-warmup", type=float, default=60.0, help="skip windows ending in the first N s")
    p.add_argument("--rate", type=float, default=20.0, help="live synthetic trades/s over the 5 products (20)")
    p.add_argument("--window", default="1m", help="freshness: candle window (default 1m, the shipped one)")
    p.add_argument("--watermark", default="30s", help="freshness: watermark (default 30s, the shipped one)")
    p.add_argument("--trigger", default="5s", help="freshness: trigger (default 5s, the shipped one)")
    p.add_argument("--catchup-trades", type=int, help="backlog trades (default and --full 1250000: a day)")
    p.add_argument("--catchup-batch", type=int, help="records per micro-batch (default and --full 250000)")
    p.add_argument("--lake-days", type=int, help="lake: days (default 4; --full 30)")
    p.add_argument("--lake-products", type=int, help="lake: products (default 10; --full 50)")
    p.add_argument("--lake-batches", type=int, default=72, help="lake: batches a day (default 72)")
    p.add_argument("--rounds", type=int, default=1, help="ingestion rounds / lake query rounds x3 (default 1)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write every figure as JSON")
    p.add_argument("--chart", type=Path, metavar="PATH", help="PNG of the ratios (default: --json's path as .png)")
    p.add_argument("--work-dir", type=Path, help="keep the stacks' data and logs here (default: a temp dir)")
    p.add_argument("--log-level", default="WARNING")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    scale = dict(FULL if args.full else QUICK)
    for key in scale:
        value = getattr(args, key if key != "freshness_s" else "freshness_seconds", None)
        if value is not None:
            scale[key] = value
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        _parser().error(f"unknown parts {sorted(unknown)}; the parts are {', '.join(PARTS)}")
    env = {
        **report.environment(),
        **{name: package_version(name) for name in ("cryptofeed", "aiokafka", "confluent-kafka", "duckdb")},
    }
    print("CryptoPipeline benchmark, side by side  " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), flush=True)
    for key, value in env.items():
        print(f"  {key}: {value}")
    print(f"  scale: {'full (--full)' if args.full else 'make bench (quick)'}: {scale}", flush=True)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="cryptopipe-bench-suite-"))
    began = time.monotonic()
    load: dict[str, float] = {"start": os.getloadavg()[0]}
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    steps: dict[str, Callable[[], tuple[list[Figure], Any]]] = {
        "freshness": lambda: _freshness(args, scale, work_dir),
        "ingestion": lambda: _ingestion(args, scale, work_dir),
        "catchup": lambda: _catchup(scale, work_dir),
        "lake": lambda: _lake(args, scale, work_dir),
    }
    try:
        for n, part in enumerate(parts, 1):
            print(f"\n[{n}/{len(parts)}] {part} ...", flush=True)
            started = time.monotonic()
            try:
                rows, detail = steps[part]()
            except Exception as exc:  # noqa: BLE001 -- one part failing must not lose the others' figures
                traceback.print_exc()
                rows, detail = [suite_rows.failed(part, exc)], {"error": repr(exc)}
            figures += rows
            details[part] = detail
            load[f"after {part}"] = os.getloadavg()[0]
            print(f"    {part}: {time.monotonic() - started:.0f} s", flush=True)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    seconds = time.monotonic() - began
    print()
    print(suite_rows.table_text(figures))
    print(
        f"\n(run took {seconds:.0f} s; 1-min load average "
        + ", ".join(f"{k} {v:.1f}" for k, v in load.items())
        + f" on {os.cpu_count()} cores)"
    )
    extra = {"environment": env, "scale": scale, "seconds": round(seconds, 1), "load_average_1m": load}
    for path in suite_rows.write(figures, details, args.json, args.chart, extra):
        print(f"wrote {path}")
    return 0


def _progress(text: str) -> None:
    print("    " + text.strip(), flush=True)


def _freshness(args: argparse.Namespace, scale: dict, work_dir: Path) -> tuple[list[Figure], Any]:
    from cryptopipe_dev.bench.latency import run_latency

    latency, memory = run_latency(
        work_dir / "freshness",
        products=FRESHNESS_PRODUCTS,
        rate=args.rate,
        window=args.window,
        watermark=args.watermark,
        trigger=args.trigger,
        feed_seconds=scale["freshness_s"],
        warmup_s=args.freshness_warmup,
        poll_s=0.5,
    )
    print(report.latency_text(latency), report.memory_text(memory), sep="\n\n")
    return suite_rows.freshness(latency) + suite_rows.footprint(memory), {
        "latencies_s": latency.latencies_s,
        "expected": latency.expected,
        "batch_mean_s": latency.batch_mean_s,
        "batches": latency.batches,
        "job_cpu_s": latency.job_cpu_s,
        "feed_s": latency.feed_s,
        "spark_ready_s": latency.spark_ready_s,
        "peak_mib": {k: round(v / 1024) for k, v in memory.peak.by_component.items()},
    }


def _ingestion(args: argparse.Namespace, scale: dict, work_dir: Path) -> tuple[list[Figure], Any]:
    from cryptopipe_dev.bench import peers_report
    from cryptopipe_dev.bench.peers import run_peers

    result = run_peers(
        work_dir / "peers", trades=scale["trades"], rounds=args.rounds, progress=_progress, receive_only=False
    )
    print(peers_report.runs_text(result))
    return suite_rows.ingestion(result), peers_report.as_json(result)


def _catchup(scale: dict, work_dir: Path) -> tuple[list[Figure], Any]:
    from cryptopipe_dev.bench.catchup import as_json, result_text, run_catchup

    result = run_catchup(
        work_dir / "catchup", trades=scale["catchup_trades"], max_offsets=scale["catchup_batch"], progress=_progress
    )
    print(result_text(result))
    return suite_rows.catchup(result), as_json(result)


def _lake(args: argparse.Namespace, scale: dict, work_dir: Path) -> tuple[list[Figure], Any]:
    from cryptopipe_dev.bench.lake_growth import run_lake_growth

    lake_dir = work_dir / "lake"
    lake_dir.mkdir(parents=True, exist_ok=True)
    result = run_lake_growth(
        lake_dir,
        days=scale["lake_days"],
        products=scale["lake_products"],
        batches=args.lake_batches,
        rounds=max(3, args.rounds),
        log=_progress,
    )
    return suite_rows.lake(result), result


if __name__ == "__main__":
    raise SystemExit(main())
