"""The data contracts, defined once: the trade and tick records on Kafka, the candle in the lake, and
the ingestion's record of the trade ids it could not fill (dead-letter topic; the lake monitor reads it).

Ingestion encodes with these, the Spark job derives its schemas from ``RECORD_FIELDS`` and
``CANDLE_FIELDS``, the lake reader and the tests read with ``candle_arrow_schema()``. Nothing else
spells out a field list.

Money is exact: prices and sizes are ``Decimal`` in Python, decimal strings on the wire and
decimals in Spark and Parquet, typed from what Coinbase lists (docs/data-plane.md, "Decimal types"):

- price ``DECIMAL(22,12)``: below 1e10, increments down to 1e-12 (Coinbase's finest today is 1e-8);
- size ``DECIMAL(23,8)``: below 1e15 tokens (micro-priced tokens trade 1e10+ at once), 1e-8 steps;
- a trade's notional price*size below 1e12 (in the quote currency), exact at 20 decimals;
- volume ``DECIMAL(33,8)`` (Spark's sum of sizes), notional ``DECIMAL(38,20)`` (the exact window
  sum of price*size), vwap ``DECIMAL(38,28)`` (notional/volume: >= 17 significant digits at any price).

A value that does not fit is rejected with a reason (ingestion: to the dead-letter topic; the job:
counted by reason) rather than rounded. Only vwap is rounded, once, at 28 decimals, and the exact
notional beside it recomputes it.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction
from typing import TYPE_CHECKING, Literal, TypeVar, cast

import orjson

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 1

# Prices: below 1e10 (BTC-USD is ~1e5), to 12 decimals (micro-priced tokens quote in 1e-8 or finer).
PRICE_PRECISION = 22
PRICE_SCALE = 12
# Sizes: below 1e15 tokens (a SHIB or PEPE trade can exceed 1e10), to 8 decimals (Coinbase's
# base_increment is never finer than 1e-8).
SIZE_PRECISION = 23
SIZE_SCALE = 8
# One trade's notional price*size: below 1e12 in the quote currency (no real trade comes near),
# exact at PRICE_SCALE + SIZE_SCALE decimals. The bound is what keeps the window sum inside Spark's
# 38 digits: 18 integer digits hold 1e6 trades of the largest notional in one window.
MAX_TRADE_NOTIONAL = Decimal(10) ** 12
NOTIONAL_SCALE = PRICE_SCALE + SIZE_SCALE
NOTIONAL_PRECISION = 38
# Spark's sum() of DECIMAL(p, s) is DECIMAL(p + 10, s): volume keeps that type so it never rounds.
VOLUME_PRECISION = SIZE_PRECISION + 10
VOLUME_SCALE = SIZE_SCALE
# vwap = notional / volume, rounded half-even once at 28 decimals: below 1e10 like any price, and at
# the smallest price (1e-12) still 17 significant digits.
VWAP_PRECISION = 38
VWAP_SCALE = 28
_MAX_PRICE = Decimal(10) ** (PRICE_PRECISION - PRICE_SCALE)
_MAX_SIZE = Decimal(10) ** (SIZE_PRECISION - SIZE_SCALE)

Side = Literal["buy", "sell"]
Feed = Literal["exchange", "advanced_trade"]
Source = Literal["ws", "rest"]

# A Coinbase product id (BTC-USD): what the ingestion and monitor settings accept in their product lists.
# Ingestion's resume points live next to the trades topic, in a compacted topic of this name
# (ingest/resume.py); the operator and the local stack create it.
INGEST_STATE_SUFFIX = ".ingest-state"


def ingest_state_topic(trades_topic: str) -> str:
    return trades_topic + INGEST_STATE_SUFFIX


PRODUCT_PATTERN = re.compile(r"^[A-Z0-9]{2,10}-[A-Z0-9]{2,10}$")


class ContractError(ValueError):
    """A value does not fit the contract; the message names the field and the value."""


# A plain decimal that fits its type by its shape alone (integer digits, decimals, not all zero).
# Every Coinbase price and size has this shape, so the full checks below run only for the odd value
# (and for the zero that must be refused).
def _plain_shape(integer_digits: int, scale: int) -> re.Pattern[str]:
    return re.compile(rf"(?!0+(?:\.0*)?$)[0-9]{{1,{integer_digits}}}(?:\.[0-9]{{1,{scale}}})?")


# Public for the feed parsers' fast paths: a string that fullmatches is exactly what exact_price /
# exact_size accept as ``Decimal(raw)`` without further checks.
PLAIN_PRICE = _plain_shape(PRICE_PRECISION - PRICE_SCALE, PRICE_SCALE)
PLAIN_SIZE = _plain_shape(SIZE_PRECISION - SIZE_SCALE, SIZE_SCALE)


def _exact(field: str, raw: str | int | Decimal, plain: re.Pattern[str], precision: int, scale: int) -> Decimal:
    if type(raw) is str and plain.fullmatch(raw):
        return Decimal(raw)
    try:
        value = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise ContractError(f"{field} is not a decimal number: {raw!r}") from None
    if not value.is_finite() or value <= 0:
        raise ContractError(f"{field} must be a positive finite decimal: {raw!r}")
    # a finite Decimal's exponent is an int (only NaN and infinities have 'n', 'N', 'F')
    if -cast(int, value.as_tuple().exponent) > scale:
        # normalize() drops trailing zeros: "1.500000000" is still exact at 8 places
        value = value.normalize()
        if -cast(int, value.as_tuple().exponent) > scale:
            raise ContractError(f"{field} has more than {scale} decimal places: {raw!r}")
    if value >= Decimal(10) ** (precision - scale):
        raise ContractError(f"{field} is too large for DECIMAL({precision},{scale}): {raw!r}")
    return value


def exact_price(field: str, raw: str | int | Decimal) -> Decimal:
    """Parse a positive exact decimal that fits the price type DECIMAL(22,12), or raise ContractError."""
    return _exact(field, raw, PLAIN_PRICE, PRICE_PRECISION, PRICE_SCALE)


def exact_size(field: str, raw: str | int | Decimal) -> Decimal:
    """Parse a positive exact decimal that fits the size type DECIMAL(23,8), or raise ContractError."""
    return _exact(field, raw, PLAIN_SIZE, SIZE_PRECISION, SIZE_SCALE)


def check_notional(price: Decimal, size: Decimal) -> None:
    """Raise ContractError unless price*size is below MAX_TRADE_NOTIONAL (exact: Decimal's default
    context holds the 22 + 23 digits of the product only approximately, so this compares exactly)."""
    # price < 1e10 and size < 1e15: the product has at most 45 digits; compare without rounding
    if price * size >= MAX_TRADE_NOTIONAL and _exact_product(price, size) >= MAX_TRADE_NOTIONAL:
        raise ContractError(f"price*size {_plain(price)}*{_plain(size)} is not below {MAX_TRADE_NOTIONAL:f}")


def _exact_product(a: Decimal, b: Decimal) -> Decimal:
    with localcontext(prec=80):
        return a * b


_T = TypeVar("_T")


def quick_frozen_init(cls: type[_T]) -> type[_T]:
    """Give a ``@dataclass(frozen=True, slots=True)`` class an ``__init__`` that sets each slot
    through its descriptor: the same signature, defaults, ``__post_init__`` and resulting object as
    the dataclass's own, at about half the cost (that one goes through ``object.__setattr__``, the
    only way past the frozen ``__setattr__``, once per field). Worth it for the classes made once
    per trade on the ingestion's hot path; the instances stay frozen."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    params = []
    namespace: dict[str, object] = {}
    for f in fields:
        if not f.init or f.default_factory is not dataclasses.MISSING or f.kw_only:
            raise TypeError(f"quick_frozen_init: {cls.__name__}.{f.name} is not a plain field")
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__  # the slot's member descriptor
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    lines = [f"def __init__(self, {', '.join(params)}):"]
    lines += [f"    _set_{f.name}(self, {f.name})" for f in fields]
    if hasattr(cls, "__post_init__"):
        lines.append("    self.__post_init__()")
    exec("\n".join(lines), namespace)  # as dataclasses builds its own __init__
    init = cast(types.FunctionType, namespace["__init__"])
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    setattr(cls, "__init__", init)  # noqa: B010 (mypy refuses assigning a method)
    return cls


