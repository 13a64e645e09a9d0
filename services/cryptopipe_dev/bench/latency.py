"""Candle latency at real speed, and the stack's memory meanwhile.

The whole local stack (Kafka, versitygw, the Spark job, the ingestion service) runs on an endless
synthetic Exchange feed served at real time. A watcher lists the lake every ``poll`` seconds and
notes when each (product, window) candle first appears; its latency is that moment minus the
window's end on the feed's clock.

The feed's clock is the wall clock, as on the live feed: the replay server paces frame i at
(ts_i - ts_0) after it sent the first frame, so the source starts its market at the moment the
first frame goes out (the ingestion connects a second or so after the source is made). Not a detail:
Spark starts micro-batches on a grid (multiples of the trigger since the epoch) and a window closes
one batch after the batch that read the trade past ``window end + watermark``, so how the feed's
clock sits against that grid moves every latency by up to a trigger interval.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
from pyarrow import fs

from cryptopipe.contracts import parse_duration, window_label
from cryptopipe.lake.commits import committed_files
from cryptopipe.lake.layout import LakeLocation
from cryptopipe.pipeline import PipelineConfig
from cryptopipe_dev.bench.procmem import MemorySample, MemorySampler, exe_name, tree_cpu_s
from cryptopipe_dev.bench.stats import nearest_rank
from cryptopipe_dev.commands.scrape import scrape
from cryptopipe_dev.replay import ReplayServer, SyntheticConfig, SyntheticSource
from cryptopipe_dev.replay.source import SourceFrame
from cryptopipe_dev.stack.local import LocalStack
from cryptopipe_dev.stack.procs import free_port, wait_for

log = logging.getLogger("cryptopipe_dev.bench.latency")

JOB = "spark-candles-job"


class LiveClockSource(SyntheticSource):
    """SyntheticSource whose market starts when its first frame is streamed (see module doc)."""

    first_frame_wall: float | None = None
    planned_start: float | None = None  # the start_time it was made with

    def frames(self, start: int = 0) -> Iterator[SourceFrame]:
        # a generator: this runs at the first next(), right before the server sends the first frame
        if self.first_frame_wall is None:
            self.planned_start = self.config.start_time
            self.first_frame_wall = time.time()
            self.config = dataclasses.replace(self.config, start_time=self.first_frame_wall)
            self.start_ts = self.first_frame_wall
        yield from super().frames(start)


class LakeWatcher:
    """Lists one window's committed candle files (those a batch manifest names: what readers see)
    every ``poll`` s; reads each new file once to learn which candles it holds.
    ``seen[(product, window_end_us)]`` = wall time of the listing that first showed it (taken after
    the listing returned: the figure errs on the late side, by < poll)."""

    def __init__(self, filesystem: fs.FileSystem, lake: LakeLocation, window: str, poll: float) -> None:
        self._fs = filesystem
        self._lake = lake
        self._window = window
        self._poll = poll
        self._files: set[str] = set()
        self.seen: dict[tuple[str, int], float] = {}
        self.listings = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-lake-watcher", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                files = committed_files(self._lake, self._fs, window=self._window)
                at = time.time()
                for file in files:
                    if file.path not in self._files:
                        self._read(file.path, at)
            except OSError as exc:  # S3 hiccup: the next listing catches up, a bit later
                log.warning("lake listing failed", extra={"error": repr(exc)})
            self.listings += 1
            self._stop.wait(max(0.0, self._poll - (time.monotonic() - began)))

    def _read(self, path: str, at: float) -> None:
        table = pq.read_table(path, filesystem=self._fs, columns=["product_id", "window_end"])
        for product, end in zip(
            table.column("product_id").to_pylist(), table.column("window_end").to_pylist(), strict=False
        ):
            self.seen.setdefault((product, int(end.timestamp() * 1_000_000)), at)
        self._files.add(path)

    def start(self) -> LakeWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclasses.dataclass
class LatencyResult:
    products: tuple[str, ...]
    rate: float
    poll_s: float
    window: str
    watermark: str
    trigger: str
    latencies_s: list[float]  # one per candle measured, sorted
    expected: int  # candles the measured span should hold (windows x products)
    warmup_s: float
    skipped_warmup: int
    connect_s: float  # source made -> first frame streamed (the ingestion's start and connect)
    spark_ready_s: float  # job start to its queries started
    first_candle_s: float | None  # feed start to the first candle file seen
    stack_start_s: float
    batch_mean_s: float | None  # mean micro-batch wall time (the job's own histogram)
    batches: int | None
    trades_produced: int | None
    # what the freshness costs: the job's CPU (its process tree) and micro-batches over the feed
    job_cpu_s: float | None = None
    feed_s: float | None = None

    @property
    def job_cores(self) -> float | None:
        return self.job_cpu_s / self.feed_s if self.job_cpu_s is not None and self.feed_s else None

    @property
    def bound_s(self) -> float:
        return parse_duration(self.watermark) + parse_duration(self.trigger) + 2.0

    @property
    def missing(self) -> int:
        return self.expected - len(self.latencies_s)

    def quantile(self, q: float) -> float:
        """Nearest rank: with few samples p99 is the largest but one or the largest, never interpolated."""
        return nearest_rank(self.latencies_s, q)


@dataclasses.dataclass
class MemoryResult:
    samples: list[MemorySample]
    interval_s: float

    @property
    def peak(self) -> MemorySample:
        return max(self.samples, key=lambda s: s.total_kb)

    @property
    def mean_kb(self) -> float:
        return sum(s.total_kb for s in self.samples) / len(self.samples)


def _component_roots(stack: LocalStack) -> dict[str, tuple[int, bool]]:
    """Every process the stack started, as the root of its tree, plus this process alone (it runs
    the replay server and the lake watcher; its own children are the stack's, counted above)."""
    roots: dict[str, tuple[int, bool]] = {"bench (replay server)": (os.getpid(), False)}
    for name, proc in (("kafka", stack.kafka.process), ("versitygw", stack.s3.process)):
        if proc is not None and proc.alive:
            roots[name] = (proc.pid, True)
    for proc in stack.processes:
        if proc.alive:
            roots[proc.name] = (proc.pid, True)
    return roots


def _split_spark(component: str, pid: int) -> str:
    """Spark's tree holds the JVM (driver + executor, local mode) and Python (driver, workers)."""
    if component != JOB:
        return component
    return "spark JVM" if exe_name(pid) == "java" else "spark Python"


def run_latency(
    work_dir: Path,
    *,
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD"),
    rate: float = 20.0,
    window: str = "10s",
    watermark: str = "5s",
    trigger: str = "2s",
    feed_seconds: float = 180.0,
    warmup_s: float = 30.0,
    poll_s: float = 0.2,
    memory_interval_s: float = 2.0,
    seed: int = 11,
) -> tuple[LatencyResult, MemoryResult]:
    window = window_label(parse_duration(window))
    # the hold slack derived from the watermark (PipelineConfig's default); it only matters around gaps
    config = PipelineConfig(products=products, windows=(window,), watermark=watermark, trigger=trigger)
    began = time.monotonic()
    with LocalStack(work_dir, config) as stack:
        stack_start_s = time.monotonic() - began
        sampler = MemorySampler(lambda: _component_roots(stack), memory_interval_s, _split_spark).start()
        metrics_port = free_port()
        job = stack.start_job(metrics_port=metrics_port)
        # the feed starts once Spark is up: the JVM's start-up is not what this measures
        job_began = time.monotonic()
        wait_for(lambda: '"query started"' in job.log_tail(200), 240, "spark query started", interval=0.5, process=job)
        spark_ready_s = time.monotonic() - job_began
        log.info("spark ready", extra={"seconds": round(spark_ready_s, 1)})
        source = LiveClockSource(
            SyntheticConfig(products=products, rate=rate, duration=None, start_time=time.time(), seed=seed)
        )
        watcher = LakeWatcher(
            stack.s3_connection.arrow_filesystem(), LakeLocation(config.bucket, config.prefix), window, poll_s
        ).start()
        with ReplayServer(source, speed=1) as server:
            ingestion = stack.start_ingestion(ws_url=server.url, rest_url=server.rest_url)
            wait_for(lambda: source.first_frame_wall, 60, "ingestion subscribed", process=ingestion)
            origin = source.first_frame_wall
            assert origin is not None
            job_cpu_at_start = tree_cpu_s(job.pid)
            stop_at = origin + feed_seconds
            while time.time() < stop_at:
                for proc in (job, ingestion):
                    if not proc.alive:
                        raise RuntimeError(
                            f"{proc.name} exited ({proc.returncode}); log {proc.log_path}:\n{proc.log_tail(30)}"
                        )
                time.sleep(min(1.0, max(0.0, stop_at - time.time())))
            watcher.stop()
            job_cpu_s = tree_cpu_s(job.pid) - job_cpu_at_start
            feed_s = time.time() - origin
            samples = sampler.stop()
            job_metrics = _scrape(f"http://127.0.0.1:{metrics_port}/metrics")
            ingest_metrics = _scrape(f"http://127.0.0.1:{stack.ingestion_port}/metrics")
    latencies, expected, skipped = _latencies(
        watcher.seen, products, window, watermark, trigger, origin, stop_at, warmup_s
    )
    batches = job_metrics.get("cryptopipe_job_batch_duration_seconds_count")
    result = LatencyResult(
        products=products,
        rate=rate,
        poll_s=poll_s,
        window=window,
        watermark=watermark,
        trigger=trigger,
        latencies_s=latencies,
        expected=expected,
        warmup_s=warmup_s,
        skipped_warmup=skipped,
        connect_s=origin - (source.planned_start or origin),
        spark_ready_s=spark_ready_s,
        first_candle_s=min(watcher.seen.values()) - origin if watcher.seen else None,
        stack_start_s=stack_start_s,
        batch_mean_s=job_metrics["cryptopipe_job_batch_duration_seconds_sum"] / batches if batches else None,
        batches=int(batches) if batches else None,
        trades_produced=int(ingest_metrics.get("cryptopipe_ingest_trades_produced_total", 0)) or None,
        job_cpu_s=job_cpu_s,
        feed_s=feed_s,
    )
    return result, MemoryResult(samples, memory_interval_s)


def _latencies(
    seen: dict[tuple[str, int], float],
    products: tuple[str, ...],
    window: str,
    watermark: str,
    trigger: str,
    origin: float,
    stop_at: float,
    warmup_s: float,
) -> tuple[list[float], int, int]:
    """(sorted latencies, candles expected, candles skipped as warm-up) for the windows that end
    after the warm-up and early enough that a candle within twice the target bound was seen."""
    size_us = parse_duration(window) * 1_000_000
    grace = 2 * (parse_duration(watermark) + parse_duration(trigger) + 2.0)
    first_end = origin + warmup_s  # event clock = wall clock
    last_end = stop_at - grace
    ends = range(math.ceil(first_end * 1e6 / size_us) * size_us, int(last_end * 1e6) + 1, size_us)
    latencies = [seen[(p, e)] - e / 1e6 for p in products for e in ends if (p, e) in seen]
    skipped = sum(1 for (_, e) in seen if e < ends.start)
    return sorted(latencies), len(ends) * len(products), skipped


def _scrape(url: str) -> dict[str, float]:
    try:
        return scrape(url)
    except OSError as exc:
        log.warning("metrics scrape failed", extra={"url": url, "error": repr(exc)})
        return {}
