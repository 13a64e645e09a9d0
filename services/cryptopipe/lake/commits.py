"""What makes a batch's candle files visible, and which minutes are final.

A micro-batch writes N Parquet files one by one, then its **manifest** per date it wrote
(``candles/_manifests/window=W/date=D/gGGGG-bBBBBBBBBBB.json``: the batch's files of that date,
relative to ``candles/``, with their product, date and row count; two only for a batch across
midnight). One S3 PUT writes a manifest, so a batch's files of a date become visible all at once: the reader (lake/reader.py) reads only files a manifest names, and
ignores the files of a batch that is still being written or that a crash interrupted. A replayed
batch (the same batch id after a crash) writes the same files and the same manifest bytes under the
same names: the replay overwrites, never adds. A reader lists only the date folders its query
needs; flat manifests (``_manifests/window=W/gGGGG-b….json``, written before the date folders) are
still read, by every query. A compaction (lake/compaction.py) adds ``date=D/c-PRODUCT-TOKEN.json``
naming its merged file and the manifests it supersedes; ``lake_view`` resolves that.

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
import re
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from cryptopipe.contracts import us_to_datetime
from cryptopipe.lake.layout import LakeLocation

MANIFEST_FORMAT = 1


@dataclasses.dataclass(frozen=True, slots=True)
class CommittedFile:
    path: str  # full filesystem path (bucket/prefix/candles/...)
    product_id: str
    date: str
    rows: int
    # the newest checkpoint generation whose candles the file holds (a batch's own; a compaction's
    # newest source's), 0 when unknown: the reader keeps the newest generation's candle of a window
    generation: int = 0

    @property
    def rank(self) -> tuple[int, int]:
        """Which file's candle of a window wins when several hold one (two generations overlapping):
        the newest generation; of one generation, a batch's file over a compaction's merged file
        (which may carry an older generation's candle of a window that batch wrote since)."""
        return (self.generation, 0 if _is_compacted_path(self.path) else 1)


_BATCH_FILE = re.compile(r"part-g(\d+)-b\d+\.parquet$")


def _is_compacted_path(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith("compacted-")


def path_generation(path: str) -> int:
    """The checkpoint generation in a batch file's name (``part-g0002-b…``), 0 for other files."""
    match = _BATCH_FILE.search(path)
    return int(match.group(1)) if match else 0


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
    date: str | None = None,
) -> str:
    """The batch's commit of one date's files: write after every file it names. Deterministic bytes
    for a batch (no wall clock in it), so a replay after a crash rewrites the same object.
    ``date=None`` writes the flat, pre-date name (what older sinks wrote; kept for tests)."""
    root = lake.candles_root + "/"
    entries = [
        {"path": f.path.removeprefix(root), "product_id": f.product_id, "date": f.date, "rows": f.rows} for f in files
    ]
    path = lake.manifest_file(window=window, generation=generation, batch_id=batch_id, date=date)
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
        }
        | ({"date": date} if date is not None else {}),
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


def clear_manifest_cache() -> None:
    """Forget every manifest fetched (a cold reader, for tests and benchmarks)."""
    with _CACHE_LOCK:
        _CACHE.clear()


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


@dataclasses.dataclass(frozen=True, slots=True)
class ManifestRef:
    """A manifest found by a listing: ``rel`` is its name relative to the window's manifest folder
    (``date=2026-11-26/g0001-b0000000042.json``; a flat name for a manifest written before dates)."""

    info: Any  # pyarrow FileInfo
    rel: str
    date: str | None  # the date folder, None for a flat (older) manifest

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    @property
    def compaction_product(self) -> str | None:
        """The product of a compaction manifest (``c-PRODUCT-TOKEN.json``), None for a batch's."""
        if not self.name.startswith("c-"):
            return None
        return self.name[2:].removesuffix(".json").rsplit("-", 1)[0]


def list_manifests(
    lake: LakeLocation, filesystem, *, window: str, first_date: str | None = None, last_date: str | None = None
) -> list[ManifestRef]:
    """The manifests of the date folders in [first_date, last_date] (either end open), and every flat
    (pre-date) manifest: one LIST of the window's folder, one per date folder in range."""
    from pyarrow import fs

    root = lake.manifests_dir(window)
    top = filesystem.get_file_info(fs.FileSelector(root, allow_not_found=True, recursive=False))
    refs = [
        ManifestRef(i, i.base_name, None) for i in top if i.type == fs.FileType.File and i.base_name.endswith(".json")
    ]
    dates = sorted(
        i.base_name.removeprefix("date=")
        for i in top
        if i.type == fs.FileType.Directory and i.base_name.startswith("date=")
    )
    dates = [d for d in dates if (first_date is None or d >= first_date) and (last_date is None or d <= last_date)]

    def listing(date: str) -> list[ManifestRef]:
        selector = fs.FileSelector(lake.manifest_date_dir(window, date), allow_not_found=True)
        return [
            ManifestRef(i, f"date={date}/{i.base_name}", date)
            for i in filesystem.get_file_info(selector)
            if i.type == fs.FileType.File and i.base_name.endswith(".json")
        ]

    if len(dates) == 1:
        refs += listing(dates[0])
    elif dates:
        with ThreadPoolExecutor(max_workers=min(8, len(dates))) as pool:
            for found in pool.map(listing, dates):
                refs += found
    return sorted(refs, key=lambda r: r.rel)


