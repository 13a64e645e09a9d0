"""Coinbase Exchange: recorded frames go out verbatim; a resumed ``matches`` subscription starts with
one ``last_match`` per product, as the real feed's does; heartbeats carry each product's last trade
id and sequence."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import orjson

from cryptopipe_dev.replay.source import SourceFrame
from cryptopipe_dev.replay.subscriptions import Subscriptions


class ExchangeDialect:
    def __init__(self, subs: Subscriptions, ack_style: Mapping[str, bool]) -> None:
        self.subs = subs
        self.ack_style = ack_style
        self.last_trade_id: dict[str, int] = {}
        self.sequence: dict[str, int] = {}

    def ack(self, now_ts: float) -> str:
        return orjson.dumps(self.subs.exchange_ack(self.ack_style.get("account_ids", True))).decode()

    def select(self, frame: SourceFrame, withheld: frozenset[int]) -> str | None:
        return self.subs.select(frame, withheld)  # type: ignore[return-value]  # Exchange selection is always raw text

    def resumed(self, last_match: Mapping[str, SourceFrame]) -> Iterator[tuple[str, SourceFrame]]:
        # a resumed replay starts mid-recording: the latest match before its start stands in
        if "matches" not in self.subs.channels:
            return
        for product in self.subs.channels["matches"]:
            frame = last_match.get(product)
            if frame is not None:
                yield frame.raw.replace('"type":"match"', '"type":"last_match"', 1), frame

    def observe(self, frame: SourceFrame) -> None:
        for trade in frame.trades:
            if trade.trade_id > self.last_trade_id.get(trade.product_id, 0):
                self.last_trade_id[trade.product_id] = trade.trade_id
        if frame.products and frame.sequence is not None:
            self.sequence[frame.products[0]] = frame.sequence
        if frame.last_trade_id is not None and frame.products:
            product = frame.products[0]
            self.last_trade_id[product] = max(self.last_trade_id.get(product, 0), frame.last_trade_id)

    def end_heartbeats(self, second: int) -> list[str]:
        return [
            orjson.dumps(
                {
                    "type": "heartbeat",
                    "last_trade_id": self.last_trade_id.get(product, 0),
                    "product_id": product,
                    "sequence": self.sequence.get(product, 0),
                    "time": datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                }
            ).decode()
            for product in self.subs.channels.get("heartbeat", ())
        ]
