"""What the ingestion reader produces for a frame sequence: duplicates dropped, gaps backfilled,
reordered trades produced once. Real parser, GapTracker and Backfiller; the Kafka producer and the
REST endpoint are replaced by in-memory stand-ins (the component tests run the real ones)."""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import orjson
import pytest
from kafka.partitioner import DefaultPartitioner

from cryptopipe.coinbase import GapTracker, parse_frame
from cryptopipe.contracts import Trade, UnfillableTradeIds, decode_record
from cryptopipe.ingest.backfill import Backfiller
from cryptopipe.ingest.feed import FrameHandler
from cryptopipe.ingest.metrics import IngestMetrics
from cryptopipe.ingest.producer import KeyHashPartitioner, dead_letter_value
from cryptopipe.ingest.settings import IngestSettings

T0 = 1_783_465_097_000_000


class KafkaStandIn:
    """Collects what would have been produced, each record acknowledged at once (counted, as the
    real producer counts on the broker's acknowledgement)."""

    def __init__(self, metrics: IngestMetrics | None = None) -> None:
        self.records: list[tuple[str, bytes]] = []
        self.dead: list[tuple[str, str | bytes]] = []
        self.unfillable: list[UnfillableTradeIds] = []
        self.lock = threading.Lock()
        self.metrics = metrics
        self.finished: Callable[[str], None] = lambda _product: None

    def on_finished(self, hook: Callable[[str], None]) -> None:
        self.finished = hook

    def send(
        self, product_id: str, value: bytes, trade_id: int | None = None, source: str = "ws", event_time_us: int = 0
    ) -> None:
        with self.lock:
            self.records.append((product_id, value))
            if self.metrics is not None:
                hot = self.metrics.hot
                counts = hot.ticks if trade_id is None else hot.trades if source == "ws" else hot.backfilled
                counts[product_id] += 1
        self.finished(product_id)

    def send_dead_letter(self, reason: str, raw: str | bytes, feed: str, receive_time_us: int) -> None:
        self.dead.append((reason, raw))

    def send_unfillable(self, record: UnfillableTradeIds) -> None:
        self.unfillable.append(record)

    def trades(self) -> list[Trade]:
        return [r for r in (decode_record(v) for _k, v in self.records) if isinstance(r, Trade)]


class RestStandIn:
    """fetch_trades_range over an in-memory trade list; ``fail`` first calls raise."""

    def __init__(self, trades: dict[int, Trade], fail: int = 0) -> None:
        self.trades = trades
        self.fail = fail
        self.calls: list[tuple[int, int]] = []

    def __call__(self, base_url: str, product_id: str, first: int, last: int, *, timeout: float) -> list[Trade]:
        self.calls.append((first, last))
        if self.fail:
            self.fail -= 1
            raise RuntimeError("HTTP 502")
        return [self.trades[i] for i in range(first, last + 1) if i in self.trades]


def match(trade_id: int, product: str = "BTC-USD", kind: str = "match") -> bytes:
    return orjson.dumps(
        {
            "type": kind,
            "trade_id": trade_id,
            "side": "sell",
            "size": "0.1",
            "price": "60000.5",
            "product_id": product,
            "sequence": trade_id * 10,
            "time": f"2026-07-07T22:58:{17 + trade_id % 40:02d}.164892Z",
        }
    )


def heartbeat(last_trade_id: int, product: str = "BTC-USD") -> bytes:
    return orjson.dumps(
        {
            "type": "heartbeat",
            "last_trade_id": last_trade_id,
            "product_id": product,
            "sequence": 1,
            "time": "2026-07-07T22:58:59.000000Z",
        }
    )


def rest_trade(trade_id: int, product: str = "BTC-USD") -> Trade:
    return Trade(product, trade_id, Decimal("60000.5"), Decimal("0.1"), "sell", T0 + trade_id, T0, "exchange", "rest")


