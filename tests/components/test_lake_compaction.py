"""The lake as it grows (issue 12, section 4), on the real S3 server: a query reads only the
partitions it needs, and compaction merges a finished day's small files into one per
(window, product, date) without a reader ever seeing a candle twice or losing one.

The lake is written with the job's own sink (candles_job.sink.write_batch): 3 days × 3 products,
4 batches a day, each batch one file per product. Requests are counted through a filesystem that
forwards to pyarrow's S3 client (cryptopipe_dev.bench.countingfs), not timed. Crashes between
compaction steps are the steps run one at a time, with every reader check in between.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pyarrow import fs

from cryptopipe.lake import compaction
from cryptopipe.lake.commits import CommittedFile, clear_manifest_cache, write_complete_through, write_manifest
from cryptopipe.lake.layout import LakeLocation
from cryptopipe.lake.reader import read_candles
from cryptopipe_dev.bench.countingfs import counting
from tests.support.local_services import LAKE_BUCKET
from tests.support.synthetic_candles import candle_rows, write_candles

pytestmark = pytest.mark.components

DAY0 = datetime(2026, 11, 20, tzinfo=UTC)
DAYS = ("2026-11-20", "2026-11-21", "2026-11-22")
PRODUCTS = ("AAA-USD", "BBB-USD", "CCC-USD")
BATCHES_PER_DAY = 4
CANDLES_PER_BATCH = 6


def batch_id(day: int, k: int) -> int:
    return day * 100 + k


def rows_of_batch(day: int, k: int) -> list[dict]:
    """Batch k of a day: CANDLES_PER_BATCH minutes of each product, spread over the day."""
    start = DAY0 + timedelta(days=day, hours=6 * k)
    rows: list[dict] = []
    for seed, product in enumerate(PRODUCTS, start=1):
        rows += candle_rows(product, start, CANDLES_PER_BATCH, seed=seed * 1000 + batch_id(day, k))
    return rows


def build_lake(s3: Any, *, through_days: int = 2) -> tuple[LakeLocation, fs.FileSystem]:
    """The lake, with complete-through past the end of the first ``through_days`` days."""
    lake = LakeLocation(LAKE_BUCKET, f"compaction-{uuid.uuid4().hex[:8]}")
    filesystem = s3.connection.arrow_filesystem()
    for day in range(len(DAYS)):
        for k in range(BATCHES_PER_DAY):
            write_candles(rows_of_batch(day, k), lake=lake, filesystem=filesystem, batch_id=batch_id(day, k))
    through = DAY0 + timedelta(days=through_days, minutes=1)
    write_complete_through(
        filesystem,
        lake,
        window="1m",
        generation=1,
        batch_id=999,
        complete_through_us=int(through.timestamp() * 1_000_000),
    )
    return lake, filesystem


def day(i: int) -> datetime:
    return DAY0 + timedelta(days=i)


QUERIES: list[dict] = [
    {},
    {"products": ["AAA-USD"]},
    {"products": ["BBB-USD", "CCC-USD"], "start": day(0), "end": day(1)},
    {"products": ["AAA-USD"], "start": day(0) + timedelta(hours=6), "end": day(1) + timedelta(hours=7)},
    {"start": day(1), "end": day(2)},
    {"start": day(0) + timedelta(hours=12, minutes=3)},
]


def snapshot(lake: LakeLocation, filesystem) -> list[list[dict]]:
    """Every query's answer; each with one candle per (product, window_start)."""
    out = []
    for query in QUERIES:
        rows = read_candles(lake, filesystem, **query).to_pylist()
        keys = [(r["product_id"], r["window_start"]) for r in rows]
        assert len(keys) == len(set(keys)), f"a candle twice for {query}"
        out.append(rows)
    return out


def objects(lake: LakeLocation, filesystem) -> dict[str, int]:
    infos = filesystem.get_file_info(fs.FileSelector(lake.candles_root, recursive=True))
    return {i.path: i.size for i in infos if i.type == fs.FileType.File}


def partition_files(lake: LakeLocation, filesystem, product: str, date: str) -> list[str]:
    folder = f"{lake.candles_root}/window=1m/product_id={product}/date={date}"
    return sorted(i.base_name for i in filesystem.get_file_info(fs.FileSelector(folder)))


def touched(handler, lake: LakeLocation) -> set[str]:
    """Objects read and folders listed, relative to candles/."""
    return {p.removeprefix(lake.candles_root + "/") for p in handler.paths("get", "stat", "list", "list_recursive")}


