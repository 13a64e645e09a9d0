"""Pure DataFrame -> DataFrame steps of the candle job. No sources, no sinks, no session set-up:
each step works the same on a static DataFrame (unit tests) and on the Kafka stream.

The pipeline, per window size: parse Kafka values -> watermark on event time -> drop duplicate
trades/ticks within the watermark -> aggregate trades and ticks together -> keep windows that had
a trade -> one candle row per (product, window).
"""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cryptopipe.contracts import (
    MAX_TRADE_NOTIONAL,
    NOTIONAL_PRECISION,
    NOTIONAL_SCALE,
    PRICE_PRECISION,
    PRICE_SCALE,
    RECORD_FIELDS,
    SCHEMA_VERSION,
    SIZE_PRECISION,
    SIZE_SCALE,
    window_label,
)

PRICE_TYPE = T.DecimalType(PRICE_PRECISION, PRICE_SCALE)
SIZE_TYPE = T.DecimalType(SIZE_PRECISION, SIZE_SCALE)
# A trade's notional in units of 1e-NOTIONAL_SCALE, an integer: price and size are first made
# integers (DECIMAL(22,0), DECIMAL(23,0)), whose product Spark types DECIMAL(38,0) whatever
# spark.sql.decimalOperations.allowPrecisionLoss says (the product of DECIMAL(22,12) by
# DECIMAL(23,8) would be (46,20), which Spark cuts to (38,12): rounded). A checked trade's units are
# below MAX_TRADE_NOTIONAL * 1e20 = 1e32, their window sum DECIMAL(38,0) below 1e38 (1e6 trades at
# the bound); the sink reads the sum back at scale NOTIONAL_SCALE (``notional``), exactly.
NOTIONAL_UNITS_TYPE = T.DecimalType(NOTIONAL_PRECISION, 0)
_MAX_NOTIONAL_UNITS = Decimal(int(MAX_TRADE_NOTIONAL) * 10**NOTIONAL_SCALE)  # 1e32, as DECIMAL(33,0)

_SPARK_TYPES = {
    "string": T.StringType(),
    "int64": T.LongType(),
    # decimals travel as strings and are cast once, explicitly: from_json would otherwise accept
    # JSON floats and round them silently
    "decimal_string": T.StringType(),
}


def record_schema() -> T.StructType:
    """The Kafka record (trade or tick) as a Spark schema, derived from contracts.RECORD_FIELDS."""
    return T.StructType([T.StructField(name, _SPARK_TYPES[kind], True) for name, kind in RECORD_FIELDS])


# Why a Kafka row is rejected: the label of ``cryptopipe_job_rejected_rows_total{reason}``. Every
# row is either parsed or counted under exactly one reason (the first that applies, in this order).
REJECT_REASONS: tuple[str, ...] = (
    "malformed_json",  # not a JSON object, empty, a tombstone, or a field of the wrong JSON type
    "unknown_schema_version",  # ``v`` missing or not contracts.SCHEMA_VERSION
    "unknown_kind",  # ``kind`` neither trade nor tick
    "missing_field",  # product_id, event_time_us or receive_time_us missing; a trade without trade_id, price or size
    "event_time_out_of_range",  # before 1970 or from 2100 on (a candle's end must stay a datetime)
    # more than the clock-skew bound after its own receive_time_us: one such row would move the
    # watermark for good and make every later trade "late" (ingestion dead-letters these too)
    "event_time_ahead_of_receipt",
    "bad_decimal",  # price/size not a plain decimal string ("abc", "1e30", "-1", a JSON number)
    "decimal_too_precise",  # more decimals that are not zero than PRICE_SCALE/SIZE_SCALE: a cast would round
    # zero, too large for PRICE_TYPE/SIZE_TYPE, or price*size not below MAX_TRADE_NOTIONAL
    "decimal_out_of_range",
)
# The name of the observed metric (Dataset.observe) that carries the counts to the progress events.
REJECTED_METRIC = "rejected_rows"
_CORRUPT = "_corrupt_record"
# a fixed bound, not the wall clock: a batch re-run after a crash must reject the same rows
_MAX_EVENT_TIME_US = 4_102_444_800_000_000  # 2100-01-01T00:00:00Z
# How far a record's event time may be ahead of its receive time (both in the record, so a replayed
# batch rejects the same rows); the default of JobSettings.max_clock_skew and of ingestion's.
DEFAULT_MAX_CLOCK_SKEW_US = 60_000_000
# A plain decimal; and one that is also exact at the field's scale (at least one digit after a point,
# at most ``scale`` of them before trailing zeros). A valid row is checked by the exact pattern only:
# the plain one runs only to tell a too precise value from a malformed one.
_PLAIN = r"^[0-9]+(\.[0-9]+)?$"
_EXACT = {name: rf"^[0-9]+(\.[0-9]{{1,{scale}}}0*)?$" for name, scale in (("price", PRICE_SCALE), ("size", SIZE_SCALE))}
# A price or size written as a JSON number: the JSON parser reads it as a double, which may round.
# One pattern per key, each starting with its quoted name: java.util.regex finds a pattern that
# starts with a literal of 4+ characters with Boyer-Moore, skipping through the record's text; the
# single pattern "(price|size)"... tried every position (profiled: the costliest check of a row).
_JSON_NUMBER = tuple(rf'"{name}"\s*:\s*[-+0-9.]' for name in ("price", "size"))


