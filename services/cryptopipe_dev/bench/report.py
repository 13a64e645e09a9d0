"""The results as readable text tables (stdout) and as JSON (``--json``)."""

from __future__ import annotations

import math
import platform

from cryptopipe.ingest.settings import IngestSettings
from cryptopipe_dev.bench.latency import LatencyResult, MemoryResult
from cryptopipe_dev.bench.machine import binary_version, machine, package_version
from cryptopipe_dev.bench.throughput import BARE, HOT_PATH, PARTITIONS, ThroughputResult
from cryptopipe_dev.stack import paths

GIB = 1024**3
TARGET_PER_CPU_S = 50_000
TARGET_RATIO = 0.7
TARGET_MEMORY_GIB = 4.0


def environment() -> dict[str, str]:
    broker = sorted(p.name for p in paths.kafka_libs().glob("kafka-server-[0-9]*.jar"))
    return {
        "machine": machine(),
        "python": platform.python_version(),
        "java": binary_version(["java", "-version"]),
        "kafka broker": broker[0].removeprefix("kafka-server-").removesuffix(".jar") if broker else "?",
        **{name: package_version(name) for name in ("pyspark", "kafka-python", "pyarrow", "orjson", "websockets")},
    }


def _table(rows: list[list[str]], header: list[str]) -> str:
    """Columns of numbers right-aligned, of words left-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    words = [any(c and not (c[0].isdigit() or c[0] in "+-.") for c in col) for col in zip(*rows, strict=False)]

    def line(r: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if left else c.rjust(w) for c, w, left in zip(r, widths, words, strict=False)
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _verdict(ok: bool, miss: str) -> str:
    return "met" if ok else f"MISSED ({miss})"


def throughput_text(t: ThroughputResult) -> str:
    rows = [
        [
            str(i + 1),
            r.variant,
            f"{r.wall_s:.2f}",
            f"{r.cpu_s:.2f}",
            _n(r.per_s),
            _n(r.per_cpu_s),
            f"{r.broker_cpu_s:.2f}",
            f"{r.others_cpu_s:.2f}",
        ]
        for i, r in enumerate(t.runs)
    ]
    a, b = t.best(HOT_PATH), t.best(BARE)
    stages, settings = t.stages_us, IngestSettings()
    per_trade = a.cpu_s / a.records * 1e6
    return "\n".join(
        [
            f"1. INGESTION THROUGHPUT  {a.trades:,} trades ({a.records:,} records) of synthetic Exchange frames, "
            "pre-generated in memory",
            "   (a) FrameHandler.handle -> RecordProducer on one thread; (b) bare KafkaProducer.send() of the same record "
            "bytes;",
            f"   both: idempotent, acks=all, linger {settings.linger_ms} ms, batch {settings.batch_size // 1024} KiB, "
            f"no compression, {PARTITIONS} partitions, flush included;",
            "   run alternately a,b,a,b; best run of each (by wall rate) reported, against noise on the shared machine",
            _indent(
                _table(
                    rows,
                    ["run", "variant", "wall s", "CPU s", "trades/s", "trades/CPU-s", "broker CPU s", "others' CPU s"],
                )
            ),
            "   (CPU s: this process, all threads; broker: the Kafka JVM; others': the rest of the machine meanwhile)",
            f"   best (a) {HOT_PATH}: {_n(a.per_s)} trades/s, {_n(a.per_cpu_s)} trades per CPU-second",
            f"   best (b) {BARE}: {_n(b.per_s)} trades/s, {_n(b.per_cpu_s)} trades per CPU-second",
            f"   ratio (a)/(b): {a.per_s / b.per_s:.2f} wall, {a.per_cpu_s / b.per_cpu_s:.2f} CPU",
            f"   CPU per trade in (a): {per_trade:.1f} µs = parse {stages['parse_us']:.1f} + rest of FrameHandler "
            f"{stages['handler_us'] - stages['parse_us']:.1f} + Kafka producer {per_trade - stages['handler_us']:.1f} "
            "(stages timed without Kafka)",
        ]
    )


def latency_text(lat: LatencyResult) -> str:
    n = len(lat.latencies_s)
    first = f"{lat.first_candle_s:.1f} s" if lat.first_candle_s is not None else "-"
    batch = (
        f"{lat.batch_mean_s:.2f} s mean over {lat.batches} batches (the first, slow one included)"
        if lat.batch_mean_s is not None
        else "-"
    )
    return "\n".join(
        [
            f"2. CANDLE LATENCY  {lat.window} windows, watermark {lat.watermark}, trigger {lat.trigger}; "
            f"synthetic feed at real time, {lat.rate:g} trades/s over {' + '.join(lat.products)}",
            f"   latency = wall-clock time the candle's Parquet file was first listed in the lake (polled every {lat.poll_s:g} s) "
            "- window end",
            f"   windows ending in the feed's first {lat.warmup_s:g} s skipped ({lat.skipped_warmup} candles, Spark warm-up); "
            f"stack up in {lat.stack_start_s:.1f} s, Spark queries started {lat.spark_ready_s:.1f} s after submit, "
            f"first candle {first} after the feed began",
            f"   feed clock = wall clock, as live (the synthetic market starts when the ingestion, {lat.connect_s:.1f} s "
            f"after start, subscribes); Spark micro-batch: {batch}",
            _indent(
                _table(
                    [
                        [
                            str(n),
                            f"{lat.missing}",
                            _s(lat.quantile(0.5)),
                            _s(lat.quantile(0.99)),
                            _s(lat.latencies_s[-1] if n else math.nan),
                            f"{lat.bound_s:.1f} s",
                        ]
                    ],
                    ["candles", "missing", "p50", "p99", "max", "bound (wm+trigger+2s)"],
                )
            ),
            f"   p99 {'meets' if lat.quantile(0.99) <= lat.bound_s and not lat.missing else 'does NOT meet'} the bound",
        ]
    )


def memory_text(mem: MemoryResult) -> str:
    peak = mem.peak
    rows = [[name, f"{kb / 1024:,.0f}"] for name, kb in sorted(peak.by_component.items(), key=lambda x: -x[1])]
    rows.append(["total", f"{peak.total_kb / 1024:,.0f}"])
    return "\n".join(
        [
            f"3. MEMORY  total VmRSS of every process the stack started (each ManagedProcess's tree) + this process "
            f"(replay server, lake watcher), every {mem.interval_s:g} s during 2: {len(mem.samples)} samples",
            f"   peak {peak.total_kb * 1024 / GIB:.2f} GiB, mean {mem.mean_kb * 1024 / GIB:.2f} GiB; at the peak, MiB:",
            _indent(_table(rows, ["component", "RSS MiB"])),
        ]
    )


def summary_rows(t: ThroughputResult, lat: LatencyResult, mem: MemoryResult) -> list[list[str]]:
    a, b = t.best(HOT_PATH), t.best(BARE)
    ratio = a.per_s / b.per_s
    p99, bound = lat.quantile(0.99), lat.bound_s
    peak_gib = mem.peak.total_kb * 1024 / GIB
    return [
        [
            "ingestion, trades per CPU-second",
            _n(a.per_cpu_s),
            f">= {_n(TARGET_PER_CPU_S)}",
            _verdict(a.per_cpu_s >= TARGET_PER_CPU_S, f"{a.per_cpu_s / TARGET_PER_CPU_S - 1:+.0%}"),
        ],
        [
            "ingestion, trades/s (wall)",
            _n(a.per_s),
            f">= {_n(TARGET_PER_CPU_S)}",
            _verdict(a.per_s >= TARGET_PER_CPU_S, f"{a.per_s / TARGET_PER_CPU_S - 1:+.0%}"),
        ],
        [
            "ingestion / bare client (wall)",
            f"{ratio:.2f}x",
            f">= {TARGET_RATIO}x",
            _verdict(ratio >= TARGET_RATIO, f"{ratio - TARGET_RATIO:+.2f}"),
        ],
        [
            "candle latency p99",
            _s(p99),
            f"<= {bound:.1f} s",
            _verdict(
                p99 <= bound and not lat.missing,
                f"{p99 - bound:+.1f} s" + (f", {lat.missing} missing" if lat.missing else ""),
            ),
        ],
        ["candle latency p50", _s(lat.quantile(0.5)), "", ""],
        [
            "stack memory peak (RSS)",
            f"{peak_gib:.2f} GiB",
            f"< {TARGET_MEMORY_GIB:g} GiB",
            _verdict(peak_gib < TARGET_MEMORY_GIB, f"{peak_gib - TARGET_MEMORY_GIB:+.2f} GiB"),
        ],
    ]


def summary_text(t: ThroughputResult, lat: LatencyResult, mem: MemoryResult) -> str:
    return "SUMMARY\n" + _indent(_table(summary_rows(t, lat, mem), ["metric", "measured", "target", "status"]))


def as_json(env: dict, t: ThroughputResult, lat: LatencyResult, mem: MemoryResult, seconds: float) -> dict:
    return {
        "environment": env,
        "seconds": round(seconds, 1),
        "throughput": {
            "runs": [
                {
                    "variant": r.variant,
                    "trades": r.trades,
                    "records": r.records,
                    "wall_s": r.wall_s,
                    "cpu_s": r.cpu_s,
                    "broker_cpu_s": r.broker_cpu_s,
                    "others_cpu_s": r.others_cpu_s,
                    "trades_per_s": r.per_s,
                    "trades_per_cpu_s": r.per_cpu_s,
                }
                for r in t.runs
            ],
            "best": {
                v: {"trades_per_s": t.best(v).per_s, "trades_per_cpu_s": t.best(v).per_cpu_s} for v in (HOT_PATH, BARE)
            },
            "stages_us_per_frame": t.stages_us,
            "kafka_startup_s": t.kafka_startup_s,
        },
        "latency": {
            "window": lat.window,
            "watermark": lat.watermark,
            "trigger": lat.trigger,
            "bound_s": lat.bound_s,
            "count": len(lat.latencies_s),
            "missing": lat.missing,
            "p50_s": lat.quantile(0.5),
            "p99_s": lat.quantile(0.99),
            "max_s": max(lat.latencies_s, default=None),
            "latencies_s": lat.latencies_s,
            "connect_s": lat.connect_s,
            "spark_ready_s": lat.spark_ready_s,
            "first_candle_s": lat.first_candle_s,
            "batch_mean_s": lat.batch_mean_s,
            "batches": lat.batches,
            "trades_produced": lat.trades_produced,
        },
        "memory": {
            "interval_s": mem.interval_s,
            "peak_total_mib": mem.peak.total_kb / 1024,
            "mean_total_mib": mem.mean_kb / 1024,
            "peak_by_component_mib": {k: v / 1024 for k, v in mem.peak.by_component.items()},
            "samples": [{"at": s.at, "mib": {k: v / 1024 for k, v in s.by_component.items()}} for s in mem.samples],
        },
        "summary": [
            dict(zip(["metric", "measured", "target", "status"], r, strict=False)) for r in summary_rows(t, lat, mem)
        ],
    }


def _s(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1f} s"


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.splitlines())