# Trades arrive in time order, so consecutive timestamps share their second: the epoch seconds of
# "YYYY-MM-DDTHH:MM:SS" are looked up in a small cache instead of parsed each time (~1 us a trade).
_SECOND_CACHE: dict[str, int] = {}
_UTC_WITH_FRACTION = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})\.([0-9]{1,9})Z")


def parse_time_us(field: str, raw: str) -> int:
    """ISO-8601 UTC time (Coinbase's ``2026-07-07T22:58:17.164892Z``, also with nanoseconds) -> epoch µs.

    Sub-microsecond digits are truncated, as Spark's TimestampType does.
    """
    # The usual case without the regex: a second already in the cache (so its 19 characters matched
    # the pattern below), then "." and 1-9 ASCII digits and "Z" -- what the pattern would match.
    if type(raw) is str and 21 <= len(raw) <= 29 and raw[19] == "." and raw[-1] == "Z":
        seconds = _SECOND_CACHE.get(raw[:19])
        fraction = raw[20:-1]
        if seconds is not None and fraction.isascii() and fraction.isdigit():
            return seconds * 1_000_000 + int(fraction[:6].ljust(6, "0"))
    if type(raw) is str and (m := _UTC_WITH_FRACTION.fullmatch(raw)):
        second, fraction = m.groups()
        seconds = _SECOND_CACHE.get(second)
        if seconds is None:
            if len(_SECOND_CACHE) > 4096:
                _SECOND_CACHE.clear()
            try:
                seconds = _SECOND_CACHE[second] = _parse_time_us(field, second + "Z") // 1_000_000
            except ContractError:
                raise ContractError(f"{field} is not an ISO-8601 time: {raw!r}") from None
        return seconds * 1_000_000 + int(fraction[:6].ljust(6, "0"))
    return _parse_time_us(field, raw)


