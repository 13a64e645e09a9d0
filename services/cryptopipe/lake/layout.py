"""Where things live in the lake. Pure path arithmetic shared by the Spark sink, the reader,
the operator (checkpoint generations) and the tests.

    s3://BUCKET/PREFIX/candles/window=1m/product_id=BTC-USD/date=2026-11-26/part-g0001-b0000000042.parquet
    s3://BUCKET/PREFIX/candles/window=1m/product_id=BTC-USD/date=2026-11-26/compacted-<token>.parquet
    s3://BUCKET/PREFIX/candles/_manifests/window=1m/date=2026-11-26/g0001-b0000000042.json
    s3://BUCKET/PREFIX/candles/_manifests/window=1m/date=2026-11-26/c-BTC-USD-<token>.json
    s3://BUCKET/PREFIX/candles/_complete_through/window=1m/g0001.json
    s3://BUCKET/PREFIX/_checkpoints/gen-1/window=1m/
    s3://BUCKET/PREFIX/_checkpoints/gen-1/_generation.json

A candle file is named by (checkpoint generation, window, batch id): when Spark replays a batch after
a crash it recomputes the same rows from the same offsets and state, and writes them under the same
name, so the replay overwrites instead of adding. That is what makes the sink exactly-once.
A batch's manifest, named the same way and written after its files, is what makes them visible to
the reader (lake/commits.py); the complete-through object says up to when a window size is final.
Manifests sit in one folder per date (the dates of the files they name), so a reader lists only the
dates it needs. Manifests written before that (``_manifests/window=1m/g0001-b…json``, no date
folder) are still read. ``c-PRODUCT-TOKEN.json`` is a compaction's manifest (lake/compaction.py).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime


@dataclasses.dataclass(frozen=True, slots=True)
class LakeLocation:
    bucket: str
    prefix: str = "cryptopipe"

    @property
    def root(self) -> str:
        """bucket/prefix without a scheme (pyarrow's S3FileSystem takes paths like this)."""
        return f"{self.bucket}/{self.prefix.strip('/')}" if self.prefix.strip("/") else self.bucket

    @property
    def candles_root(self) -> str:
        return f"{self.root}/candles"

    @property
    def checkpoints_root(self) -> str:
        return f"{self.root}/_checkpoints"

    def checkpoint_root(self, generation: int) -> str:
        return f"{self.checkpoints_root}/gen-{generation}"

    def generation_record_file(self, generation: int) -> str:
        """The generation's write-once record (lake/generations.py), next to its queries' checkpoints."""
        return f"{self.checkpoint_root(generation)}/_generation.json"

    def checkpoint_url(self, generation: int, window: str, scheme: str = "s3a") -> str:
        """Hadoop URL of one query's checkpoint: Spark writes checkpoints through s3a."""
        return f"{scheme}://{self.checkpoint_root(generation)}/window={window}"

    def candle_file(self, *, window: str, product_id: str, date: str, generation: int, batch_id: int) -> str:
        return (
            f"{self.candles_root}/window={window}/product_id={product_id}/date={date}/"
            f"part-g{generation:04d}-b{batch_id:010d}.parquet"
        )

    def manifests_dir(self, window: str) -> str:
        return f"{self.candles_root}/_manifests/window={window}"

    def manifest_date_dir(self, window: str, date: str) -> str:
        return f"{self.manifests_dir(window)}/date={date}"

    def manifest_file(self, *, window: str, generation: int, batch_id: int, date: str | None = None) -> str:
        """A batch's manifest of one date's files (``date=None``: the flat name manifests had before
        they were organised by date, still read)."""
        folder = self.manifests_dir(window) if date is None else self.manifest_date_dir(window, date)
        return f"{folder}/g{generation:04d}-b{batch_id:010d}.json"

    def compaction_manifest_file(self, *, window: str, date: str, product_id: str, token: str) -> str:
        return f"{self.manifest_date_dir(window, date)}/c-{product_id}-{token}.json"

    def compacted_file(self, *, window: str, product_id: str, date: str, token: str) -> str:
        return f"{self.candles_root}/window={window}/product_id={product_id}/date={date}/compacted-{token}.parquet"

    def complete_through_dir(self, window: str) -> str:
        return f"{self.candles_root}/_complete_through/window={window}"

    def complete_through_file(self, *, window: str, generation: int) -> str:
        return f"{self.complete_through_dir(window)}/g{generation:04d}.json"

    def driver_claim_file(self, *, window: str, generation: int) -> str:
        """Which driver may commit this window's batches of this checkpoint generation (lake/fence.py)."""
        return f"{self.candles_root}/_drivers/window={window}/g{generation:04d}.json"


def utc_date(value: datetime) -> str:
    """The date partition of a window: the UTC date of its start."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d")
