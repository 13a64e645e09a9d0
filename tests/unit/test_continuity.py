"""The trade-id continuity audit's pure core: every missing id range, lost vs counted unfillable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptopipe.monitor.continuity import IdGap, find_id_gaps, merge_ranges, totals

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def candle(product: str, minute: int, first: int, last: int, count: int | None = None) -> dict:
    return {
        "product_id": product,
        "window_start": T0 + timedelta(minutes=minute),
        "first_trade_id": first,
        "last_trade_id": last,
        "trade_count": last - first + 1 if count is None else count,
    }


def test_consecutive_candles_are_clean_in_any_order_and_across_quiet_minutes() -> None:
    rows = [candle("BTC-USD", 5, 21, 30), candle("BTC-USD", 0, 1, 10), candle("BTC-USD", 1, 11, 20)]
    rows.append(candle("ETH-USD", 0, 500, 500))
    rows.append(candle("ETH-USD", 9, 501, 503))  # eight quiet minutes: no trade id was skipped
    assert find_id_gaps(rows) == []


def test_a_range_between_two_candles_is_lost_when_nobody_counted_it() -> None:
    rows = [candle("BTC-USD", 0, 1, 10), candle("BTC-USD", 1, 14, 20)]
    assert find_id_gaps(rows) == [IdGap("BTC-USD", "lost", "between", 11, 13, 3, T0 + timedelta(minutes=1))]


def test_counted_unfillable_ids_split_a_gap_into_unfillable_and_lost() -> None:
    rows = [candle("BTC-USD", 0, 1, 10), candle("BTC-USD", 1, 21, 30), candle("ETH-USD", 0, 1, 1)]
    rows.append(candle("ETH-USD", 1, 3, 3))
    gaps = find_id_gaps(rows, unfillable={"BTC-USD": [(12, 13), (14, 15), (40, 50)], "ETH-USD": [(2, 2)]})
    at = T0 + timedelta(minutes=1)
    assert gaps == [
        IdGap("BTC-USD", "lost", "between", 11, 11, 1, at),
        IdGap("BTC-USD", "unfillable", "between", 12, 15, 4, at),
        IdGap("BTC-USD", "lost", "between", 16, 20, 5, at),
        IdGap("ETH-USD", "unfillable", "between", 2, 2, 1, at),
    ]
    assert totals(gaps) == {
        "BTC-USD": {"lost": 6, "unfillable": 4, "duplicated": 0},
        "ETH-USD": {"lost": 0, "unfillable": 1, "duplicated": 0},
    }


def test_a_candle_with_fewer_trades_than_ids_has_a_gap_inside() -> None:
    rows = [candle("BTC-USD", 0, 1, 10, count=7), candle("BTC-USD", 1, 11, 20)]
    assert find_id_gaps(rows) == [IdGap("BTC-USD", "lost", "inside", 1, 10, 3, T0)]
    # two of the three are known unfillable: at most that many are taken as counted
    assert find_id_gaps(rows, unfillable={"BTC-USD": [(4, 5)]}) == [
        IdGap("BTC-USD", "unfillable", "inside", 1, 10, 2, T0),
        IdGap("BTC-USD", "lost", "inside", 1, 10, 1, T0),
    ]


def test_a_candle_with_more_trades_than_ids_counted_some_twice() -> None:
    gaps = find_id_gaps([candle("BTC-USD", 0, 1, 10, count=12)])
    assert gaps == [IdGap("BTC-USD", "duplicated", "inside", 1, 10, 2, T0)]
    assert "counted twice" in gaps[0].message()


def test_overlapping_id_ranges_of_neighbour_candles_are_not_a_gap() -> None:
    # a trade stamped a little out of order lands in the next minute: ids interleave, none missing
    rows = [candle("BTC-USD", 0, 1, 10, count=9), candle("BTC-USD", 1, 9, 20, count=11)]
    assert find_id_gaps(rows) == []
    # judged together: 20 ids, 19 trades
    rows[1]["trade_count"] = 10
    assert find_id_gaps(rows) == [IdGap("BTC-USD", "lost", "inside", 1, 20, 1, T0)]


def test_merge_ranges() -> None:
    assert merge_ranges([(5, 7), (1, 2), (3, 3), (10, 9), (6, 12)]) == [(1, 3), (5, 12)]


def test_candles_without_ids_are_not_audited() -> None:
    row = candle("BTC-USD", 0, 1, 1)
    row["first_trade_id"] = None
    assert find_id_gaps([row, candle("BTC-USD", 1, 5, 5)]) == []