def _parse_time_us(field: str, raw: str) -> int:
    """ISO-8601 UTC time (Coinbase's ``2026-07-07T22:58:17.164892Z``, also with nanoseconds) -> epoch µs.

    Sub-microsecond digits are truncated, as Spark's TimestampType does.
    """
    if not isinstance(raw, str) or not raw:
        raise ContractError(f"{field} is not a time string: {raw!r}")
    text = raw.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python 3.11 parses at most 6 fractional digits; Advanced Trade sends 9.
    dot = text.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        text = text[: dot + 1] + text[dot + 1 : end][:6].ljust(6, "0") + text[end:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ContractError(f"{field} is not an ISO-8601 time: {raw!r}") from None
    if parsed.tzinfo is None:
        raise ContractError(f"{field} has no time zone: {raw!r}")
    delta = parsed - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us_to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).replace(microsecond=us % 1_000_000)


def us_to_iso(us: int) -> str:
    return us_to_datetime(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@quick_frozen_init
@dataclasses.dataclass(frozen=True, slots=True)
class Trade:
    """One executed trade, normalised from either Coinbase feed or from REST backfill.

    ``side`` is the **maker's** side, as Coinbase reports it on both feeds: ``sell`` means a
    resting sell order was hit by a buyer (an up-tick); ``buy`` means a seller hit a resting bid.
    """

    product_id: str
    trade_id: int
    price: Decimal
    size: Decimal
    side: Side
    event_time_us: int  # exchange's trade time, UTC epoch microseconds
    receive_time_us: int  # when ingestion received it, UTC epoch microseconds
    feed: Feed
    source: Source = "ws"
    sequence: int | None = None  # Exchange feed's per-product sequence; Advanced Trade's frame sequence_num
    exchange: str = "coinbase"

    kind = "trade"

    def __post_init__(self) -> None:
        check_notional(self.price, self.size)

    def to_json(self) -> bytes:
        """The Kafka record: the JSON of ``_trade_dict``, built from cached fragments (one per trade
        on the ingestion's hot path, where this is ~3x faster than dumping the dict)."""
        trade_id, event_time_us, receive_time_us, sequence = (
            self.trade_id,
            self.event_time_us,
            self.receive_time_us,
            self.sequence,
        )
        # orjson refuses ints beyond 64 bits and writes a bool as true/false: such a trade (never
        # one the feeds produce) takes the dict's path, so it still fails or reads exactly as there
        if not (
            type(trade_id) is int
            and type(event_time_us) is int
            and type(receive_time_us) is int
            and (sequence is None or type(sequence) is int and _I64_MIN <= sequence <= _U64_MAX)
            and _I64_MIN <= trade_id <= _U64_MAX
            and _I64_MIN <= event_time_us <= _U64_MAX
            and _I64_MIN <= receive_time_us <= _U64_MAX
        ):
            return orjson.dumps(self._trade_dict())
        strings = (self.exchange, self.product_id, self.side, self.feed, self.source)
        try:
            fragments = _TRADE_JSON_FRAGMENTS.get(strings)
        except TypeError:  # an unhashable value where a string belongs: the dict's path says what it does
            return orjson.dumps(self._trade_dict())
        if fragments is None:
            fragments = _trade_json_fragments(strings)
        head, middle, tail = fragments
        # _plain(), a third of the cost: str() is the plain form unless it chose the exponent form.
        # Plain decimals are digits, "." and "-": nothing to escape in JSON.
        price, size = str(self.price), str(self.size)
        if "E" in price:
            price = _plain(self.price)
        if "E" in size:
            size = _plain(self.size)
        return (
            f'{head}{trade_id},"price":"{price}","size":"{size}",{middle}'
            f'"event_time_us":{event_time_us},"receive_time_us":{receive_time_us},{tail}'
            f'"sequence":{"null" if sequence is None else sequence},"last_trade_id":null}}'
        ).encode()

    def _trade_dict(self) -> dict[str, object]:
        """The record as a dict: what to_json writes, field for field."""
        return {
            "v": SCHEMA_VERSION,
            "kind": "trade",
            "exchange": self.exchange,
            "product_id": self.product_id,
            "trade_id": self.trade_id,
            "price": _plain(self.price),
            "size": _plain(self.size),
            "side": self.side,
            "event_time_us": self.event_time_us,
            "receive_time_us": self.receive_time_us,
            "feed": self.feed,
            "source": self.source,
            "sequence": self.sequence,
            "last_trade_id": None,
        }

    @property
    def notional(self) -> Decimal:
        return self.price * self.size


_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1  # the ints orjson writes
# (exchange, product_id, side, feed, source) -> the JSON around a trade's numbers, as orjson writes
# it: (up to "trade_id":, "side" up to "event_time_us", "feed" and "source" up to "sequence")
_TRADE_JSON_FRAGMENTS: dict[tuple[str, str, str, str, str], tuple[str, str, str]] = {}


def _trade_json_fragments(strings: tuple[str, str, str, str, str]) -> tuple[str, str, str]:
    exchange, product_id, side, feed, source = (orjson.dumps(text).decode() for text in strings)
    fragments = (
        f'{{"v":{SCHEMA_VERSION},"kind":"trade","exchange":{exchange},"product_id":{product_id},"trade_id":',
        f'"side":{side},',
        f'"feed":{feed},"source":{source},',
    )
    if len(_TRADE_JSON_FRAGMENTS) >= 1024:  # a handful of products in practice; bounded anyway
        _TRADE_JSON_FRAGMENTS.clear()
    _TRADE_JSON_FRAGMENTS[strings] = fragments
    return fragments


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    """A control record made from a heartbeat: "product P has seen no trade after ``last_trade_id``
    up to ``event_time_us``". It moves the Spark job's watermark on quiet markets and is never
    aggregated into a candle.
    """

    product_id: str
    event_time_us: int
    receive_time_us: int
    feed: Feed
    last_trade_id: int | None = None  # Exchange heartbeats carry it; Advanced Trade's do not
    exchange: str = "coinbase"

    kind = "tick"

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "v": SCHEMA_VERSION,
                "kind": "tick",
                "exchange": self.exchange,
                "product_id": self.product_id,
                "trade_id": None,
                "price": None,
                "size": None,
                "side": None,
                "event_time_us": self.event_time_us,
                "receive_time_us": self.receive_time_us,
                "feed": self.feed,
                "source": "ws",
                "sequence": None,
                "last_trade_id": self.last_trade_id,
            }
        )


