"""Trade.to_json builds the record from cached fragments: byte for byte what dumping the record's
dict with orjson writes (the contract's definition, spelled out here again), for every odd value."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import orjson
import pytest

from cryptopipe.contracts import Trade, decode_record


def reference_bytes(t: Trade) -> bytes:
    """The record as the contract defines it (Trade.to_json before the fragments)."""
    return orjson.dumps(
        {
            "v": 1,
            "kind": "trade",
            "exchange": t.exchange,
            "product_id": t.product_id,
            "trade_id": t.trade_id,
            "price": format(t.price, "f"),
            "size": format(t.size, "f"),
            "side": t.side,
            "event_time_us": t.event_time_us,
            "receive_time_us": t.receive_time_us,
            "feed": t.feed,
            "source": t.source,
            "sequence": t.sequence,
            "last_trade_id": None,
        }
    )


def outcome(produce: Any) -> tuple[str, object]:
    try:
        return "ok", produce()
    except orjson.JSONEncodeError as exc:  # the same failure either way (an int orjson cannot write)
        return type(exc).__name__, str(exc)


DECIMALS = [
    "63514.6",
    "0.00000001",
    "1E-8",
    "1.500000000",
    "1E+2",
    "100",
    "0.1",
    "0.000001",
    "0.0000001",
    "123456789.123456789012",
    "9999999.99999999",
    "0.000000000001",
]
PRODUCTS = ["BTC-USD", 'QU"OTE-USD', "BACK\\SLASH", "ÉTH-€", "NEW\nLINE", "\x00\x1f", "\u2028", "😀-USD", ""]
INTS = [0, 1, -1, 1052119289, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]


def trade(**overrides: Any) -> Trade:
    fields: dict[str, Any] = {
        "product_id": "BTC-USD",
        "trade_id": 1052119289,
        "price": Decimal("63514.6"),
        "size": Decimal("0.2"),
        "side": "sell",
        "event_time_us": 1_783_465_097_164_892,
        "receive_time_us": 1_783_465_097_165_000,
        "feed": "exchange",
        "sequence": 132235026010,
    }
    fields.update(overrides)
    return Trade(**fields)


CASES: list[dict[str, Any]] = (
    [{"price": Decimal(p), "size": Decimal(s)} for p, s in itertools.product(DECIMALS, ["0.2", "1E-8", "5E+3"])]
    + [{"product_id": p} for p in PRODUCTS]
    + [{field: value} for field in ("trade_id", "event_time_us", "receive_time_us", "sequence") for value in INTS]
    + [{"sequence": None}, {"trade_id": True}, {"sequence": False}]
    + [{"side": side} for side in ("buy", "sell", "BUY")]
    + [{"feed": "advanced_trade", "source": "rest", "exchange": "other"}, {"exchange": 'e"x'}]
)


@pytest.mark.parametrize("overrides", CASES, ids=[repr(c)[:60] for c in CASES])
def test_to_json_writes_the_reference_bytes(overrides: dict[str, Any]) -> None:
    t = trade(**overrides)
    assert outcome(t.to_json) == outcome(lambda: reference_bytes(t))
    assert outcome(t.to_json) == outcome(t.to_json)  # and again, from the cached fragments


def test_to_json_round_trips() -> None:
    t = trade(price=Decimal("0.00000001"), size=Decimal("1.50"), sequence=None)
    assert decode_record(t.to_json()) == t
