"""Ingestion side by side with what a user would pick instead (issue 12, section 1):
cryptofeed 2.4.1 with its Kafka backend, and the bare kafka-python and confluent-kafka clients.
This project runs with each of its producers (kafka-python, the default; confluent, the optional
librdkafka one): every project side below runs once per producer.

Every side gets the same seeded synthetic Advanced Trade frames (atframes.py: the recording's
shape, >= 200k trades by default), the same real broker and a fresh topic with the same 2
partitions, keyed (or partitioned) by product; the sides run one after the other, each alone.

- Fed over a real WebSocket by the replay server (in this process, at full speed; its stream
  starts only once the side has connected and subscribed, see ``GatedSource``), each in a process
  of its own whose CPU is read from ``/proc``:
  (a) this project's ingestion service, ``python -m cryptopipe.ingest`` as ``cryptopipe up`` starts
      it (idempotent, acks=all, linger 10 ms, batch 256 KiB);
  (b) cryptofeed's Coinbase feed + ``TradeKafka`` (cryptofeed_peer.py), once with aiokafka's default
      acks (1) and once with ``acks=all``.
- In this process, no WebSocket (as the throughput phase measures):
  (a') the ingestion's hot path, ``FrameHandler.handle`` -> ``RecordProducer``, on the same frames;
  (c) the bare ``KafkaProducer.send`` of the very record bytes (a') produces, same settings, and
      the bare confluent-kafka ``Producer.produce`` of the same bytes (c');
  and (a') once more on Exchange frames, for the per-CPU-second target on both feeds.
- Last, the service's WebSocket receive alone (ws_drain.py, no parse, no Kafka): its CPU per frame,
  and the replay server's ceiling for the WebSocket sides.

A run is timed from the first frame to the last record's broker append; a trade counts once it is
in the topic. Latency is receive -> broker append of every trade (the topic's timestamps are the
broker's ``LogAppendTime``, ms), receive being the side's own stamp in the record
(``receive_time_us``, cryptofeed's ``receipt_timestamp``); for the bare client, ``send()`` -> ack
of every 50th record. All sides are fed as fast as they take frames, so these latencies are under
saturation (queueing included), not at live rates.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import pstats
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2
from kafka.structs import TopicPartition

import cryptopipe_dev
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe_dev.bench.atframes import PRODUCTS, GatedSource, advanced_trade_frames, count_trades
from cryptopipe_dev.bench.procmem import tree_cpu_s
from cryptopipe_dev.bench.stats import nearest_rank
from cryptopipe_dev.bench.throughput import PARTITIONS, hot_path_run, make_frames, profile_hot_path, records_of
from cryptopipe_dev.replay import ReplayServer
from cryptopipe_dev.stack.kafka import KafkaBroker

log = logging.getLogger("cryptopipe_dev.bench.peers")

PROJECT_WS = "cryptopipe ingestion service"
CF_DEFAULT = "cryptofeed, default acks (1)"
CF_ALL = "cryptofeed, acks=all"
PROJECT_HOT = "cryptopipe hot path"
BARE = "bare kafka-python"
PROJECT_HOT_EXCHANGE = "cryptopipe hot path, Exchange feed"
# the same sides with the optional librdkafka producer (producer: confluent)
CONFLUENT = ", confluent"
PROJECT_WS_C = PROJECT_WS + CONFLUENT
PROJECT_HOT_C = PROJECT_HOT + CONFLUENT
PROJECT_HOT_EXCHANGE_C = PROJECT_HOT_EXCHANGE + CONFLUENT
BARE_C = "bare confluent-kafka"
WS_RECEIVE = "WebSocket receive only"
HOW = {
    PROJECT_WS: "python -m cryptopipe.ingest, WebSocket from the replay server (producer: kafka-python)",
    PROJECT_WS_C: "same, producer: confluent (librdkafka)",
    CF_DEFAULT: "cryptofeed 2.4.1 Coinbase + TradeKafka, WebSocket from the replay server",
    CF_ALL: "same, acks=all",
    PROJECT_HOT: "FrameHandler.handle -> RecordProducer (kafka-python), in-process",
    PROJECT_HOT_C: "same, producer: confluent",
    BARE: "KafkaProducer.send of (a')'s record bytes, in-process",
    BARE_C: "confluent-kafka Producer.produce of the same bytes, poll every 1,000 records, in-process",
    PROJECT_HOT_EXCHANGE: "as (a'), on synthetic Exchange frames",
    PROJECT_HOT_EXCHANGE_C: "same, producer: confluent",
    WS_RECEIVE: "the ingestion's WebSocket reader alone (ws_reader.py), no parse, no Kafka (the feed's ceiling)",
}
PRODUCER_KINDS = ("kafka-python", "confluent")
LOG_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
BARE_SAMPLE = 50  # one send -> ack latency sample per this many records

TARGET_VS_CRYPTOFEED = 5.0
TARGET_VS_BARE = 0.8
TARGET_PER_CPU_S = 50_000


@dataclasses.dataclass
class PeerRun:
    side: str
    trades: int
    records: int
    wall_s: float
    cpu_s: float  # the side's process (all threads; the process tree for a subprocess)
    latencies_ms: list[float]

    @property
    def per_s(self) -> float:
        return self.trades / self.wall_s

    @property
    def cpu_s_per_million(self) -> float:
        return self.cpu_s / self.trades * 1e6

    @property
    def per_cpu_s(self) -> float:
        """NaN when the side used less CPU than the kernel counts (a 10 ms tick: a few hundred trades
        on a fast path read 0.0), which the table shows as "no figure" instead of failing."""
        return self.trades / self.cpu_s if self.cpu_s > 0 else math.nan

    def latency_ms(self, q: float) -> float:
        return nearest_rank(self.latencies_ms, q)


@dataclasses.dataclass
class PeersResult:
    trades: int
    frames: int
    runs: list[PeerRun]
    cryptofeed_version: str
    confluent_version: str | None = None  # None: confluent-kafka not installed, its sides skipped
    profile: str | None = None  # the in-process hot path's top functions (--profile)
    service_profile: str | None = None  # the service's, every thread (--profile)

    def best(self, side: str) -> PeerRun | None:
        runs = [r for r in self.runs if r.side == side]
        return max(runs, key=lambda r: r.per_s) if runs else None


def _services_dir() -> str:
    return str(Path(cryptopipe_dev.__file__).resolve().parents[1])


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_services_dir(), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def partition_of(product: str) -> int:
    """Where kafka-python's default partitioner puts a record keyed ``product`` (the ingestion's key)."""
    return (murmur2(product.encode()) & 0x7FFFFFFF) % PARTITIONS


def _end_offsets(broker: KafkaBroker, topic: str, consumer: KafkaConsumer) -> int:
    return sum(consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)]).values())


def read_back(broker: KafkaBroker, topic: str, expected: int) -> list[tuple[int, bytes]]:
    """(broker append time ms, value) of every record in ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, max_poll_records=10_000)
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 120
        while len(out) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out += [(m.timestamp, m.value) for m in batch]
    finally:
        consumer.close()
    if len(out) != expected:
        raise RuntimeError(f"{topic}: read back {len(out)} records, {expected} expected")
    return out


