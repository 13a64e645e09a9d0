"""Runs the scenarios on one local stack (Kafka + the S3 server, started once).

Each scenario gets its own topic (3 partitions, products keyed onto different partitions), its own
dead-letter topic, lake prefix and checkpoint, a fresh ingestion process and Spark job, and a
replay server streaming a seeded synthetic market (busy and quiet products) at ``speed`` times
real time. The scenario's faults are injected at seeded random moments while the market streams;
a process that dies on its own is restarted, as Kubernetes would. Then the ingestion is drained
and stopped, ticks close every window, the job's watermark passes the end, and the lake is judged
(audit.py) against the truth: every trade the synthetic market published.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import signal
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from cryptopipe.contracts import decode_unfillable, ingest_state_topic, us_to_iso
from cryptopipe.monitor.continuity import merge_ranges
from cryptopipe.pipeline import PipelineConfig
from cryptopipe_dev.chaos.audit import Verdict, judge
from cryptopipe_dev.chaos.proxy import LOOPBACK, FaultProxy
from cryptopipe_dev.chaos.scenarios import Scenario
from cryptopipe_dev.reference import frame_trades
from cryptopipe_dev.replay import ReplayServer, SourceFrame, SyntheticConfig, SyntheticSource, synthetic_frames
from cryptopipe_dev.stack.local import LocalStack
from cryptopipe_dev.stack.procs import ManagedProcess

log = logging.getLogger("cryptopipe_dev.chaos")

# Two busy products, one medium, two quiet: quiet ones go minutes without a trade. Chosen so that the
# ingestion's key hash (murmur2 of the product id) puts products on all 3 partitions: BTC-USD and
# LTC-USD on 0, XRP-USD on 1, ETH-USD and DOGE-USD on 2 (tests/unit/test_chaos_products.py).
PRODUCTS = ("BTC-USD", "ETH-USD", "XRP-USD", "LTC-USD", "DOGE-USD")
WEIGHTS = (0.45, 0.3, 0.17, 0.05, 0.03)
PARTITIONS = 3
WATERMARK = "30s"
# real seconds between two injections, by action (time for the previous one to settle)
SPACING = {
    "ingestion-kill": 9.0,
    "driver-kill": 15.0,
    "driver-zombie": 30.0,
    "broker-restart": 30.0,
    "proxy": 45.0,
    "faults": 5.0,
    "source": 5.0,
}
ZOMBIE_OVERLAP_S = 20.0  # real seconds both drivers run after the successor's first batch
CUT_S = 20.0  # real seconds the fault proxy blackholes the ingestion's way to the broker
PROXIED_LISTENER = "CHAOS"  # the broker's listener that advertises the fault proxy's port
LEAD_S = 12.0  # real seconds of market before the first injection
TAIL_S = 8.0  # ...and after the last one
GAP_WAIT_S = 10.0  # ingestion-kill: at most this long for a REST gap to be pending before a kill
ENV = {"CRYPTOPIPE_INGEST_WATCHDOG_S": "5"}  # a stalled socket is reopened after 5 s of silence


@dataclasses.dataclass
class Row:
    """One line of the table and of chaos-report.json (None: n/a)."""

    scenario: str
    runs: int | None = None
    sent: int | None = None
    in_lake: int | None = None
    lost_counted: int | None = None
    lost_silent: int | None = None
    duplicated: int | None = None
    recover_s: float | None = None
    holds: bool | None = None
    reason: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ChaosError(Exception):
    """A scenario run that could not finish (the reason goes in the table)."""


@dataclasses.dataclass
class Options:
    seed: int = 7
    speed: float = 4.0
    rate: float = 6.0  # trades per market second, all products
    timeout: float = 600.0  # per wait (a Spark start, the drain, the watermark); a loaded machine needs minutes


class Suite:
    """``with Suite(work_dir) as suite: suite.run(scenario, runs)``: the stack lives as long as the suite."""

    def __init__(self, work_dir: Path, options: Options | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.options = options or Options()
        base = PipelineConfig(products=PRODUCTS, windows=("1m",), watermark=WATERMARK, trigger="2s", prefix="chaos")
        self.stack = LocalStack(self.work_dir, base, partitions=PARTITIONS)
        # A listener whose metadata sends clients to the proxy: an ingestion bootstrapped there has
        # no way to the broker but through it (partition-unreachable).
        self.proxy = FaultProxy()
        self.stack.kafka.add_listener(PROXIED_LISTENER, self.proxy.port)

    def __enter__(self) -> Suite:
        self.proxy.start()
        try:
            self.stack.start()
        except BaseException:
            self.proxy.stop()
            raise
        self.proxy.upstream = (LOOPBACK, self.stack.kafka.listener_ports[PROXIED_LISTENER])
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stack.stop()
        finally:
            self.proxy.stop()

    def run(self, scenario: Scenario, runs: int) -> Row:
        if scenario.not_yet:
            return Row(scenario.name, reason=f"not run: {scenario.not_yet}")
        started = time.monotonic()
        try:
            row = _Run(self, scenario, runs).execute()
        except (ChaosError, TimeoutError, RuntimeError, OSError) as exc:
            log.exception("scenario failed", extra={"scenario": scenario.name})
            row = Row(scenario.name, runs, reason=f"did not finish: {type(exc).__name__}: {str(exc)[:300]}")
            row.holds = False
        log.info(
            "scenario done",
            extra={"scenario": scenario.name, "seconds": round(time.monotonic() - started, 1), **row.to_dict()},
        )
        return row


class _FutureFrame:
    """The synthetic source with one trade frame's time moved a day ahead (REST keeps the true one)."""

    def __init__(self, inner: SyntheticSource, index: int, ahead_s: float = 86_400.0) -> None:
        self.inner, self.index, self.ahead_us = inner, index, int(ahead_s * 1_000_000)
        self.feed, self.products, self.start_ts = inner.feed, inner.products, inner.start_ts
        self.ack_style, self.trade_book = inner.ack_style, inner.trade_book
        self.frame_count = None

    def frames(self, start: int = 0) -> Iterator[SourceFrame]:
        for frame in self.inner.frames(start):
            if frame.index == self.index:
                obj = orjson.loads(frame.raw)
                obj["time"] = us_to_iso(_iso_us(obj["time"]) + self.ahead_us)
                frame = dataclasses.replace(frame, raw=orjson.dumps(obj).decode())
            yield frame