def test_a_query_reads_only_its_partition(s3: Any) -> None:
    lake, raw = build_lake(s3)
    filesystem, handler = counting(raw)
    everything = read_candles(lake, raw).to_pylist()
    assert len(everything) == len(DAYS) * BATCHES_PER_DAY * len(PRODUCTS) * CANDLES_PER_BATCH

    handler.reset()
    clear_manifest_cache()  # a cold reader
    got = read_candles(lake, filesystem, products=["BBB-USD"], start=day(1), end=day(2)).to_pylist()
    assert got == [r for r in everything if r["product_id"] == "BBB-USD" and day(1) <= r["window_start"] < day(2)]
    seen = touched(handler, lake)
    manifests = "_manifests/window=1m"
    partition = "window=1m/product_id=BBB-USD/date=2026-11-21/"
    assert handler.count("list_recursive") == 0
    # one LIST of the window's manifest folder (flat, older manifests and the date folders), one of the day's
    assert set(handler.paths("list")) == {
        f"{lake.candles_root}/{manifests}",
        f"{lake.candles_root}/{manifests}/date=2026-11-21",
    }
    for path in seen - {manifests, f"{manifests}/date=2026-11-21"}:
        assert path.startswith((f"{manifests}/date=2026-11-21/", partition)), f"read outside the partition: {path}"
    # the day's manifests (one per batch) and the partition's files, nothing else
    assert len({p for p in seen if p.startswith(f"{manifests}/date=")} - {f"{manifests}/date=2026-11-21"}) == (
        BATCHES_PER_DAY
    )
    assert len({p for p in seen if p.startswith(partition)}) == BATCHES_PER_DAY
    # today's reader fetched every manifest of every day: 3 × 4 here


def test_manifests_written_before_date_folders_are_still_read(s3: Any) -> None:
    lake, filesystem = build_lake(s3)
    before = read_candles(lake, filesystem).to_pylist()
    # a batch committed by an older sink: its manifest has the flat name, no date folder
    rows = candle_rows("OLD-USD", day(1) + timedelta(hours=3), 5, seed=5)
    paths = write_candles(rows, lake=lake, filesystem=filesystem, batch_id=5000)
    filesystem.delete_file(lake.manifest_file(window="1m", generation=1, batch_id=5000, date=DAYS[1]))
    write_manifest(
        filesystem,
        lake,
        window="1m",
        generation=1,
        batch_id=5000,
        files=[CommittedFile(paths[0], "OLD-USD", DAYS[1], len(rows))],
        complete_through_us=None,
    )
    assert len(read_candles(lake, filesystem).to_pylist()) == len(before) + len(rows)
    got = read_candles(lake, filesystem, products=["OLD-USD"], start=day(1), end=day(2)).to_pylist()
    assert [r["window_start"] for r in got] == [r["window_start"] for r in rows]


def test_compaction_keeps_every_answer_and_leaves_one_file_per_partition(s3: Any) -> None:
    lake, filesystem = build_lake(s3)
    before = snapshot(lake, filesystem)
    results = compaction.compact_day(lake, filesystem, window="1m", date=DAYS[0])
    assert [(r.product_id, r.action, r.files_merged) for r in results] == [
        (p, "compacted", BATCHES_PER_DAY) for p in PRODUCTS
    ]
    assert snapshot(lake, filesystem) == before
    for product in PRODUCTS:
        (only,) = partition_files(lake, filesystem, product, DAYS[0])
        assert only.startswith("compacted-")
        assert len(partition_files(lake, filesystem, product, DAYS[1])) == BATCHES_PER_DAY  # not compacted

    # one product, one day, after compaction: the day's listing, one manifest, one file
    counted, handler = counting(filesystem)
    clear_manifest_cache()
    got = read_candles(lake, counted, products=["AAA-USD"], start=day(0), end=day(1)).to_pylist()
    assert len(got) == BATCHES_PER_DAY * CANDLES_PER_BATCH
    gets = {p.removeprefix(lake.candles_root + "/") for p in handler.paths("get")}
    assert len(gets) == 2, gets
    assert any(p.startswith("_manifests/window=1m/date=2026-11-20/c-AAA-USD-") for p in gets)
    assert any(p.startswith("window=1m/product_id=AAA-USD/date=2026-11-20/compacted-") for p in gets)

    # a second day, one product at a time
    compaction.compact_day(lake, filesystem, window="1m", date=DAYS[1], products=["CCC-USD"])
    assert snapshot(lake, filesystem) == before
    assert len(partition_files(lake, filesystem, "CCC-USD", DAYS[1])) == 1
    assert len(partition_files(lake, filesystem, "AAA-USD", DAYS[1])) == BATCHES_PER_DAY


def test_a_day_not_yet_final_is_not_compacted(s3: Any) -> None:
    lake, filesystem = build_lake(s3, through_days=2)
    before = objects(lake, filesystem)
    with pytest.raises(compaction.DayNotFinal, match="not all final"):
        compaction.compact_day(lake, filesystem, window="1m", date=DAYS[2])
    assert objects(lake, filesystem) == before


