"""Pure DataFrame -> DataFrame steps of the candle job. No sources, no sinks, no session set-up:
each step works the same on a static DataFrame (unit tests) and on the Kafka stream.

The pipeline, per window size: parse Kafka values -> watermark on event time -> drop duplicate
trades/ticks within the watermark -> aggregate trades and ticks together -> keep windows that had
a trade -> one candle row per (product, window).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cryptopipe.contracts import (
    DECIMAL_PRECISION,
    DECIMAL_SCALE,
    RECORD_FIELDS,
    SCHEMA_VERSION,
    window_label,
)

PRICE_TYPE = T.DecimalType(DECIMAL_PRECISION, DECIMAL_SCALE)

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


def parse_records(kafka_rows: DataFrame) -> DataFrame:
    """Kafka rows (binary ``value``) -> typed records.

    Output columns: kind, product_id, trade_id, price, size, event_time (timestamp, UTC µs),
    is_trade, dedupe_id. Rows that do not parse, or carry another schema version, are dropped
    here; ingestion validated every record against the same contract before producing it, so a
    row failing here means a foreign producer wrote to the topic.
    """
    parsed = kafka_rows.select(F.from_json(F.col("value").cast("string"), record_schema()).alias("r")).select("r.*")
    is_trade = F.col("kind") == F.lit("trade")
    return parsed.where(
        (F.col("v") == F.lit(SCHEMA_VERSION))
        & F.col("product_id").isNotNull()
        & F.col("event_time_us").isNotNull()
        & (
            (is_trade & F.col("trade_id").isNotNull() & F.col("price").isNotNull() & F.col("size").isNotNull())
            | (F.col("kind") == F.lit("tick"))
        )
    ).select(
        F.col("kind"),
        F.col("product_id"),
        F.col("trade_id"),
        F.col("price").cast(PRICE_TYPE).alias("price"),
        F.col("size").cast(PRICE_TYPE).alias("size"),
        F.timestamp_micros(F.col("event_time_us")).alias("event_time"),
        is_trade.alias("is_trade"),
        # trades are unique by (product, trade_id); ticks by (product, time)
        F.coalesce(F.col("trade_id"), F.col("event_time_us")).alias("dedupe_id"),
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
        # price*size of DECIMAL(18,8) is DECIMAL(37,16), its sum DECIMAL(38,16): exact
        F.sum(_trade_only(F.col("price") * F.col("size"))).alias("notional"),
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
        # Spark divides decimals with HALF_UP rounding at the result scale (8 here)
        (F.col("notional") / F.col("volume")).cast(PRICE_TYPE).alias("vwap"),
        F.col("first_trade_id"),
        F.col("last_trade_id"),
    )


def candles(kafka_rows: DataFrame, window_seconds: int, watermark: str) -> DataFrame:
    """The whole transform for one window size: Kafka rows -> finished candles.

    One streaming query per window size, not a union of several aggregations in one query: on
    PySpark 4.1 the second branch of such a union never saw the watermark advance, so its
    windows were never emitted (measured: its state kept growing while the first branch evicted).
    """
    return candles_for_window(deduplicate(parse_records(kafka_rows), watermark), window_seconds)
