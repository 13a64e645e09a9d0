"""The local stack's memory at live rates, alone: the latency phase's stack (Kafka, versitygw, the
Spark job, the ingestion on a real-time synthetic feed) sampled per process, peak and mean.

    python -m cryptopipe_dev.bench.footprint --feed-seconds 150 --json after.json

Runnable as a file too (``python .../footprint.py``), so that a checkout's stack settings can be
measured beside another's in the same minutes: the code imported is whichever PYTHONPATH names.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from cryptopipe_dev.bench import report
from cryptopipe_dev.bench.latency import run_latency


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--feed-seconds", type=float, default=150.0)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--json", type=Path)
    p.add_argument("--label", default="")
    args = p.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="cryptopipe-footprint-"))
    load = {"start": os.getloadavg()[0]}
    began = time.monotonic()
    try:
        latency, memory = run_latency(
            work_dir, rate=args.rate, feed_seconds=args.feed_seconds, warmup_s=min(30.0, args.feed_seconds / 4)
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    load["end"] = os.getloadavg()[0]
    print(args.label, report.memory_text(memory))
    peaks: dict[str, int] = {}
    for sample in memory.samples:
        for name, kb in sample.by_component.items():
            peaks[name] = max(peaks.get(name, 0), kb)
    out = {
        "label": args.label,
        "seconds": round(time.monotonic() - began),
        "samples": len(memory.samples),
        "peak_total_mib": round(memory.peak.total_kb / 1024),
        "mean_total_mib": round(memory.mean_kb / 1024),
        "at_peak_mib": {k: round(v / 1024) for k, v in memory.peak.by_component.items()},
        "each_peak_mib": {k: round(v / 1024) for k, v in peaks.items()},
        "candles_measured": len(latency.latencies_s),
        "candles_expected": latency.expected,
        "batch_mean_s": latency.batch_mean_s,
        "load_average_1m": load,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