def test_compacting_twice_changes_nothing(s3: Any) -> None:
    lake, filesystem = build_lake(s3)
    before = snapshot(lake, filesystem)
    compaction.compact_day(lake, filesystem, window="1m", date=DAYS[0])
    after_once = objects(lake, filesystem)
    again = compaction.compact_day(lake, filesystem, window="1m", date=DAYS[0])
    assert [(r.action, r.deleted) for r in again] == [("already compacted", 0)] * len(PRODUCTS)
    assert objects(lake, filesystem) == after_once
    assert snapshot(lake, filesystem) == before


def test_killed_between_any_two_steps_a_reader_sees_every_candle_once(s3: Any) -> None:
    lake, filesystem = build_lake(s3)
    before = snapshot(lake, filesystem)
    compaction.check_final(lake, filesystem, window="1m", date=DAYS[0])
    step = compaction.plan(lake, filesystem, window="1m", date=DAYS[0], product_id="AAA-USD")
    assert step is not None and len(step.sources) == BATCHES_PER_DAY

    rows = compaction.merge(step, filesystem)  # killed here: the merged file is in the bucket, unnamed
    assert rows == BATCHES_PER_DAY * CANDLES_PER_BATCH
    assert len(partition_files(lake, filesystem, "AAA-USD", DAYS[0])) == BATCHES_PER_DAY + 1
    assert snapshot(lake, filesystem) == before

    compaction.commit(step, lake, filesystem, rows=rows)  # killed here: small files still there
    assert snapshot(lake, filesystem) == before
    counted, handler = counting(filesystem)
    clear_manifest_cache()
    read_candles(lake, counted, products=["AAA-USD"], start=day(0), end=day(1))
    assert sorted({p.rsplit("/", 1)[-1] for p in handler.paths("get") if p.endswith(".parquet")}) == [
        step.merged_path.rsplit("/", 1)[-1]
    ]

    # killed half-way through the deletes
    filesystem.delete_file(f"{lake.candles_root}/{step.superseded_files[0]}")
    assert snapshot(lake, filesystem) == before

    # the rerun after any of these crashes finishes the job, and writes nothing new
    result = compaction.compact_partition(lake, filesystem, window="1m", date=DAYS[0], product_id="AAA-USD")
    assert (result.action, result.deleted) == ("already compacted", BATCHES_PER_DAY - 1)
    assert partition_files(lake, filesystem, "AAA-USD", DAYS[0]) == [step.merged_path.rsplit("/", 1)[-1]]
    assert snapshot(lake, filesystem) == before

    # a rerun from scratch after a crash right after the merge rewrites the same objects
    step_b = compaction.plan(lake, filesystem, window="1m", date=DAYS[0], product_id="BBB-USD")
    assert step_b is not None
    compaction.merge(step_b, filesystem)
    again = compaction.plan(lake, filesystem, window="1m", date=DAYS[0], product_id="BBB-USD")
    assert again == step_b
    compaction.compact_partition(lake, filesystem, window="1m", date=DAYS[0], product_id="BBB-USD")
    assert len(partition_files(lake, filesystem, "BBB-USD", DAYS[0])) == 1
    assert snapshot(lake, filesystem) == before


def test_a_replayed_batch_of_a_compacted_day_is_not_read_twice(s3: Any) -> None:
    lake, filesystem = build_lake(s3)
    before = snapshot(lake, filesystem)
    compaction.compact_day(lake, filesystem, window="1m", date=DAYS[0])
    # the day's last batch replays (its driver died before Spark committed it): same files, same
    # manifest, under the same names, after the compaction deleted them
    last = BATCHES_PER_DAY - 1
    write_candles(rows_of_batch(0, last), lake=lake, filesystem=filesystem, batch_id=batch_id(0, last))
    assert len(partition_files(lake, filesystem, "AAA-USD", DAYS[0])) == 2
    assert snapshot(lake, filesystem) == before
    # the next run deletes the resurrected files and writes nothing
    results = compaction.compact_day(lake, filesystem, window="1m", date=DAYS[0])
    assert [(r.action, r.deleted) for r in results] == [("already compacted", 1)] * len(PRODUCTS)
    assert len(partition_files(lake, filesystem, "AAA-USD", DAYS[0])) == 1
    assert snapshot(lake, filesystem) == before


