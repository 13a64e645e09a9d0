"""Compaction: merge a finished day's small candle files into one file per (window, product, date).

The job writes one file per partition per micro-batch, so a day of 1-minute candles is hundreds of
small files per product. Once every window of the day is final (the window's complete-through is at
or past the next midnight), ``compact_day`` replaces them, per product, in three steps, each safe to
be killed after:

1. **merge**: read the partition's committed files (what a reader sees, lake/commits.lake_view),
   write their rows, sorted, to ``window=W/product_id=P/date=D/compacted-TOKEN.parquet``. TOKEN is a
   hash of the manifests merged, so a rerun with the same inputs rewrites the same object. No
   manifest names it yet: readers do not see it.
2. **commit**: one PUT of ``_manifests/window=W/date=D/c-P-TOKEN.json`` naming the merged file and
   the manifests whose P entries of date D it *supersedes* (with the files they named). From that
   PUT on, readers read the merged file and skip those entries; before it, the small files. Never
   both, never neither.
3. **clean up**: delete the superseded small files (and a superseded earlier compaction's file and
   manifest). A reader that listed before step 2 and finds a file gone lists again
   (lake/reader.py), and then sees step 2's manifest.

A replayed batch of that day (the batch whose watermark crossed midnight, if its driver died before
Spark committed it) rewrites the same files and manifest under the same names: the name is still
superseded, so its rows are not read twice; the next run deletes its files again. A batch manifest
that no compaction names (a batch later than the compaction's listing) stays visible, and the next
run merges it with the previous merged file, superseding that compaction too (``supersedes`` is
transitive, so deleting the older compaction manifest loses nothing).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from cryptopipe.contracts import candle_arrow_schema
from cryptopipe.lake.commits import CommittedFile, _put, complete_through_us, lake_view
from cryptopipe.lake.layout import LakeLocation

log = logging.getLogger("cryptopipe.lake.compaction")

COMPACTION_FORMAT = 1


class DayNotFinal(RuntimeError):
    """The day's windows are not all final yet (complete-through before the next midnight)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What compacting one (window, product, date) will do."""

    window: str
    product_id: str
    date: str
    sources: tuple[CommittedFile, ...]  # the visible files, merged into one
    supersedes: tuple[str, ...]  # manifest rels (relative to the window's manifest folder)
    superseded_files: tuple[str, ...]  # paths relative to candles/, deleted in step 3
    token: str
    generation: int  # the newest checkpoint generation among the sources (CommittedFile.rank)
    merged_path: str
    manifest_path: str


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    product_id: str
    date: str
    action: str  # "compacted" | "already compacted" | "empty"
    files_merged: int
    rows: int
    deleted: int


def day_end_us(date: str) -> int:
    day = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC)
    return int((day + timedelta(days=1)).timestamp() * 1_000_000)


def check_final(lake: LakeLocation, filesystem, *, window: str, date: str) -> None:
    through = complete_through_us(lake, filesystem, window=window)
    if through is None or through < day_end_us(date):
        raise DayNotFinal(
            f"{window} candles of {date} are not all final: complete-through is "
            f"{'unknown' if through is None else datetime.fromtimestamp(through / 1e6, UTC).isoformat()}, "
            f"the day ends {datetime.fromtimestamp(day_end_us(date) / 1e6, UTC).isoformat()}"
        )


