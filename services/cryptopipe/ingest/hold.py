"""Release records to Kafka in event-time order around the trades ingestion still owes (issue 10,
holes 3 and 5). Pure: no threads, no clock, no Kafka; the caller locks and passes the time.

The Spark job's watermark is the largest event time it has seen, minus a delay, over every
partition of the topic. A trade that reaches Kafka after a record of a much later time is dropped as
late. Ingestion is the topic's only producer, so it can decide what Kafka holds: a record is
*released* (handed to the producer) only when its event time is at most ``slack`` later than the
earliest trade the service still **owes** -- one it knows exists but Kafka has not acknowledged:

* a pending gap (ids missing between two trades, being fetched over REST), a failed delivery being
  re-fetched: its ``floor`` is a time no later than any of its trades (the trade before the gap);
* a product not seen yet in this WebSocket session: until its first trade or heartbeat shows
  whether it has a gap, it may owe trades from its last known trade on (``expect``);
* a released record not yet acknowledged by Kafka (``acked``): a partition that lags holds back
  records later than its own by more than ``slack``.

Records that may not go yet are held, in memory, and released in event-time order (stable, so
arrival order among equal times) as soon as the earliest debt is paid. Held ticks are coalesced:
only a product's newest tick matters to the watermark. With ``slack`` below the job's watermark
delay, Kafka never holds a record the job would drop as late for an owed trade.

A hold is bounded by ``max_hold_us`` (how long records have been held without a break) and ``max_held`` (records
held): past either, every debt is given up -- ``expire`` returns the owed gaps so the caller
counts their ids as unfillable -- and everything held is released.
"""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
OwedKey = tuple[str, int, int]  # (product, first id, last id): a gap, or one failed delivery (first == last)
NO_DEBT = 1 << 62  # a floor later than any event time


@dataclass(frozen=True)
class Expired:
    """What one expiry gave up: the owed gaps (their ids become unfillable), the products never
    seen, and whether unacknowledged records were stopped holding others back."""

    cause: str  # "max_hold_s" | "max_held" | "settle" (a product not seen within settle time)
    gaps: tuple[OwedKey, ...] = ()
    unseen: tuple[str, ...] = ()
    unacked: int = 0


@dataclass(order=True)
class _Held(Generic[T]):
    event_time_us: int
    seq: int
    product: str = field(compare=False)
    trade_id: int = field(compare=False)  # -1 for a tick

    @property
    def is_tick(self) -> bool:
        return self.trade_id < 0

    record: T = field(compare=False)


