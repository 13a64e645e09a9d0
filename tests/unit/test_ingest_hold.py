"""The release order (ingest/hold.py): nothing reaches Kafka more than ``slack`` later than a trade
still owed; held records go out in event-time order; bounds give the debts up, counted by the caller."""

from __future__ import annotations

import itertools

import pytest

from cryptopipe.ingest.hold import ReleaseOrder

S = 1_000_000  # one second in µs
IDS = itertools.count(1)  # trade ids (their order only matters per product)


def order(slack_s: float = 1, max_hold_s: float = 60, max_held: int = 1000, settle_s: float = 10) -> ReleaseOrder[str]:
    return ReleaseOrder(
        slack_us=round(slack_s * S), max_hold_us=round(max_hold_s * S), max_held=max_held, settle_us=round(settle_s * S)
    )


def ack_all(o: ReleaseOrder[str], released: list[str]) -> None:
    for name in released:
        o.acked(name.split("@")[0])


def test_without_debts_records_pass_at_once() -> None:
    o = order()
    assert o.offer("A@10", "A", 10 * S, next(IDS), 0) == ["A@10"]
    assert o.offer("B@11", "B", 11 * S, next(IDS), 0) == ["B@11"]
    assert o.held == 0


def test_records_later_than_an_owed_gap_wait_and_follow_its_trades_in_event_time_order() -> None:
    o = order(slack_s=1)
    o.owe(("A", 101, 104), 100 * S)  # A's trades 101..104 are no earlier than t=100
    out = o.offer("B@100.5", "B", round(100.5 * S), next(IDS), 0)  # within the slack: not held
    assert out == ["B@100.5"]
    ack_all(o, out)
    assert o.offer("B@200", "B", 200 * S, next(IDS), 0) == []
    assert o.offer("A@201", "A", 201 * S, next(IDS), 0) == []
    assert o.offer("tickB@202", "B", 202 * S, None, 0) == []
    assert o.held == 3
    # the backfill offers the gap's trades (the order holds them too: records of the gap are later
    # than its floor), then settles it: everything goes, by event time
    for t in (150, 120, 180):
        assert o.offer(f"A@{t}", "A", t * S, next(IDS), 0) == []
    o.settle("A", 101, 104)
    out = o.release()
    # released and unacknowledged records are debts as well: the first step stops at 120 + slack
    assert out == ["A@120"]
    steps = [out]
    while o.held:
        ack_all(o, steps[-1])
        steps.append(o.release())
    assert [r for step in steps for r in step] == ["A@120", "A@150", "A@180", "B@200", "A@201", "tickB@202"]


def test_a_lagging_unacknowledged_record_holds_back_records_later_than_it_by_more_than_the_slack() -> None:
    o = order(slack_s=2)
    assert o.offer("A@10", "A", 10 * S, next(IDS), 0) == ["A@10"]  # never acknowledged yet: A's partition lags
    assert o.offer("B@11", "B", 11 * S, next(IDS), 0) == ["B@11"]
    o.acked("B")
    assert o.offer("B@13", "B", 13 * S, next(IDS), 0) == []  # 3 s past A@10
    o.acked("A")
    assert o.release() == ["B@13"]


def test_a_failed_delivery_is_owed_before_it_stops_counting_as_unacknowledged() -> None:
    o = order(slack_s=0)
    assert o.offer("A@10", "A", 10 * S, next(IDS), 0) == ["A@10"]
    o.owe(("A", 7, 7), 10 * S)  # Kafka failed it: the sender thread owes it first...
    o.acked("A")  # ...then finishes it
    assert o.offer("B@11", "B", 11 * S, next(IDS), 0) == []
    o.settle("A", 7, 7)  # refetched over REST and offered
    assert o.release() == ["B@11"]


def test_held_ticks_are_coalesced_to_the_newest_per_product() -> None:
    o = order(slack_s=0)
    o.owe(("A", 5, 5), 1 * S)
    for t in (2, 3, 4):
        assert o.offer(f"tickB@{t}", "B", t * S, None, 0) == []
    assert o.held == 1
    o.settle("A", 5, 5)
    assert o.release() == ["tickB@4"]


def test_after_connecting_a_product_not_seen_yet_may_owe_trades_from_its_newest_known_one() -> None:
    o = order(slack_s=0, settle_s=5)
    o.expect({"A": 100 * S, "B": 100 * S}, now_us=0)
    assert o.offer("B@400", "B", 400 * S, next(IDS), 0) == []  # B's first frame after a 5-minute outage
    o.seen("B")
    assert o.waiting_for("A")
    o.owe(("A", 11, 20), 100 * S)  # A's first frame reveals its gap, then A is seen
    o.seen("A")
    assert o.release() == []
    o.settle("A", 11, 20)
    assert o.release() == ["B@400"]