Record = Trade | Tick


def _plain(value: Decimal) -> str:
    """Decimal as a plain string, never in exponent form ("0.00000001", not "1E-8")."""
    return format(value, "f")


def decode_record(raw: bytes | str) -> Record:
    """Inverse of ``to_json``: used by tests, tools and the DLQ reader, never by the Spark job
    (which parses with the schema derived from ``RECORD_FIELDS``)."""
    d = orjson.loads(raw)
    if d.get("v") != SCHEMA_VERSION:
        raise ContractError(f"unsupported record schema version {d.get('v')!r}")
    if d["kind"] == "trade":
        return Trade(
            product_id=d["product_id"],
            trade_id=int(d["trade_id"]),
            price=Decimal(d["price"]),
            size=Decimal(d["size"]),
            side=d["side"],
            event_time_us=int(d["event_time_us"]),
            receive_time_us=int(d["receive_time_us"]),
            feed=d["feed"],
            source=d.get("source", "ws"),
            sequence=d.get("sequence"),
            exchange=d.get("exchange", "coinbase"),
        )
    if d["kind"] == "tick":
        return Tick(
            product_id=d["product_id"],
            event_time_us=int(d["event_time_us"]),
            receive_time_us=int(d["receive_time_us"]),
            feed=d["feed"],
            last_trade_id=d.get("last_trade_id"),
            exchange=d.get("exchange", "coinbase"),
        )
    raise ContractError(f"unknown record kind {d['kind']!r}")


