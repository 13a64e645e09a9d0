"""Synthetic Coinbase Exchange frames for long runs and benchmarks: realistic shape, clearly fake.

The recordings hold a few hundred real trades; soak tests and benchmarks need millions. This
generator yields Exchange ``matches`` + ``heartbeat`` frames lazily (a million-trade run never
builds a list), deterministic for a seed:

- arrivals: one Hawkes process per product (exponential kernel, simulated by Ogata thinning):
  trades trigger more trades, so the tape has bursts and lulls like a real one, while the long-run
  mean rate is ``rate`` (split across products by ``weights``);
- prices: a random walk on the product's tick (BTC-USD and ETH-USD: 0.01), step size set by a
  daily volatility;
- sizes: log-normal around ``median_notional`` / price, 8 decimals like Coinbase's;
- ids: one ``last_match`` per product first, then ``match`` frames with trade_id rising by exactly
  1 per product; ``sequence`` rises with gaps, as the real one does (book events share it);
- one ``heartbeat`` per product per second carrying ``last_trade_id``.

Every frame says it is synthetic: ``"synthetic": true`` and order ids prefixed ``synthetic-``
(the Exchange parser ignores fields it does not read; a test checks it).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections.abc import Iterator
from decimal import Decimal

import orjson

from cryptopipe.coinbase.frames import FEED_URLS
from cryptopipe.contracts import us_to_iso
from cryptopipe_dev.replay.source import SourceFrame, TradeBook, TradeRef

DEFAULT_START_TIME = 1_767_225_600.0  # 2026-01-01T00:00:00Z: fixed, so that runs are reproducible
DEFAULT_TICK = "0.01"
START_PRICES = {"BTC-USD": "65000.00", "ETH-USD": "1900.00"}
_SECONDS_PER_DAY = 86_400.0


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    rate: float = 10.0  # mean trades per second, all products together
    duration: float | None = 60.0  # seconds of market time; None: endless
    seed: int = 0
    start_time: float = DEFAULT_START_TIME  # unix seconds of the first frame
    weights: tuple[float, ...] | None = None  # share of the rate per product; None: equal
    # Hawkes: the share of trades triggered by earlier trades (0 = plain Poisson, < 1 required)
    # and how fast a burst's excitation decays (per second).
    branching: float = 0.5
    decay: float = 2.0
    tick_sizes: dict[str, str] = dataclasses.field(default_factory=dict)  # default 0.01
    start_prices: dict[str, str] = dataclasses.field(default_factory=dict)  # default START_PRICES, else 100
    daily_volatility: float = 0.03
    median_notional: float = 200.0  # quote currency per trade, median
    size_sigma: float = 1.3  # log-normal sigma of sizes
    heartbeat_interval: float = 1.0
    rest_capacity: int = 200_000  # trades per product kept for the REST endpoint

    def __post_init__(self) -> None:
        if not self.products:
            raise ValueError("at least one product is needed")
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0: {self.rate}")
        if not 0 <= self.branching < 1:
            raise ValueError(f"branching must be within [0, 1): {self.branching}")
        if self.weights is not None and (len(self.weights) != len(self.products) or min(self.weights) <= 0):
            raise ValueError("weights need one positive number per product")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration must be > 0: {self.duration}")

    def tick(self, product: str) -> Decimal:
        return Decimal(self.tick_sizes.get(product, DEFAULT_TICK))

    def start_price(self, product: str) -> Decimal:
        return Decimal(self.start_prices.get(product, START_PRICES.get(product, "100.00")))


class _Product:
    """One product's market: its Hawkes clock, price walk and id counters."""

    def __init__(self, config: SyntheticConfig, index: int, share: float, rng: random.Random) -> None:
        self.name = config.products[index]
        self.rng = rng
        self.rate = config.rate * share
        self.mu = self.rate * (1 - config.branching)  # baseline; the mean rate is mu / (1 - branching)
        self.alpha = config.branching * config.decay
        self.decay = config.decay
        self.excitation = 0.0
        self.time = 0.0  # seconds since start
        self.tick = config.tick(self.name)
        self.tick_float = float(self.tick)
        # ticks of 10^-d (0.01, 0.00001, 1) format by integer arithmetic: ~5x faster than Decimal
        exponent = self.tick.normalize().as_tuple()
        self.decimals = -exponent.exponent if exponent.digits == (1,) and exponent.exponent <= 0 else None
        self.ticks = int(config.start_price(self.name) / self.tick)
        per_trade_vol = config.daily_volatility / math.sqrt(_SECONDS_PER_DAY * self.rate)
        self.step_ticks = max(1.0, float(self.ticks) * per_trade_vol)
        self.median_notional = config.median_notional
        self.size_sigma = config.size_sigma
        self.trade_id = 100_000_000 * (index + 1)
        self.sequence = 1_000_000_000 * (index + 1)

    def next_arrival(self) -> float:
        """Ogata thinning: between events the intensity only decays, so mu + excitation now bounds it."""
        rng = self.rng
        while True:
            bound = self.mu + self.excitation
            wait = rng.expovariate(bound)
            self.time += wait
            self.excitation *= math.exp(-self.decay * wait)
            if rng.random() * bound <= self.mu + self.excitation:
                self.excitation += self.alpha
                return self.time

    def trade(self) -> tuple[int, str, str, str, int]:
        rng = self.rng
        self.ticks = max(1, self.ticks + round(rng.gauss(0.0, self.step_ticks)))
        price = self._price_text()
        median_size = self.median_notional / (self.ticks * self.tick_float)
        size = max(1e-8, round(rng.lognormvariate(math.log(median_size), self.size_sigma), 8))
        self.trade_id += 1
        self.sequence += 1 + int(rng.expovariate(1 / 20))  # book events between trades share the sequence
        side = "buy" if rng.random() < 0.5 else "sell"
        return self.trade_id, price, f"{size:.8f}", side, self.sequence

    def _price_text(self) -> str:
        if self.decimals is None:  # a tick like 0.05: exact Decimal arithmetic
            return format(self.tick * self.ticks, "f")
        if self.decimals == 0:
            return str(self.ticks)
        whole, frac = divmod(self.ticks, 10**self.decimals)
        return f"{whole}.{frac:0{self.decimals}d}"

    price_text = _price_text