@pytest.fixture
def rig():
    def make(rest_ids: range = range(0), fail: int = 0, **overrides):
        settings = IngestSettings(backfill_retries=3, backfill_retry_delay_s=0.01, **overrides)
        metrics = IngestMetrics()
        kafka = KafkaStandIn(metrics)
        rest = RestStandIn({i: rest_trade(i) for i in rest_ids}, fail=fail)
        backfiller = Backfiller(settings, kafka, metrics, rest)  # type: ignore[arg-type]
        handler = FrameHandler(settings, kafka, backfiller, metrics, GapTracker(), parse_frame)  # type: ignore[arg-type]
        made.append(backfiller)
        return handler, backfiller, kafka, rest, metrics

    made: list[Backfiller] = []
    yield make
    for backfiller in made:
        backfiller.stop(5)


def feed(handler: FrameHandler, *frames: bytes) -> None:
    for frame in frames:
        handler.handle(frame, T0)


def finish(backfiller: Backfiller) -> None:
    """Run the worker until every gap submitted so far is filled or given up."""
    backfiller.start()
    assert backfiller.wait_idle(10)
    assert backfiller.missing_count() == 0
    # records held behind the gap go out in event-time steps, each after the previous one's
    # acknowledgement: the release pump (every 0.1 s) sends the rest
    deadline = time.monotonic() + 10
    while backfiller.releaser.held:
        assert time.monotonic() < deadline, "records still held after the gaps were paid"
        time.sleep(0.02)


def ids(kafka: KafkaStandIn) -> Counter[int]:
    return Counter(t.trade_id for t in kafka.trades())


def test_duplicates_from_last_match_and_replays_are_not_produced(rig) -> None:
    handler, backfiller, kafka, _rest, metrics = rig()
    feed(
        handler, match(10, kind="last_match"), match(11), match(12), match(11), match(12, kind="last_match"), match(13)
    )
    assert ids(kafka) == Counter({10: 1, 11: 1, 12: 1, 13: 1})
    assert metrics.hot.duplicates["BTC-USD"] == 2
    assert backfiller.missing_count() == 0


def test_a_gap_is_backfilled_and_each_trade_produced_once(rig) -> None:
    handler, backfiller, kafka, rest, metrics = rig(rest_ids=range(1, 100))
    feed(handler, match(10), match(14), match(15))
    assert backfiller.missing_count() == 3
    finish(backfiller)
    assert ids(kafka) == Counter(range(10, 16))
    assert rest.calls == [(11, 13)]
    assert {t.trade_id for t in kafka.trades() if t.source == "rest"} == {11, 12, 13}
    assert metrics.hot.backfilled["BTC-USD"] == 3
    assert metrics.registry.get_sample_value("cryptopipe_ingest_gaps_backfilled_total", {"product_id": "BTC-USD"}) == 1


def test_a_reordered_trade_is_produced_once_by_the_socket_not_again_by_the_backfill(rig) -> None:
    handler, backfiller, kafka, rest, _metrics = rig(rest_ids=range(1, 100))
    feed(handler, match(10), match(12), match(11), match(13))  # 11 late: first seen as a gap
    finish(backfiller)
    assert ids(kafka) == Counter(range(10, 14))
    assert all(t.source == "ws" for t in kafka.trades())
    assert rest.calls == [], "nothing was missing any more when the worker got to the gap"


def test_heartbeat_reveals_trailing_gap_and_a_late_frame_for_it_is_not_doubled(rig) -> None:
    handler, backfiller, kafka, rest, _metrics = rig(rest_ids=range(1, 100))
    feed(handler, match(10), heartbeat(12), match(12))  # 11 and 12 announced; 12 then arrives late
    assert backfiller.missing_count() == 1
    finish(backfiller)
    assert ids(kafka) == Counter(range(10, 13))
    assert rest.calls == [(11, 12)]


def test_a_trade_older_than_the_first_one_is_produced_once(rig) -> None:
    handler, _backfiller, kafka, _rest, _metrics = rig()
    feed(handler, match(11), match(10, kind="last_match"), match(12), match(10))
    assert ids(kafka) == Counter({10: 1, 11: 1, 12: 1})


def test_rest_failures_are_retried(rig) -> None:
    handler, backfiller, kafka, rest, metrics = rig(rest_ids=range(1, 100), fail=2)
    feed(handler, match(10), match(12))
    finish(backfiller)
    assert ids(kafka) == Counter({10: 1, 11: 1, 12: 1})
    assert len(rest.calls) == 3
    assert metrics.registry.get_sample_value("cryptopipe_ingest_errors_total", {"kind": "backfill"}) == 2


