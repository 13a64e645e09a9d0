"""Catch-up: a day of backlog through the candle job, against DuckDB on the same trades (issue 12 §3).

1. A day of seeded synthetic BTC-USD + ETH-USD trades (Hawkes arrivals: bursts and lulls) plus
   the heartbeat ticks the ingestion would send (one per product per second) are produced into the
   local stack's real Kafka topic, in the contract's record JSON; the same trades are written to a
   local Parquet file (decimals as DECIMAL(18,8)). A closing tick two windows past the last trade
   moves the watermark past the day, so every candle of the day is emitted.
2. The job runs once over the backlog (``--available-now``: Spark's availableNow trigger, batches of
   ``max_offsets`` records) and exits; every query progress event is kept (``durationMs``
   breakdown, batch sizes). Start-up (spark-submit to the first batch's trigger) is reported apart
   from the processing (the batches' ``triggerExecution``); steady state is every batch but the
   first (JIT, first-use class loading and S3 connections land in the first).
3. DuckDB computes the same 1-minute candles from the Parquet file (best of ``duckdb_rounds``), and
   every column of every candle is compared, decimal-exactly: the lake's exact notional against
   DuckDB's sum(price*size), and its vwap against notional/volume rounded once, half-even, at the
   lake's 28 places (computed here on fractions, sharing no code with the job's sink).
"""

from __future__ import annotations

import dataclasses
import decimal
import heapq
import json
import logging
import os
import random
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from kafka import KafkaProducer

from cryptopipe.contracts import SCHEMA_VERSION
from cryptopipe.pipeline import PipelineConfig, job_arguments, job_env
from cryptopipe_dev.bench.procmem import tree_cpu_s
from cryptopipe_dev.replay.synthetic import DEFAULT_START_TIME, SyntheticConfig, _Product
from cryptopipe_dev.stack.local import LocalStack
from cryptopipe_dev.stack.procs import wait_for
from cryptopipe_dev.stack.spark_job import spark_job_process

log = logging.getLogger("cryptopipe_dev.bench.catchup")

DAY_S = 86_400
DAY_TRADES = 1_250_000  # a day at ~14.5 trades/s, BTC-USD + ETH-USD together
DAY_RATE = DAY_TRADES / DAY_S
WINDOW_US = 60_000_000
PRODUCTS = ("BTC-USD", "ETH-USD")


@dataclasses.dataclass
class Backlog:
    trades: int
    ticks: int
    market_s: float  # event time the trades span
    produce_s: float
    parquet: Path
    last_event_us: int


@dataclasses.dataclass
class CatchupResult:
    backlog: Backlog
    max_offsets: int
    job_wall_s: float  # spark-submit start -> the process exited
    startup_s: float  # spark-submit start -> the first batch's trigger
    batches: list[dict]  # query progress events (data and no-data batches)
    job_cpu_s: float  # the job's process tree, user + system
    # the same once the first batch had committed: what the later batches, the closing no-data
    # batch and the exit cost, start-up and the first batch's warm-up excluded (None: not seen)
    cpu_after_first_s: float | None
    candles: int
    duckdb_s: float  # best of the rounds
    duckdb_rounds: list[float]
    mismatches: list[str]  # empty: identical
    load: dict[str, float]

    @property
    def data_batches(self) -> list[dict]:
        return [b for b in self.batches if b.get("numInputRows", 0) > 0]

    @property
    def records(self) -> int:
        return self.backlog.trades + self.backlog.ticks

    @property
    def processing_s(self) -> float:
        """Sum of every batch's triggerExecution: the job's processing, start-up excluded."""
        return sum(b["durationMs"].get("triggerExecution", 0) for b in self.batches) / 1000

    @property
    def steady(self) -> tuple[int, float]:
        """(records, seconds) of the data batches after the first."""
        rest = self.data_batches[1:]
        return sum(b["numInputRows"] for b in rest), sum(b["durationMs"]["triggerExecution"] for b in rest) / 1000

    @property
    def steady_trades_per_s(self) -> float | None:
        records, seconds = self.steady
        if not seconds:
            return None
        return records * (self.backlog.trades / self.records) / seconds

    @property
    def steady_trades_per_cpu_s(self) -> float | None:
        """Trades of the batches after the first per CPU-second the job spent after the first batch:
        unlike trades/s, hardly moved by other load on the machine (2 cores: 100,000 trades/s needs
        50,000 per CPU-second)."""
        records, _ = self.steady
        if not self.cpu_after_first_s or not records:
            return None
        return records * (self.backlog.trades / self.records) / self.cpu_after_first_s

    @property
    def trades_per_s(self) -> float:
        return self.backlog.trades / self.processing_s if self.processing_s else 0.0

    @property
    def day_processing_s(self) -> float | None:
        """A day's backlog at the steady-state rate (the first batch's warm-up once)."""
        rate = self.steady_trades_per_s
        return DAY_TRADES / rate if rate else None

    @property
    def duckdb_trades_per_s(self) -> float:
        return self.backlog.trades / self.duckdb_s

    def breakdown(self) -> dict[str, float]:
        """durationMs summed over all batches, s (triggerExecution is the whole; the rest are parts)."""
        out: dict[str, float] = {}
        for b in self.batches:
            for key, ms in b["durationMs"].items():
                out[key] = out.get(key, 0.0) + ms / 1000
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _tick_json(product: str, at_us: int) -> bytes:
    return orjson.dumps(
        {
            "v": SCHEMA_VERSION,
            "kind": "tick",
            "exchange": "coinbase",
            "product_id": product,
            "trade_id": None,
            "price": None,
            "size": None,
            "side": None,
            "event_time_us": at_us,
            "receive_time_us": at_us,
            "feed": "exchange",
            "source": "ws",
            "sequence": None,
            "last_trade_id": None,
        }
    )