class _IsoClock:
    """us -> "2026-01-01T00:00:00.060047Z"; the date part is formatted once per second (hot path)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, at_us: int) -> str:
        second, micros = divmod(at_us, 1_000_000)
        if second != self._second:
            self._second, self._prefix = second, us_to_iso(second * 1_000_000)[:19]
        return f"{self._prefix}.{micros:06d}Z"


def synthetic_frames(config: SyntheticConfig) -> Iterator[SourceFrame]:
    """Frames in time order, lazily. Same config, same frames."""
    rng = random.Random(config.seed)
    weights = config.weights or tuple(1.0 for _ in config.products)
    total = sum(weights)
    products = [_Product(config, i, w / total, rng) for i, w in enumerate(weights)]
    start_us = round(config.start_time * 1e6)
    end = math.inf if config.duration is None else config.duration
    index = 0
    ordinal = 0

    iso = _IsoClock()

    def order_id() -> str:
        h = f"{rng.getrandbits(128):032x}"
        return f"synthetic-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    # What a subscribe to matches starts with: the latest trade per product.
    for p in products:
        p.trade_id += 1
        ref = TradeRef(p.name, p.trade_id, us_to_iso(start_us), p.price_text(), "0.01000000", "sell", snapshot=True)
        yield _match_frame(index, start_us, "last_match", ref, p.sequence, order_id(), order_id())
        index += 1

    arrivals = [(p.next_arrival(), i) for i, p in enumerate(products)]
    heapq.heapify(arrivals)
    next_heartbeat = config.heartbeat_interval
    while True:
        t, i = arrivals[0]
        if next_heartbeat <= t:
            if next_heartbeat > end:
                return
            at_us = start_us + round(next_heartbeat * 1e6)
            for p in products:
                yield _heartbeat_frame(index, at_us, iso(at_us), p)
                index += 1
            next_heartbeat += config.heartbeat_interval
            continue
        if t > end:
            return
        p = products[i]
        trade_id, price, size, side, sequence = p.trade()
        at_us = start_us + round(t * 1e6)
        ref = TradeRef(p.name, trade_id, iso(at_us), price, size, side, ordinal=ordinal)
        ordinal += 1
        yield _match_frame(index, at_us, "match", ref, sequence, order_id(), order_id())
        index += 1
        heapq.heapreplace(arrivals, (p.next_arrival(), i))


def _match_frame(
    index: int, at_us: int, kind: str, ref: TradeRef, sequence: int, maker: str, taker: str
) -> SourceFrame:
    raw = orjson.dumps(
        {
            "type": kind,
            "trade_id": ref.trade_id,
            "maker_order_id": maker,
            "taker_order_id": taker,
            "side": ref.side,
            "size": ref.size,
            "price": ref.price,
            "product_id": ref.product_id,
            "sequence": sequence,
            "time": ref.time,
            "synthetic": True,
        }
    ).decode()
    return SourceFrame(index, at_us / 1e6, raw, kind, (ref.product_id,), (ref,), sequence)


def _heartbeat_frame(index: int, at_us: int, time_text: str, p: _Product) -> SourceFrame:
    raw = orjson.dumps(
        {
            "type": "heartbeat",
            "last_trade_id": p.trade_id,
            "product_id": p.name,
            "sequence": p.sequence,
            "time": time_text,
            "synthetic": True,
        }
    ).decode()
    return SourceFrame(index, at_us / 1e6, raw, "heartbeat", (p.name,), (), p.sequence, p.trade_id)


class SyntheticSource:
    """A FrameSource over ``synthetic_frames``. The REST book fills as frames are generated (the
    market has not "happened" further than any connection has streamed), bounded by
    ``rest_capacity`` trades per product."""

    feed = "exchange"
    ack_style = {"account_ids": True, "client_id": False}

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self.products = tuple(config.products)
        self.start_ts = config.start_time
        self.trade_book = TradeBook(self.products, capacity=config.rest_capacity)

    @property
    def frame_count(self) -> None:
        return None  # not known until generated

    def frames(self, start: int = 0) -> Iterator[SourceFrame]:
        book = self.trade_book
        for frame in synthetic_frames(self.config):
            for trade in frame.trades:
                book.add(trade)
            if frame.index >= start:
                yield frame


def replay_rows(config: SyntheticConfig) -> Iterator[bytes]:
    """The frames as replay rows (the derived/*.jsonl format), one JSON line each."""
    url = FEED_URLS["exchange"]
    for frame in synthetic_frames(config):
        yield orjson.dumps({"ts": frame.ts, "dir": "recv", "url": url, "data": frame.raw})