def test_a_gap_rest_cannot_fill_is_given_up_and_counted(rig) -> None:
    handler, backfiller, kafka, rest, metrics = rig(rest_ids=range(0), fail=0)
    feed(handler, match(10), match(13))
    finish(backfiller)
    assert ids(kafka) == Counter({10: 1, 13: 1})
    assert len(rest.calls) == 3
    sample = metrics.registry.get_sample_value
    assert sample("cryptopipe_ingest_gaps_unfilled_total", {"product_id": "BTC-USD", "reason": "not_returned"}) == 1
    assert sample("cryptopipe_ingest_trades_unfilled_total", {"product_id": "BTC-USD"}) == 2
    assert sample("cryptopipe_ingest_gaps_backfilled_total", {"product_id": "BTC-USD"}) is None
    assert backfiller.missing_count() == 0
    # ...and published for the lake monitor, exactly the ids given up
    assert [(r.product_id, r.first_trade_id, r.last_trade_id, r.reason) for r in kafka.unfillable] == [
        ("BTC-USD", 11, 12, "not_returned")
    ]


def test_gap_series_exist_at_zero_before_any_gap() -> None:
    # the gap alert uses increase(), which cannot see a counter's first step from absent to 1
    metrics = IngestMetrics()
    metrics.declare_products(["BTC-USD", "ETH-USD"])
    sample = metrics.registry.get_sample_value
    for product in ("BTC-USD", "ETH-USD"):
        assert sample("cryptopipe_ingest_gaps_unfilled_total", {"product_id": product, "reason": "not_returned"}) == 0
        assert sample("cryptopipe_ingest_gaps_detected_total", {"product_id": product}) == 0
        assert sample("cryptopipe_ingest_gaps_backfilled_total", {"product_id": product}) == 0


def test_an_absurd_gap_is_refused_without_asking_rest(rig) -> None:
    handler, backfiller, kafka, rest, metrics = rig(rest_ids=range(0), backfill_max_trades=100)
    feed(handler, match(10), match(500))
    finish(backfiller)
    assert rest.calls == [] and backfiller.missing_count() == 0
    sample = metrics.registry.get_sample_value
    assert sample("cryptopipe_ingest_gaps_unfilled_total", {"product_id": "BTC-USD", "reason": "too_large"}) == 1
    assert [(r.first_trade_id, r.last_trade_id, r.reason) for r in kafka.unfillable] == [(11, 499, "too_large")]


def test_malformed_frame_is_dead_lettered_and_the_next_frame_still_produced(rig) -> None:
    handler, _backfiller, kafka, _rest, _metrics = rig()
    bad_price = match(11).replace(b'"60000.5"', b'"sixty"')
    feed(handler, match(10), b"{not json", bad_price, match(11))
    assert len(kafka.dead) == 2
    assert "not JSON" in kafka.dead[0][0] and "price" in kafka.dead[1][0]
    assert kafka.dead[1][1] == bad_price
    assert ids(kafka) == Counter({10: 1, 11: 1})


def test_heartbeats_become_ticks_keyed_by_product(rig) -> None:
    handler, _backfiller, kafka, _rest, metrics = rig()
    feed(handler, match(5, product="ETH-USD"), heartbeat(5, product="ETH-USD"))
    assert [key for key, _v in kafka.records] == ["ETH-USD", "ETH-USD"]
    tick = decode_record(kafka.records[1][1])
    assert tick.kind == "tick" and tick.last_trade_id == 5
    assert metrics.hot.ticks["ETH-USD"] == 1


def test_dead_letter_value_keeps_text_and_base64_encodes_other_bytes() -> None:
    text = orjson.loads(dead_letter_value("frame is not JSON", b"{oops", "exchange", 7))
    assert text == {
        "v": 1,
        "kind": "dead_letter",
        "reason": "frame is not JSON",
        "feed": "exchange",
        "receive_time_us": 7,
        "raw": "{oops",
        "raw_encoding": "utf-8",
    }
    binary = orjson.loads(dead_letter_value("frame is not JSON", b"\xff\xfe\x00", "exchange", 7))
    assert binary["raw_encoding"] == "base64" and base64.b64decode(binary["raw"]) == b"\xff\xfe\x00"