def _project_receive_us(value: bytes) -> int | None:
    record = orjson.loads(value)
    return record["receive_time_us"] if record["kind"] == "trade" else None


def _cryptofeed_receive_us(value: bytes) -> int | None:
    return round(orjson.loads(value)["receipt_timestamp"] * 1e6)


def _latencies(records: list[tuple[int, bytes]], receive_us: Callable[[bytes], int | None]) -> list[float]:
    out = []
    for append_ms, value in records:
        received = receive_us(value)
        if received is not None:
            out.append(append_ms - received / 1000)
    return out


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def websocket_run(
    broker: KafkaBroker,
    work_dir: Path,
    side: str,
    frames: Sequence,
    topic: str,
    command: Callable[[str], tuple[list[str], dict[str, str]]],
    expected_records: int,
    receive_us: Callable[[bytes], int | None],
    timeout_s: float = 1800.0,
) -> PeerRun:
    """One side as a process of its own, fed by the replay server over a WebSocket."""
    broker.create_topic(topic, PARTITIONS, config=LOG_APPEND_TIME)
    broker.create_topic(topic + ".dlq", 1)  # the ingestion's dead-letter topic (unused by cryptofeed)
    source = GatedSource(frames)
    log_path = work_dir / f"{topic}.log"
    server = ReplayServer(source, speed="max", control_port=None).start()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    proc = None
    try:
        argv, env = command(server.url)
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if not source.subscribed.wait(120):
            raise RuntimeError(f"{side} never subscribed to the replay server (log: {log_path})")
        time.sleep(1.0)  # the rest of its start-up (the other subscribe frames, producer metadata)
        cpu0 = tree_cpu_s(proc.pid)
        began = time.time()
        source.go.set()
        deadline = time.monotonic() + timeout_s
        while _end_offsets(broker, topic, consumer) < expected_records:
            if proc.poll() is not None:
                raise RuntimeError(f"{side} exited with {proc.returncode} (log: {log_path})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{side}: not every record in {topic} after {timeout_s:.0f} s")
            time.sleep(0.05)
        cpu_s = tree_cpu_s(proc.pid) - cpu0
    finally:
        source.go.set()  # never leave the server's loop waiting
        if proc is not None:
            _stop(proc)
        consumer.close()
        server.stop()
    records = read_back(broker, topic, expected_records)
    latencies = _latencies(records, receive_us)
    wall_s = max(ts for ts, _ in records) / 1000 - began
    return PeerRun(side, len(latencies), expected_records, wall_s, cpu_s, latencies)


