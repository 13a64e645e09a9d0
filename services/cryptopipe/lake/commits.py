"""What makes a batch's candle files visible, and which minutes are final.

A micro-batch writes N Parquet files one by one, then its **manifest**
(``candles/_manifests/window=W/gGGGG-bBBBBBBBBBB.json``: the batch's files, relative to
``candles/``, with their product, date and row count). One S3 PUT writes the manifest, so a batch
becomes visible all at once: the reader (lake/reader.py) reads only files a manifest names, and
ignores the files of a batch that is still being written or that a crash interrupted. A replayed
batch (the same batch id after a crash) writes the same files and the same manifest bytes under the
same names: the replay overwrites, never adds.

After the manifest, the batch writes **complete-through** (``candles/_complete_through/window=W/
gGGGG.json``): the event-time watermark the batch ran with. Spark emits a window in append mode
once the watermark passes its end, so every window ending at or before complete-through is final:
a minute there without a candle had no trade, a minute after it may not be written yet. Written
after the manifest, so a reader that reads complete-through first and then lists the manifests
sees every candle complete-through promises.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from cryptopipe.contracts import us_to_datetime
from cryptopipe.lake.layout import LakeLocation

MANIFEST_FORMAT = 1


@dataclasses.dataclass(frozen=True, slots=True)
class CommittedFile:
    path: str  # full filesystem path (bucket/prefix/candles/...)
    product_id: str
    date: str
    rows: int


def _put(filesystem, path: str, body: dict) -> None:
    """One small object in one PUT (atomic on S3): readers see all of it or nothing."""
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    with filesystem.open_output_stream(path) as out:
        out.write(data)


def _get(filesystem, path: str) -> dict:
    with filesystem.open_input_stream(path) as stream:
        return json.loads(stream.read())


def write_manifest(
    filesystem,
    lake: LakeLocation,
    *,
    window: str,
    generation: int,
    batch_id: int,
    files: Iterable[CommittedFile],
    complete_through_us: int | None,
) -> str:
    """The batch's commit: write after every file it names. Deterministic bytes for a batch (no wall
    clock in it), so a replay after a crash rewrites the same object."""
    root = lake.candles_root + "/"
    entries = [
        {"path": f.path.removeprefix(root), "product_id": f.product_id, "date": f.date, "rows": f.rows} for f in files
    ]
    path = lake.manifest_file(window=window, generation=generation, batch_id=batch_id)
    _put(
        filesystem,
        path,
        {
            "format": MANIFEST_FORMAT,
            "window": window,
            "generation": generation,
            "batch_id": batch_id,
            "files": entries,
            "complete_through_us": complete_through_us,
        },
    )
    return path


def write_complete_through(
    filesystem, lake: LakeLocation, *, window: str, generation: int, batch_id: int, complete_through_us: int
) -> str:
    """Every window of this size ending at or before ``complete_through_us`` is in the lake (after the
    manifests of batches up to ``batch_id``)."""
    path = lake.complete_through_file(window=window, generation=generation)
    _put(
        filesystem,
        path,
        {"format": MANIFEST_FORMAT, "window": window, "generation": generation, "batch_id": batch_id}
        | {"complete_through_us": complete_through_us},
    )
    return path


# Manifests never change once written (a replay rewrites the same bytes), so readers that poll (the
# lake monitor every few seconds) fetch each one once. Keyed by path and the listing's mtime and
# size, so an overwritten manifest is fetched again.
_CACHE: dict[tuple[str, int | None, int | None], dict] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 200_000


def _cached_manifest(filesystem, info) -> dict:
    key = (info.path, info.mtime_ns, info.size)
    with _CACHE_LOCK:
        found = _CACHE.get(key)
    if found is not None:
        return found
    manifest = _get(filesystem, info.path)
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = manifest
    return manifest


def read_manifests(lake: LakeLocation, filesystem, *, window: str) -> list[dict]:
    """Every committed batch's manifest of this window size, in (generation, batch id) order."""
    from pyarrow import fs

    selector = fs.FileSelector(lake.manifests_dir(window), allow_not_found=True)
    infos = sorted(
        (i for i in filesystem.get_file_info(selector) if i.type == fs.FileType.File and i.base_name.endswith(".json")),
        key=lambda i: i.base_name,
    )
    if not infos:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(infos))) as pool:
        return list(pool.map(lambda info: _cached_manifest(filesystem, info), infos))


def committed_files(
    lake: LakeLocation,
    filesystem,
    *,
    window: str,
    products: Iterable[str] | None = None,
    first_date: str | None = None,
    last_date: str | None = None,
) -> list[CommittedFile]:
    """The files of committed batches (those a manifest names), optionally of some products and of
    date partitions in [first_date, last_date]. Files no manifest names are not committed: a batch
    being written, or one a crash interrupted before its replay."""
    wanted = set(products or ())
    out: dict[str, CommittedFile] = {}
    for manifest in read_manifests(lake, filesystem, window=window):
        for entry in manifest.get("files", []):
            if wanted and entry["product_id"] not in wanted:
                continue
            if (first_date and entry["date"] < first_date) or (last_date and entry["date"] > last_date):
                continue
            path = f"{lake.candles_root}/{entry['path']}"
            out[path] = CommittedFile(path, entry["product_id"], entry["date"], int(entry["rows"]))
    return sorted(out.values(), key=lambda f: f.path)


def complete_through_us(lake: LakeLocation, filesystem, *, window: str) -> int | None:
    """Epoch µs up to which every window of this size is final (the newest generation's value,
    taken as the largest: a new generation starts behind until it catches up), or None if unknown."""
    from pyarrow import fs

    selector = fs.FileSelector(lake.complete_through_dir(window), allow_not_found=True)
    found = [
        _get(filesystem, info.path).get("complete_through_us")
        for info in filesystem.get_file_info(selector)
        if info.type == fs.FileType.File and info.base_name.endswith(".json")
    ]
    values = [v for v in found if isinstance(v, int) and v > 0]
    return max(values) if values else None


def complete_through(lake: LakeLocation, filesystem, *, window: str) -> datetime | None:
    """As ``complete_through_us``, as a UTC datetime: windows with ``window_end <=`` it are final."""
    value = complete_through_us(lake, filesystem, window=window)
    return None if value is None else us_to_datetime(value)
