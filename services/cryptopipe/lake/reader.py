"""Read candles back from the lake with pyarrow: what `cryptopipe candles`, the replay command, the
lake monitor and the tests use. Only committed batches are read: the files their manifests name
(lake/commits.py), never a batch being written. ``complete_through`` says which windows are final.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cryptopipe.contracts import CANDLE_CSV_COLUMNS, candle_arrow_schema
from cryptopipe.lake.commits import committed_files, complete_through
from cryptopipe.lake.layout import LakeLocation, utc_date

__all__ = ["read_candles", "committed_paths", "complete_through", "candle_rows", "to_csv"]


_ATTEMPTS = 3
# files fetched at once: an uncompacted day is one small file per batch, each a round trip
_READERS = 8


def _read_file(filesystem, path: str, schema: pa.Schema) -> pa.Table:
    """One candle file, its contract columns in the contract's types. Through pyarrow.parquet and not
    pyarrow.dataset: importing the latter imports pandas, a second of `cryptopipe candles`' start-up."""
    with filesystem.open_input_file(path) as f:
        table = pq.ParquetFile(f).read(columns=schema.names)
    return table.select(schema.names).cast(schema)


def _keep(table: pa.Table, products: list[str], start: datetime | None, end: datetime | None) -> pa.Table:
    """The rows of ``products`` (all if empty) with start <= window_start < end."""
    conditions = []
    if products:
        conditions.append(pc.is_in(table.column("product_id"), value_set=pa.array(products, pa.string())))
    if start is not None:
        conditions.append(pc.greater_equal(table.column("window_start"), pa.scalar(start, pa.timestamp("us", "UTC"))))
    if end is not None:
        conditions.append(pc.less(table.column("window_start"), pa.scalar(end, pa.timestamp("us", "UTC"))))
    if not conditions:
        return table
    mask = conditions[0]
    for condition in conditions[1:]:
        mask = pc.and_(mask, condition)
    return table.filter(mask)


def read_candles(
    lake: LakeLocation,
    filesystem,
    *,
    window: str = "1m",
    products: Iterable[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pa.Table:
    """Candles of one window size from committed batches, sorted by (product_id, window_start):
    exactly one per (product, window start) whatever checkpoint generations wrote it (the newest
    generation's; lake/commits.py CommittedFile.rank).

    ``start``/``end`` select windows with start <= window_start < end (timezone-aware datetimes).
    An empty lake gives an empty table with the contract's columns. Only the manifests of the dates
    in [start, end) (all dates if open) and the files of those products and dates are read.
    """
    schema = candle_arrow_schema()
    product_list = list(products or [])
    # a file's date partition is its windows' start date: only these can hold [start, end)
    first_date = utc_date(start) if start is not None else None
    last_date = utc_date(end - timedelta(microseconds=1)) if end is not None else None
    for attempt in range(_ATTEMPTS):
        # the manifests of one window size name only that window's files: no filter on window needed
        files = committed_files(
            lake, filesystem, window=window, products=product_list or None, first_date=first_date, last_date=last_date
        )
        if not files:
            return schema.empty_table()
        try:
            with ThreadPoolExecutor(min(_READERS, len(files))) as pool:
                tables = list(pool.map(lambda f: _read_file(filesystem, f.path, schema), files))
        except OSError:
            # a compaction deleted files it had superseded after we listed: list again, and the
            # compaction's manifest now names its merged file instead (lake/compaction.py)
            if attempt + 1 == _ATTEMPTS:
                raise
            continue
        ranked = [(rank, _keep(table, product_list, start, end)) for rank, table in _by_rank(files, tables)]
        return _newest_candles(ranked).sort_by([("product_id", "ascending"), ("window_start", "ascending")])
    raise AssertionError("unreachable")


def _by_rank(files, tables: list[pa.Table]) -> list[tuple[tuple, pa.Table]]:
    """The files' candles, one table per file rank (CommittedFile.rank), newest rank first: one
    rank in the usual lake."""
    groups: dict[tuple, list[pa.Table]] = {}
    for f, table in zip(files, tables, strict=True):
        groups.setdefault(f.rank, []).append(table)
    return [(rank, pa.concat_tables(group)) for rank, group in sorted(groups.items(), reverse=True)]


def _newest_candles(ranked: list[tuple[tuple, pa.Table]]) -> pa.Table:
    """One candle per (product, window start): of files of several ranks (two checkpoint
    generations that overlap: a new one re-read what the old one had written), the newest rank's.
    ``ranked`` is newest first."""
    if len(ranked) == 1:
        return ranked[0][1]
    tables = [t for _, t in ranked]
    order = pa.array([i for i, t in enumerate(tables) for _ in range(t.num_rows)], pa.int64())
    table = pa.concat_tables(tables).append_column("_rank_order", order)
    table = table.sort_by([("product_id", "ascending"), ("window_start", "ascending"), ("_rank_order", "ascending")])
    products = table.column("product_id").to_pylist()
    starts = table.column("window_start").to_pylist()
    keep = [i for i in range(len(starts)) if i == 0 or (products[i], starts[i]) != (products[i - 1], starts[i - 1])]
    return table.take(keep).drop_columns(["_rank_order"])


def committed_paths(lake: LakeLocation, filesystem, *, window: str = "1m", scheme: str = "") -> list[str]:
    """Paths of the committed candle files of one window size, for other readers: DuckDB's
    ``read_parquet([...], hive_partitioning=true)``, ``pyarrow.dataset.dataset([...])``, Spark.
    ``scheme`` ("s3://") is prefixed to each path; a glob over the folders would also see files of a
    batch that is still being written. Where two checkpoint generations overlap, both generations'
    files are listed (``read_candles`` keeps the newest's candle; a query over these paths should
    too, e.g. by the generation in the file name ``part-gNNNN-``)."""
    return [scheme + f.path for f in committed_files(lake, filesystem, window=window)]


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
