"""Missed-trade detection from trade ids.

Coinbase numbers each product's trades 1, 2, 3, ... and the Exchange feed delivers every one of
them: trade ids rise by exactly 1 per product. A trade whose id is more than one past the last
seen id therefore proves that trades were missed, and an Exchange heartbeat whose
``last_trade_id`` is past the last seen id proves it too (even on a product that then stays
quiet). The missing ids are exactly the range to fetch from REST (rest.fetch_trades_range).

Advanced Trade's ids come from the same per-product counter (contiguous in the recordings), so
the same rule applies there; its heartbeats carry no trade id, so a gap on that feed is found
only when the next trade of the product arrives.
"""

from __future__ import annotations

import dataclasses

from cryptopipe.contracts import Tick, Trade


@dataclasses.dataclass(frozen=True, slots=True)
class Gap:
    """Trade ids ``first_missing..last_missing`` (inclusive) of ``product_id`` were never received."""

    product_id: str
    first_missing: int
    last_missing: int


class GapTracker:
    """Remembers the highest trade id seen per product and reports each gap once.

    Feed records in arrival order. The first trade (or heartbeat) of a product only sets the
    baseline: what happened before ingestion started is not a gap of this session.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def last_trade_id(self, product_id: str) -> int | None:
        return self._last.get(product_id)

    def observe_trade(self, trade: Trade) -> Gap | None:
        last = self._last.get(trade.product_id)
        if last is not None and trade.trade_id <= last:
            # A duplicate (last_match, an Advanced Trade snapshot) or a trade arriving after the
            # gap it belongs to was reported (e.g. from REST backfill): not news, and the
            # high-water mark must not move back or the gap beyond it would be reported again.
            return None
        self._last[trade.product_id] = trade.trade_id
        if last is not None and trade.trade_id > last + 1:
            return Gap(trade.product_id, last + 1, trade.trade_id - 1)
        return None

    def observe_tick(self, tick: Tick) -> Gap | None:
        announced = tick.last_trade_id
        # None: an Advanced Trade heartbeat. 0: a product that has never traded (sandbox).
        if announced is None or announced <= 0:
            return None
        last = self._last.get(tick.product_id)
        if last is not None and announced <= last:
            return None
        # Move the high-water mark to the announced id, so that the trades of this gap, when
        # they arrive late or from backfill, are not taken for a second gap.
        self._last[tick.product_id] = announced
        if last is None:
            return None
        return Gap(tick.product_id, last + 1, announced)
