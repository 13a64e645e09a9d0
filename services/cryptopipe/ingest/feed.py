"""The WebSocket side: one reader thread that keeps a subscribed connection and turns frames into
produced records.

``FeedConnection`` owns the socket: connect, subscribe, read; on any failure, silence longer than
the watchdog, or a missing subscription acknowledgement, it closes and reconnects after an
exponential, jittered backoff. ``FrameHandler`` is what each frame goes through: parse, dead-letter
the malformed, suppress known duplicates, track trade-id gaps, produce.

Duplicate suppression: a trade whose id is at or below the newest id already produced for its
product is skipped (counted), unless it is an id known to be missing (a gap being backfilled) --
then it is produced once, and the backfill will not produce it again. This drops the duplicates a
reconnect brings (``last_match``, Advanced Trade snapshots, a replaying server) for one dict lookup,
without ever dropping a trade nobody produced. Across restarts the reader is seeded with each
product's newest trade in the topic (``resume_after``, found exactly by ``resume.py``), so the same
holds there and the downtime is backfilled. Every record goes to Kafka through the release order
(``releaser.Releaser``): held while an earlier trade is owed. What still slips
through (two instances at once, a crash between produce and ack) the Spark job dedupes on
(product_id, trade_id) anyway.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from operator import attrgetter

import websocket
from websocket import ABNF

from cryptopipe.coinbase.frames import FrameResult
from cryptopipe.coinbase.gaps import GapTracker
from cryptopipe.contracts import Feed, Tick, Trade
from cryptopipe.ingest.backfill import Backfiller
from cryptopipe.ingest.clock import ahead_of_receipt
from cryptopipe.ingest.metrics import IngestMetrics
from cryptopipe.ingest.producer import RecordProducer
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.ingest.ws_reader import MessageReader

log = logging.getLogger(__name__)

ParseFrame = Callable[..., FrameResult]  # parse_frame(raw, feed, receive_time_us, products)
_by_product_and_id = attrgetter("product_id", "trade_id")
MAX_OLDER_TRADES = 10_000
PRODUCE_ERROR_LOG_INTERVAL_S = 10.0


def backoff_delay(
    settings: IngestSettings, failures: int, uniform: Callable[[float, float], float] = random.uniform
) -> float:
    """Seconds to wait before reconnecting after ``failures`` failed sessions in a row (0 after a
    session that got subscribed): initial * 2^(failures-1), capped, scaled by +-jitter."""
    base = min(settings.backoff_max_s, settings.backoff_initial_s * 2 ** min(max(failures - 1, 0), 30))
    return base * uniform(1 - settings.backoff_jitter, 1 + settings.backoff_jitter)


class FrameHandler:
    """Everything one frame causes. Runs on the reader thread only (its dicts are unlocked)."""

    def __init__(
        self,
        settings: IngestSettings,
        producer: RecordProducer,
        backfiller: Backfiller,
        metrics: IngestMetrics,
        gap_tracker: GapTracker,
        parse: ParseFrame,
    ) -> None:
        self._feed = settings.feed
        self._products = tuple(settings.products)
        self._producer = producer
        self._backfiller = backfiller
        self._releaser = backfiller.releaser
        self._offer = backfiller.releaser.offer
        self._seen = backfiller.releaser.seen
        # per product, the event time of the newest trade handled: the floor of a gap found next
        # (the missing trades are no earlier than the trade before them)
        self._last_time: dict[str, int] = {}
        self._metrics = metrics
        self._hot = metrics.hot
        self._observe_trade = gap_tracker.observe_trade
        self._observe_tick = gap_tracker.observe_tick
        self._parse = parse
        self._max_ahead_us = round(settings.max_clock_skew_s * 1_000_000)
        # Per product, every id in oldest..newest was produced, is missing (backfill owns it) or was
        # given up; an id in that range that is not claimable is therefore a known duplicate.
        self._newest: dict[str, int] = {}
        self._oldest: dict[str, int] = {}
        # ids below ``oldest`` produced anyway (pre-history that arrived late, e.g. a reordered
        # last_match): few, and capped so a pathological stream cannot grow it without bound
        self._older: dict[str, set[int]] = collections.defaultdict(set)
        self._last_ahead_log = 0.0

    def resume_after(self, product_id: str, lowest: int, highest: int, event_time_us: int = 0) -> None:
        """Continue from a previous run that produced trade ids lowest..highest of a product (read
        back from Kafka; ``event_time_us`` that of ``highest``): later trades in that range are
        duplicates, and the first trade above it reveals the gap of the downtime to the gap tracker."""
        self._newest[product_id] = highest
        self._oldest[product_id] = lowest
        self._last_time[product_id] = event_time_us
        self._observe_tick(Tick(product_id, 0, 0, self._feed, last_trade_id=highest))

    def session_started(self) -> None:
        """A new connection: until a product's first trade or heartbeat shows whether it missed
        trades meanwhile, it may owe trades from its newest known one on (the release order holds
        later records)."""
        self._releaser.expect({p: self._last_time.get(p, 0) for p in self._products})

    def handle(self, raw: str | bytes, receive_time_us: int) -> FrameResult:
        result = self._parse(raw, self._feed, receive_time_us, self._products)
        if result.error is not None:
            self._dead_letter(result.error, raw, receive_time_us)
        else:
            if result.server_error is not None:
                self._metrics.error("server_error")
                log.error("feed sent an error frame", extra={"error": result.server_error})
            max_ahead_us = self._max_ahead_us
            lettered = False  # the frame goes to the DLQ once, however many of its records are wild
            trades: Sequence[Trade] = result.trades
            if trades:
                if len(trades) > 1:
                    # the duplicate check needs ascending ids per product (Advanced Trade frames hold many)
                    trades = sorted(trades, key=_by_product_and_id)
                for trade in trades:
                    if trade.event_time_us - trade.receive_time_us > max_ahead_us:
                        # Not produced, not seen by the gap tracker: the next trade or heartbeat of the
                        # product reveals its id as a gap, refilled over REST (where the bound applies
                        # again) or counted as unfilled. Never silent, never moving the watermark.
                        lettered = self._ahead_of_receipt(trade, raw, lettered)
                        continue
                    self._trade(trade)
            for tick in result.ticks:
                if tick.event_time_us - tick.receive_time_us > max_ahead_us:
                    lettered = self._ahead_of_receipt(tick, raw, lettered)  # ticks move the watermark too
                    continue
                self._tick(tick)
        # counted once handled: a scrape that sees the frame also sees the records and gaps it caused
        frames = self._hot.frames
        frame_type = result.frame_type
        if frame_type in frames:
            frames[frame_type] += 1
        else:
            frames[self._hot.frame_type_label(frame_type)] += 1
        return result

    def _trade(self, trade: Trade) -> None:
        product = trade.product_id
        trade_id = trade.trade_id
        gap = self._observe_trade(trade)
        newest = self._newest.get(product)
        if newest is None or trade_id > newest:
            self._newest[product] = trade_id
            if newest is None:
                self._oldest[product] = trade_id
            if gap is not None:
                self._backfiller.submit(
                    gap.product_id, gap.first_missing, gap.last_missing, self._last_time.get(product, 0)
                )
            self._last_time[product] = trade.event_time_us
            self._produce(trade)
            self._seen(product)  # after the gap it revealed is owed
        elif trade_id >= self._oldest[product]:
            if self._backfiller.claim(product, trade_id):
                # a late (reordered) trade inside a gap: produced now, and the backfill will skip it
                self._produce(trade)
            else:
                self._hot.duplicates[product] += 1
        else:
            self._older_trade(trade)

    def _produce(self, trade: Trade) -> None:
        # Into the release order (held while an earlier trade is owed). Counted as produced when
        # Kafka acknowledges it (the producer's callback); a failed delivery comes back to the
        # backfill (Backfiller.redeliver) and a refusal too (Backfiller._refused), to be fetched again.
        self._offer(trade)

    def _older_trade(self, trade: Trade) -> None:
        """A trade older than the first one this session produced: never a gap, maybe a duplicate."""
        older = self._older[trade.product_id]
        if trade.trade_id in older:
            self._hot.duplicates[trade.product_id] += 1
            return
        if len(older) < MAX_OLDER_TRADES:
            older.add(trade.trade_id)
        self._produce(trade)

    def _tick(self, tick: Tick) -> None:
        gap = self._observe_tick(tick)
        if gap is not None:
            self._backfiller.submit(
                gap.product_id, gap.first_missing, gap.last_missing, self._last_time.get(gap.product_id, 0)
            )
            # The heartbeat announced ids up to last_missing: from now on they belong to the gap, so
            # if the socket still delivers one late it goes through claim() and is produced once.
            self._newest[gap.product_id] = max(self._newest.get(gap.product_id, 0), gap.last_missing)
            self._oldest.setdefault(gap.product_id, gap.first_missing)
        self._offer(tick)  # a refused tick only delays the watermark until the next one
        self._seen(tick.product_id)

    def _ahead_of_receipt(self, record: Trade | Tick, raw: str | bytes, lettered: bool) -> bool:
        """Count a record stamped too far ahead of its receipt and dead-letter its frame (once)."""
        self._metrics.ahead_of_receipt.labels(record.product_id, record.kind, "ws").inc()
        reason = ahead_of_receipt(record, self._max_ahead_us) or ""
        now = time.monotonic()
        if now - self._last_ahead_log >= PRODUCE_ERROR_LOG_INTERVAL_S:  # a skewed server: one line, not one a frame
            self._last_ahead_log = now
            log.warning("record ahead of its receive time dead-lettered", extra={"reason": reason})
        if not lettered:
            self._dead_letter(reason, raw, record.receive_time_us)
        return True

    def _dead_letter(self, reason: str, raw: str | bytes, receive_time_us: int) -> None:
        try:
            self._producer.send_dead_letter(reason, raw, self._feed, receive_time_us)
        except Exception as exc:  # the DLQ failing must not stop the feed
            self._metrics.error("dead_letter")
            log.error("could not dead-letter a frame", extra={"reason": reason, "error": repr(exc)})


class FeedConnection:
    """The reader thread: keeps one subscribed WebSocket connection and feeds its frames to a handler."""

    def __init__(
        self,
        settings: IngestSettings,
        handler: FrameHandler,
        metrics: IngestMetrics,
        subscribe_frames: Callable[[Feed, Sequence[str]], list[str]],
    ) -> None:
        self._settings = settings
        self._handler = handler
        self._metrics = metrics
        self._subscribe_frames = subscribe_frames
        self._stop = threading.Event()
        self._ws: websocket.WebSocket | None = None
        self._thread = threading.Thread(target=self._run, name="ingest-feed", daemon=True)
        self.subscribed = False  # read by /readyz
        self.connections = 0  # sessions opened; tests and logs
        # poll often enough to notice stop, the watchdog and the subscribe deadline promptly
        self._poll_s = max(0.05, min(0.5, settings.watchdog_s / 4, settings.subscribe_timeout_s / 4))

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop reading: the frame being handled finishes, nothing more is read."""
        self._stop.set()
        ws = self._ws
        if ws is not None:
            ws.abort()  # wakes a blocked recv
        self._thread.join(timeout_s)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._reconnect_loop()
        except Exception:  # a bug: the service sees the thread gone and exits non-zero
            log.exception("feed reader crashed")
            raise

    def _reconnect_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            reason, was_subscribed = self._session()
            if self._stop.is_set():
                break
            self._metrics.reconnects.labels(reason).inc()
            failures = 0 if was_subscribed else failures + 1
            delay = backoff_delay(self._settings, failures)
            log.warning("feed connection ended; reconnecting", extra={"reason": reason, "delay_s": round(delay, 3)})
            self._stop.wait(delay)
        self._metrics.set_connection_state("disconnected")

    def _session(self) -> tuple[str, bool]:
        """One connection, from connect to whatever ended it: returns (reason, reached subscribed)."""
        s = self._settings
        self._metrics.set_connection_state("connecting")
        self.subscribed = False
        try:
            # skip_utf8_validation: a frame that is not UTF-8 must reach the dead-letter topic,
            # not fail the whole connection inside websocket-client
            ws = websocket.create_connection(s.ws_url, timeout=s.subscribe_timeout_s, skip_utf8_validation=True)
        except Exception as exc:
            self._metrics.error("connection")
            log.warning("feed connect failed", extra={"url": s.ws_url, "error": repr(exc)})
            return "connect_failed", False
        self._ws = ws
        self.connections += 1
        self._metrics.set_connection_state("connected")
        log.info("feed connected", extra={"url": s.ws_url, "connection": self.connections})
        try:
            if self._stop.is_set():  # stop() raced the connect and found no socket to abort
                return "stopped", False
            self._handler.session_started()
            for frame in self._subscribe_frames(s.feed, s.products):
                ws.send(frame)
            return self._read(ws)
        except websocket.WebSocketConnectionClosedException:
            return "connection_closed", self.subscribed
        except (OSError, websocket.WebSocketException) as exc:
            if not self._stop.is_set():
                self._metrics.error("connection")
                log.warning("feed connection failed", extra={"error": repr(exc)})
            return "connection_error", self.subscribed
        finally:
            self._ws = None
            self.subscribed = False
            self._metrics.set_connection_state("disconnected")
            ws.shutdown()

    def _read(self, ws: websocket.WebSocket) -> tuple[str, bool]:
        s = self._settings
        handle = self._handler.handle
        stop = self._stop
        monotonic = time.monotonic
        time_ns = time.time_ns
        watchdog_s = s.watchdog_s
        subscribe_deadline = monotonic() + s.subscribe_timeout_s
        subscribed = False
        last_frame = monotonic()
        ws.settimeout(self._poll_s)
        if ws.sock is None:  # closed before the first read (websocket-client drops it on close)
            return "connection_closed", False
        # from here on the socket is read in large chunks (ws_reader.py); websocket-client only sends
        read = MessageReader(ws.sock).read
        while not stop.is_set():
            try:
                messages = read()
            except TimeoutError:
                now = monotonic()
                if not subscribed and now > subscribe_deadline:
                    return "subscribe_timeout", False
                if now - last_frame > watchdog_s:
                    log.warning("no frame within the watchdog period", extra={"watchdog_s": watchdog_s})
                    return "watchdog", subscribed
                continue
            if not messages:
                continue  # part of a frame
            last_frame = monotonic()
            # every message of one read arrived together: one receive time for them all
            received_us = time_ns() // 1000
            for opcode, data in messages:
                if opcode == ABNF.OPCODE_CLOSE:  # the reader returns data messages and the close only
                    return "server_closed", subscribed
                result = handle(data, received_us)
                if not subscribed:
                    if result.subscribed is not None:
                        subscribed = self.subscribed = True
                        self._metrics.set_connection_state("subscribed")
                        acked = {p for products in result.subscribed.values() for p in products}
                        log.info(
                            "feed subscribed", extra={"channels": {k: list(v) for k, v in result.subscribed.items()}}
                        )
                        if missing := sorted(set(s.products) - acked):
                            log.warning("subscription acknowledged without some products", extra={"missing": missing})
                    elif last_frame > subscribe_deadline:
                        return "subscribe_timeout", False
        return "stopped", subscribed