# ---------------------------------------------------------------------------------------------
# Field lists: the single source the Spark and Arrow schemas are derived from.
# Logical types: "string", "int64", "price" (22,12), "volume" (33,8), "notional" (38,20),
# "vwap" (38,28), "timestamp_us" (UTC).

# The Kafka record (trade or tick) as the Spark job parses it. Decimals travel as strings.
RECORD_FIELDS: tuple[tuple[str, str], ...] = (
    ("v", "int64"),
    ("kind", "string"),
    ("exchange", "string"),
    ("product_id", "string"),
    ("trade_id", "int64"),
    ("price", "decimal_string"),
    ("size", "decimal_string"),
    ("side", "string"),
    ("event_time_us", "int64"),
    ("receive_time_us", "int64"),
    ("feed", "string"),
    ("source", "string"),
    ("sequence", "int64"),
    ("last_trade_id", "int64"),
)

# The candle as stored in the lake (partition columns excluded).
CANDLE_FIELDS: tuple[tuple[str, str], ...] = (
    ("product_id", "string"),
    ("window_start", "timestamp_us"),
    ("window_end", "timestamp_us"),
    ("open", "price"),
    ("high", "price"),
    ("low", "price"),
    ("close", "price"),
    ("volume", "volume"),
    ("trade_count", "int64"),
    ("vwap", "vwap"),
    ("first_trade_id", "int64"),
    ("last_trade_id", "int64"),
    # sum(price*size) of the window, exact: vwap = notional / volume
    ("notional", "notional"),
)

# Hive-style partition columns of the lake: candles/window=1m/product_id=BTC-USD/date=2026-11-26/
CANDLE_PARTITIONS: tuple[str, ...] = ("window", "product_id", "date")

# The CSV the replay command writes, in this order.
CANDLE_CSV_COLUMNS: tuple[str, ...] = (
    "product_id",
    "window_start",
    "window_end",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trade_count",
    "vwap",
    "notional",
)


def candle_arrow_schema() -> pa.Schema:
    """pyarrow schema of a candle file (imported lazily: ingestion does not need pyarrow)."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "int64": pa.int64(),
        "price": pa.decimal128(PRICE_PRECISION, PRICE_SCALE),
        "volume": pa.decimal128(VOLUME_PRECISION, VOLUME_SCALE),
        "notional": pa.decimal128(NOTIONAL_PRECISION, NOTIONAL_SCALE),
        "vwap": pa.decimal128(VWAP_PRECISION, VWAP_SCALE),
        "timestamp_us": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([pa.field(name, types[kind], nullable=False) for name, kind in CANDLE_FIELDS])


@dataclasses.dataclass(frozen=True, slots=True)
class Candle:
    """One finished OHLC window. open/close are the first/last trade by (event time, trade_id)."""

    product_id: str
    window_start_us: int
    window_end_us: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int
    vwap: Decimal
    first_trade_id: int
    last_trade_id: int
    notional: Decimal


WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def vwap_of(notional: Decimal, volume: Decimal) -> Decimal:
    """notional / volume rounded half-even at VWAP_SCALE decimals: the one rounding of a candle.

    Computed on exact fractions and rounded once (no intermediate rounding of a Decimal context)."""
    units = round(Fraction(notional) / Fraction(volume) * 10**VWAP_SCALE)  # round() of a Fraction: half-even
    return Decimal(f"{units}E-{VWAP_SCALE}")


def parse_duration(text: str) -> int:
    """'1m' / '30s' / '1h' -> seconds. Raises ContractError naming the bad text."""
    text = text.strip()
    if len(text) < 2 or text[-1] not in WINDOW_UNITS or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise ContractError(f"not a duration like 30s, 1m, 5m, 1h: {text!r}")
    return int(text[:-1]) * WINDOW_UNITS[text[-1]]


def window_label(seconds: int) -> str:
    """Seconds -> the lake's window partition label ('1m', '5m', '1h', '30s')."""
    for unit in ("d", "h", "m", "s"):
        if seconds % WINDOW_UNITS[unit] == 0:
            return f"{seconds // WINDOW_UNITS[unit]}{unit}"
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# Counted-unfillable trade ids: the ingestion's record, in the dead-letter topic, of ids it gave
# up on (not backfilled, or a REST row that broke the contract). The lake monitor reads them so
# that its continuity audit classes those ids as "unfillable", not "lost".