def produce_backlog(
    bootstrap: str, topic: str, parquet: Path, *, trades: int, seed: int = 5, start_time: float = DEFAULT_START_TIME
) -> Backlog:
    """Exactly ``trades`` synthetic trades at a day's mean rate (DAY_RATE: about ``trades`` / DAY_RATE s
    of market) and a tick per product per second into ``topic``, keyed by product; the trades also
    into ``parquet``."""
    config = SyntheticConfig(products=PRODUCTS, rate=DAY_RATE, duration=None, seed=seed, start_time=start_time)
    rng = random.Random(seed)
    products = [_Product(config, i, 1 / len(PRODUCTS), rng) for i in range(len(PRODUCTS))]
    start_us = round(start_time * 1e6)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=50, batch_size=1 << 20)
    cols: dict[str, list] = {k: [] for k in ("product_id", "trade_id", "price", "size", "event_time_us")}
    keys = [p.name.encode() for p in products]
    began = time.monotonic()
    made = ticks = 0
    arrivals = [(p.next_arrival(), i) for i, p in enumerate(products)]
    heapq.heapify(arrivals)
    next_tick = 1.0
    at_us = start_us
    try:
        while made < trades:
            t, i = arrivals[0]
            if next_tick <= t:
                tick_us = start_us + round(next_tick * 1e6)
                for p, key in zip(products, keys, strict=True):
                    producer.send(topic, key=key, value=_tick_json(p.name, tick_us))
                    ticks += 1
                next_tick += 1.0
                continue
            p = products[i]
            trade_id, price, size, side, sequence = p.trade()
            at_us = start_us + round(t * 1e6)
            value = orjson.dumps(
                {
                    "v": SCHEMA_VERSION,
                    "kind": "trade",
                    "exchange": "coinbase",
                    "product_id": p.name,
                    "trade_id": trade_id,
                    "price": price,
                    "size": size,
                    "side": side,
                    "event_time_us": at_us,
                    "receive_time_us": at_us,
                    "feed": "exchange",
                    "source": "ws",
                    "sequence": sequence,
                    "last_trade_id": None,
                }
            )
            producer.send(topic, key=keys[i], value=value)
            for name, v in zip(cols, (p.name, trade_id, price, size, at_us), strict=True):
                cols[name].append(v)
            made += 1
            heapq.heapreplace(arrivals, (p.next_arrival(), i))
        # closing ticks: the watermark (max event time - delay) passes the day's last window
        closing_us = (at_us // WINDOW_US + 3) * WINDOW_US
        for p, key in zip(products, keys, strict=True):
            producer.send(topic, key=key, value=_tick_json(p.name, closing_us))
            ticks += 1
        producer.flush()
    finally:
        producer.close()
    produce_s = time.monotonic() - began
    dec = pa.decimal128(18, 8)
    table = pa.table(
        {
            "product_id": pa.array(cols["product_id"], pa.string()),
            "trade_id": pa.array(cols["trade_id"], pa.int64()),
            "price": pa.array(cols["price"], pa.string()).cast(dec),
            "size": pa.array(cols["size"], pa.string()).cast(dec),
            "event_time_us": pa.array(cols["event_time_us"], pa.int64()),
        }
    )
    pq.write_table(table, parquet, compression="zstd")
    return Backlog(made, ticks, (at_us - start_us) / 1e6, produce_s, parquet, at_us)


DUCKDB_CANDLES = """
SELECT product_id,
       (event_time_us // 60000000) * 60000000 AS start_us,
       arg_min(price, {'t': event_time_us, 'id': trade_id}) AS open,
       max(price) AS high,
       min(price) AS low,
       arg_max(price, {'t': event_time_us, 'id': trade_id}) AS close,
       sum(size) AS volume,
       count(*) AS trade_count,
       sum(price::DECIMAL(38, 8) * size::DECIMAL(38, 8)) AS notional,
       arg_min(trade_id, {'t': event_time_us, 'id': trade_id}) AS first_trade_id,
       arg_max(trade_id, {'t': event_time_us, 'id': trade_id}) AS last_trade_id
FROM read_parquet(PATH)
GROUP BY ALL
ORDER BY product_id, start_us
"""


def duckdb_candles(parquet: Path, threads: int = 2) -> tuple[pa.Table, float]:
    """The 1-minute candles by DuckDB from the Parquet trades, and the seconds it took (query only)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {threads}")
        began = time.perf_counter()
        path = "'" + str(parquet).replace("'", "''") + "'"
        table = con.sql(DUCKDB_CANDLES.replace("PATH", path)).to_arrow_table()
        return table, time.perf_counter() - began
    finally:
        con.close()


VWAP_PLACES = 28  # the lake's vwap: DECIMAL(38,28), rounded half-even once


def exact_vwap(notional: decimal.Decimal, volume: decimal.Decimal) -> decimal.Decimal:
    """notional / volume rounded once, half-even, at the lake's vwap scale (round() of a Fraction)."""
    units = round(Fraction(notional) / Fraction(volume) * 10**VWAP_PLACES)
    return decimal.Decimal(f"{units}E-{VWAP_PLACES}")


def compare(lake: pa.Table, duck: pa.Table, limit: int = 10) -> list[str]:
    """Every column of every candle, exactly; the differences, described (at most ``limit``)."""
    problems: list[str] = []
    expected: dict[tuple[str, int], dict] = {}
    for row in duck.to_pylist():
        start = row["start_us"]
        expected[(row["product_id"], start)] = {
            "window_end_us": start + WINDOW_US,
            "open": row["open"],
            "high": row["high"],
            "low": row["low"],
            "close": row["close"],
            "volume": row["volume"],
            "trade_count": row["trade_count"],
            "vwap": exact_vwap(row["notional"], row["volume"]),
            "notional": row["notional"],
            "first_trade_id": row["first_trade_id"],
            "last_trade_id": row["last_trade_id"],
        }
    got: dict[tuple[str, int], dict] = {}
    for row in lake.to_pylist():
        start = _us(row["window_start"])
        key = (row["product_id"], start)
        if key in got:
            problems.append(f"candle twice in the lake: {key}")
        got[key] = {**row, "window_end_us": _us(row["window_end"])}
    for key in sorted(expected.keys() - got.keys())[:limit]:
        problems.append(f"missing from the lake: {key}")
    for key in sorted(got.keys() - expected.keys())[:limit]:
        problems.append(f"not in DuckDB's: {key}")
    for key in sorted(expected.keys() & got.keys()):
        for name, want in expected[key].items():
            have = got[key][name]
            # Decimal equality is by value: 1.50 == 1.5, an exact comparison of the numbers
            if have != want or type(have) is not type(want):
                problems.append(f"{key} {name}: lake {have!r} != DuckDB {want!r}")
        if len(problems) >= limit:
            break
    return problems[:limit]


def _us(value) -> int:
    return round(value.timestamp() * 1_000_000)


def run_catchup(
    work_dir: Path,
    *,
    trades: int = DAY_TRADES,
    max_offsets: int = 250_000,
    duckdb_rounds: int = 3,
    seed: int = 5,
    progress: Callable[[str], None] = lambda s: None,
) -> CatchupResult:
    work_dir.mkdir(parents=True, exist_ok=True)
    config = PipelineConfig(products=PRODUCTS, windows=("1m",), watermark="30s")
    load = {"start": os.getloadavg()[0]}
    with LocalStack(work_dir / "stack", config) as stack:
        progress(f"  producing {trades:,} trades (+ ticks) into Kafka ...")
        backlog = produce_backlog(
            stack.kafka.bootstrap, config.topic, work_dir / "trades.parquet", trades=trades, seed=seed
        )
        progress(
            f"  produced {backlog.trades:,} trades + {backlog.ticks:,} ticks ({backlog.market_s / 3600:.1f} h of "
            f"market) in {backlog.produce_s:.1f} s; running the job once over the backlog ..."
        )
        load["before job"] = os.getloadavg()[0]
        events = work_dir / "progress-events.jsonl"
        args = job_arguments(
            config,
            kafka_bootstrap=stack.kafka.bootstrap,
            s3_endpoint=stack.s3.endpoint,
            progress_file=str(stack.progress_file),
            shuffle_partitions=stack.cores,
        )
        args += [
            "--available-now",
            "true",
            "--max-offsets-per-trigger",
            str(max_offsets),
            "--progress-events-file",
            str(events),
        ]
        job = spark_job_process(
            args, env=job_env(stack.s3_connection), log_path=work_dir / "catchup-job.log", cores=stack.cores
        )
        began_wall = time.time()
        began = time.monotonic()
        job.start()
        stack.processes.append(job)  # stopped with the stack if anything below fails
        cpu = [0.0]
        cpu_at_first_batch: list[float] = []

        def done() -> bool:
            if job.alive:
                cpu[0] = max(cpu[0], tree_cpu_s(job.pid))
                if not cpu_at_first_batch and _batches_committed(stack.progress_file) > 0:
                    cpu_at_first_batch.append(cpu[0])
            return not job.alive

        wait_for(done, 3600, "catch-up job exited", interval=0.5)
        job_wall_s = time.monotonic() - began
        load["after job"] = os.getloadavg()[0]
        if job.returncode != 0:
            raise RuntimeError(f"catch-up job failed ({job.returncode}); log {job.log_path}:\n{job.log_tail(40)}")
        batches = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
        if not batches:
            raise RuntimeError(f"catch-up job reported no batch; log {job.log_path}:\n{job.log_tail(40)}")
        first_trigger = _iso_s(batches[0]["timestamp"])
        lake = stack.candles("1m")
    progress(f"  job done in {job_wall_s:.1f} s; DuckDB on the same trades ...")
    duck_times = []
    duck = None
    for _ in range(duckdb_rounds):
        duck, seconds = duckdb_candles(backlog.parquet)
        duck_times.append(seconds)
    load["end"] = os.getloadavg()[0]
    assert duck is not None
    return CatchupResult(
        backlog=backlog,
        max_offsets=max_offsets,
        job_wall_s=job_wall_s,
        startup_s=first_trigger - began_wall,
        batches=batches,
        job_cpu_s=cpu[0],
        cpu_after_first_s=cpu[0] - cpu_at_first_batch[0] if cpu_at_first_batch else None,
        candles=lake.num_rows,
        duckdb_s=min(duck_times),
        duckdb_rounds=duck_times,
        mismatches=compare(lake, duck),
        load=load,
    )


def _batches_committed(progress_file: Path) -> int:
    """Batches the job has committed, from the progress file it rewrites after each (0 before)."""
    try:
        queries = json.loads(progress_file.read_text())["queries"]
    except (OSError, ValueError, KeyError):
        return 0
    return sum(1 + q["batch_id"] for q in queries.values() if isinstance(q.get("batch_id"), int))


def _iso_s(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def result_text(r: CatchupResult) -> str:
    steady_records, steady_s = r.steady
    rate = r.steady_trades_per_s
    day = r.day_processing_s
    lines = [
        f"Catch-up: {r.backlog.trades:,} trades + {r.backlog.ticks:,} ticks ({r.backlog.market_s / 3600:.1f} h of "
        f"BTC-USD + ETH-USD market), batches of {r.max_offsets:,} records",
        f"  produced into Kafka in {r.backlog.produce_s:.1f} s (not part of the figures)",
        f"  job: {r.job_wall_s:.1f} s spark-submit to exit; start-up {r.startup_s:.1f} s to the first batch; "
        f"processing {r.processing_s:.1f} s over {len(r.batches)} batches ({len(r.data_batches)} with data); "
        f"CPU {r.job_cpu_s:.0f} s",
        f"  through the job: {r.trades_per_s:,.0f} trades/s over all batches; steady state (batches 2..): "
        + (f"{rate:,.0f} trades/s ({steady_records:,} records in {steady_s:.1f} s)" if rate else "n/a (one batch)"),
        "  job CPU after the first batch: "
        + (
            f"{r.cpu_after_first_s:.1f} s, {r.steady_trades_per_cpu_s:,.0f} trades per CPU-second (batches 2..)"
            if r.cpu_after_first_s and r.steady_trades_per_cpu_s
            else "n/a"
        ),
        "  a day (1.25 M trades) at the steady rate: " + (f"{day:.1f} s of processing" if day else "n/a"),
        f"  DuckDB, same candles from Parquet: {r.duckdb_s:.2f} s best of "
        + ", ".join(f"{s:.2f}" for s in r.duckdb_rounds)
        + f" ({r.duckdb_trades_per_s:,.0f} trades/s); job / DuckDB: {r.processing_s / r.duckdb_s:.0f}x (processing), "
        + (f"{r.duckdb_trades_per_s / rate:.0f}x (steady rate)" if rate else ""),
        f"  candles: {r.candles:,}; "
        + ("identical to DuckDB's, every column, decimal-exact" if not r.mismatches else "DIFFER from DuckDB's:"),
        *[f"    {m}" for m in r.mismatches],
        "  where the time goes (durationMs summed over batches, s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in r.breakdown().items()),
        "  batches (rows, ms triggerExecution / addBatch): "
        + ", ".join(
            f"{b['numInputRows']:,}/{b['durationMs'].get('triggerExecution', 0)}/{b['durationMs'].get('addBatch', 0)}"
            for b in r.batches
        ),
        "  1-min load average: " + ", ".join(f"{k} {v:.1f}" for k, v in r.load.items()) + f" on {os.cpu_count()} cores",
    ]
    return "\n".join(lines)


def as_json(r: CatchupResult) -> dict:
    return {
        "trades": r.backlog.trades,
        "ticks": r.backlog.ticks,
        "market_hours": round(r.backlog.market_s / 3600, 2),
        "produce_s": round(r.backlog.produce_s, 2),
        "max_offsets_per_trigger": r.max_offsets,
        "job_wall_s": round(r.job_wall_s, 2),
        "startup_s": round(r.startup_s, 2),
        "processing_s": round(r.processing_s, 2),
        "job_cpu_s": round(r.job_cpu_s, 1),
        "cpu_after_first_s": round(r.cpu_after_first_s, 1) if r.cpu_after_first_s else None,
        "steady_trades_per_cpu_s": round(r.steady_trades_per_cpu_s) if r.steady_trades_per_cpu_s else None,
        "trades_per_s": round(r.trades_per_s),
        "steady_trades_per_s": round(r.steady_trades_per_s) if r.steady_trades_per_s else None,
        "day_processing_s": round(r.day_processing_s, 1) if r.day_processing_s else None,
        "duckdb_s": [round(s, 3) for s in r.duckdb_rounds],
        "candles": r.candles,
        "identical": not r.mismatches,
        "mismatches": r.mismatches,
        "breakdown_s": {k: round(v, 2) for k, v in r.breakdown().items()},
        "batches": [
            {"rows": b["numInputRows"], "durationMs": b["durationMs"], "batchId": b["batchId"]} for b in r.batches
        ],
        "load_average_1m": r.load,
        "ratio_duckdb": round(r.processing_s / r.duckdb_s, 1),
    }
