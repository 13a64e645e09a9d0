"""Decimal ranges and precision at their extremes (issue 10, hole 11), through the job's own
transform (parse -> aggregate) and sink conversion (candle_table) on static DataFrames.

Every expected value is computed here with Python's exact decimals; nothing may be rounded except
vwap, once, at VWAP_SCALE decimals (and then it must keep >= 12 significant digits).
"""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import pytest

from cryptopipe.contracts import (
    MAX_TRADE_NOTIONAL,
    NOTIONAL_SCALE,
    VWAP_SCALE,
    ContractError,
    Trade,
    candle_arrow_schema,
    exact_price,
    exact_size,
)

pytestmark = [pytest.mark.components, pytest.mark.spark]

T0_US = 1_795_000_000_000_000 - 1_795_000_000_000_000 % 60_000_000  # a minute boundary

SMALLEST_PRICE = "0.000000000001"  # 1e-12, the finest price increment the contract holds
SMALLEST_SIZE = "0.00000001"  # 1e-8
LARGEST_PRICE = "9999999999.999999999999"  # just below 1e10
LARGEST_SIZE = "999999999999999.99999999"  # just below 1e15


def record(product: str, trade_id: int, price: str, size: str, second: int = 1) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "kind": "trade",
            "exchange": "coinbase",
            "product_id": product,
            "trade_id": trade_id,
            "price": price,
            "size": size,
            "side": "buy",
            "event_time_us": T0_US + second * 1_000_000,
            "receive_time_us": T0_US + second * 1_000_000,
            "feed": "exchange",
            "source": "ws",
            "sequence": trade_id,
            "last_trade_id": None,
        }
    ).encode()


def significant_digits(value: Decimal) -> int:
    return len(value.normalize().as_tuple().digits)


def exact_vwap(trades: list[tuple[str, str]]) -> Fraction:
    notional = sum(Fraction(Decimal(p)) * Fraction(Decimal(s)) for p, s in trades)
    return notional / sum(Fraction(Decimal(s)) for _, s in trades)


def candles(spark, values: list[bytes]) -> dict[str, dict]:
    from candles_job.sink import candle_table
    from candles_job.transforms import candles_for_window, parse_records

    frame = spark.createDataFrame([(v,) for v in values], "value binary")
    table = candle_table(candles_for_window(parse_records(frame), 60))
    assert table.schema.remove(table.schema.get_field_index("window")) == candle_arrow_schema()
    return {row["product_id"]: row for row in table.to_pylist()}


# (product, [(price, size)]): every trade fits; the candle must be exact
EXTREMES: dict[str, list[tuple[str, str]]] = {
    # the smallest notional there is (1e-20) and a sub-1e-8 price: vwap 2.333...e-12
    "TINY-USD": [(SMALLEST_PRICE, SMALLEST_SIZE), ("0.000000000003", "0.00000002")],
    # a micro-priced token: sizes near 1e15, notional just under the 1e12 bound
    "SHIB-USD": [("0.000999999999", LARGEST_SIZE), ("0.000012345678", "123456789012345.12345678")],
    # the largest price with a notional just under the bound, and with the smallest size
    "HIGH-USD": [(LARGEST_PRICE, "99.99999999"), (LARGEST_PRICE, SMALLEST_SIZE)],
    # the BAND-BTC minute shape: 8-decimal prices around 3.3e-4
    "BAND-BTC": [("0.00033417", "12.3"), ("0.00033418", "0.77"), ("0.00033416", "3.01")],
}

# trades that do not fit: each must be left out of its candle (and counted by the job, see
# test_job_bad_rows), never rounded into it
MISFITS: list[tuple[str, str]] = [
    ("0.0000000000001", "1"),  # 1e-13: finer than the price scale
    ("1", "0.000000001"),  # finer than the size scale
    ("10000000000", "1"),  # price 1e10
    ("1", "1000000000000000"),  # size 1e15
    ("1000000000", "1000"),  # notional exactly 1e12
    (LARGEST_PRICE, LARGEST_SIZE),  # notional ~1e25: 45 digits, past any Spark decimal
]