def _decimal_problem(name: str, value: Column) -> Column:
    """The reject reason of one decimal string field, or null when it is exact and in range.
    ``value``: the field already try_cast to its type (once per row, shared with the output)."""
    text = F.col(f"r.{name}")
    return (
        F.when(text.rlike(_EXACT[name]), F.when(value.isNull() | (value <= 0), F.lit("decimal_out_of_range")))
        .when(text.rlike(_PLAIN), F.lit("decimal_too_precise"))
        .otherwise(F.lit("bad_decimal"))
    )


def notional_units(price: Column, size: Column, *, checked: bool = True) -> Column:
    """price*size (PRICE_TYPE, SIZE_TYPE) as an exact integer count of 1e-NOTIONAL_SCALE, DECIMAL(38,0).

    Each operand is scaled by a decimal literal (DECIMAL(13,0), DECIMAL(9,0): products (36,12) and
    (33,8), no precision loss) and cast to scale 0, exact because the value is then an integer.
    ``checked=False`` (the reject check) multiplies with try_multiply: past 38 digits it is null,
    never an ANSI error."""
    price_units = (price * F.lit(Decimal(10**PRICE_SCALE))).cast(T.DecimalType(PRICE_PRECISION, 0))
    size_units = (size * F.lit(Decimal(10**SIZE_SCALE))).cast(T.DecimalType(SIZE_PRECISION, 0))
    product = price_units * size_units if checked else F.try_multiply(price_units, size_units)
    return product.cast(NOTIONAL_UNITS_TYPE)


def _notional_problem(price: Column, size: Column) -> Column:
    """decimal_out_of_range when price*size of a trade whose price and size fit is not below
    MAX_TRADE_NOTIONAL."""
    units = notional_units(price, size, checked=False)
    return F.when(units.isNull() | (units >= F.lit(_MAX_NOTIONAL_UNITS)), F.lit("decimal_out_of_range"))


def reject_reason(value_text: Column, max_clock_skew_us: int = DEFAULT_MAX_CLOCK_SKEW_US) -> Column:
    """Over the parsed struct ``r`` (with the corrupt-record column), the raw text and ``price_value``
    / ``size_value`` (``r.price`` and ``r.size`` try_cast to their types, once per row): why this row
    cannot become a record, or null. Never an error: ANSI mode would turn one bad cast into a batch
    that fails on every restart, so nothing here may throw (hence try_subtract below)."""
    r = F.col("r")
    is_trade = F.col("r.kind") == F.lit("trade")
    missing = (
        F.col("r.product_id").isNull()
        | F.col("r.event_time_us").isNull()
        | F.col("r.receive_time_us").isNull()
        | (is_trade & (F.col("r.trade_id").isNull() | F.col("r.price").isNull() | F.col("r.size").isNull()))
    )
    event_time = F.col("r.event_time_us")
    return (
        F.when(value_text.isNull() | r.isNull() | F.col(f"r.{_CORRUPT}").isNotNull(), F.lit("malformed_json"))
        .when(F.col("r.v").isNull() | (F.col("r.v") != F.lit(SCHEMA_VERSION)), F.lit("unknown_schema_version"))
        .when(F.col("r.kind").isNull() | ~F.col("r.kind").isin("trade", "tick"), F.lit("unknown_kind"))
        .when(missing, F.lit("missing_field"))
        .when((event_time < 0) | (event_time >= _MAX_EVENT_TIME_US), F.lit("event_time_out_of_range"))
        .when(
            F.col("r.receive_time_us") < F.try_subtract(event_time, F.lit(max_clock_skew_us)),
            F.lit("event_time_ahead_of_receipt"),
        )
        .when(is_trade & (value_text.rlike(_JSON_NUMBER[0]) | value_text.rlike(_JSON_NUMBER[1])), F.lit("bad_decimal"))
        .when(
            is_trade,
            F.coalesce(
                _decimal_problem("price", F.col("price_value")),
                _decimal_problem("size", F.col("size_value")),
                _notional_problem(F.col("price_value"), F.col("size_value")),
            ),
        )
    )


