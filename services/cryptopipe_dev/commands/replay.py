"""`cryptopipe replay`: run the whole local stack over recordings and write every candle to CSV.

At ``--speed max`` the recording is first loaded into Kafka by the ingestion service, then the
Spark job takes it in one pass: the result cannot depend on where a micro-batch boundary fell
(Exchange ``last_match`` frames can be minutes older than the trades after them, and a boundary
between them would make them late). At a finite speed everything runs side by side, as live.
Either way the replay ends with one tick per product past the last window, so the watermark
passes every window of the recording and all of its candles are committed before the CSV is read.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

import orjson

from cryptopipe.contracts import parse_duration, us_to_iso
from cryptopipe.lake.reader import to_csv
from cryptopipe.pipeline import PipelineConfig
from cryptopipe_dev.commands.lake_access import write_stack_state
from cryptopipe_dev.commands.scrape import scrape
from cryptopipe_dev.replay.recording import Recording, load_recording, recording_products
from cryptopipe_dev.replay.server import ReplayServer
from cryptopipe_dev.stack.local import LocalStack
from cryptopipe_dev.stack.procs import ManagedProcess

log = logging.getLogger("cryptopipe.replay_command")

FRAMES = "cryptopipe_ingest_frames_received_total"
BACKFILL_PENDING = "cryptopipe_ingest_backfill_pending"
PRODUCED = "cryptopipe_ingest_trades_produced_total"
UNFILLED = "cryptopipe_ingest_trades_unfilled_total"
RECONNECTS = "cryptopipe_ingest_reconnects_total"
# Ingestion that moves none of its counters for this long (or a third of --timeout, if less) will not
# finish: the command says what is outstanding and exits non-zero instead of waiting out --timeout.
# A gap's REST retries take at most ~15 s plus their requests with the default settings.
STALL_S = 90.0
PROGRESS_LOG_S = 15.0


@dataclasses.dataclass(frozen=True)
class ReplayPlan:
    recordings: tuple[Recording, ...]
    products: tuple[str, ...]
    speed: str = "max"
    windows: tuple[str, ...] = ("1m",)
    watermark: str = "30s"
    trigger: str = "2s"
    faults: dict | None = None  # the replay server's fault hooks, e.g. {"skip_trade_ids": [42]}


def plan_replay(
    paths, *, products=None, speed="max", windows=("1m",), watermark="30s", trigger="2s", faults=None
) -> ReplayPlan:
    recordings = tuple(load_recording(p) for p in paths)
    available = sorted({p for r in recordings for p in recording_products(r)})
    chosen = tuple(products) if products else tuple(available)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise SystemExit(f"--products: {', '.join(unknown)} not in the recording(s); they have {', '.join(available)}")
    return ReplayPlan(recordings, chosen, speed, tuple(windows), watermark, trigger, faults)


def flush_time_us(plan: ReplayPlan) -> int:
    """A tick time past every window of the recordings: last frame + largest window + watermark + 2 s.
    A trade is received after it happens, so no trade's time is past the last frame's ts."""
    last_ts = max(ts for r in plan.recordings for ts, _ in r.frames)
    margin = max(parse_duration(w) for w in plan.windows) + parse_duration(plan.watermark) + 2
    return int((last_ts + margin) * 1_000_000)


def ingestion_not_ready(port: int, host: str = "127.0.0.1") -> str | None:
    """None when ingestion's /readyz answers 200, else why not (its own reason when it gives one)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=2) as response:
            response.read()
            return None
    except urllib.error.HTTPError as exc:
        try:
            return str(orjson.loads(exc.read()).get("reason"))
        except (orjson.JSONDecodeError, AttributeError):
            return f"/readyz answered {exc.code}"
    except OSError as exc:
        return f"/readyz not answering ({exc})"


class Ingestion(Protocol):
    """What wait_caught_up watches of ingestion: a ManagedProcess, or (``cryptopipe dev cluster e2e``)
    its pod."""

    @property
    def alive(self) -> bool: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def log_path(self) -> Path | str: ...
    def log_tail(self, lines: int = 20) -> str: ...


class FeedServer(Protocol):
    """What wait_caught_up asks of the replay server: a ReplayServer, or its pod's /_replay/status."""

    @property
    def frames_sent(self) -> int: ...
    def wait_done(self, timeout: float | None = None) -> bool: ...


