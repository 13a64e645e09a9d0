"""The data contracts, defined once: the trade and tick records on Kafka, and the candle in the lake.

Ingestion encodes with these, the Spark job derives its schemas from ``RECORD_FIELDS`` and
``CANDLE_FIELDS``, the lake reader and the tests read with ``candle_arrow_schema()``. Nothing else
spells out a field list.

Money is exact: prices and sizes are ``Decimal`` in Python, decimal strings on the wire and
``DECIMAL(18,8)`` in Spark and Parquet. 18 digits with 8 decimals holds every Coinbase increment
(the smallest is 1e-8) and values below 1e10, and keeps price*size (37,16) and its window sum
(38,16) exact inside Spark's 38-digit decimals. A value that does not fit is rejected at
ingestion (to the dead-letter topic) rather than rounded.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Literal, cast

import orjson

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 1

# Exact decimal shape shared by price, size, open/high/low/close and vwap.
DECIMAL_PRECISION = 18
DECIMAL_SCALE = 8
# Spark's sum() of DECIMAL(p, s) is DECIMAL(p + 10, s): volume keeps that type so it never rounds.
VOLUME_PRECISION = DECIMAL_PRECISION + 10
_MAX_ABS = Decimal(10) ** (DECIMAL_PRECISION - DECIMAL_SCALE)

Side = Literal["buy", "sell"]
Feed = Literal["exchange", "advanced_trade"]
Source = Literal["ws", "rest"]

# A Coinbase product id (BTC-USD): what the ingestion and monitor settings accept in their product lists.
PRODUCT_PATTERN = re.compile(r"^[A-Z0-9]{2,10}-[A-Z0-9]{2,10}$")


class ContractError(ValueError):
    """A value does not fit the contract; the message names the field and the value."""


# A plain decimal that fits DECIMAL(18,8) by its shape alone: up to 10 integer digits, up to 8
# decimals, not all zero. Every Coinbase price and size has this shape, so the full checks below
# run only for the odd value (and for the zero that must be refused).
_PLAIN_DECIMAL = re.compile(r"(?!0+(?:\.0*)?$)[0-9]{1,10}(?:\.[0-9]{1,8})?")


def exact_decimal(field: str, raw: str | int | Decimal) -> Decimal:
    """Parse a positive exact decimal that fits DECIMAL(18,8), or raise ContractError naming ``field``."""
    if type(raw) is str and _PLAIN_DECIMAL.fullmatch(raw):
        return Decimal(raw)
    try:
        value = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise ContractError(f"{field} is not a decimal number: {raw!r}") from None
    if not value.is_finite() or value <= 0:
        raise ContractError(f"{field} must be a positive finite decimal: {raw!r}")
    # a finite Decimal's exponent is an int (only NaN and infinities have 'n', 'N', 'F')
    if -cast(int, value.as_tuple().exponent) > DECIMAL_SCALE:
        # normalize() drops trailing zeros: "1.500000000" is still exact at 8 places
        value = value.normalize()
        if -cast(int, value.as_tuple().exponent) > DECIMAL_SCALE:
            raise ContractError(f"{field} has more than {DECIMAL_SCALE} decimal places: {raw!r}")
    if value >= _MAX_ABS:
        raise ContractError(f"{field} is too large for DECIMAL({DECIMAL_PRECISION},{DECIMAL_SCALE}): {raw!r}")
    return value


# Trades arrive in time order, so consecutive timestamps share their second: the epoch seconds of
# "YYYY-MM-DDTHH:MM:SS" are looked up in a small cache instead of parsed each time (~1 us a trade).
_SECOND_CACHE: dict[str, int] = {}
_UTC_WITH_FRACTION = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})\.([0-9]{1,9})Z")


def parse_time_us(field: str, raw: str) -> int:
    """ISO-8601 UTC time (Coinbase's ``2026-07-07T22:58:17.164892Z``, also with nanoseconds) -> epoch µs.

    Sub-microsecond digits are truncated, as Spark's TimestampType does.
    """
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

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
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
        )

    @property
    def notional(self) -> Decimal:
        return self.price * self.size


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
# Logical types: "string", "int64", "decimal" (18,8), "volume" (28,8), "timestamp_us" (UTC).

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
    ("open", "decimal"),
    ("high", "decimal"),
    ("low", "decimal"),
    ("close", "decimal"),
    ("volume", "volume"),
    ("trade_count", "int64"),
    ("vwap", "decimal"),
    ("first_trade_id", "int64"),
    ("last_trade_id", "int64"),
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
)


def candle_arrow_schema() -> pa.Schema:
    """pyarrow schema of a candle file (imported lazily: ingestion does not need pyarrow)."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "int64": pa.int64(),
        "decimal": pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
        "volume": pa.decimal128(VOLUME_PRECISION, DECIMAL_SCALE),
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


WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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
