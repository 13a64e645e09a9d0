"""The parsers' fast paths agree with the full readers: the same trades for what both accept, and
the same dead-letter reason for everything else (the fast path hands any other shape to the full
readers). Each case parses one frame twice, with the fast path and with it switched off."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from cryptopipe.coinbase import FrameResult, advtrade, exchange, parse_frame
from cryptopipe.contracts import _SECOND_CACHE, parse_time_us
from tests.unit.test_coinbase_frames import MATCH

RECEIVED = 1_790_000_000_000_000
MISSING = object()

TIMES = [
    "2026-07-07T22:58:17.164892Z",
    "2026-07-07T22:58:17.164892045Z",  # nanoseconds (Advanced Trade)
    "2026-07-07T22:58:17.1Z",
    "2026-07-07T22:58:17.1234567890Z",  # 10 fraction digits: not the cached shape
    "2026-07-07T22:58:17.Z",
    "2026-07-07T22:58:17.12a4Z",
    "2026-07-07T22:58:17.١٢Z",  # Arabic-Indic digits
    "2026-07-07T22:58:17.164892z",
    "2026-07-07T22:58:17Z",
    "2026-07-07T22:58:17.164892+00:00",
    "2026-07-07T22:58:17.164892",  # no zone
    "2026-13-07T22:58:17.1Z",  # no 13th month
    "2026-07-07 22:58:17.164892Z",
    "garbage",
    "",
    123,
    None,
    MISSING,
]
DECIMALS = [
    "63514.6",
    "0.00000001",
    "1e-8",
    "1E-8",
    "2.5e-7",
    "1E+2",
    "00063514.6",  # leading zeros
    "0063514.600000000000000",  # trailing zeros beyond both scales
    "1.500000000",
    "0.0000000000001",  # 13 places
    "0.000000001",  # 9 places: a price, not a size
    "9999999999.999999999999",
    "10000000000",
    "999999999999999.99999999",
    "1000000000000000",
    "1" * 40,  # huge
    "0",
    "0.0",
    "00.000",
    "-1",
    "-0.5",
    "+5",
    ".5",
    "5.",
    "",
    " 1",
    "1 ",
    "1_000",
    "NaN",
    "Infinity",
    "٣",  # Arabic-Indic three
    "１",  # fullwidth one
    "5",
    5,
    5.0,
    True,
    None,
    MISSING,
]
SIDES = ["buy", "sell", "BUY", "SELL", "Buy", "sElL", "", "hold", 1, ["buy"], None, MISSING]
PRODUCTS = ["BTC-USD", "", 5, None, MISSING]
AT_TRADE_IDS = [
    "1",
    "100000002",
    "0",
    "00012",
    "123456789012345678",  # 18 digits
    "9223372036854775807",  # int64 max
    "9223372036854775808",
    "1" * 4400,  # past int()'s digit limit
    "-1",
    "",
    " 12",
    "1e3",
    "١٢",
    12,
    None,
    MISSING,
]
EX_TRADE_IDS = [1, 1052119289, 0, -5, 2**63 - 1, 2**63, True, "12", 1.0, None, MISSING]
SEQUENCES = [0, 132235026010, -1, 2**63, True, "5", 1.0, None, MISSING]


def _without(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not MISSING}


def _at_frame(**overrides: Any) -> bytes:
    valid = {
        "product_id": "BTC-USD",
        "trade_id": "100000002",
        "price": "64999.84",
        "size": "0.00104479",
        "time": "2026-07-07T22:58:17.164892Z",
        "side": "SELL",
    }
    item = {**valid, **overrides}
    # a second, valid trade of the frame (listed newest first, as the feed does)
    second = {**valid, "trade_id": "100000001", "price": "64999.8", "size": "0.5"}
    frame = {
        "channel": "market_trades",
        "client_id": "",
        "timestamp": "2026-07-07T22:58:17.200000000Z",
        "sequence_num": 7,
        "events": [{"type": "update", "trades": [_without(item), second]}],
    }
    return orjson.dumps(frame)


def _ex_frame(**overrides: Any) -> bytes:
    return orjson.dumps(_without(MATCH | overrides))


def _both(raw: bytes, feed: str, monkeypatch: pytest.MonkeyPatch) -> tuple[FrameResult, FrameResult]:
    fast = parse_frame(raw, feed, RECEIVED)  # type: ignore[arg-type]
    module = advtrade if feed == "advanced_trade" else exchange
    with monkeypatch.context() as m:
        m.setattr(module, "_common_trade", lambda *_args: None)
        full = parse_frame(raw, feed, RECEIVED)  # type: ignore[arg-type]
    return fast, full


def _agree(fast: FrameResult, full: FrameResult) -> None:
    assert fast == full
    # equal Decimals may differ in form ("1.50" == "1.5"): the record bytes must not
    assert [t.to_json() for t in fast.trades] == [t.to_json() for t in full.trades]


def _one_field_cases(values_by_field: dict[str, list[Any]]) -> list[tuple[str, Any]]:
    return [(name, value) for name, values in values_by_field.items() for value in values]


AT_FIELDS = {
    "price": DECIMALS,
    "size": DECIMALS,
    "trade_id": AT_TRADE_IDS,
    "side": SIDES,
    "time": TIMES,
    "product_id": PRODUCTS,
}
EX_FIELDS = {**AT_FIELDS, "trade_id": EX_TRADE_IDS, "sequence": SEQUENCES}


@pytest.mark.parametrize(("field", "value"), _one_field_cases(AT_FIELDS))
def test_advanced_trade_fast_path_agrees(field: str, value: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _agree(*_both(_at_frame(**{field: value}), "advanced_trade", monkeypatch))


@pytest.mark.parametrize(("field", "value"), _one_field_cases(EX_FIELDS))
def test_exchange_fast_path_agrees(field: str, value: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _agree(*_both(_ex_frame(**{field: value}), "exchange", monkeypatch))


# Two bad fields at once: the reason must name the one the full readers name (they read in order).
PAIRS = [
    ("time", "garbage", "sequence", -1),
    ("time", "garbage", "side", "hold"),
    ("time", None, "price", "1e-20"),
    ("price", "0", "size", "-1"),
    ("size", "1e-8", "time", "garbage"),
    ("price", "9999999999", "size", "1000"),  # notional 1e13: too large
    ("price", "9999999999", "time", "garbage"),
    ("trade_id", MISSING, "time", MISSING),
]


@pytest.mark.parametrize(("f1", "v1", "f2", "v2"), PAIRS)
def test_fast_path_names_the_same_field_first(
    f1: str, v1: Any, f2: str, v2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = {f1: v1, f2: v2}
    if "trade_id" not in overrides or overrides["trade_id"] is MISSING:
        _agree(*_both(_at_frame(**overrides), "advanced_trade", monkeypatch))
    if f1 != "trade_id" or v1 is MISSING:
        ex_fast, ex_full = _both(_ex_frame(**overrides), "exchange", monkeypatch)
        _agree(ex_fast, ex_full)
        if f1 == "time" and v1 == "garbage" and f2 == "sequence":
            assert ex_full.error is not None and ex_full.error.startswith("time ")


def test_notional_too_large_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fast, full = _both(_ex_frame(price="9999999999", size="1000"), "exchange", monkeypatch)
    assert fast.error is not None and "price*size" in fast.error
    _agree(fast, full)


@pytest.mark.parametrize("raw", [t for t in TIMES if t is not MISSING])
def test_parse_time_us_from_the_cache_agrees_with_the_pattern(raw: Any) -> None:
    """The second-cache shortcut gives what the regex path gives, or raises the same error."""

    def outcome() -> tuple[str, object]:
        try:
            return "ok", parse_time_us("time", raw)
        except ValueError as exc:
            return "error", str(exc)

    _SECOND_CACHE.clear()
    cold = outcome()  # the regex path (fills the cache when the second is valid)
    parse_time_us("time", "2026-07-07T22:58:17.000000Z")  # that second is cached now whatever raw was
    warm = outcome()
    assert cold == warm


def test_fast_path_is_taken_for_the_common_shapes() -> None:
    """The agreement tests above would pass with no fast path at all: check it is really used."""
    at_item = orjson.loads(_at_frame())["events"][0]["trades"][0]
    assert advtrade._common_trade(at_item, 7, RECEIVED) is not None
    assert exchange._common_trade(orjson.loads(_ex_frame()), RECEIVED) is not None
    for price, size in itertools.product(["63514.6", "0.00000001", "1"], ["0.2", "1.5", "1000000"]):
        assert exchange._common_trade(orjson.loads(_ex_frame(price=price, size=size)), RECEIVED) is not None


# Advanced Trade's envelope is checked inline too (the readers only word a bad value's reason).
# The reasons as main's readers gave them before the inline checks: (where, value, reason or None).
_ENVELOPE_CASES: list[tuple[str, Any, str | None]] = [
    ("sequence_num", 5, None),
    ("sequence_num", MISSING, "sequence_num is missing"),
    ("sequence_num", -1, "sequence_num must be an int64 >= 0: -1"),
    ("sequence_num", True, "sequence_num must be an int64 >= 0: True"),
    ("sequence_num", "5", "sequence_num must be an int64 >= 0: '5'"),
    ("sequence_num", 2**63, "sequence_num must be an int64 >= 0: 9223372036854775808"),
    ("sequence_num", 1.0, "sequence_num must be an int64 >= 0: 1.0"),
    ("sequence_num", None, "sequence_num must be an int64 >= 0: None"),
    ("events", MISSING, "events is missing"),
    ("events", {}, "events must be a list: {}"),
    ("events", None, "events must be a list: None"),
    ("events", [], None),
    ("events", [5], "events[0] must be an object: 5"),
    ("events", [[]], "events[0] must be an object: []"),
    ("type", "snapshot", None),
    ("type", MISSING, "events[0].type is missing"),
    ("type", ["update"], "events[0].type must be a non-empty string: ['update']"),
    ("type", {"a": 1}, "events[0].type must be a non-empty string: {'a': 1}"),
    ("type", "other", "events[0].type must be snapshot or update: 'other'"),
    ("type", None, "events[0].type must be a non-empty string: None"),
    ("type", "", "events[0].type must be a non-empty string: ''"),
    ("trades", [], None),
    ("trades", MISSING, "events[0].trades is missing"),
    ("trades", {}, "events[0].trades must be a list: {}"),
    ("trades", None, "events[0].trades must be a list: None"),
    ("trades", [None], "events[0].trades[0] must be an object: None"),
    ("trades", ["ok", 7], "events[0].trades[1] must be an object: 7"),
]


@pytest.mark.parametrize(("where", "value", "reason"), _ENVELOPE_CASES)
def test_advanced_trade_envelope_reasons(where: str, value: Any, reason: str | None) -> None:
    frame = orjson.loads(_at_frame())
    event = frame["events"][0]
    if where == "trades" and isinstance(value, list):
        value = [event["trades"][0] if v == "ok" else v for v in value]
    target = event if where in ("type", "trades") else frame
    target[where] = value
    if value is MISSING:
        del target[where]
    result = parse_frame(orjson.dumps(frame), "advanced_trade", RECEIVED)
    assert result.error == reason
    if where == "type" and value == "snapshot":
        assert result.is_snapshot and len(result.trades) == 2
