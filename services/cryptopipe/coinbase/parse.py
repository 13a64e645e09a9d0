"""Typed reads of single fields from decoded Coinbase JSON, shared by both feeds and REST.

Every reader raises ``ContractError`` with a message that starts with the field name. A caller
reading a nested object prefixes its path (``events[0].trades[3].`` + message), so the
dead-letter reason always names the exact field and shows the offending value.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson

from cryptopipe.contracts import PLAIN_PRICE, PLAIN_SIZE, ContractError, Side, exact_price, exact_size, parse_time_us

_MISSING = object()
_SHOWN_MAX = 80
_SIDES: dict[str, Side] = {"buy": "buy", "sell": "sell"}
# Ids and sequence numbers are int64 on Kafka and in Spark.
INT64_MAX = 2**63 - 1
# "1E-8", "2.5e-7", "1E+2": ASCII digits with an exponent (exact, like the plain form)
_EXPONENT_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?[eE][+-]?[0-9]{1,3}")

# The feed parsers' fast paths (one per trade, ~half the cost of the readers below): a value in one
# of these shapes is one the full reader accepts, with the same result. Anything else goes to the
# full reader, which accepts the odd shapes too and words the reason when it refuses.
# 1 to 18 digits, no leading zero: a positive int64 as read_digits reads it
POSITIVE_INT64_DIGITS = re.compile(r"[1-9][0-9]{0,17}")
# the spellings the feeds use, as read_side reads them
SIDE_SPELLINGS: dict[str, Side] = {"buy": "buy", "sell": "sell", "BUY": "buy", "SELL": "sell"}


def plain_trade_fields(item: dict[str, Any]) -> tuple[str, Decimal, Decimal, Side, str] | None:
    """The fields both feeds spell alike, for the fast paths: (product_id, price, size, side, time
    text) when each is in its common shape, else None (the caller then reads the trade field by
    field). The time is left as text: a caller parses it last, after its own id checks, so that
    only an otherwise valid trade can fail on it, as with the full readers."""
    get = item.get
    product_id, price, size, side, time = get("product_id"), get("price"), get("size"), get("side"), get("time")
    if not (
        type(product_id) is str
        and product_id
        and type(price) is str
        and type(size) is str
        and type(side) is str
        and type(time) is str
        and side in SIDE_SPELLINGS
        and PLAIN_PRICE.fullmatch(price)
        and PLAIN_SIZE.fullmatch(size)
    ):
        return None
    return product_id, Decimal(price), Decimal(size), SIDE_SPELLINGS[side], time


def shown(value: Any) -> str:
    """repr() capped in length: a reason must stay readable even for a huge bad value."""
    text = repr(value)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 3] + "..."


def decode_object(raw: str | bytes) -> dict[str, Any]:
    frame = _decode(raw, "frame")
    if type(frame) is not dict:
        raise ContractError(f"frame is not a JSON object: {shown(frame)}")
    return frame


def decode_list(raw: str | bytes) -> list[Any]:
    body = _decode(raw, "body")
    if type(body) is not list:
        raise ContractError(f"body is not a JSON array: {shown(body)}")
    return body


def _decode(raw: str | bytes, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"{what} is not JSON: {exc}") from None


def _get(obj: dict[str, Any], name: str) -> Any:
    value = obj.get(name, _MISSING)
    if value is _MISSING:
        raise ContractError(f"{name} is missing")
    return value


def read_str(obj: dict[str, Any], name: str) -> str:
    value = _get(obj, name)
    if type(value) is not str or not value:
        raise ContractError(f"{name} must be a non-empty string: {shown(value)}")
    return value


def read_int(obj: dict[str, Any], name: str, minimum: int) -> int:
    """A JSON integer in minimum..int64 max (bool is rejected although it is an int subclass)."""
    value = _get(obj, name)
    if type(value) is not int or not minimum <= value <= INT64_MAX:
        raise ContractError(f"{name} must be an int64 >= {minimum}: {shown(value)}")
    return value


def read_digits(obj: dict[str, Any], name: str) -> int:
    """A positive int64 sent as a string of ASCII digits (Advanced Trade's trade_id)."""
    value = _get(obj, name)
    # the length check comes first: int() refuses strings of more than 4300 digits with ValueError
    if type(value) is not str or not (len(value) <= 19 and value.isascii() and value.isdigit()):
        raise ContractError(f"{name} must be a string of digits: {shown(value)}")
    number = int(value)
    if not 0 < number <= INT64_MAX:
        raise ContractError(f"{name} must be an int64 > 0: {shown(value)}")
    return number


def read_decimal(obj: dict[str, Any], name: str) -> Decimal:
    value = _get(obj, name)
    # Coinbase sends prices and sizes as plain ASCII decimals ("63514.6"), and now and then a tiny
    # size in exponent form ("1E-8"): that is the same exact number and is taken as such (written
    # back as "0.00000001"; exact_price/exact_size refuse what would need rounding). Decimal() alone would
    # also take "1_000", " 1 ", "NaN" or non-ASCII digits: not what the exchange sends, so such a
    # value goes to the dead-letter topic instead of being reinterpreted. (The first check is a
    # third of the cost of a regex fullmatch, and this runs twice per trade.)
    if type(value) is not str or not (
        value.isascii() and (value.replace(".", "", 1).isdigit() or _EXPONENT_DECIMAL.fullmatch(value))
    ):
        raise ContractError(f"{name} must be a plain or exponent-form decimal string: {shown(value)}")
    # "price" has the price type, every other decimal field ("size") the size type
    return exact_price(name, value) if name == "price" else exact_size(name, value)


def read_side(obj: dict[str, Any], name: str) -> Side:
    value = _get(obj, name)
    side = _SIDES.get(value.lower()) if type(value) is str else None
    if side is None:
        raise ContractError(f"{name} must be buy or sell: {shown(value)}")
    return side


def read_time_us(obj: dict[str, Any], name: str) -> int:
    return parse_time_us(name, _get(obj, name))


def read_list(obj: dict[str, Any], name: str) -> list[Any]:
    value = _get(obj, name)
    if type(value) is not list:
        raise ContractError(f"{name} must be a list: {shown(value)}")
    return value


def read_object(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = _get(obj, name)
    if type(value) is not dict:
        raise ContractError(f"{name} must be an object: {shown(value)}")
    return value


def check_object(value: Any, path: str) -> dict[str, Any]:
    """A list element that must be an object; ``path`` names it (``events[0].trades[2]``)."""
    if type(value) is not dict:
        raise ContractError(f"{path} must be an object: {shown(value)}")
    return value


def read_product_ids(obj: dict[str, Any], name: str) -> tuple[str, ...]:
    ids = read_list(obj, name)
    for i, product_id in enumerate(ids):
        if type(product_id) is not str or not product_id:
            raise ContractError(f"{name}[{i}] must be a non-empty string: {shown(product_id)}")
    return tuple(ids)


def server_error_text(frame: dict[str, Any]) -> str:
    """The reason of a Coinbase ``error`` frame, e.g. ``Failed to subscribe: GIBBERISH-USD is not a valid product``."""
    parts = [str(frame[key]) for key in ("message", "reason") if frame.get(key)]
    return ": ".join(parts) or f"error frame without message: {shown(frame)}"