def wait_caught_up(
    ingestion: Ingestion, port: int, server: FeedServer, timeout: float, *, host: str = "127.0.0.1"
) -> None:
    """Until the server sent the whole recording, ingestion received it all and no gap is pending.

    Never silent, never longer than needed: logs what is outstanding every PROGRESS_LOG_S, and
    raises SystemExit saying it when ingestion exits, when nothing moves for STALL_S (or a third of
    ``timeout``) while the server has sent everything or ingestion is not ready (a quiet stretch of
    a real-time replay, with ingestion subscribed, is no stall), or when ``timeout`` runs out.
    """
    started = time.monotonic()
    stall_limit = min(STALL_S, timeout / 3)
    last_state: tuple | None = None
    last_change = last_log = started
    while True:
        now = time.monotonic()
        if not ingestion.alive:
            raise SystemExit(
                f"ingestion exited with {ingestion.returncode} while replaying; "
                f"log {ingestion.log_path}:\n{ingestion.log_tail(20)}"
            )
        done = server.wait_done(0)
        not_ready = ingestion_not_ready(port, host)
        try:
            metrics = scrape(f"http://{host}:{port}/metrics")
        except OSError:
            metrics = {}
        received, pending = metrics.get(FRAMES, 0), metrics.get(BACKFILL_PENDING, 0)
        if metrics and done and received >= server.frames_sent and pending == 0:
            return
        why = (
            f"replay server {'done' if done else 'still sending'} ({server.frames_sent} frames sent), "
            f"ingestion {'ready' if not_ready is None else 'not ready: ' + not_ready}, "
            f"received {received:.0f} frames, {pending:.0f} gaps pending backfill, "
            f"{metrics.get(PRODUCED, 0):.0f} trades produced, {metrics.get(UNFILLED, 0):.0f} counted unfillable, "
            f"{metrics.get(RECONNECTS, 0):.0f} reconnects"
        )
        state = (server.frames_sent, received, pending, metrics.get(PRODUCED, 0), metrics.get(UNFILLED, 0))
        if state != last_state:
            last_state, last_change = state, now
        if (done or not_ready is not None) and now - last_change > stall_limit:
            raise SystemExit(
                f"cryptopipe replay cannot finish: nothing moved for {stall_limit:.0f} s: {why}; "
                f"ingestion log {ingestion.log_path}"
            )
        if now - started > timeout:
            raise SystemExit(f"cryptopipe replay: not caught up after --timeout {timeout:.0f} s: {why}")
        if now - last_log >= PROGRESS_LOG_S:
            last_log = now
            log.info("waiting for ingestion to catch up", extra={"state": why})
        time.sleep(0.2)


def run_replay(plan: ReplayPlan, *, work_dir: Path, output_csv: Path, timeout: float = 600.0) -> int:
    started = time.monotonic()
    feeds = {r.feed for r in plan.recordings}
    # one ingestion process speaks one feed: recordings of both feeds replay one feed after the other
    stack_config = PipelineConfig(
        products=plan.products,
        feed=sorted(feeds)[0],
        windows=plan.windows,
        watermark=plan.watermark,
        trigger=plan.trigger,
    )
    with LocalStack(work_dir, stack_config) as stack:
        log.info(
            "stack up",
            extra={
                "kafka": stack.kafka.bootstrap,
                "s3": stack.s3.endpoint,
                "seconds": round(time.monotonic() - started, 1),
            },
        )
        # `cryptopipe candles|plot|monitor report --work-dir` read this lake afterwards
        write_stack_state(work_dir, stack, source="replay")
        job: ManagedProcess | None = None
        if plan.speed != "max":
            job = stack.start_job()
        for feed in sorted(feeds):
            recordings = [r for r in plan.recordings if r.feed == feed]
            products = [p for p in plan.products if any(p in recording_products(r) for r in recordings)]
            with ReplayServer(recordings, speed=plan.speed, faults=plan.faults) as server:
                ingestion = stack.start_ingestion(
                    ws_url=server.url,
                    rest_url=server.rest_url,
                    name=f"ingestion-{feed}",
                    extra_env={"CRYPTOPIPE_INGEST_FEED": feed, "CRYPTOPIPE_INGEST_PRODUCTS": ",".join(products)},
                )
                wait_caught_up(ingestion, stack.ingestion_port, server, timeout)
                ingestion.stop(timeout=60)  # SIGTERM: flush everything accepted
                if ingestion.returncode != 0:
                    raise SystemExit(f"ingestion exited with {ingestion.returncode}; see {ingestion.log_path}")
            log.info("recording ingested", extra={"feed": feed, "frames": server.frames_sent})
        flush_us = flush_time_us(plan)
        stack.produce_ticks(plan.products, flush_us)
        if job is None:
            job = stack.start_job()
        target = us_to_iso(flush_us - parse_duration(plan.watermark) * 1_000_000)[:19]
        stack.wait_for_watermark(target, job=job, timeout=timeout)
        rows = write_candles_csv([stack.candles(w) for w in plan.windows], output_csv)
        log.info(
            "replay done",
            extra={"candles": rows, "csv": str(output_csv), "seconds": round(time.monotonic() - started, 1)},
        )
    return 0


def write_candles_csv(tables: list, output_csv: Path) -> int:
    """Every window's candles as one CSV, ordered by product, window start, window end; returns the
    number of candles. ``cryptopipe dev cluster e2e`` writes its CSV with this too (the same contract)."""
    import pyarrow as pa

    table = pa.concat_tables(tables).sort_by(
        [("product_id", "ascending"), ("window_start", "ascending"), ("window_end", "ascending")]
    )
    output_csv.parent.mkdir(parents=True, exist_ok=True)
    output_csv.write_text(to_csv(table))
    return int(table.num_rows)
