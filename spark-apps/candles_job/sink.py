"""The exactly-once candle sink: foreachBatch writing one Parquet file per lake partition per batch,
named by (generation, batch id), then the batch's manifest, then the window's complete-through.

Why this and not Spark's file sink: the file sink's commit log (``_spark_metadata``) is what decides
which files are committed, and pyarrow and DuckDB do not read it. Here a batch that Spark replays
after a crash is recomputed from the same offsets and the same state, sorted the same way, and
written under the same names, so it overwrites its own files with the same rows. An S3 PUT is
atomic, so no reader sees half a file; a batch's files become visible together when its manifest
(one PUT, written last) names them (cryptopipe/lake/commits.py). Then the window's complete-through
moves to the watermark the batch ran with: every window ending by then is in the lake.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame

from cryptopipe.contracts import (
    NOTIONAL_PRECISION,
    NOTIONAL_SCALE,
    VWAP_PRECISION,
    VWAP_SCALE,
    candle_arrow_schema,
    vwap_of,
)
from cryptopipe.lake import fence
from cryptopipe.lake.commits import CommittedFile, write_complete_through, write_manifest
from cryptopipe.lake.layout import LakeLocation, utc_date

log = logging.getLogger("cryptopipe.job.sink")


def candle_table(batch: DataFrame) -> pa.Table:
    """The batch's candles as an Arrow table in the contract's schema, sorted for determinism."""
    table = batch.toArrow()
    if table.num_rows == 0:
        return candle_arrow_schema().empty_table()
    table = table.sort_by([("product_id", "ascending"), ("window_start", "ascending")])
    window_col = table.column("window")
    notional = notional_column(table.column("notional_units"))
    vwap = pa.array(
        [vwap_of(n, v) for n, v in zip(notional.to_pylist(), table.column("volume").to_pylist(), strict=True)],
        pa.decimal128(VWAP_PRECISION, VWAP_SCALE),
    )
    derived = {"notional": notional, "vwap": vwap}
    columns = {f.name: derived[f.name] if f.name in derived else table.column(f.name) for f in candle_arrow_schema()}
    # Spark hands timestamps over as UTC-adjusted timestamp[us, tz=session tz]; the contract says UTC
    out = pa.table(columns).cast(candle_arrow_schema())
    return out.append_column("window", window_col)


def notional_column(units: pa.ChunkedArray) -> pa.ChunkedArray:
    """The job's ``notional_units`` (DECIMAL(38,0), integer units of 1e-NOTIONAL_SCALE) as the
    notional DECIMAL(38, NOTIONAL_SCALE): the same unscaled integers read at another scale, exact."""
    notional_type = pa.decimal128(NOTIONAL_PRECISION, NOTIONAL_SCALE)
    if units.type != pa.decimal128(NOTIONAL_PRECISION, 0):
        raise TypeError(f"notional_units must be decimal128({NOTIONAL_PRECISION}, 0), not {units.type}")
    return pa.chunked_array([chunk.view(notional_type) for chunk in units.chunks], notional_type)


def write_batch(
    table: pa.Table,
    *,
    lake: LakeLocation,
    filesystem,
    generation: int,
    batch_id: int,
    complete_through_us: int | None = None,
    before_commit: Callable[[], None] | None = None,
) -> list[str]:
    """Write one file per (window, product, date) partition, then a manifest per (window, date)
    naming them: the batch's commit (of each date). Returns the files written. ``before_commit``
    runs between the files and the manifests (the driver fence: it raises to refuse the commit)."""
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
    written: dict[tuple[str, str], list[CommittedFile]] = {}
    for (window, product_id, date), rows in sorted(partitions.items()):
        path = lake.candle_file(
            window=window, product_id=product_id, date=date, generation=generation, batch_id=batch_id
        )
        pq.write_table(table.take(rows).select(columns), path, filesystem=filesystem, compression="zstd")
        written.setdefault((window, date), []).append(CommittedFile(path, product_id, date, len(rows)))
    if before_commit is not None:
        before_commit()
    # one manifest per (window, date) the batch wrote (two only across midnight), in date order
    for (window, date), files in sorted(written.items()):
        write_manifest(
            filesystem,
            lake,
            window=window,
            generation=generation,
            batch_id=batch_id,
            files=files,
            complete_through_us=complete_through_us,
            date=date,
        )
    return [f.path for files in written.values() for f in files]


def offset_log_watermark_ms(spark, checkpoint_location: str, batch_id: int) -> int | None:
    """The event-time watermark batch ``batch_id`` runs with, from the query's offset log (written
    before the batch runs, so a replay reads the same value). Read through Hadoop, like Spark does,
    so an s3a:// or local checkpoint both work. None if the entry is missing or unreadable."""
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(f"{checkpoint_location.rstrip('/')}/offsets/{batch_id}")
    try:
        hadoop_fs = path.getFileSystem(spark._jsparkSession.sessionState().newHadoopConf())
        stream = hadoop_fs.open(path)
        try:
            reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
            version, metadata = reader.readLine(), reader.readLine()
        finally:
            stream.close()
        value = json.loads(metadata).get("batchWatermarkMs")
    except Exception as exc:  # noqa: BLE001 (py4j raises its own types): a missing value is not fatal
        log.warning("no watermark in the offset log", extra={"batch_id": batch_id, "error": str(exc)[:500]})
        return None
    if not str(version).startswith("v") or not isinstance(value, int):
        return None
    return value


