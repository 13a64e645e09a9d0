"""The exactly-once candle sink: foreachBatch writing one Parquet file per lake partition per batch,
named by (generation, batch id).

Why this and not Spark's file sink: the file sink's commit log (``_spark_metadata``) is what decides
which files are committed, and pyarrow and DuckDB do not read it, so they would see files of
batches that failed. Here every file the lake holds is final the moment it appears: a batch that
Spark replays after a crash is recomputed from the same offsets and the same state, sorted the same
way, and written under the same names, so it overwrites its own files with the same rows. An S3 PUT
is atomic, so a reader never sees half a file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame

from cryptopipe.contracts import candle_arrow_schema
from cryptopipe.lake.layout import LakeLocation, utc_date

log = logging.getLogger("cryptopipe.job.sink")


def candle_table(batch: DataFrame) -> pa.Table:
    """The batch's candles as an Arrow table in the contract's schema, sorted for determinism."""
    table = batch.toArrow()
    if table.num_rows == 0:
        return candle_arrow_schema().empty_table()
    table = table.sort_by([("product_id", "ascending"), ("window_start", "ascending")])
    window_col = table.column("window")
    columns = {field.name: table.column(field.name) for field in candle_arrow_schema()}
    # Spark hands timestamps over as UTC-adjusted timestamp[us, tz=session tz]; the contract says UTC
    out = pa.table(columns).cast(candle_arrow_schema())
    return out.append_column("window", window_col)


def write_batch(table: pa.Table, *, lake: LakeLocation, filesystem, generation: int, batch_id: int) -> list[str]:
    """Write one file per (window, product, date) partition; returns the paths written."""
    if table.num_rows == 0:
        return []
    partitions: dict[tuple[str, str, str], list[int]] = {}
    for i, (window, product_id, start) in enumerate(
        zip(
            table.column("window").to_pylist(),
            table.column("product_id").to_pylist(),
            table.column("window_start").to_pylist(),
            strict=False,
        )
    ):
        partitions.setdefault((window, product_id, utc_date(start)), []).append(i)
    columns = [f.name for f in candle_arrow_schema()]
    written = []
    for (window, product_id, date), rows in sorted(partitions.items()):
        path = lake.candle_file(
            window=window, product_id=product_id, date=date, generation=generation, batch_id=batch_id
        )
        pq.write_table(table.take(rows).select(columns), path, filesystem=filesystem, compression="zstd")
        written.append(path)
    return written


def make_batch_writer(
    *, lake: LakeLocation, filesystem, generation: int, on_written: Callable[[int, int, int], None] | None = None
) -> Callable[[DataFrame, int], None]:
    """foreachBatch callback. ``on_written(batch_id, candles, files)`` feeds metrics and progress."""

    def write(batch: DataFrame, batch_id: int) -> None:
        table = candle_table(batch)
        paths = write_batch(table, lake=lake, filesystem=filesystem, generation=generation, batch_id=batch_id)
        if paths:
            log.info("candles written", extra={"batch_id": batch_id, "candles": table.num_rows, "files": len(paths)})
        if on_written:
            on_written(batch_id, table.num_rows, len(paths))

    return write


__all__ = ["candle_table", "write_batch", "make_batch_writer"]