def test_partitioner_picks_what_kafkas_default_partitioner_picks() -> None:
    class Cluster:
        def __init__(self, n: int) -> None:
            self.n = n

        def topics(self) -> set[str]:
            return {"t"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(self.n))

        def available_partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(self.n))

    ours, reference = KeyHashPartitioner(), DefaultPartitioner()
    for n in (1, 3, 7, 12):
        for product in ("BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USDC", "A1-B2"):
            key = product.encode()
            expected = reference.partition("t", key, key, None, None, Cluster(n))
            assert ours.partition("t", key, key, None, None, Cluster(n)) == expected
            assert ours.partition("t", key, key, None, None, Cluster(n)) == expected  # cached


DAY_US = 86_400 * 1_000_000


def at(frame: bytes, time: str) -> bytes:
    record = orjson.loads(frame)
    record["time"] = time
    return orjson.dumps(record)


def test_a_trade_a_day_ahead_of_its_receipt_is_dead_lettered_and_refilled_over_rest(rig) -> None:
    handler, backfiller, kafka, _rest, metrics = rig(rest_ids=range(10, 13))
    wild = at(match(11), "2026-07-08T22:58:17.000000Z")  # a day after T0, the receive time
    feed(handler, match(10), wild, match(12))
    ((reason, raw),) = kafka.dead
    assert reason.startswith("event_time_ahead_of_receipt: trade of BTC-USD") and "max_clock_skew_s=60" in reason
    assert raw == wild
    sample = metrics.registry.get_sample_value
    assert (
        sample(
            "cryptopipe_ingest_records_ahead_of_receipt_total",
            {"product_id": "BTC-USD", "kind": "trade", "source": "ws"},
        )
        == 1
    )
    finish(backfiller)  # the next trade revealed its id as a gap: REST has it with a sane time
    assert ids(kafka) == Counter({10: 1, 11: 1, 12: 1})
    assert all(t.event_time_us - t.receive_time_us <= 60_000_000 for t in kafka.trades())


def test_a_heartbeat_ahead_of_its_receipt_is_not_a_tick(rig) -> None:
    handler, _backfiller, kafka, _rest, metrics = rig(max_clock_skew_s=30)
    feed(handler, match(5), at(heartbeat(5), "2026-07-07T22:59:30.000000Z"))  # 73 s after receipt
    assert [decode_record(v).kind for _k, v in kafka.records] == ["trade"]
    assert "max_clock_skew_s=30" in kafka.dead[0][0]
    sample = metrics.registry.get_sample_value
    assert (
        sample(
            "cryptopipe_ingest_records_ahead_of_receipt_total",
            {"product_id": "BTC-USD", "kind": "tick", "source": "ws"},
        )
        == 1
    )


def test_old_trades_are_not_bounded(rig) -> None:
    # REST backfill, last_match and replayed recordings are legitimately old: only the future is bounded
    handler, _backfiller, kafka, _rest, _metrics = rig()
    feed(handler, at(match(10), "2021-01-01T00:00:00.000000Z"))
    assert ids(kafka) == Counter({10: 1}) and kafka.dead == []


def test_a_rest_trade_ahead_of_its_fetch_is_a_bad_row(rig) -> None:
    handler, backfiller, kafka, rest, metrics = rig(rest_ids=range(10, 13))
    good = rest.trades[11]
    rest.trades[11] = Trade(good.product_id, 11, good.price, good.size, good.side, T0 + DAY_US, T0, "exchange", "rest")
    feed(handler, match(10), match(12))
    finish(backfiller)
    assert ids(kafka) == Counter({10: 1, 12: 1})
    ((reason, _raw),) = kafka.dead
    assert reason.startswith("rest backfill of BTC-USD: event_time_ahead_of_receipt")
    sample = metrics.registry.get_sample_value
    assert sample("cryptopipe_ingest_gaps_unfilled_total", {"product_id": "BTC-USD", "reason": "bad_row"}) == 1
    assert sample("cryptopipe_ingest_trades_unfilled_total", {"product_id": "BTC-USD"}) == 1
    assert (
        sample(
            "cryptopipe_ingest_records_ahead_of_receipt_total",
            {"product_id": "BTC-USD", "kind": "trade", "source": "rest"},
        )
        == 1
    )