UNFILLABLE_KIND = "unfillable_trade_ids"


@dataclasses.dataclass(frozen=True, slots=True)
class UnfillableTradeIds:
    """Every trade id in ``first_trade_id..last_trade_id`` (inclusive) of a product was given up:
    it never reached the trades topic, and the ingestion counted it (``trades_unfilled_total``)."""

    product_id: str
    first_trade_id: int
    last_trade_id: int
    reason: str  # the ingestion's give-up reason: not_returned, bad_row, too_large, queue_full, shutdown
    counted_at_us: int  # when the ingestion gave up, UTC epoch microseconds
    feed: Feed = "exchange"

    def __post_init__(self) -> None:
        if not PRODUCT_PATTERN.match(self.product_id):
            raise ContractError(f"unfillable trade ids: not a product id like BTC-USD: {self.product_id!r}")
        if not 0 <= self.first_trade_id <= self.last_trade_id:
            raise ContractError(
                f"unfillable trade ids of {self.product_id}: bad range {self.first_trade_id}..{self.last_trade_id}"
            )
        if not self.reason:
            raise ContractError(f"unfillable trade ids of {self.product_id}: no reason")

    @property
    def count(self) -> int:
        return self.last_trade_id - self.first_trade_id + 1

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "v": SCHEMA_VERSION,
                "kind": UNFILLABLE_KIND,
                "product_id": self.product_id,
                "first_trade_id": self.first_trade_id,
                "last_trade_id": self.last_trade_id,
                "count": self.count,
                "reason": self.reason,
                "counted_at_us": self.counted_at_us,
                "feed": self.feed,
            }
        )


def unfillable_ranges(
    product_id: str, ids: Iterable[int], reason: str, counted_at_us: int, feed: Feed = "exchange"
) -> list[UnfillableTradeIds]:
    """``ids`` given up, as one record per run of consecutive ids."""
    out: list[UnfillableTradeIds] = []
    run: list[int] = []
    for trade_id in sorted(set(ids)):
        if run and trade_id != run[-1] + 1:
            out.append(UnfillableTradeIds(product_id, run[0], run[-1], reason, counted_at_us, feed))
            run = []
        run.append(trade_id)
    if run:
        out.append(UnfillableTradeIds(product_id, run[0], run[-1], reason, counted_at_us, feed))
    return out


def decode_unfillable(raw: bytes | str) -> UnfillableTradeIds | None:
    """A dead-letter topic record as UnfillableTradeIds; None for the topic's other records (dead
    letters); ContractError naming what is wrong for one that claims the kind but breaks it."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(d, dict) or d.get("kind") != UNFILLABLE_KIND:
        return None
    if d.get("v") != SCHEMA_VERSION:
        raise ContractError(f"unfillable trade ids: unsupported schema version {d.get('v')!r}")
    try:
        return UnfillableTradeIds(
            product_id=str(d["product_id"]),
            first_trade_id=int(d["first_trade_id"]),
            last_trade_id=int(d["last_trade_id"]),
            reason=str(d["reason"]),
            counted_at_us=int(d["counted_at_us"]),
            feed=d.get("feed", "exchange"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ContractError(f"unfillable trade ids: bad record ({type(exc).__name__}: {exc})") from None