def test_a_product_never_seen_is_given_up_after_the_settle_time() -> None:
    o = order(slack_s=0, settle_s=5)
    o.expect({"A": 100 * S}, now_us=0)
    assert o.offer("B@400", "B", 400 * S, next(IDS), 0) == []
    assert o.expire(4 * S) is None
    expired = o.expire(6 * S)
    assert expired is not None and expired.cause == "settle" and expired.unseen == ("A",) and not expired.gaps
    assert o.release() == ["B@400"]


@pytest.mark.parametrize(("max_held", "cause"), [(1000, "max_hold_s"), (2, "max_held")])
def test_a_hold_past_its_bound_gives_up_every_debt_and_releases(max_held: int, cause: str) -> None:
    o = order(slack_s=0, max_hold_s=60, max_held=max_held)
    o.owe(("A", 101, 104), 100 * S)
    o.owe(("B", 7, 7), 150 * S)
    for t in (200, 201):
        o.offer(f"C@{t}", "C", t * S, next(IDS), 0)
    assert o.expire(59 * S) is None  # 2 held, for 59 s: within both bounds
    o.offer("C@202", "C", 202 * S, next(IDS), 0)
    expired = o.expire(61 * S)
    assert expired is not None and expired.cause == cause
    assert expired.gaps == (("A", 101, 104), ("B", 7, 7))
    out = o.release()
    while o.held:  # released in slack-sized steps, each waiting for the previous one's acknowledgement
        ack_all(o, out[-1:])
        out += o.release()
    assert out == ["C@200", "C@201", "C@202"]
    assert o.expire(62 * S) is None


def test_settle_only_pays_debts_inside_the_range() -> None:
    o = order(slack_s=0)
    o.owe(("A", 5, 5), 1 * S)
    o.owe(("A", 9, 9), 2 * S)
    o.settle("A", 4, 8)
    assert o.floor_us() == 2 * S


def test_drain_releases_everything_in_event_time_order() -> None:
    o = order(slack_s=0)
    o.owe(("A", 5, 5), 1 * S)
    for t in (9, 3, 7):
        o.offer(f"B@{t}", "B", t * S, next(IDS), 0)
    assert o.drain() == ["B@3", "B@7", "B@9"]


def test_a_products_trades_never_overtake_its_own_owed_ids_even_within_the_slack() -> None:
    o = order(slack_s=5)
    o.owe(("A", 101, 101), 100 * S)
    assert o.offer("A@100.2", "A", round(100.2 * S), 102, 0) == []
    assert o.offer("B@100.3", "B", round(100.3 * S), 7, 0) == ["B@100.3"]  # another product: within the slack
    assert o.outstanding() == {"A": 101, "B": 7}  # A owed (and held), B released, not acknowledged
    o.offer("A@100.1", "A", round(100.1 * S), 101, 0)  # the backfill's trade
    o.settle("A", 101, 101)
    assert o.release() == ["A@100.1", "A@100.2"]
    assert o.outstanding() == {"A": 101, "B": 7}  # released, not acknowledged yet
    o.acked("A")
    o.acked("B")
    assert o.outstanding() == {"A": 102}
    o.acked("A")
    assert o.outstanding() == {}


def test_a_paid_gap_releases_the_products_trades_below_its_next_owed_id() -> None:
    # rest-slow (docs/reliability.md): a busy product owes one gap after another while REST is slow;
    # its trades between two gaps must go once the first is paid, not wait for every later one, or
    # the other products' records move the job's watermark past them (157 rows dropped as late)
    o = order(slack_s=1)
    o.owe(("A", 15, 15), 100 * S)
    assert o.offer("A@101", "A", 101 * S, 16, 0) == []  # after the owed id 15: held
    o.owe(("A", 64, 64), 150 * S)  # the next gap, found while 15 is still fetched
    assert o.offer("A@151", "A", 151 * S, 65, 0) == []
    assert o.offer("A@100.5", "A", round(100.5 * S), 15, 0) == []  # the backfill's trade, before settle
    o.settle("A", 15, 15)
    released = o.release()
    assert released == ["A@100.5", "A@101"]  # id 64 still owed: A@151 waits for it
    ack_all(o, released)
    assert o.offer("B@140", "B", 140 * S, 7, 0) == ["B@140"]  # the floor is 64's now: B goes on
    assert o.outstanding() == {"A": 64, "B": 7}