def _fetch(filesystem, refs: list[ManifestRef]) -> list[dict]:
    if not refs:
        return []
    if len(refs) == 1:
        return [_cached_manifest(filesystem, refs[0].info)]
    with ThreadPoolExecutor(max_workers=min(16, len(refs))) as pool:
        return list(pool.map(lambda ref: _cached_manifest(filesystem, ref.info), refs))


def read_manifests(lake: LakeLocation, filesystem, *, window: str) -> list[dict]:
    """Every committed batch's manifest of this window size (compactions' left out), by name."""
    refs = [r for r in list_manifests(lake, filesystem, window=window) if r.compaction_product is None]
    return _fetch(filesystem, refs)


@dataclasses.dataclass(frozen=True, slots=True)
class LakeView:
    """What a reader sees of some dates: the committed files, after compactions' supersession.

    ``superseded`` holds (product, date, manifest rel) triples: that manifest's entries of that
    product and date are replaced by a compaction's merged file (lake/compaction.py).
    ``sources`` maps each visible file to the rel of the manifest naming it."""

    files: list[CommittedFile]
    sources: dict[str, str]
    superseded: frozenset[tuple[str, str, str]]


def _in_range(date: str, first_date: str | None, last_date: str | None) -> bool:
    return not ((first_date and date < first_date) or (last_date and date > last_date))


def lake_view(
    lake: LakeLocation,
    filesystem,
    *,
    window: str,
    products: Iterable[str] | None = None,
    first_date: str | None = None,
    last_date: str | None = None,
) -> LakeView:
    """Resolve the manifests of [first_date, last_date] for these products (None: all).

    A compaction manifest of (P, D) lists the manifests whose P entries of date D it merged
    (``supersedes``, transitively: an earlier compaction's too). Those entries are hidden, and so is a
    compaction manifest another one supersedes, or whose sources another covers (two compactors that
    raced). A batch manifest whose entries are hidden for every wanted product is not even fetched:
    after compaction a one-product, one-day read fetches one manifest and one file."""
    wanted = set(products or ())
    refs = list_manifests(lake, filesystem, window=window, first_date=first_date, last_date=last_date)
    compactions = [
        r for r in refs if r.compaction_product is not None and (not wanted or r.compaction_product in wanted)
    ]
    fetched = dict(zip((r.rel for r in compactions), _fetch(filesystem, compactions), strict=True))
    superseded: set[tuple[str, str, str]] = set()
    groups: dict[tuple[str, str], list[tuple[ManifestRef, dict]]] = {}
    for ref in compactions:
        body = fetched[ref.rel]
        groups.setdefault((str(body["product_id"]), str(body["date"])), []).append((ref, body))
    visible_compactions: list[tuple[ManifestRef, dict]] = []
    for (product, date), group in groups.items():
        group.sort(key=lambda item: (-len(item[1]["supersedes"]), item[0].rel))
        union: set[str] = set()
        kept: list[tuple[ManifestRef, dict]] = []
        for ref, body in group:
            sup = set(body["supersedes"])
            if ref.rel in union or any(sup <= set(k[1]["supersedes"]) for k in kept):
                continue
            kept.append((ref, body))
            union |= sup
        superseded |= {(product, date, rel) for rel in union}
        kept_rels = {k[0].rel for k in kept}
        superseded |= {(product, date, ref.rel) for ref, _ in group if ref.rel not in kept_rels}
        visible_compactions += kept
    supersede_index: dict[str, set[tuple[str, str]]] = {}
    for product, date, rel in superseded:
        supersede_index.setdefault(rel, set()).add((product, date))

    def needed(ref: ManifestRef) -> bool:
        if ref.compaction_product is not None:
            return False
        if ref.date is None or not wanted:
            return True
        hidden = supersede_index.get(ref.rel, set())
        return any((product, ref.date) not in hidden for product in wanted)

    batches = [r for r in refs if needed(r)]
    out: dict[str, CommittedFile] = {}
    sources: dict[str, str] = {}
    bodies = list(zip(batches, _fetch(filesystem, batches), strict=True)) + visible_compactions
    for ref, manifest in bodies:
        for entry in manifest.get("files", []):
            product, date = entry["product_id"], entry["date"]
            if (wanted and product not in wanted) or not _in_range(date, first_date, last_date):
                continue
            if (product, date, ref.rel) in superseded:
                continue
            path = f"{lake.candles_root}/{entry['path']}"
            out[path] = CommittedFile(path, product, date, int(entry["rows"]), _manifest_generation(manifest))
            sources[path] = ref.rel
    files = sorted(out.values(), key=lambda f: f.path)
    return LakeView(files, sources, frozenset(superseded))


def _manifest_generation(manifest: dict) -> int:
    """A batch manifest's generation; a compaction's: the newest of the batch files it merged."""
    if "superseded_files" in manifest and "generation" not in manifest:  # a compaction before generations
        return max((path_generation(p) for p in manifest["superseded_files"]), default=0)
    return int(manifest.get("generation") or 0)


def committed_files(
    lake: LakeLocation,
    filesystem,
    *,
    window: str,
    products: Iterable[str] | None = None,
    first_date: str | None = None,
    last_date: str | None = None,
) -> list[CommittedFile]:
    """The files of committed batches (those a manifest names, less what a compaction replaced),
    optionally of some products and of date partitions in [first_date, last_date]. Files no
    manifest names are not committed: a batch being written, or one a crash interrupted before its
    replay. Only the manifests of those dates (and those products' compactions) are fetched."""
    return lake_view(
        lake, filesystem, window=window, products=products, first_date=first_date, last_date=last_date
    ).files


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
