"""GapTracker rules on hand-made trade id sequences (the recordings are replayed in
test_coinbase_recordings.py)."""

from __future__ import annotations

from decimal import Decimal

from cryptopipe.coinbase import Gap, GapTracker
from cryptopipe.contracts import Tick, Trade


def trade(trade_id: int, product_id: str = "BTC-USD") -> Trade:
    return Trade(product_id, trade_id, Decimal("1"), Decimal("1"), "buy", 0, 0, "exchange")


def tick(last_trade_id: int | None, product_id: str = "BTC-USD") -> Tick:
    return Tick(product_id, 0, 0, "exchange", last_trade_id)


def test_first_trade_sets_the_baseline_then_contiguous_ids_are_no_gap():
    tracker = GapTracker()
    assert tracker.last_trade_id("BTC-USD") is None
    assert [tracker.observe_trade(trade(i)) for i in (500, 501, 502)] == [None, None, None]
    assert tracker.last_trade_id("BTC-USD") == 502


def test_skipped_ids_are_one_gap():
    tracker = GapTracker()
    tracker.observe_trade(trade(10))
    assert tracker.observe_trade(trade(14)) == Gap("BTC-USD", 11, 13)
    assert tracker.observe_trade(trade(15)) is None


def test_duplicates_and_late_trades_never_move_the_mark_back():
    tracker = GapTracker()
    tracker.observe_trade(trade(10))
    assert tracker.observe_trade(trade(13)) == Gap("BTC-USD", 11, 12)
    # the backfilled 11 and 12, and a repeated 13 (last_match / snapshot), are no news
    assert [tracker.observe_trade(trade(i)) for i in (11, 12, 13)] == [None, None, None]
    assert tracker.last_trade_id("BTC-USD") == 13
    assert tracker.observe_trade(trade(14)) is None


def test_products_are_tracked_apart():
    tracker = GapTracker()
    tracker.observe_trade(trade(100, "BTC-USD"))
    assert tracker.observe_trade(trade(7, "ETH-USD")) is None
    assert tracker.observe_trade(trade(9, "ETH-USD")) == Gap("ETH-USD", 8, 8)
    assert tracker.observe_trade(trade(101, "BTC-USD")) is None


def test_heartbeat_past_the_last_trade_is_a_gap_reported_once():
    tracker = GapTracker()
    tracker.observe_trade(trade(10))
    assert tracker.observe_tick(tick(10)) is None
    assert tracker.observe_tick(tick(12)) == Gap("BTC-USD", 11, 12)
    assert tracker.observe_tick(tick(12)) is None
    # the missed trades arriving late (or from REST) are not a second gap, nor is the next trade
    assert [tracker.observe_trade(trade(i)) for i in (11, 12, 13)] == [None, None, None]


def test_heartbeat_behind_the_last_trade_is_ignored():
    tracker = GapTracker()
    tracker.observe_trade(trade(10))
    assert tracker.observe_tick(tick(9)) is None
    assert tracker.last_trade_id("BTC-USD") == 10


def test_heartbeat_before_any_trade_sets_the_baseline():
    tracker = GapTracker()
    assert tracker.observe_tick(tick(10)) is None
    assert tracker.observe_trade(trade(11)) is None
    assert tracker.observe_trade(trade(13)) == Gap("BTC-USD", 12, 12)


def test_heartbeat_without_a_trade_id_or_of_an_untraded_product_sets_nothing():
    tracker = GapTracker()
    assert tracker.observe_tick(tick(None)) is None  # Advanced Trade
    assert tracker.observe_tick(tick(0)) is None  # sandbox product that never traded
    assert tracker.last_trade_id("BTC-USD") is None
    assert tracker.observe_trade(trade(9713921)) is None
