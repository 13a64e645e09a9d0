"""The synthetic frame generator: deterministic, lazy, parseable, and statistically plausible."""

from __future__ import annotations

import itertools
import math
import statistics
import types
from collections import Counter, defaultdict
from decimal import Decimal

import orjson
import pytest

from cryptopipe.coinbase import parse_frame
from cryptopipe_dev.replay.synthetic import SyntheticConfig, SyntheticSource, synthetic_frames


def test_same_seed_same_frames_other_seed_other_frames():
    config = SyntheticConfig(rate=50, duration=20, seed=11)
    first = [f.raw for f in synthetic_frames(config)]
    assert first == [f.raw for f in synthetic_frames(config)]
    other = [f.raw for f in synthetic_frames(SyntheticConfig(rate=50, duration=20, seed=12))]
    assert other != first


def test_frames_are_generated_lazily_even_when_endless():
    frames = synthetic_frames(SyntheticConfig(rate=1_000_000, duration=None))
    assert isinstance(frames, types.GeneratorType)
    assert len(list(itertools.islice(frames, 1000))) == 1000


def test_every_frame_parses_with_the_real_parser_and_says_it_is_synthetic():
    products = ("BTC-USD", "ETH-USD")
    for frame in synthetic_frames(SyntheticConfig(products=products, rate=100, duration=10, seed=3)):
        obj = orjson.loads(frame.raw)
        assert obj["synthetic"] is True
        result = parse_frame(frame.raw, "exchange", 0, products)
        assert result.error is None, (result.error, frame.raw)
        if obj["type"] in ("match", "last_match"):
            assert obj["maker_order_id"].startswith("synthetic-") and obj["taker_order_id"].startswith("synthetic-")
            (parsed,) = result.trades
            assert (parsed.trade_id, str(parsed.price), str(parsed.size)) == (
                obj["trade_id"],
                obj["price"],
                obj["size"],
            )
        else:
            assert obj["type"] == "heartbeat" and result.ticks[0].last_trade_id == obj["last_trade_id"]


def test_rate_ids_heartbeats_prices_and_sizes_are_plausible():
    duration, rate = 600, 20.0
    config = SyntheticConfig(rate=rate, duration=duration, seed=5, tick_sizes={"ETH-USD": "0.05"})
    trades: dict[str, list[dict]] = defaultdict(list)
    heartbeats: dict[str, list[dict]] = defaultdict(list)
    last_seen: dict[str, int] = {}
    ts = []
    for frame in synthetic_frames(config):
        obj = orjson.loads(frame.raw)
        ts.append(frame.ts)
        if obj["type"] == "match":
            trades[obj["product_id"]].append(obj)
        if obj["type"] in ("match", "last_match"):
            last_seen[obj["product_id"]] = obj["trade_id"]
        if obj["type"] == "heartbeat":
            heartbeats[obj["product_id"]].append(obj)
            # a heartbeat names the product's latest trade, as Coinbase's do: gaps are detectable
            assert obj["last_trade_id"] == last_seen[obj["product_id"]]
    assert ts == sorted(ts) and ts[-1] - ts[0] <= duration
    total = sum(len(t) for t in trades.values())
    # Hawkes bursts inflate the variance (sd ~ sqrt(rate*T)/(1-branching) = 220 here): +-15% is ~8 sd
    assert 0.85 * rate * duration < total < 1.15 * rate * duration
    for product, product_trades in trades.items():
        ids = [t["trade_id"] for t in product_trades]
        assert ids == list(range(ids[0], ids[0] + len(ids))), "trade ids must be contiguous per product"
        sequences = [t["sequence"] for t in product_trades]
        assert all(b > a for a, b in zip(sequences, sequences[1:], strict=False))
        assert len(heartbeats[product]) == duration  # one per second
        tick = Decimal("0.05" if product == "ETH-USD" else "0.01")
        assert all(Decimal(t["price"]) % tick == 0 for t in product_trades), "prices on the tick"
        assert all(Decimal(t["price"]).as_tuple().exponent == -2 for t in product_trades)
        sizes = [Decimal(t["size"]) for t in product_trades]
        assert all(s > 0 and s.as_tuple().exponent == -8 for s in sizes)
        # median notional ~ 200 USD (log-normal around it)
        notional = statistics.median(float(Decimal(t["price"]) * Decimal(t["size"])) for t in product_trades)
        assert 120 < notional < 330
        assert Counter(t["side"] for t in product_trades).keys() == {"buy", "sell"}


def test_arrivals_are_bursty_not_plain_poisson():
    # Count trades per second: Poisson has variance == mean; the Hawkes clustering makes it larger.
    config = SyntheticConfig(products=("BTC-USD",), rate=20, duration=1200, seed=9, branching=0.6)
    per_second = Counter(math.floor(f.ts - config.start_time) for f in synthetic_frames(config) if f.kind == "match")
    counts = [per_second.get(s, 0) for s in range(1200)]
    assert statistics.variance(counts) > 1.5 * statistics.mean(counts)
    plain = SyntheticConfig(products=("BTC-USD",), rate=20, duration=1200, seed=9, branching=0.0)
    per_second = Counter(math.floor(f.ts - plain.start_time) for f in synthetic_frames(plain) if f.kind == "match")
    counts = [per_second.get(s, 0) for s in range(1200)]
    assert 0.8 < statistics.variance(counts) / statistics.mean(counts) < 1.25


def test_source_feeds_the_rest_book_as_it_generates_and_starts_mid_stream():
    source = SyntheticSource(SyntheticConfig(rate=50, duration=10, seed=1))
    frames = list(source.frames(start=100))
    assert frames[0].index == 100
    book_ids = [t.trade_id for t in source.trade_book.trades("BTC-USD")]
    sent_ids = [t.trade_id for f in frames for t in f.trades if t.product_id == "BTC-USD"]
    assert set(sent_ids) < set(book_ids)  # skipped frames' trades are still on REST
    assert book_ids == list(range(book_ids[0], book_ids[-1] + 1))


def test_invalid_configs():
    with pytest.raises(ValueError):
        SyntheticConfig(rate=0)
    with pytest.raises(ValueError):
        SyntheticConfig(branching=1.0)
    with pytest.raises(ValueError):
        SyntheticConfig(products=("BTC-USD",), weights=(1.0, 2.0))
