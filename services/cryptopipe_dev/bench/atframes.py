"""Synthetic Coinbase Advanced Trade frames in the shape of the recording, and a replay source that
holds them back until the benchmark says go.

The synthetic generator makes Exchange ``match`` frames; here their trades are packed into
``market_trades`` update envelopes the way the recorded feed packs them
(``advtrade_2026-08-09_BTC-ETH_no-l2.jsonl``: of 57 updates, 45 carry one trade, 8 two, and one
each 3, 4, 5 and 6; one product per event, newest first), plus one ``heartbeats`` frame per
market second. Same seed, same frames.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence

import orjson

from cryptopipe_dev.replay import SourceFrame, SyntheticConfig, TradeRef, synthetic_frames
from cryptopipe_dev.replay.dialect_advanced_trade import iso_nanos
from cryptopipe_dev.replay.source import TradeBook

PRODUCTS = ("BTC-USD", "ETH-USD")
# trades per market_trades update in the recording: (trades, updates)
RECORDED_BATCHES = ((1, 45), (2, 8), (3, 1), (4, 1), (5, 1), (6, 1))


def advanced_trade_frames(trades: int, *, rate: float = 10_000.0, seed: int = 7) -> list[SourceFrame]:
    """Exactly ``trades`` trades as Advanced Trade frames."""
    rng = random.Random(seed + 1)
    sizes = [n for n, _ in RECORDED_BATCHES]
    weights = [w for _, w in RECORDED_BATCHES]
    config = SyntheticConfig(products=PRODUCTS, rate=rate, duration=None, seed=seed)  # endless: cut at ``trades``
    pending: dict[str, list[TradeRef]] = {p: [] for p in PRODUCTS}
    want = {p: rng.choices(sizes, weights)[0] for p in PRODUCTS}
    out: list[SourceFrame] = []
    last_ts = 0.0
    counter = 0
    taken = 0

    def flush(product: str, ts: float) -> None:
        refs = pending[product]
        if refs:
            out.append(_market_trades(len(out), ts, refs))
            pending[product] = []
        want[product] = rng.choices(sizes, weights)[0]

    for frame in synthetic_frames(config):
        if taken == trades:
            break
        last_ts = frame.ts
        if frame.kind == "match":
            taken += 1
            ref = frame.trades[0]
            pending[ref.product_id].append(ref)
            if len(pending[ref.product_id]) >= want[ref.product_id]:
                flush(ref.product_id, frame.ts)
        elif frame.kind == "heartbeat" and frame.products[0] == PRODUCTS[0]:  # one per second, not per product
            counter += 1
            out.append(_heartbeats(len(out), frame.ts, counter))
    for product in PRODUCTS:
        flush(product, last_ts)
    return out


def count_trades(frames: Sequence[SourceFrame]) -> int:
    return sum(len(f.trades) for f in frames)


def _market_trades(index: int, ts: float, refs: list[TradeRef]) -> SourceFrame:
    items = [
        {
            "product_id": r.product_id,
            "trade_id": str(r.trade_id),
            "price": r.price,
            "size": r.size,
            "time": r.time,
            "side": r.side.upper(),
        }
        for r in reversed(refs)  # newest first, as the feed lists them
    ]
    raw = orjson.dumps(
        {
            "channel": "market_trades",
            "client_id": "",
            "timestamp": iso_nanos(ts),
            "sequence_num": 0,  # renumbered per connection by the replay server
            "events": [{"type": "update", "trades": items}],
        }
    ).decode()
    return SourceFrame(index, ts, raw, "market_trades", (refs[0].product_id,), tuple(refs))


def _heartbeats(index: int, ts: float, counter: int) -> SourceFrame:
    stamp = iso_nanos(ts)
    raw = orjson.dumps(
        {
            "channel": "heartbeats",
            "client_id": "",
            "timestamp": stamp,
            "sequence_num": 0,
            "events": [
                {
                    "current_time": f"{stamp[:10]} {stamp[11:19]}.000000000 +0000 UTC m=+{counter}.000000001",
                    "heartbeat_counter": counter,
                }
            ],
        }
    ).decode()
    return SourceFrame(index, ts, raw, "heartbeats")


class GatedSource:
    """A replay FrameSource over pre-made Advanced Trade frames whose stream starts only on ``go``:
    the client is connected and subscribed (``subscribed`` is set) and its start-up CPU is behind it
    before the clock starts. The wait blocks the replay server's loop, which has nothing else to do."""

    feed = "advanced_trade"
    ack_style = {"client_id": True}

    def __init__(self, frames: Sequence[SourceFrame], products: Sequence[str] = PRODUCTS) -> None:
        self._frames = frames
        self.products = tuple(products)
        self.start_ts = frames[0].ts if frames else 0.0
        self.trade_book = TradeBook(self.products, capacity=1)  # no REST backfill expected
        self.subscribed = threading.Event()
        self.go = threading.Event()

    @property
    def frame_count(self) -> int:
        return len(self._frames)

    def frames(self, start: int = 0) -> Iterator[SourceFrame]:
        self.subscribed.set()
        if not self.go.wait(120):
            raise TimeoutError("the benchmark never said go")
        return iter(self._frames[start:])