def _is_compacted(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith("compacted-")


def plan(lake: LakeLocation, filesystem, *, window: str, date: str, product_id: str) -> Plan | None:
    """What merging (window, product, date) takes now; None if it is one merged file already or
    empty. Does not check that the day is final (``compact_day`` does)."""
    view = lake_view(lake, filesystem, window=window, products=[product_id], first_date=date, last_date=date)
    sources = tuple(f for f in view.files if f.product_id == product_id and f.date == date)
    if not sources or (len(sources) == 1 and _is_compacted(sources[0].path)):
        return None
    earlier = {rel for (p, d, rel) in view.superseded if p == product_id and d == date}
    supersedes = tuple(sorted(earlier | {view.sources[f.path] for f in sources}))
    token = hashlib.sha256(json.dumps([window, product_id, date, supersedes]).encode()).hexdigest()[:20]
    root = lake.candles_root + "/"
    return Plan(
        window=window,
        product_id=product_id,
        date=date,
        sources=sources,
        supersedes=supersedes,
        superseded_files=tuple(sorted(f.path.removeprefix(root) for f in sources)),
        token=token,
        generation=max(f.generation for f in sources),
        merged_path=lake.compacted_file(window=window, product_id=product_id, date=date, token=token),
        manifest_path=lake.compaction_manifest_file(window=window, date=date, product_id=product_id, token=token),
    )


def merge(plan: Plan, filesystem) -> int:
    """Step 1: write the merged file (invisible until ``commit``). Returns its rows."""
    schema = candle_arrow_schema()
    columns = [f.name for f in schema]

    def read(source: CommittedFile) -> pa.Table:
        return pq.read_table(source.path, filesystem=filesystem, columns=columns, partitioning=None).cast(schema)

    # the newest-ranked source first: of two generations' candles of a window, the newer one stays
    ordered = sorted(plan.sources, key=lambda f: f.rank, reverse=True)
    with ThreadPoolExecutor(max_workers=min(16, len(ordered))) as pool:
        tables = list(pool.map(read, ordered))
    order = pa.array([i for i, t in enumerate(tables) for _ in range(t.num_rows)], pa.int64())
    merged = pa.concat_tables(tables).append_column("_order", order)
    merged = merged.sort_by([("window_start", "ascending"), ("_order", "ascending")])
    # one candle per window: one generation never writes one twice; of two generations, the newest
    starts = merged.column("window_start").to_pylist()
    keep = [i for i in range(len(starts)) if i == 0 or starts[i] != starts[i - 1]]
    if len(keep) != merged.num_rows:
        log.info(
            "overlapping generations: newest candle kept", extra={"product_id": plan.product_id, "date": plan.date}
        )
    merged = merged.take(keep).drop_columns(["_order"])
    pq.write_table(merged, plan.merged_path, filesystem=filesystem, compression="zstd")
    return merged.num_rows


def commit(plan: Plan, lake: LakeLocation, filesystem, *, rows: int) -> None:
    """Step 2: the compaction's manifest, one PUT: readers switch to the merged file."""
    _put(
        filesystem,
        plan.manifest_path,
        {
            "format": COMPACTION_FORMAT,
            "kind": "compaction",
            "window": plan.window,
            "product_id": plan.product_id,
            "date": plan.date,
            "files": [
                {
                    "path": plan.merged_path.removeprefix(lake.candles_root + "/"),
                    "product_id": plan.product_id,
                    "date": plan.date,
                    "rows": rows,
                }
            ],
            "supersedes": list(plan.supersedes),
            "superseded_files": list(plan.superseded_files),
            "generation": plan.generation,
        },
    )


def clean_up(lake: LakeLocation, filesystem, *, window: str, date: str, product_id: str) -> int:
    """Step 3: delete what the visible compaction of (window, product, date) supersedes and is still
    there: the small files, an earlier compaction's merged file and manifest, the files a replayed
    batch wrote again. Returns the objects deleted."""
    from pyarrow import fs

    from cryptopipe.lake.commits import _fetch, list_manifests

    view = lake_view(lake, filesystem, window=window, products=[product_id], first_date=date, last_date=date)
    visible = {view.sources[f.path] for f in view.files if _is_compacted(f.path)}
    if not visible:
        return 0
    refs = [
        r
        for r in list_manifests(lake, filesystem, window=window, first_date=date, last_date=date)
        if r.compaction_product == product_id and r.date == date
    ]
    bodies = dict(zip((r.rel for r in refs), _fetch(filesystem, refs), strict=True))
    doomed_files: set[str] = set()
    doomed_manifests: list[str] = []
    keep = {f.path for f in view.files}
    for rel in visible:
        for path in bodies[rel]["superseded_files"]:
            doomed_files.add(f"{lake.candles_root}/{path}")
    for rel, body in bodies.items():
        if rel in visible:
            continue
        if (product_id, date, rel) in view.superseded:  # an earlier compaction, replaced
            doomed_files |= {f"{lake.candles_root}/{f['path']}" for f in body["files"]}
            doomed_files |= {f"{lake.candles_root}/{p}" for p in body["superseded_files"]}
            doomed_manifests.append(f"{lake.manifests_dir(window)}/{rel}")
    doomed_files -= keep

    def delete_if_there(path: str) -> int:
        if filesystem.get_file_info(path).type != fs.FileType.File:
            return 0
        filesystem.delete_file(path)
        return 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        deleted = sum(pool.map(delete_if_there, sorted(doomed_files)))
    # the manifests last: until then their supersession is still written down twice
    for path in doomed_manifests:
        filesystem.delete_file(path)
    return deleted + len(doomed_manifests)


def products_of_day(lake: LakeLocation, filesystem, *, window: str, date: str) -> list[str]:
    view = lake_view(lake, filesystem, window=window, first_date=date, last_date=date)
    return sorted({f.product_id for f in view.files if f.date == date})


def compact_partition(
    lake: LakeLocation, filesystem, *, window: str, date: str, product_id: str, delete: bool = True
) -> Result:
    """Merge, commit, clean up one (window, product, date). Idempotent; safe to rerun after a crash."""
    step = plan(lake, filesystem, window=window, date=date, product_id=product_id)
    if step is None:
        deleted = clean_up(lake, filesystem, window=window, date=date, product_id=product_id) if delete else 0
        view = lake_view(lake, filesystem, window=window, products=[product_id], first_date=date, last_date=date)
        rows = sum(f.rows for f in view.files)
        return Result(product_id, date, "already compacted" if view.files else "empty", 0, rows, deleted)
    rows = merge(step, filesystem)
    commit(step, lake, filesystem, rows=rows)
    deleted = clean_up(lake, filesystem, window=window, date=date, product_id=product_id) if delete else 0
    log.info(
        "partition compacted",
        extra={"window": window, "product_id": product_id, "date": date, "files": len(step.sources), "rows": rows},
    )
    return Result(product_id, date, "compacted", len(step.sources), rows, deleted)


def compact_day(
    lake: LakeLocation,
    filesystem,
    *,
    window: str,
    date: str,
    products: Iterable[str] | None = None,
    delete: bool = True,
) -> list[Result]:
    """Compact a finished day: one file per (window, product, date). Raises DayNotFinal before
    touching anything if complete-through has not passed the day's end."""
    check_final(lake, filesystem, window=window, date=date)
    wanted = list(products or ()) or products_of_day(lake, filesystem, window=window, date=date)
    return [compact_partition(lake, filesystem, window=window, date=date, product_id=p, delete=delete) for p in wanted]


__all__ = [
    "DayNotFinal",
    "Plan",
    "Result",
    "check_final",
    "plan",
    "merge",
    "commit",
    "clean_up",
    "compact_partition",
    "compact_day",
    "products_of_day",
]