def project_command(
    broker: KafkaBroker, topic: str, profile_to: Path | None = None, producer: str = "kafka-python"
) -> Callable[[str], tuple[list[str], dict[str, str]]]:
    """``profile_to``: run the service under cProfile in every thread (profiled_ingest.py), the
    stats written there when it stops. ``producer``: the service's producer setting."""

    def command(url: str) -> tuple[list[str], dict[str, str]]:
        env = {
            "CRYPTOPIPE_INGEST_PRODUCER": producer,
            "CRYPTOPIPE_INGEST_FEED": "advanced_trade",
            "CRYPTOPIPE_INGEST_PRODUCTS": ",".join(PRODUCTS),
            "CRYPTOPIPE_INGEST_WS_URL": url,
            "CRYPTOPIPE_INGEST_REST_URL": url.replace("ws://", "http://"),
            "CRYPTOPIPE_INGEST_KAFKA_BOOTSTRAP": broker.bootstrap,
            "CRYPTOPIPE_INGEST_TOPIC": topic,
            "CRYPTOPIPE_INGEST_DLQ_TOPIC": topic + ".dlq",
            "CRYPTOPIPE_INGEST_HTTP_HOST": "127.0.0.1",
            "CRYPTOPIPE_INGEST_HTTP_PORT": "0",
            "CRYPTOPIPE_INGEST_LOG_LEVEL": "WARNING",
        }
        if profile_to is not None:
            return [sys.executable, "-m", "cryptopipe_dev.bench.profiled_ingest", str(profile_to)], _child_env(env)
        return [sys.executable, "-m", "cryptopipe.ingest"], _child_env(env)

    return command


def cryptofeed_command(
    broker: KafkaBroker, topic: str, acks: str | None
) -> Callable[[str], tuple[list[str], dict[str, str]]]:
    def command(url: str) -> tuple[list[str], dict[str, str]]:
        argv = [
            sys.executable,
            "-m",
            "cryptopipe_dev.bench.cryptofeed_peer",
            "--url",
            url,
            "--bootstrap",
            broker.bootstrap,
            "--topic",
            topic,
            "--partitions",
            json.dumps({p: partition_of(p) for p in PRODUCTS}),
        ]
        if acks is not None:
            argv += ["--acks", acks]
        return argv, _child_env({})

    return command


def hot_run(
    broker: KafkaBroker, side: str, topic: str, frames: Sequence[bytes], feed: str, producer: str = "kafka-python"
) -> PeerRun:
    run = hot_path_run(broker, topic, frames, feed=feed, topic_config=LOG_APPEND_TIME, producer_kind=producer)  # type: ignore[arg-type]
    latencies = _latencies(read_back(broker, topic, run.records), _project_receive_us)
    return PeerRun(side, run.trades, run.records, run.wall_s, run.cpu_s, latencies)


def bare_run(broker: KafkaBroker, topic: str, records: Sequence[tuple[bytes, bytes]], trades: int) -> PeerRun:
    """KafkaProducer.send() of the same record bytes, the ingestion's producer settings."""
    broker.create_topic(topic, PARTITIONS, config=LOG_APPEND_TIME)
    settings = IngestSettings()
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.linger_ms,
        batch_size=settings.batch_size,
        compression_type=None,
    )
    producer.partitions_for(topic)
    latencies: list[float] = []
    perf = time.perf_counter

    def sampled(sent: float) -> Callable[[object], None]:
        return lambda _: latencies.append((perf() - sent) * 1000)

    send = producer.send
    cpu0, t0 = time.process_time(), perf()
    for i, (key, value) in enumerate(records):
        future = send(topic, value=value, key=key)
        if i % BARE_SAMPLE == 0:
            future.add_callback(sampled(perf()))
    producer.flush(60)
    wall, cpu = perf() - t0, time.process_time() - cpu0
    producer.close(60)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        delivered = _end_offsets(broker, topic, consumer)
    finally:
        consumer.close()
    if delivered != len(records):
        raise RuntimeError(f"{topic}: {delivered} records in the topic, {len(records)} sent")
    return PeerRun(BARE, trades, len(records), wall, cpu, latencies)