def _from_window(table: pa.Table, first_window_us: int, window: str, batch_id: int) -> pa.Table:
    import pyarrow.compute as pc

    first = pa.scalar(first_window_us, pa.timestamp("us", tz="UTC"))
    kept = table.filter(pc.greater_equal(table.column("window_start"), first))
    if kept.num_rows != table.num_rows:
        # not a loss: an older generation wrote these windows and they are final there
        log.info(
            "windows before the hand-over left to the older generation",
            extra={"window": window, "batch_id": batch_id, "candles": table.num_rows - kept.num_rows},
        )
    return kept


def make_batch_writer(
    *,
    lake: LakeLocation,
    filesystem,
    generation: int,
    window: str,
    batch_watermark_ms: Callable[[int], int | None] | None = None,
    on_written: Callable[[int, int, int], None] | None = None,
    driver_token: str | None = None,
    first_window_us: int | None = None,
) -> Callable[[DataFrame, int], None]:
    """foreachBatch callback for one window size. ``batch_watermark_ms(batch_id)`` gives the watermark
    the batch runs with (complete-through); ``on_written(batch_id, candles, files)`` feeds metrics.
    ``driver_token``: claim the window's commits for this driver now, and refuse to commit (FencedOut)
    once another driver has claimed them since (lake/fence.py). ``first_window_us``: windows starting
    before it are an older generation's, final in the lake already (the hand-over,
    lake/generations.py): not written again."""
    last_published: list[int | None] = [None]
    before_commit: Callable[[], None] | None = None
    if driver_token is not None:
        fence.claim(
            filesystem,
            lake,
            window=window,
            generation=generation,
            token=driver_token,
            claimed_us=time.time_ns() // 1000,
        )
        before_commit = functools.partial(
            fence.check, filesystem, lake, window=window, generation=generation, token=driver_token
        )

    def write(batch: DataFrame, batch_id: int) -> None:
        if before_commit is not None:
            before_commit()  # a superseded driver stops before computing anything
        table = candle_table(batch)
        if first_window_us is not None and table.num_rows:
            table = _from_window(table, first_window_us, window, batch_id)
        watermark_ms = batch_watermark_ms(batch_id) if batch_watermark_ms else None
        through_us = watermark_ms * 1000 if watermark_ms else None
        paths = write_batch(
            table,
            lake=lake,
            filesystem=filesystem,
            generation=generation,
            batch_id=batch_id,
            complete_through_us=through_us,
            before_commit=before_commit,
        )
        if paths:
            log.info("candles written", extra={"batch_id": batch_id, "candles": table.num_rows, "files": len(paths)})
        # after the manifest: a reader that sees this value finds every candle it promises
        if through_us is not None and through_us != last_published[0]:
            write_complete_through(
                filesystem,
                lake,
                window=window,
                generation=generation,
                batch_id=batch_id,
                complete_through_us=through_us,
            )
            last_published[0] = through_us
        if on_written:
            on_written(batch_id, table.num_rows, len(paths))

    return write


__all__ = ["candle_table", "notional_column", "write_batch", "make_batch_writer", "offset_log_watermark_ms"]