def test_a_late_batch_races_a_compaction(s3: Any) -> None:
    """A batch the compaction did not see stays visible beside the merged file; the next run merges
    both and retires the first compaction. Two compactions that raced (the second saw the late
    batch) never double a candle."""
    lake, filesystem = build_lake(s3)
    first = compaction.plan(lake, filesystem, window="1m", date=DAYS[0], product_id="AAA-USD")
    assert first is not None
    rows = compaction.merge(first, filesystem)

    late = candle_rows("AAA-USD", day(0) + timedelta(hours=23, minutes=50), 3, seed=77)
    write_candles(late, lake=lake, filesystem=filesystem, batch_id=batch_id(0, 50))
    expected = snapshot(lake, filesystem)

    # a second compactor sees the late batch and commits first; the first commits after it
    second = compaction.plan(lake, filesystem, window="1m", date=DAYS[0], product_id="AAA-USD")
    assert second is not None and set(first.supersedes) < set(second.supersedes)
    compaction.commit(second, lake, filesystem, rows=compaction.merge(second, filesystem))
    compaction.commit(first, lake, filesystem, rows=rows)
    assert snapshot(lake, filesystem) == expected

    compaction.compact_partition(lake, filesystem, window="1m", date=DAYS[0], product_id="AAA-USD")
    assert snapshot(lake, filesystem) == expected
    assert partition_files(lake, filesystem, "AAA-USD", DAYS[0]) == [second.merged_path.rsplit("/", 1)[-1]]

    # a batch after the compaction: visible beside it, then merged by the next run
    later = candle_rows("AAA-USD", day(0) + timedelta(hours=23, minutes=57), 2, seed=78)
    write_candles(later, lake=lake, filesystem=filesystem, batch_id=batch_id(0, 60))
    expected = snapshot(lake, filesystem)
    assert len(expected[0]) == len(snapshot(lake, filesystem)[0])
    (result,) = compaction.compact_day(lake, filesystem, window="1m", date=DAYS[0], products=["AAA-USD"])
    assert result.action == "compacted" and result.files_merged == 2
    assert snapshot(lake, filesystem) == expected
    (only,) = partition_files(lake, filesystem, "AAA-USD", DAYS[0])
    assert only.startswith("compacted-") and only != second.merged_path.rsplit("/", 1)[-1]
    manifests = filesystem.get_file_info(fs.FileSelector(lake.manifest_date_dir("1m", DAYS[0])))
    assert len([i for i in manifests if i.base_name.startswith("c-AAA-USD-")]) == 1


def test_the_lake_compact_command(s3: Any, tmp_path, capsys) -> None:
    import argparse
    import json

    from cryptopipe_dev.commands.lake import run_lake

    lake, filesystem = build_lake(s3)
    before = snapshot(lake, filesystem)
    state = {"s3_endpoint": s3.endpoint, "s3_root": str(s3.root), "bucket": lake.bucket, "prefix": lake.prefix}
    (tmp_path / "stack.json").write_text(json.dumps(state))

    def compact(date: str, products: list[str] | None = None) -> int:
        args = argparse.Namespace(
            lake_command="compact", date=date, window="1m", products=products, keep_superseded=False
        )
        return run_lake(args, work_dir=tmp_path)

    assert compact(DAYS[2]) == 1
    assert "not all final" in capsys.readouterr().err
    assert compact(DAYS[0], ["BBB-USD"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) | {"deleted": None} == {
        "product_id": "BBB-USD",
        "date": DAYS[0],
        "action": "compacted",
        "files_merged": BATCHES_PER_DAY,
        "rows": BATCHES_PER_DAY * CANDLES_PER_BATCH,
        "deleted": None,
    }
    assert len(partition_files(lake, filesystem, "BBB-USD", DAYS[0])) == 1
    assert snapshot(lake, filesystem) == before


def test_a_reader_that_listed_before_the_deletes_lists_again(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader resolves the manifests, then a compaction commits and deletes the small files, then
    the reader opens them: it finds them gone, resolves again and reads the merged file."""
    import cryptopipe.lake.reader as reader
    from cryptopipe.lake.commits import committed_files

    lake, filesystem = build_lake(s3)
    query = {"products": ["AAA-USD"], "start": day(0), "end": day(1)}
    before = read_candles(lake, filesystem, **query).to_pylist()
    stale = committed_files(lake, filesystem, window="1m", products=["AAA-USD"], first_date=DAYS[0], last_date=DAYS[0])
    assert len(stale) == BATCHES_PER_DAY
    compaction.compact_day(lake, filesystem, window="1m", date=DAYS[0], products=["AAA-USD"])

    calls: list[int] = []

    def listed_before_the_compaction(*args: Any, **kwargs: Any) -> list[CommittedFile]:
        calls.append(1)
        return stale if len(calls) == 1 else committed_files(*args, **kwargs)

    monkeypatch.setattr(reader, "committed_files", listed_before_the_compaction)
    assert read_candles(lake, filesystem, **query).to_pylist() == before
    assert len(calls) == 2