def bare_confluent_run(broker: KafkaBroker, topic: str, records: Sequence[tuple[bytes, bytes]], trades: int) -> PeerRun:
    """confluent-kafka's Producer.produce() of the same record bytes, the ingestion's producer
    settings; delivery reports served by poll(0) every 1,000 records (one thread, as a bare user
    would write it) and by the final flush."""
    from confluent_kafka import Producer

    broker.create_topic(topic, PARTITIONS, config=LOG_APPEND_TIME)
    settings = IngestSettings()
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": settings.linger_ms,
            "batch.size": settings.batch_size,
            "compression.type": "none",
            "partitioner": "murmur2_random",
        }
    )
    # librdkafka's idempotent producer gets its producer id on first use: not part of the timing
    broker.create_topic(topic + ".warmup", 1)
    producer.produce(topic + ".warmup", b"warm-up")
    producer.flush(30)
    producer.list_topics(topic, timeout=10)
    latencies: list[float] = []
    failed: list[object] = []
    perf = time.perf_counter

    def sampled(sent: float) -> Callable[[object, object], None]:
        def on_delivery(err: object, _msg: object) -> None:
            if err is None:
                latencies.append((perf() - sent) * 1000)
            else:
                failed.append(err)

        return on_delivery

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)

    produce, poll = producer.produce, producer.poll
    cpu0, t0 = time.process_time(), perf()
    for i, (key, value) in enumerate(records):
        callback = sampled(perf()) if i % BARE_SAMPLE == 0 else on_delivery
        while True:
            try:
                produce(topic, value, key, on_delivery=callback)
                break
            except BufferError:  # its queue is full: serve deliveries, then again
                poll(0.01)
        if i % 1000 == 999:
            poll(0)
    left = producer.flush(60)
    wall, cpu = perf() - t0, time.process_time() - cpu0
    if left or failed:
        raise RuntimeError(f"{topic}: {left} records undelivered, {len(failed)} failed (e.g. {failed[:1]})")
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        delivered = _end_offsets(broker, topic, consumer)
    finally:
        consumer.close()
    if delivered != len(records):
        raise RuntimeError(f"{topic}: {delivered} records in the topic, {len(records)} sent")
    return PeerRun(BARE_C, trades, len(records), wall, cpu, latencies)