def _iso_us(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000)


class _Run:
    def __init__(self, suite: Suite, scenario: Scenario, runs: int) -> None:
        self.suite, self.scenario, self.runs = suite, scenario, runs
        self.stack = suite.stack
        self.options = suite.options
        self.rng = random.Random(f"{self.options.seed}-{scenario.name}")
        self.name = f"chaos-{scenario.name}-{uuid.uuid4().hex[:6]}"
        self.dir = suite.work_dir / self.name
        self.ingestion: ManagedProcess | None = None
        self.job: ManagedProcess | None = None
        self.recoveries: list[float] = []
        self.restarts = {"ingestion": 0, "spark-job": 0}
        self.notes: list[str] = []
        self.rest_missing: set[int] = set()
        self.killed_with_gap_pending = 0  # ingestion-kill: kills that fell while a REST gap was pending

    # -- the run ------------------------------------------------------------------------------
    def execute(self) -> Row:
        o, sc = self.options, self.scenario
        spacing = SPACING[sc.action]
        real_s = LEAD_S + self.runs * spacing + TAIL_S
        market = SyntheticConfig(
            products=PRODUCTS,
            weights=WEIGHTS,
            rate=o.rate,
            duration=real_s * o.speed,
            seed=self.rng.randrange(1 << 30),
            # in the past, so no trade is "from the future" for the ingestion's clock
            start_time=float(int(time.time()) - int(real_s * o.speed) - 600),
        )
        self.market = market
        self.frames = list(synthetic_frames(market))
        truth = frame_trades(f.raw for f in self.frames)
        source: SyntheticSource | _FutureFrame = SyntheticSource(market)
        if sc.action == "source":
            index = self._frame_ahead(len(self.frames) // 2)
            source = _FutureFrame(source, index)
            self.notes.append(f"frame {index} ({self._trade_of(index)}) moved a day ahead")
        config = dataclasses.replace(self.stack.config, topic=self.name, dlq_topic=f"{self.name}-dlq", prefix=self.name)
        self.stack.config = config
        self.stack.progress_file = self.dir / "job-progress.json"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stack.kafka.create_topic(config.topic, PARTITIONS)
        self.stack.kafka.create_topic(config.dlq_topic, 1)
        self.stack.kafka.create_topic(ingest_state_topic(config.topic), 1, config={"cleanup.policy": "compact"})
        faults = {k: v for k, v in sc.faults.items() if k != "rest_missing" and not k.endswith("_after")}
        if "rest_missing" in sc.faults:
            faults.update(skip_trade_ids=[], rest_missing_ids=[])
        try:
            with ReplayServer(source, speed=o.speed, faults=faults or None) as server:
                self.server = server
                # the job first, up and through one batch before the market opens, so that every
                # fault meets a job that is processing (Spark takes a minute to start on a busy machine)
                self.job = self._start_job()
                self.stack.produce_ticks(PRODUCTS, int(market.start_time * 1_000_000))
                self._wait(lambda: self._batch() is not None, "the Spark job's first batch")
                self.ingestion = self._start_ingestion()
                self._inject_all(spacing)
                self._wait(lambda: server.wait_done(0.5), "the market streamed to its end")
                self._drain()
            flush_us = int((market.start_time + market.duration + 60 + 30 + 2) * 1_000_000)
            self.stack.produce_ticks(PRODUCTS, flush_us)
            target = us_to_iso(flush_us - 30_000_000)[:19]
            self._wait(lambda: self._watermark() >= target, f"the job's watermark >= {target}")
            lake = self.stack.candles("1m").to_pylist()
            ahead = us_to_iso(int((time.time() + 3600) * 1_000_000))[:19]
            if self._watermark()[:19] > ahead:  # a wild timestamp moved it: later trades would be late
                self.notes.append(f"the job's watermark ended at {self._watermark()}, past the wall clock")
        finally:
            for proc in (self.ingestion, self.job):
                if proc is not None:
                    proc.stop(timeout=20)
        dead_lettered = self._dead_lettered()  # also collects the published unfillable ranges
        verdict = judge(truth, lake, unfillable=self._unfillable(), dead_lettered=dead_lettered)
        return self._row(verdict)

    def _row(self, v: Verdict) -> Row:
        reasons = list(v.notes[:5])
        if v.lost_silent:
            reasons.insert(0, f"{v.lost_silent} trade(s) lost in silence")
        if v.wrong_candles:
            reasons.insert(0, f"{v.wrong_candles} wrong candle(s)")
        if v.duplicate_rows:
            reasons.insert(0, f"{v.duplicate_rows} duplicate row(s)")
        if self.scenario.action == "ingestion-kill":
            self.notes.append(f"{self.killed_with_gap_pending} of {self.runs} kills fell while a REST gap was pending")
        restarted = {k: n for k, n in self.restarts.items() if n}
        if restarted:
            self.notes.append(
                "restarted after dying on their own: " + ", ".join(f"{k} x{n}" for k, n in restarted.items())
            )
        return Row(
            self.scenario.name,
            self.runs,
            v.sent,
            v.in_lake,
            v.lost_counted,
            v.lost_silent,
            v.duplicated,
            round(max(self.recoveries), 1) if self.recoveries else None,
            v.holds,
            "; ".join(reasons + self.notes),
        )

    # -- processes ----------------------------------------------------------------------------
    def _start_ingestion(self) -> ManagedProcess:
        proc = self.stack.start_ingestion(
            ws_url=self.server.url,
            rest_url=self.server.rest_url,
            name=f"{self.name}/ingestion",
            extra_env={**ENV, **self.scenario.env},
            kafka_bootstrap=self.suite.proxy.address if self.scenario.action == "proxy" else None,
        )
        self.port = self.stack.ingestion_port
        return proc

    def _start_job(self) -> ManagedProcess:
        return self.stack.start_job(name=f"{self.name}/spark-job")

    def _supervise(self) -> None:
        """Restart what died on its own (a crash is a fault too; Kubernetes restarts the pod)."""
        if self.ingestion is not None and not self.ingestion.alive:
            self.restarts["ingestion"] += 1
            log.warning("ingestion died, restarting", extra={"code": self.ingestion.returncode})
            self.ingestion = self._start_ingestion()
        if self.job is not None and not self.job.alive:
            self.restarts["spark-job"] += 1
            log.warning("spark job died, restarting", extra={"code": self.job.returncode})
            self.job = self._start_job()

    def _wait(self, check: Callable[[], object], what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.options.timeout)
        while True:
            self._supervise()
            with contextlib.suppress(OSError, ValueError, KeyError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise ChaosError(f"timed out waiting for {what}")
            time.sleep(0.25)

    # -- observing ----------------------------------------------------------------------------
    def _metrics(self) -> dict[tuple[str, tuple], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            text = r.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def _ingestion_settled(self) -> bool:
        m = self._metrics()
        subscribed = m.get(("cryptopipe_ingest_connection_state", (("state", "subscribed"),)), 0) == 1
        return subscribed and m.get(("cryptopipe_ingest_backfill_pending", ()), 1) == 0

    def _gap_pending(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            return self._metrics().get(("cryptopipe_ingest_backfill_pending", ()), 0) > 0
        return False

    def _wait_a_while(self, check: Callable[[], bool], seconds: float) -> None:
        """Until ``check`` or ``seconds`` passed (the fault goes in either way)."""
        deadline = time.monotonic() + seconds
        while not check() and time.monotonic() < deadline:
            self._supervise()
            time.sleep(0.05)

    def _reconnects(self) -> float:
        return sum(v for (n, _), v in self._metrics().items() if n == "cryptopipe_ingest_reconnects_total")

    def _trades_produced(self) -> float:
        return sum(v for (n, _), v in self._metrics().items() if n == "cryptopipe_ingest_trades_produced_total")

    def _batch(self) -> int | None:
        query = self.stack.job_progress()["queries"].get("1m") or {}
        return query.get("batch_id")

    def _watermark(self) -> str:
        query = self.stack.job_progress()["queries"].get("1m") or {}
        return query.get("watermark") or ""

    def _position(self) -> int:
        return int(self.server.status()["position"])

    # -- faults -------------------------------------------------------------------------------
    def _inject_all(self, spacing: float) -> None:
        began = time.monotonic()
        self._wait(self._ingestion_settled, "the ingestion subscribed")
        for i in range(self.runs):
            at = began + LEAD_S + i * spacing + self.rng.uniform(0, spacing / 3)
            while time.monotonic() < at:
                self._supervise()
                time.sleep(0.1)
            self._inject(i)

    def _inject(self, i: int) -> None:
        action = self.scenario.action
        t0 = time.monotonic()
        if action == "ingestion-kill":
            assert self.ingestion is not None
            if i % 2 == 0:  # every other kill lands while a REST gap is in flight (REST answers late here)
                self._wait_a_while(self._gap_pending, GAP_WAIT_S)
            self.killed_with_gap_pending += self._gap_pending()
            self.ingestion.kill(signal.SIGKILL)
            self.ingestion.wait(30)
            self.ingestion = self._start_ingestion()
            self._recovered(t0, self._ingestion_settled, "the restarted ingestion settled")
        elif action == "driver-kill":
            assert self.job is not None
            batch = self._batch() or 0
            self.job.kill(signal.SIGKILL)
            self.job.wait(30)
            self.job = self._start_job()
            # a batch needs new records: ticks at the market's current time (they move no watermark)
            now_us = int((self.frames[max(0, self._position() - 1)].ts - 1) * 1_000_000)
            self.stack.produce_ticks(PRODUCTS, now_us)
            self._recovered(t0, lambda: (self._batch() or 0) > batch, f"a batch after {batch}")
        elif action == "driver-zombie":
            self._zombie(t0)
        elif action == "broker-restart":
            self.stack.kafka.kill()
            time.sleep(2.0)
            self.stack.kafka.start()
            produced = 0.0
            with contextlib.suppress(OSError, ValueError):
                produced = self._trades_produced()
            self._recovered(
                t0,
                lambda: self._ingestion_settled() and (self._trades_produced() > produced or self.server.wait_done(0)),
                "trades produced after the broker restart",
            )
        elif action == "proxy":
            self.suite.proxy.blackhole()
            try:
                while time.monotonic() < t0 + CUT_S:
                    self._supervise()  # an ingestion that exits in the cut is restarted (into the cut)
                    time.sleep(0.25)
            finally:
                self.suite.proxy.heal()
            healed = time.monotonic()
            self.notes.append(f"the ingestion's way to the broker blackholed for {healed - t0:.0f} s")
            produced = 0.0
            with contextlib.suppress(OSError, ValueError):
                produced = self._trades_produced()
            # recovered (timed from the heal): subscribed, no gap pending, producing again
            self._recovered(
                healed,
                lambda: self._ingestion_settled() and (self._trades_produced() > produced or self.server.wait_done(0)),
                "trades produced after the partition healed",
            )
        elif action == "faults":
            self._arm(i, t0)
        # "source": the fault is in the frames themselves

    def _zombie(self, t0: float) -> None:
        """A successor driver on the same checkpoint and lake while the old one still runs. The
        successor reports its progress to a file of its own, so the waits below follow it."""
        assert self.job is not None
        zombie, zombie_progress = self.job, self.stack.progress_file
        self.stack.progress_file = self.dir / "job-progress-successor.json"
        self.job = self.stack.start_job(name=f"{self.name}/spark-job-successor")
        try:
            # the successor needs records it has not seen to run a batch, but the old driver takes
            # every record that arrives while the successor starts: ticks at the market's current time
            # (they move no watermark past a trade) every few seconds, until the successor's first batch
            next_ticks = [0.0]

            def successor_ran() -> bool:
                if time.monotonic() >= next_ticks[0]:
                    now_us = int((self.frames[max(0, self._position() - 1)].ts - 1) * 1_000_000)
                    self.stack.produce_ticks(PRODUCTS, now_us)
                    next_ticks[0] = time.monotonic() + 5.0
                return self._batch() is not None

            self._recovered(t0, successor_ran, "the successor driver's first batch")
            overlap_end = time.monotonic() + ZOMBIE_OVERLAP_S
            while time.monotonic() < overlap_end:
                self._supervise()
                time.sleep(0.25)
        finally:
            if zombie.alive:
                self.notes.append("the old driver was still running after the overlap (SIGKILLed)")
                zombie.kill(signal.SIGKILL)
            else:  # Spark noticed the other driver (its logs' atomic create refused) and stopped
                self.notes.append(f"the old driver stopped on its own (exit {zombie.returncode})")
            zombie.wait(30)
        log.info("zombie driver gone", extra={"zombie_progress": str(zombie_progress)})

    def _recovered(self, t0: float, check: Callable[[], object], what: str) -> None:
        self._wait(check, what)
        self.recoveries.append(time.monotonic() - t0)

    def _arm(self, i: int, t0: float) -> None:
        """Re-arm the counted faults a few frames ahead of the live connection (they fire once per
        arming) and, for rest-missing-id, withhold one more upcoming trade from both the socket and REST."""
        sc = self.scenario
        faults = {k: v for k, v in sc.faults.items() if k != "rest_missing"}
        counted = [k for k in faults if k.endswith("_after")]
        if not counted and "rest_missing" not in sc.faults:
            return  # a rate fault (reorder, duplicate, skip): in force the whole run
        status = self.server.status()
        sent = max((c["data_frames_sent"] for c in status["connections"] if c["state"] == "streaming"), default=0)
        for key in counted:
            faults[key] = sent + int(faults[key])
        if "malformed_after" in faults:
            faults["malformed_kind"] = ("truncated", "garbage", "bad_price")[i % 3]
        if "rest_missing" in sc.faults:
            index = self._frame_ahead(int(status["position"]) + 40)
            self.rest_missing.add(self.frames[index].trades[0].trade_id)
            faults.update(skip_trade_ids=sorted(self.rest_missing), rest_missing_ids=sorted(self.rest_missing))
        breaks = [k for k in counted if k in ("drop_after", "stall_after")]  # the connection must be reopened
        reconnects = self._reconnects() if breaks else 0.0
        self.server.set_faults(faults)
        if counted:
            key = counted[0]
            self._wait(lambda: key in self.server.status()["faults_fired"], f"the {key} fault fired")
            fired = time.monotonic()
            if breaks:  # recovered: reconnected, subscribed, no gap pending (a malformed or error
                # frame breaks nothing to recover from: no time is reported for those)
                self._wait(lambda: self._reconnects() > reconnects, "the ingestion reconnected")
                self._wait(self._ingestion_settled, "the ingestion settled after the fault")
                self.recoveries.append(time.monotonic() - fired)

    def _frame_ahead(self, index: int) -> int:
        """The first non-snapshot match frame at or after ``index``."""
        for frame in self.frames[index:]:
            if frame.kind == "match":
                return frame.index
        raise ChaosError("no match frame left to fault")

    def _trade_of(self, index: int) -> str:
        t = self.frames[index].trades[0]
        return f"{t.product_id} {t.trade_id}"

    # -- the end ------------------------------------------------------------------------------
    def _drain(self) -> None:
        """Until the ingestion is subscribed, has no gap pending and produced nothing new for 3 s."""
        last: list[float] = []

        def idle() -> bool:
            if not self._ingestion_settled():
                last.clear()
                return False
            last.append(self._trades_produced())
            return len(last) >= 12 and last[-12] == last[-1]

        self._wait(idle, "the ingestion drained")
        assert self.ingestion is not None
        code = self.ingestion.stop(timeout=60)
        self.ingestion = None  # stopped on purpose: not to be restarted
        if code != 0:
            self.notes.append(f"the drained ingestion exited with {code}")

    def _unfillable(self) -> dict[str, list[tuple[int, int]]]:
        """Trade ids the ingestion counted as not backfilled: what it published to the dead-letter
        topic (the lake monitor's input), cross-checked against what every incarnation logged."""
        published = {p: merge_ranges(r) for p, r in self.published_unfillable.items()}
        logged = {p: merge_ranges(r) for p, r in self._logged_unfillable().items()}
        if published != logged:
            self.notes.append(f"unfillable ids logged {logged} but published {published}")
        return {p: [*published.get(p, []), *logged.get(p, [])] for p in {*published, *logged}}

    def _logged_unfillable(self) -> dict[str, list[tuple[int, int]]]:
        out: dict[str, list[tuple[int, int]]] = {}
        path = self.stack.work_dir / f"{self.name}/ingestion.log"
        for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("msg") != "trade gap not backfilled":
                    continue
                product = entry["product_id"]
                ids = entry.get("unfilled_trade_ids_sample") or ()
                if ids and len(ids) == entry.get("trades"):  # the sample is all of them: exact
                    out.setdefault(product, []).extend((int(i), int(i)) for i in ids)
                else:
                    out.setdefault(product, []).append((int(entry["first_missing"]), int(entry["last_missing"])))
        return out

    def _dead_lettered(self) -> set[tuple[str, int]]:
        """(product, trade id) of every trade frame in this run's dead-letter topic."""
        consumer = KafkaConsumer(
            self.stack.config.dlq_topic,
            bootstrap_servers=self.stack.kafka.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=5000,
        )
        found: set[tuple[str, int]] = set()
        self.published_unfillable: dict[str, list[tuple[int, int]]] = {}
        try:
            for record in consumer:
                if (given_up := decode_unfillable(record.value)) is not None:
                    self.published_unfillable.setdefault(given_up.product_id, []).append(
                        (given_up.first_trade_id, given_up.last_trade_id)
                    )
                    continue
                with contextlib.suppress(ValueError, KeyError, TypeError, ArithmeticError):
                    raw = json.loads(record.value)["raw"]
                    found |= set(frame_trades([raw]))
        finally:
            consumer.close()
        if found:
            self.notes.append(f"{len(found)} trade frame(s) dead-lettered")
        return found
