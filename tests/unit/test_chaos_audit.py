"""The fault suite's judge (pure) and its scenario list."""

from __future__ import annotations

from decimal import Decimal, localcontext

from cryptopipe_dev.chaos.audit import judge
from cryptopipe_dev.chaos.scenarios import SCENARIOS
from cryptopipe_dev.reference import reference_candles

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in us


def market() -> dict:
    """BTC-USD ids 1..6 over two minutes, ETH-USD ids 10..11 in the first."""
    trades = {}
    for i in range(1, 7):
        trades[("BTC-USD", i)] = (T0 + i * 15_000_000, Decimal(100 + i), Decimal("0.5"))
    trades[("ETH-USD", 10)] = (T0 + 1_000_000, Decimal("20.5"), Decimal("1"))
    trades[("ETH-USD", 11)] = (T0 + 2_000_000, Decimal("20.7"), Decimal("3"))
    return trades


def lake(trades: dict) -> list[dict]:
    rows = reference_candles(trades, with_ids=True)
    for row in rows:
        row.pop("vwap_exact")
    return rows


def test_a_lake_equal_to_the_reference_holds() -> None:
    v = judge(market(), lake(market()))
    assert (v.sent, v.in_lake, v.lost_counted, v.lost_silent, v.duplicated) == (8, 8, 0, 0, 0)
    assert v.holds, v.notes


def test_a_missing_trade_is_silent_unless_logged_unfillable_or_dead_lettered() -> None:
    truth = market()
    without = {k: v for k, v in truth.items() if k != ("BTC-USD", 2)}
    silent = judge(truth, lake(without))
    assert (silent.lost_silent, silent.lost_counted, silent.holds) == (1, 0, False)
    assert silent.continuity_lost == 1  # the oracle sees it too: 3 ids, 2 trades in that minute
    counted = judge(truth, lake(without), unfillable={"BTC-USD": [(2, 2)]})
    assert (counted.lost_silent, counted.lost_counted, counted.holds) == (0, 1, True)
    dead = judge(truth, lake(without), dead_lettered=[("BTC-USD", 2)])
    assert (dead.lost_silent, dead.lost_counted, dead.holds) == (0, 1, True)


def test_a_whole_missing_candle_and_a_gap_between_candles_are_losses() -> None:
    truth = market()
    without = {k: v for k, v in truth.items() if k[0] != "ETH-USD" and k != ("BTC-USD", 4)}
    v = judge(truth, lake(without))
    assert (v.lost_silent, v.continuity_lost) == (3, 1)  # ETH-USD's candle is gone; BTC-USD id 4 between two
    assert not v.holds


def test_a_trade_counted_twice_and_a_second_row_are_duplicates() -> None:
    rows = lake(market())
    rows[0] = {**rows[0], "trade_count": rows[0]["trade_count"] + 1}
    v = judge(market(), rows)
    assert v.duplicated == 1 and not v.holds
    rows = [*lake(market()), lake(market())[-1]]
    v = judge(market(), rows)
    assert (v.duplicate_rows, v.duplicated) == (1, rows[-1]["trade_count"]) and not v.holds


def test_a_wrong_price_vwap_or_notional_is_a_wrong_candle() -> None:
    rows = lake(market())
    rows[0] = {**rows[0], "close": rows[0]["close"] + 1}
    assert judge(market(), rows).wrong_candles == 1
    # the lake keeps vwap at 28 places and the exact notional: one unit off in the last place is wrong
    with localcontext() as wide:
        wide.prec = 60  # the default 28 digits would round the one-unit change away
        rows = lake(market())
        rows[0] = {**rows[0], "vwap": rows[0]["vwap"] + Decimal("1e-28")}
        assert judge(market(), rows).wrong_candles == 1
        rows = lake(market())
        rows[0] = {**rows[0], "notional": rows[0]["notional"] + Decimal("1e-20")}
        assert judge(market(), rows).wrong_candles == 1
    assert judge(market(), lake(market())).holds


def test_the_scenarios_are_the_issues() -> None:
    assert [s.name for s in SCENARIOS] == [
        "ingestion-sigkill",
        "driver-sigkill",
        "driver-zombie",
        "broker-restart",
        "partition-unreachable",
        "websocket-drop",
        "websocket-stall",
        "websocket-malformed",
        "websocket-error-frame",
        "websocket-duplicate-snapshot",
        "websocket-out-of-order",
        "websocket-trade-id-gap",
        "rest-missing-id",
        "rest-slow",
        "future-timestamp",
    ]
    full = {s.name: s.runs for s in SCENARIOS}
    assert (full["ingestion-sigkill"], full["driver-sigkill"], full["broker-restart"], full["websocket-drop"]) == (
        20,
        10,
        5,
        10,
    )


def test_the_cli_parses_its_options_and_renders_n_a() -> None:
    from cryptopipe_dev.chaos.__main__ import parse_args, render
    from cryptopipe_dev.chaos.runner import Row

    args = parse_args(["--quick", "--only", "websocket-drop", "--timeout", "90"])
    assert (args.quick, args.only, args.timeout, args.speed) == (True, ["websocket-drop"], 90.0, 4.0)
    table = render([Row("websocket-drop", 1, 10, 10, 0, 0, 0, 0.5, True), Row("rest-slow", reason="not run: x")])
    lines = table.splitlines()
    assert lines[1].split()[:8] == ["websocket-drop", "1", "10", "10", "0", "0", "0", "0.5"]
    assert lines[2].split()[1:3] == ["n/a", "n/a"]
    assert "- rest-slow: not run: x" in table
