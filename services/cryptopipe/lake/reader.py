"""Read candles back from the lake with pyarrow: what `cryptopipe candles`, the replay command, the
lake monitor and the tests use. Every file in the lake is committed (see candles_job/sink.py), so
reading is a plain Hive-partitioned dataset scan.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from cryptopipe.contracts import CANDLE_CSV_COLUMNS, candle_arrow_schema
from cryptopipe.lake.layout import LakeLocation


def _partitioning() -> ds.Partitioning:
    return ds.partitioning(
        pa.schema([("window", pa.string()), ("product_id", pa.string()), ("date", pa.string())]), flavor="hive"
    )


def read_candles(
    lake: LakeLocation,
    filesystem,
    *,
    window: str = "1m",
    products: Iterable[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pa.Table:
    """Candles of one window size, sorted by (product_id, window_start).

    ``start``/``end`` select windows with start <= window_start < end (timezone-aware datetimes).
    An empty lake gives an empty table with the contract's columns.
    """
    from pyarrow import fs

    schema = candle_arrow_schema()
    root = f"{lake.candles_root}/window={window}"
    if filesystem.get_file_info(root).type == fs.FileType.NotFound:
        return schema.empty_table()
    dataset = ds.dataset(lake.candles_root, filesystem=filesystem, format="parquet", partitioning=_partitioning())
    expr = pc.field("window") == window
    product_list = list(products or [])
    if product_list:
        expr &= pc.field("product_id").isin(product_list)
    if start is not None:
        expr &= pc.field("window_start") >= pa.scalar(start, type=pa.timestamp("us", tz="UTC"))
    if end is not None:
        expr &= pc.field("window_start") < pa.scalar(end, type=pa.timestamp("us", tz="UTC"))
    table = dataset.to_table(filter=expr, columns=[f.name for f in schema])
    return table.cast(schema).sort_by([("product_id", "ascending"), ("window_start", "ascending")])


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value.microsecond == 0 else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def candle_rows(table: pa.Table, columns: Iterable[str] = CANDLE_CSV_COLUMNS) -> list[dict]:
    """Rows as dicts of display strings: times ISO-8601 UTC, decimals exact (plain, no exponent)."""
    out = []
    for row in table.select(list(columns)).to_pylist():
        out.append(
            {
                k: _iso(v) if isinstance(v, datetime) else (format(v, "f") if hasattr(v, "as_tuple") else v)
                for k, v in row.items()
            }
        )
    return out


def to_csv(table: pa.Table, columns: Iterable[str] = CANDLE_CSV_COLUMNS) -> str:
    buffer = io.StringIO()
    columns = list(columns)
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(candle_rows(table, columns))
    return buffer.getvalue()