@pytest.fixture(scope="module")
def extreme_candles(spark) -> dict[str, dict]:
    values, trade_id = [], 1
    for product, trades in EXTREMES.items():
        for price, size in trades:
            values.append(record(product, trade_id, price, size))
            trade_id += 1
    for price, size in MISFITS:
        values.append(record("TINY-USD", trade_id, price, size, second=30))
        trade_id += 1
    return candles(spark, values)


@pytest.mark.parametrize("product", sorted(EXTREMES))
def test_extreme_candles_are_exact(extreme_candles, product) -> None:
    trades = EXTREMES[product]
    candle = extreme_candles[product]
    assert candle["trade_count"] == len(trades)
    assert candle["volume"] == sum(Decimal(s) for _, s in trades)
    assert Fraction(candle["notional"]) == sum(Fraction(Decimal(p)) * Fraction(Decimal(s)) for p, s in trades)
    assert candle["high"] == max(Decimal(p) for p, _ in trades)
    assert candle["low"] == min(Decimal(p) for p, _ in trades)
    # vwap: the exact quotient rounded once at VWAP_SCALE decimals, >= 12 significant digits
    exact = exact_vwap(trades)
    assert abs(Fraction(candle["vwap"]) - exact) <= Fraction(1, 2 * 10**VWAP_SCALE)
    assert significant_digits(candle["vwap"]) >= 12 or Fraction(candle["vwap"]) == exact


def test_the_smallest_vwap_keeps_its_digits(extreme_candles) -> None:
    # 7e-20 / 3e-8 = 2.333...e-12: 17 significant digits at 28 decimals
    assert extreme_candles["TINY-USD"]["vwap"] == Decimal("0.0000000000023333333333333333")


def test_trades_that_do_not_fit_are_left_out_not_rounded(extreme_candles) -> None:
    assert extreme_candles["TINY-USD"]["trade_count"] == len(EXTREMES["TINY-USD"])
    assert extreme_candles["TINY-USD"]["volume"] == Decimal("0.00000003")


def test_a_million_trades_at_the_notional_bound_in_one_minute_stay_exact(spark) -> None:
    """The worst case the notional type is sized for: 1e6 trades each just under MAX_TRADE_NOTIONAL
    in one window: the sum of their notional units (1e-20 each) is just under 1e38."""
    from pyspark.sql import functions as F  # noqa: N812 (the PySpark convention)

    from candles_job.sink import candle_table
    from candles_job.transforms import candles_for_window, parse_records

    count, price, size = 1_000_000, LARGEST_PRICE, "99.99999999"
    template = record("MAX-USD", 0, price, size).decode()
    head, tail = template.split('"trade_id": 0')
    rows = spark.range(1, count + 1).select(
        F.concat(F.lit(head), F.lit('"trade_id": '), F.col("id").cast("string"), F.lit(tail))
        .cast("binary")
        .alias("value")
    )
    (candle,) = candle_table(candles_for_window(parse_records(rows), 60)).to_pylist()
    one = Fraction(Decimal(price)) * Fraction(Decimal(size))  # exact (a Decimal product would round at 28 digits)
    assert one < MAX_TRADE_NOTIONAL
    assert candle["trade_count"] == count
    assert candle["volume"] == Decimal(size) * count
    assert Fraction(candle["notional"]) == one * count
    assert candle["notional"].as_tuple().exponent >= -NOTIONAL_SCALE
    assert candle["vwap"] == Decimal(price)


@pytest.mark.parametrize(
    ("price", "size"),
    [(SMALLEST_PRICE, SMALLEST_SIZE), (LARGEST_PRICE, "99.99999999"), ("0.000999999999", LARGEST_SIZE)],
)
def test_ingestion_takes_the_extremes(price, size) -> None:
    trade = Trade("X-USD", 1, exact_price("price", price), exact_size("size", size), "buy", 0, 0, "exchange")
    assert json.loads(trade.to_json())["price"] == price and json.loads(trade.to_json())["size"] == size


@pytest.mark.parametrize(("price", "size"), MISFITS)
def test_ingestion_refuses_what_the_job_rejects(price, size) -> None:
    with pytest.raises(ContractError):
        Trade("X-USD", 1, exact_price("price", price), exact_size("size", size), "buy", 0, 0, "exchange")