def receive_only_run(work_dir: Path, frames: Sequence, trades: int, timeout_s: float = 600.0) -> PeerRun:
    """The service's WebSocket receive alone (ws_drain.py, a process of its own): what it costs per
    frame, and how fast the replay server feeds one client."""
    source = GatedSource(frames)
    server = ReplayServer(source, speed="max", control_port=None).start()
    argv = [sys.executable, "-m", "cryptopipe_dev.bench.ws_drain", "--url", server.url, "--frames", str(len(frames))]
    proc = subprocess.Popen(
        argv, env=_child_env({}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        if not source.subscribed.wait(120):
            raise RuntimeError(f"{WS_RECEIVE}: never subscribed")
        time.sleep(1.0)
        source.go.set()
        out, _ = proc.communicate(timeout=timeout_s)
    finally:
        source.go.set()
        _stop(proc)
        server.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{WS_RECEIVE} exited with {proc.returncode}: {out.decode(errors='replace')[-2000:]}")
    figures = json.loads(out.decode().strip().splitlines()[-1])
    return PeerRun(WS_RECEIVE, trades, figures["frames"], figures["wall_s"], figures["cpu_s"], [])


def profile_service(
    broker: KafkaBroker, work_dir: Path, frames: Sequence, records: int, topic: str, top: int = 30
) -> str:
    """Where the service's CPU goes, every thread together (its WebSocket reader, kafka-python's
    sender, the HTTP server): one more service run under profiled_ingest.py."""
    path = work_dir / f"{topic}.prof"
    websocket_run(
        broker, work_dir, PROJECT_WS, frames, topic, project_command(broker, topic, path), records, _project_receive_us
    )
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def cryptofeed_version() -> str | None:
    return _version("cryptofeed")


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def run_peers(
    work_dir: Path,
    *,
    trades: int,
    rounds: int = 1,
    profile: bool = False,
    progress: Callable[[str], None] = lambda _: None,
    broker: KafkaBroker | None = None,
    receive_only: bool = True,
) -> PeersResult:
    """Every side ``rounds`` times, in turn. ``broker``: a running one to use (else one is started in
    ``work_dir`` and stopped at the end). The confluent sides run when confluent-kafka is installed
    (the ingestion-fast extra, in dev). ``receive_only``: also the WebSocket-receive-only run."""
    cf_version = cryptofeed_version()
    if cf_version is None:
        raise RuntimeError("cryptofeed is not installed: pip install -e '.[bench]' (see docs/benchmarks.md)")
    confluent_version = _version("confluent-kafka")
    producers = PRODUCER_KINDS if confluent_version else PRODUCER_KINDS[:1]
    if confluent_version is None:
        progress("  confluent-kafka is not installed (pip install -e '.[ingestion-fast]'): its sides are skipped")
    work_dir.mkdir(parents=True, exist_ok=True)
    suffix = f"{int(time.time() * 1000) % 100_000_000}"
    progress(f"generating {trades:,} trades of Advanced Trade frames (seed 7) ...")
    frames = advanced_trade_frames(trades)
    raw = [f.raw.encode() for f in frames]
    n_trades = count_trades(frames)
    records = records_of(raw, IngestSettings(feed="advanced_trade"))
    exchange_frames = make_frames(trades)
    own_broker = broker is None
    if broker is None:
        broker = KafkaBroker(work_dir / "kafka-peers").start()
    runs: list[PeerRun] = []

    def service(side: str, producer: str, topic: str) -> PeerRun:
        command = project_command(broker, topic, producer=producer)
        return websocket_run(broker, work_dir, side, frames, topic, command, len(records), _project_receive_us)

    def cryptofeed(side: str, acks: str | None, topic: str) -> PeerRun:
        command = cryptofeed_command(broker, topic, acks)
        return websocket_run(broker, work_dir, side, frames, topic, command, n_trades, _cryptofeed_receive_us)

    try:
        for i in range(rounds):
            tag = f"{suffix}-{i}"
            steps: list[tuple[str, Callable[[], PeerRun]]] = []
            for producer in producers:
                c = "-c" if producer == "confluent" else ""
                side_ws = PROJECT_WS_C if c else PROJECT_WS
                steps.append((side_ws, lambda s=side_ws, p=producer, t=f"peers-ingest{c}-{tag}": service(s, p, t)))
            steps += [
                (CF_DEFAULT, lambda t=f"peers-cryptofeed-default-{tag}": cryptofeed(CF_DEFAULT, None, t)),
                (CF_ALL, lambda t=f"peers-cryptofeed-all-{tag}": cryptofeed(CF_ALL, "all", t)),
            ]
            for producer in producers:
                c = "-c" if producer == "confluent" else ""
                hot, hot_x = (PROJECT_HOT_C, PROJECT_HOT_EXCHANGE_C) if c else (PROJECT_HOT, PROJECT_HOT_EXCHANGE)
                steps += [
                    (hot, lambda s=hot, p=producer, t=f"peers-hot{c}-{tag}": hot_run(broker, s, t, raw, "advanced_trade", p)),
                    (
                        hot_x,
                        lambda s=hot_x, p=producer, t=f"peers-hot-exchange{c}-{tag}": hot_run(
                            broker, s, t, exchange_frames, "exchange", p
                        ),
                    ),
                ]  # fmt: skip
            steps.append((BARE, lambda t=f"peers-bare-{tag}": bare_run(broker, t, records, n_trades)))
            if confluent_version:
                steps.append((BARE_C, lambda t=f"peers-bare-c-{tag}": bare_confluent_run(broker, t, records, n_trades)))
            if receive_only:
                steps.append((WS_RECEIVE, lambda: receive_only_run(work_dir, frames, n_trades)))
            for side, step in steps:
                progress(f"  round {i + 1}/{rounds}: {side} ...")
                run = step()
                runs.append(run)
                log.info("peer run", extra={"side": side, "per_s": run.per_s, "cpu_s": run.cpu_s})
        result = PeersResult(n_trades, len(frames), runs, cf_version, confluent_version)
        if profile:
            progress("  profiling the hot path and the service ...")
            result.profile = profile_hot_path(broker, raw, feed="advanced_trade", topic=f"peers-hot-profile-{suffix}")
            result.service_profile = profile_service(
                broker, work_dir, frames, len(records), f"peers-ingest-profile-{suffix}"
            )
    finally:
        if own_broker:
            broker.stop()
    return result