class ReleaseOrder(Generic[T]):
    """Which records may be handed to the producer now, and in what order. Not thread-safe."""

    def __init__(self, *, slack_us: int, max_hold_us: int, max_held: int, settle_us: int) -> None:
        if slack_us < 0 or max_hold_us <= 0 or max_held <= 0 or settle_us <= 0:
            raise ValueError("slack must be >= 0 and max_hold, max_held and settle > 0")
        self._slack_us = slack_us
        self._max_hold_us = max_hold_us
        self._max_held = max_held
        self._settle_us = settle_us
        self._owed: dict[OwedKey, int] = {}  # -> floor (event time no later than any of its trades)
        self._incoming: collections.deque[tuple[OwedKey, int]] = collections.deque()  # owe() from any thread
        self._unseen: dict[str, tuple[int, int]] = {}  # product -> (floor, expected since)
        # per product, event times of released records not yet acknowledged, in release order (one
        # product is one partition, acknowledged in order)
        self._unacked: dict[str, collections.deque[tuple[int, int]]] = {}  # (event time, trade id | -1)
        self._heap: list[_Held[T]] = []
        self._blocked: dict[str, list[_Held[T]]] = {}  # trades of a product after an id it owes, until paid
        self._blocked_below: dict[str, int] = {}  # product -> its lowest owed id when its trades were blocked
        self._newest_tick: dict[str, int] = {}  # product -> seq of its held tick that counts
        self._held = 0  # records in the heap that will be released (coalesced ticks excluded)
        self._hold_since = 0  # when _held last went from 0 to 1
        self._seq = itertools.count()

    # -- debts --------------------------------------------------------------------------------------

    def owe(self, key: OwedKey, floor_us: int) -> None:
        """Trades ``key`` exist, none earlier than ``floor_us``, and Kafka does not have them yet.
        Safe from any thread without the caller's lock (a failed delivery is owed on the producer's
        sender thread just before it stops counting as unacknowledged)."""
        self._incoming.append((key, floor_us))

    def _absorb(self) -> None:
        incoming, owed = self._incoming, self._owed
        while incoming:
            key, floor_us = incoming.popleft()
            current = owed.get(key)
            owed[key] = floor_us if current is None else min(current, floor_us)

    def settle(self, product: str, first: int, last: int) -> None:
        """The ids first..last of ``product`` are paid: offered (their records are in the order
        now) or given up. Settles every debt inside that range."""
        self._absorb()
        for key in [k for k in self._owed if k[0] == product and first <= k[1] and k[2] <= last]:
            del self._owed[key]

    def expect(self, products: dict[str, int], now_us: int) -> None:
        """A new session: each product may owe trades from its floor on until it is seen."""
        for product, floor in products.items():
            self._unseen[product] = (floor, now_us)

    def waiting_for(self, product: str) -> bool:
        """Is ``product`` expected and not seen yet in this session?"""
        return product in self._unseen

    def seen(self, product: str) -> None:
        """The product's first trade or heartbeat of the session was handled (its gap, if any, owed)."""
        if self._unseen:
            self._unseen.pop(product, None)

    def acked(self, product: str) -> None:
        """Kafka finished one released record of ``product`` (acknowledged or failed: a failed trade
        comes back as a debt through ``owe``), or the producer refused it. One product's records
        complete in release order, so the oldest is the one finished."""
        # lock-free: called on the producer's sender thread (per record) while others may release;
        # an expiry may have emptied the queue meanwhile
        pending = self._unacked.get(product)
        if pending:  # (not contextlib.suppress: this runs once per record)
            try:
                pending.popleft()
            except IndexError:  # emptied between the test and the pop
                return

    def floor_us(self) -> int:
        """The earliest event time still owed, NO_DEBT if nothing is."""
        floor = NO_DEBT
        # unacknowledged first, owed second: a failed delivery is owed before it is finished, so
        # whichever moment this runs at, it sees the record as one or the other
        for pending in list(self._unacked.values()):  # (per record: kept to plain loops and compares)
            try:
                head = pending[0][0]
            except IndexError:  # nothing unacknowledged (or acknowledged meanwhile)
                continue
            if head < floor:
                floor = head
        if self._incoming:
            self._absorb()
        if self._owed:
            floor = min(floor, min(self._owed.values()))
        if self._unseen:
            floor = min(floor, min(f for f, _since in self._unseen.values()))
        return floor

    # -- records ------------------------------------------------------------------------------------

    def offer(self, record: T, product: str, event_time_us: int, trade_id: int | None, now_us: int) -> list[T]:
        """A record to produce (a tick when ``trade_id`` is None): returns what may be released now,
        in order (maybe nothing)."""
        if (
            not self._heap
            and event_time_us <= self.floor_us() + self._slack_us
            and (trade_id is None or trade_id < self._lowest_owed(product))
        ):
            self._track(product, event_time_us, -1 if trade_id is None else trade_id)
            return [record]
        is_tick = trade_id is None
        seq = next(self._seq)
        if is_tick:
            if product in self._newest_tick:
                self._held -= 1  # the older held tick of the product no longer counts
            self._newest_tick[product] = seq
        if not self._held:
            self._hold_since = now_us
        self._held += 1
        heapq.heappush(self._heap, _Held(event_time_us, seq, product, -1 if trade_id is None else trade_id, record))
        return self.release()

    def release(self) -> list[T]:
        """Held records that may go now, in event-time order."""
        self._unblock(self._lowest_owed)
        return self._take(self.floor_us() + self._slack_us)

    def drain(self) -> list[T]:
        """Everything held, in event-time order, whatever is owed (shutdown)."""
        self._unblock(lambda _product: NO_DEBT)
        return self._take(None)

    def _unblock(self, lowest_owed: Callable[[str], int]) -> None:
        # a product's trades below its lowest owed id go back to the order as soon as that id rises:
        # waiting for all its debts would let the other products move the watermark past them
        for product in list(self._blocked):
            lowest = lowest_owed(product)
            if lowest <= self._blocked_below[product]:
                continue  # no debt of the product paid since it was last looked at
            blocked = self._blocked.pop(product)
            del self._blocked_below[product]
            for held in blocked:
                if held.trade_id < lowest:
                    heapq.heappush(self._heap, held)
                else:
                    self._block(held, lowest)

    def _take(self, limit: int | None) -> list[T]:
        out: list[T] = []
        heap = self._heap
        while heap and (limit is None or heap[0].event_time_us <= limit):
            held = heapq.heappop(heap)
            if limit is not None and not held.is_tick:
                lowest = self._lowest_owed(held.product)
                if held.trade_id >= lowest:
                    # a product's trades never overtake its own owed ids, slack or not (exact
                    # resume); the other products' records go on past them
                    self._block(held, lowest)
                    continue
            if held.is_tick:
                if self._newest_tick.get(held.product) != held.seq:
                    continue  # coalesced: a newer tick of the product is held
                del self._newest_tick[held.product]
            self._held -= 1
            self._track(held.product, held.event_time_us, held.trade_id)
            if limit is not None:  # released and not acknowledged: now a debt itself
                limit = min(limit, held.event_time_us + self._slack_us)
            out.append(held.record)
        return out

    def _track(self, product: str, event_time_us: int, trade_id: int) -> None:
        pending = self._unacked.get(product)
        if pending is None:
            pending = self._unacked[product] = collections.deque()
        pending.append((event_time_us, trade_id))

    def _block(self, held: _Held[T], lowest_owed: int) -> None:
        self._blocked.setdefault(held.product, []).append(held)
        below = self._blocked_below.get(held.product)
        self._blocked_below[held.product] = lowest_owed if below is None else min(below, lowest_owed)

    def _lowest_owed(self, product: str) -> int:
        """The first id of the product's lowest owed range, NO_DEBT if it owes nothing."""
        if self._incoming:
            self._absorb()
        if not self._owed:
            return NO_DEBT
        return min((key[1] for key in self._owed if key[0] == product), default=NO_DEBT)

    def outstanding(self) -> dict[str, int]:
        """Per product, the lowest trade id owed, held, or released and not acknowledged: every id
        below it that the service knows of is in Kafka or counted (products with none are absent).
        Raises RuntimeError if an acknowledgement changed a queue meanwhile (ask again later)."""
        self._absorb()
        lowest: dict[str, int] = {}

        def note(product: str, trade_id: int) -> None:
            if trade_id >= 0 and trade_id < lowest.get(product, NO_DEBT):
                lowest[product] = trade_id

        for product, first, _last in self._owed:
            note(product, first)
        for product, pending in list(self._unacked.items()):
            for _time, trade_id in list(pending):
                note(product, trade_id)
        for held in self._heap:
            note(held.product, held.trade_id)
        for blocked in self._blocked.values():
            for held in blocked:
                note(held.product, held.trade_id)
        return lowest

    # -- bounds -------------------------------------------------------------------------------------

    @property
    def held(self) -> int:
        return self._held

    def held_age_us(self, now_us: int) -> int:
        """How long records have been held without a break (0 when nothing is held)."""
        oldest = self._oldest_held_at()
        return 0 if oldest is None else max(now_us - oldest, 0)

    def _oldest_held_at(self) -> int | None:
        """When the current hold began: records have been held without a break since then."""
        return self._hold_since if self._held else None

    def expire(self, now_us: int) -> Expired | None:
        """Give up what a bound no longer allows to wait for: products unseen past the settle time
        (they are then assumed to owe nothing), and -- past max_hold or max_held -- every debt."""
        self._absorb()
        cause = None
        oldest = self._oldest_held_at()
        if oldest is not None and (self._held > self._max_held or now_us - oldest > self._max_hold_us):
            cause = "max_held" if self._held > self._max_held else "max_hold_s"
        if cause is not None:
            gaps = tuple(sorted(self._owed))
            unseen = tuple(sorted(self._unseen))
            unacked = sum(len(p) for p in self._unacked.values())
            self._owed.clear()
            self._unseen.clear()
            for pending in self._unacked.values():
                pending.clear()
            return Expired(cause, gaps, unseen, unacked)
        late = tuple(sorted(p for p, (_f, since) in self._unseen.items() if now_us - since > self._settle_us))
        if late:
            for product in late:
                del self._unseen[product]
            return Expired("settle", unseen=late)
        return None

    def debts(self) -> dict[str, object]:
        """For logs: what the order is waiting for."""
        self._absorb()
        return {
            "owed": sorted(self._owed.items())[:10],
            "unseen": sorted(self._unseen),
            "unacked": sum(len(p) for p in self._unacked.values()),
        }