def parse_records(kafka_rows: DataFrame, max_clock_skew_us: int = DEFAULT_MAX_CLOCK_SKEW_US) -> DataFrame:
    """Kafka rows (binary ``value``) -> typed records.

    Output columns: kind, product_id, trade_id, price, size, event_time (timestamp, UTC µs),
    is_trade, dedupe_id. A row that does not fit the contract is dropped here and counted by
    reason (``REJECT_REASONS``) in the observed metric ``rejected_rows``, which Spark reports with
    the batch's progress (so a batch re-run after a crash is counted once, when it commits).
    Each decimal is try_cast once (null when it does not fit, never an ANSI error) and kept only
    when the checks found its text exact and in range: never rounded.
    """
    schema = record_schema().add(_CORRUPT, T.StringType())
    text = F.col("value").cast("string")
    parsed = kafka_rows.select(
        text.alias("text"),
        F.from_json(text, schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}).alias("r"),
    ).select(
        "text",
        "r",
        F.col("r.price").try_cast(PRICE_TYPE).alias("price_value"),
        F.col("r.size").try_cast(SIZE_TYPE).alias("size_value"),
    )
    checked = parsed.select(
        F.col("r"), "price_value", "size_value", reject_reason(F.col("text"), max_clock_skew_us).alias("reason")
    ).observe(REJECTED_METRIC, *[F.count_if(F.col("reason") == F.lit(r)).alias(r) for r in REJECT_REASONS])
    is_trade = F.col("kind") == F.lit("trade")
    return (
        checked.where(F.col("reason").isNull())
        .select("r.*", "price_value", "size_value")
        .select(
            F.col("kind"),
            F.col("product_id"),
            F.col("trade_id"),
            # exact and in range (checked above); ticks carry no price
            F.col("price_value").alias("price"),
            F.col("size_value").alias("size"),
            F.timestamp_micros(F.col("event_time_us")).alias("event_time"),
            is_trade.alias("is_trade"),
            # trades are unique by (product, trade_id); ticks by (product, time)
            F.coalesce(F.col("trade_id"), F.col("event_time_us")).alias("dedupe_id"),
        )
    )


def deduplicate(records: DataFrame, watermark: str) -> DataFrame:
    """Watermark on event time, then drop repeats of (kind, product_id, dedupe_id).

    Kafka's idempotent producer covers one producer session only; re-sent frames, ``last_match``,
    Advanced Trade snapshots and REST backfill overlapping the stream all repeat trades. State is
    kept for as long as the watermark allows a row to be late.
    """
    return records.withWatermark("event_time", watermark).dropDuplicatesWithinWatermark(
        ["kind", "product_id", "dedupe_id"]
    )


def _trade_only(column: Column) -> Column:
    return F.when(F.col("is_trade"), column)


def candles_for_window(records: DataFrame, window_seconds: int) -> DataFrame:
    """Aggregate one window size into candles.

    Ticks stay in the aggregation on purpose and every aggregate ignores them: on PySpark 4.1 a
    filter on ``kind`` after ``withWatermark`` kept ticks from moving the watermark, so a quiet
    product's minute would wait for its next trade. Windows holding only ticks are dropped after
    the aggregation. open/close are ordered by (event time, trade_id), so simultaneous trades
    resolve by id.
    """
    order = _trade_only(F.struct(F.col("event_time"), F.col("trade_id")))
    aggregated = records.groupBy(
        F.col("product_id"), F.window(F.col("event_time"), f"{window_seconds} seconds").alias("w")
    ).agg(
        F.min_by(_trade_only(F.col("price")), order).alias("open"),
        F.max(_trade_only(F.col("price"))).alias("high"),
        F.min(_trade_only(F.col("price"))).alias("low"),
        F.max_by(_trade_only(F.col("price")), order).alias("close"),
        F.sum(_trade_only(F.col("size"))).alias("volume"),
        # exact: integer units of 1e-20 (see NOTIONAL_UNITS_TYPE), the sum DECIMAL(38,0)
        F.sum(_trade_only(notional_units(F.col("price"), F.col("size")))).alias("notional_units"),
        F.count(_trade_only(F.lit(1))).alias("trade_count"),
        F.min_by(_trade_only(F.col("trade_id")), order).alias("first_trade_id"),
        F.max_by(_trade_only(F.col("trade_id")), order).alias("last_trade_id"),
    )
    return aggregated.where(F.col("trade_count") > 0).select(
        F.lit(window_label(window_seconds)).alias("window"),
        F.col("product_id"),
        F.col("w.start").alias("window_start"),
        F.col("w.end").alias("window_end"),
        F.col("open"),
        F.col("high"),
        F.col("low"),
        F.col("close"),
        F.col("volume"),
        F.col("trade_count"),
        F.col("first_trade_id"),
        F.col("last_trade_id"),
        # the sink makes notional (this at scale NOTIONAL_SCALE) and vwap (notional / volume) from
        # it: Spark's decimal division would round to 12 decimals at best
        F.col("notional_units"),
    )


def candles(
    kafka_rows: DataFrame, window_seconds: int, watermark: str, max_clock_skew_us: int = DEFAULT_MAX_CLOCK_SKEW_US
) -> DataFrame:
    """The whole transform for one window size: Kafka rows -> finished candles.

    One streaming query per window size, not a union of several aggregations in one query: on
    PySpark 4.1 the second branch of such a union never saw the watermark advance, so its
    windows were never emitted (measured: its state kept growing while the first branch evicted).
    """
    return candles_for_window(deduplicate(parse_records(kafka_rows, max_clock_skew_us), watermark), window_seconds)
