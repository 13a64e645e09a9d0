"""cryptofeed 2.4.1 as a peer of the ingestion: its Coinbase (Advanced Trade) feed and its Kafka
backend, run as a user would, pointed at the replay server instead of Coinbase.

Run as a process of its own by peers.py (``python -m cryptopipe_dev.bench.cryptofeed_peer``): it
never returns; the benchmark stops it once every trade is in the topic.

What had to change to point it at the replay server, and nothing else:

- ``websocket_endpoints``: a subclass of its ``Coinbase`` feed lists the replay server's URL instead
  of ``wss://advanced-trade-ws.coinbase.com`` (same options: no compression); cryptofeed accepts only
  ``wss://`` addresses, so the endpoint says ``wss://127.0.0.1:PORT`` and its pre-connect hook
  (``_ws_authentication``, made for signing) returns the plain ``ws://`` URL it then connects to;
- the symbol table: released versions read ``/products`` from Coinbase's REST API with signed
  headers; it is pre-loaded instead (``Symbols.set``), so no REST call is made;
- placeholder API keys: its subscribe frames carry an HMAC signature made from ``key_id`` and
  ``key_secret`` (the replay server ignores them);
- its Kafka backend (``TradeKafka``, aiokafka underneath) writes to the benchmark's topic, one record
  per trade, keyed by product on the same partition the ingestion's key hashes to (its own
  ``topic``/``partition`` hooks; by default it makes one topic per symbol and keys every record
  ``"trades"``). Everything else is its default: JSON values (``numeric_type=float``), one
  ``send`` awaited per trade, aiokafka's default ``acks`` (1) unless ``--acks all``.
"""

from __future__ import annotations

import argparse
import json
import logging

from cryptofeed import FeedHandler
from cryptofeed.backends.kafka import TradeKafka
from cryptofeed.connection import WebsocketEndpoint
from cryptofeed.defines import COINBASE, TRADES
from cryptofeed.exchanges import Coinbase
from cryptofeed.symbols import Symbols

PLACEHOLDER_KEYS = {"key_id": "replay-placeholder-key", "key_secret": "replay-placeholder-secret"}


def replay_coinbase(url: str) -> type[Coinbase]:
    """Coinbase's feed with its WebSocket endpoint list pointed at ``url``."""

    if not url.startswith("ws://"):
        raise ValueError(f"expected the replay server's ws:// URL: {url}")
    # cryptofeed refuses any address but wss://, and the replay server speaks plain ws:// on loopback:
    # the endpoint names the replay server as wss://, and cryptofeed's pre-connect hook (called with
    # the address just before it connects, meant for signing) hands back the ws:// one.
    secure = "wss://" + url.removeprefix("ws://")

    class ReplayCoinbase(Coinbase):
        websocket_endpoints = [WebsocketEndpoint(secure, options={"compression": None}, authentication=True)]

        async def _ws_authentication(self, address: str, ws_options: dict) -> tuple[str, dict]:
            return url, ws_options

    return ReplayCoinbase


def preload_symbols(products: list[str]) -> None:
    """What ``Coinbase.symbol_mapping()`` would have read from ``/products``: normalized -> exchange."""
    Symbols.set(
        COINBASE,
        {p: p for p in products},
        {"tick_size": dict.fromkeys(products, "0.01"), "instrument_type": dict.fromkeys(products, "spot")},
    )


class BenchTradeKafka(TradeKafka):
    """One topic for every product, partition by product (as the ingestion's keyed records land)."""

    def __init__(self, *, bench_topic: str, partitions: dict[str, int], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._bench_topic = bench_topic
        self._partitions = partitions

    def topic(self, data: dict) -> str:
        return self._bench_topic

    def partition(self, data: dict) -> int | None:
        return self._partitions.get(data["symbol"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m cryptopipe_dev.bench.cryptofeed_peer")
    p.add_argument("--url", required=True, help="the replay server's WebSocket URL")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", required=True, help='JSON {"BTC-USD": 0, ...}')
    p.add_argument("--acks", default=None, help="aiokafka acks: omit for its default (1), or 0, 1, all")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    partitions = json.loads(args.partitions)
    products = sorted(partitions)
    preload_symbols(products)
    producer: dict[str, object] = {"bootstrap_servers": args.bootstrap}
    if args.acks is not None:
        producer["acks"] = args.acks if args.acks == "all" else int(args.acks)
    feed_class = replay_coinbase(args.url)
    handler = FeedHandler(config={"log": {"disabled": True}, "coinbase": PLACEHOLDER_KEYS})
    handler.add_feed(
        feed_class(
            symbols=products,
            channels=[TRADES],
            callbacks={TRADES: BenchTradeKafka(bench_topic=args.topic, partitions=partitions, **producer)},
            config={"coinbase": PLACEHOLDER_KEYS},
        )
    )
    handler.run()


if __name__ == "__main__":
    main()
