"""Prometheus metrics of one ingestion service instance, in its own CollectorRegistry.

Rare events (reconnects, gaps, errors) use ordinary prometheus_client metrics. The per-frame and
per-trade counts are plain ints in dicts owned by the socket-reader thread (``HotCounts``) and are
turned into metrics only when scraped: a locked ``Counter.inc()`` per trade would cost more than
producing it.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "cryptopipe_ingest_"
CONNECTION_STATES = ("disconnected", "connecting", "connected", "subscribed")
# Why a gap was given up (ingest/backfill.py). Declared up front with the products so every series
# exists at 0 from the first scrape: increase() cannot see a counter's first step from "absent" to 1,
# and the gap alert is built on increase().
UNFILLED_REASONS = ("too_large", "queue_full", "shutdown", "not_returned", "bad_row", "internal_error", "hold_expired")
HOLD_EXPIRED_CAUSES = ("max_hold_s", "max_held", "settle")
# Frame types come from the wire; past this many distinct ones, further types count as "other"
# so a misbehaving server cannot blow up the label cardinality.
MAX_FRAME_TYPES = 32


class HotCounts:
    """Counts kept by one thread (the socket reader) with plain dict arithmetic.

    Only the owning thread writes; the scrape reads. A scrape may see a value one frame old,
    never a lost increment.
    """

    def __init__(self) -> None:
        self.frames: collections.Counter[str] = collections.Counter()
        # product -> trades from the socket acknowledged by Kafka (written on the producer's sender thread)
        self.trades: collections.Counter[str] = collections.Counter()
        self.ticks: collections.Counter[str] = collections.Counter()  # acknowledged (sender thread)
        self.duplicates: collections.Counter[str] = collections.Counter()
        self.last_trade_us: dict[str, int] = {}  # product -> event time of the newest trade produced
        # trades from REST acknowledged by Kafka (written on the producer's sender thread)
        self.backfilled: collections.Counter[str] = collections.Counter()

    def frame_type_label(self, frame_type: str) -> str:
        if frame_type in self.frames or len(self.frames) < MAX_FRAME_TYPES:
            return frame_type
        return "other"


def _family(kind, name: str, documentation: str, label: str, values: dict, divisor: float = 1):
    """One metric family with a single label, from a dict the reader thread owns (copied first:
    the dict may grow while a scrape reads it)."""
    family = kind(PREFIX + name, documentation, labels=[label])
    for key, value in list(values.items()):
        family.add_metric([key], value / divisor)
    return family


class _HotCollector(Collector):
    def __init__(self, hot: HotCounts) -> None:
        self._hot = hot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        hot = self._hot
        yield _family(
            CounterMetricFamily, "frames_received", "WebSocket frames received, by frame type.", "type", hot.frames
        )
        trades = CounterMetricFamily(
            PREFIX + "trades_produced",
            "Trades acknowledged by Kafka, by product and source (ws or rest backfill).",
            labels=["product_id", "source"],
        )
        for product, n in list(hot.trades.items()):
            trades.add_metric([product, "ws"], n)
        for product, n in list(hot.backfilled.items()):
            trades.add_metric([product, "rest"], n)
        yield trades
        yield _family(
            CounterMetricFamily,
            "trades_backfilled",
            "Trades fetched over REST to fill a gap and acknowledged by Kafka.",
            "product_id",
            hot.backfilled,
        )
        yield _family(
            CounterMetricFamily,
            "ticks_produced",
            "Heartbeat ticks acknowledged by Kafka.",
            "product_id",
            hot.ticks,
        )
        yield _family(
            CounterMetricFamily,
            "duplicate_trades_skipped",
            "Trades not produced because that trade id was already produced (replays, last_match).",
            "product_id",
            hot.duplicates,
        )
        yield _family(
            GaugeMetricFamily,
            "last_trade_timestamp_seconds",
            "Exchange event time of the newest trade produced, per product (age = time() - this).",
            "product_id",
            hot.last_trade_us,
            divisor=1e6,
        )


class IngestMetrics:
    """All metrics of one service instance; ``registry`` is what /metrics serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.hot = HotCounts()
        r.register(_HotCollector(self.hot))
        self.produce_latency = Histogram(
            PREFIX + "produce_latency_seconds",
            "Time from handing a record to the producer to the broker's acknowledgement (sampled).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.errors = Counter(
            PREFIX + "errors",
            "Errors by kind (server_error, produce, delivery, backfill, connection, ...).",
            ["kind"],
            registry=r,
        )
        self.reconnects = Counter(
            PREFIX + "reconnects",
            "WebSocket reconnects, by the reason the previous connection ended.",
            ["reason"],
            registry=r,
        )
        self.gaps_detected = Counter(
            PREFIX + "gaps_detected", "Trade-id gaps found per product.", ["product_id"], registry=r
        )
        self.gaps_backfilled = Counter(
            PREFIX + "gaps_backfilled",
            "Gaps whose every missing trade was recovered (by REST or a late frame).",
            ["product_id"],
            registry=r,
        )
        self.gaps_unfilled = Counter(
            PREFIX + "gaps_unfilled",
            "Gaps given up (too large, REST failing, trades not returned).",
            ["product_id", "reason"],
            registry=r,
        )
        self.trades_unfilled = Counter(
            PREFIX + "trades_unfilled",
            "Trade ids known missing that backfill could not deliver.",
            ["product_id"],
            registry=r,
        )
        self.backfill_pending = Gauge(
            PREFIX + "backfill_pending",
            "Gaps waiting for or being backfilled (a count of gaps, not trades).",
            registry=r,
        )
        self.ahead_of_receipt = Counter(
            PREFIX + "records_ahead_of_receipt",
            "Trades and ticks dead-lettered because their event time was more than max_clock_skew_s ahead "
            "of their receive time (source ws or rest); a trade's id is then refilled over REST or counted "
            "in trades_unfilled_total.",
            ["product_id", "kind", "source"],
            registry=r,
        )
        self.dead_lettered = Counter(
            PREFIX + "dead_lettered_frames", "Frames sent to the dead-letter topic.", registry=r
        )
        self.delivery_errors = Counter(
            PREFIX + "delivery_errors",
            "Records the producer accepted but Kafka did not acknowledge.",
            ["topic"],
            registry=r,
        )
        self.redelivered = Counter(
            PREFIX + "trades_redelivered",
            "Trades Kafka did not acknowledge (delivery timeout, non-retriable error), handed back to be "
            "refilled over REST; the ones that cannot be are counted in trades_unfilled_total.",
            ["product_id"],
            registry=r,
        )
        self.held_records = Gauge(
            PREFIX + "held_records",
            "Trades and ticks held back because an earlier trade is still owed (gap, failed delivery, "
            "unacknowledged record); nothing newer reaches Kafka meanwhile, so freshness stops.",
            registry=r,
        )
        self.hold_age = Gauge(
            PREFIX + "hold_age_seconds", "How long the oldest held record has waited (0 when none).", registry=r
        )
        self.hold_expired = Counter(
            PREFIX + "hold_expired",
            "Holds ended by a bound: max_hold_s or max_held (owed ids given up, counted in trades_unfilled_total "
            "with reason hold_expired) or settle (a product not seen within settle_s after connecting).",
            ["cause"],
            registry=r,
        )
        for cause in HOLD_EXPIRED_CAUSES:
            self.hold_expired.labels(cause)
        self.connection_state = Gauge(
            PREFIX + "connection_state",
            "1 for the WebSocket connection's current state, 0 for the others.",
            ["state"],
            registry=r,
        )
        self.set_connection_state("disconnected")

    def declare_products(self, products: list[str] | tuple[str, ...]) -> None:
        """Create the per-product gap series at 0 (see UNFILLED_REASONS for why)."""
        for product in products:
            self.gaps_detected.labels(product)
            self.gaps_backfilled.labels(product)
            self.trades_unfilled.labels(product)
            self.redelivered.labels(product)
            for kind, source in (("trade", "ws"), ("trade", "rest"), ("tick", "ws")):
                self.ahead_of_receipt.labels(product, kind, source)
            for reason in UNFILLED_REASONS:
                self.gaps_unfilled.labels(product, reason)

    def set_connection_state(self, state: str) -> None:
        for name in CONNECTION_STATES:
            self.connection_state.labels(name).set(1 if name == state else 0)

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()
