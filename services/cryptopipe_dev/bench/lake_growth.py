"""``python -m cryptopipe_dev.bench.lake_growth``: the lake as it grows (issue 12, section 4).

Builds a lake of small files on a local S3 server (versitygw), as the job would have left it after
DAYS days of PRODUCTS products of 1-minute candles, BATCHES a day (each batch one file per product,
one manifest per date), then times one query, "one product, one day", cold:

- today's reader (the main branch's: one LIST of every manifest, one GET of each; kept here as
  ``todays_committed_files``) on the uncompacted lake;
- this branch's reader (lists and fetches only that date's manifests) on the uncompacted lake;
- this branch's reader after ``cryptopipe lake compact`` of that day (every product);
- ``cryptopipe candles`` (a fresh process: Python and pyarrow start-up included) after compaction.

Each query runs cold (a new S3 client, the manifest cache emptied; versitygw's page cache stays warm),
ROUNDS times in alternation; the median is reported, with each reader's requests counted once through
a counting filesystem. All answers are checked equal. The files are written straight through the S3
server's folder, which it serves as objects (PUTs were 40/s on the loaded machine), each a real
Parquet file of the candle contract.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from cryptopipe.contracts import candle_arrow_schema
from cryptopipe.lake import compaction
from cryptopipe.lake.commits import CommittedFile, clear_manifest_cache, write_complete_through
from cryptopipe.lake.layout import LakeLocation
from cryptopipe.lake.reader import read_candles
from cryptopipe_dev.bench.countingfs import counting
from cryptopipe_dev.stack.s3server import S3Server

BUCKET = "lake"
PREFIX = "growth"
DAY0 = datetime(2026, 10, 1, tzinfo=UTC)


# --- today's reader (main branch, commit 154297c), kept for the comparison --------------------------
def todays_committed_files(lake: LakeLocation, filesystem, *, window: str, products, first_date, last_date):
    """main's ``committed_files``: one LIST of every manifest of the window, a GET of each (16
    threads), then filter. Manifests are in date folders now, so the LIST is recursive: the same
    ListObjects pages over the same number of keys as main's flat folder."""
    from pyarrow import fs

    selector = fs.FileSelector(lake.manifests_dir(window), allow_not_found=True, recursive=True)
    infos = sorted(
        (i for i in filesystem.get_file_info(selector) if i.type == fs.FileType.File and i.base_name.endswith(".json")),
        key=lambda i: i.path,
    )

    def get(info):
        with filesystem.open_input_stream(info.path) as stream:
            return json.loads(stream.read())

    with ThreadPoolExecutor(max_workers=min(16, len(infos))) as pool:
        manifests = list(pool.map(get, infos))
    wanted = set(products or ())
    out: dict[str, CommittedFile] = {}
    for manifest in manifests:
        for entry in manifest.get("files", []):
            if wanted and entry["product_id"] not in wanted:
                continue
            if (first_date and entry["date"] < first_date) or (last_date and entry["date"] > last_date):
                continue
            path = f"{lake.candles_root}/{entry['path']}"
            out[path] = CommittedFile(path, entry["product_id"], entry["date"], int(entry["rows"]))
    return sorted(out.values(), key=lambda f: f.path)


def todays_read_candles(lake: LakeLocation, filesystem, *, window: str, products: list[str], start, end) -> pa.Table:
    """main's ``read_candles`` (its date bounds: ``utc_date(start)`` to ``utc_date(end)`` inclusive)."""
    schema = candle_arrow_schema()
    files = todays_committed_files(
        lake,
        filesystem,
        window=window,
        products=products,
        first_date=start.strftime("%Y-%m-%d"),
        last_date=end.strftime("%Y-%m-%d"),
    )
    if not files:
        return schema.empty_table()
    partitioning = ds.partitioning(
        pa.schema([("window", pa.string()), ("product_id", pa.string()), ("date", pa.string())]), flavor="hive"
    )
    dataset = ds.dataset(
        [f.path for f in files],
        filesystem=filesystem,
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=lake.candles_root,
    )
    expr = (pc.field("window") == window) & pc.field("product_id").isin(products)
    expr &= pc.field("window_start") >= pa.scalar(start, type=pa.timestamp("us", tz="UTC"))
    expr &= pc.field("window_start") < pa.scalar(end, type=pa.timestamp("us", tz="UTC"))
    table = dataset.to_table(filter=expr, columns=[f.name for f in schema])
    return table.cast(schema).sort_by([("product_id", "ascending"), ("window_start", "ascending")])


# --- the lake --------------------------------------------------------------------------------------
def product_names(n: int) -> list[str]:
    return [f"P{i:03d}-USD" for i in range(n)]


def day_template(product_index: int) -> pa.Table:
    """1440 one-minute candles of day 0 (a random walk; vectorised, no Decimal per row)."""
    import numpy as np

    rng = np.random.default_rng(product_index)
    n = 1440
    close = np.round(100.0 * (1 + product_index) * np.exp(np.cumsum(rng.normal(0, 0.0005, n))), 2)
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.round(np.maximum(open_, close) * (1 + rng.uniform(0, 0.0003, n)), 2)
    low = np.round(np.minimum(open_, close) * (1 - rng.uniform(0, 0.0003, n)), 2)
    counts = rng.integers(5, 60, n)
    first = 1000 + np.concatenate([[0], np.cumsum(counts)[:-1]])
    starts = np.datetime64(DAY0.replace(tzinfo=None), "us") + np.arange(n) * np.timedelta64(60, "s")
    schema = candle_arrow_schema()

    def dec(values, field: str) -> pa.Array:
        scaled = np.round(values * 1e8).astype("int64").tolist()
        return pa.array([Decimal(v).scaleb(-8) for v in scaled], schema.field(field).type)

    ts = pa.timestamp("us", tz="UTC")
    volume = np.round(rng.lognormal(0.7, 0.4, n), 8)
    vwap = np.round((low + high) / 2, 8)
    columns = {
        "product_id": pa.array([product_names(product_index + 1)[-1]] * n),
        "window_start": pa.array(starts).cast(ts),
        "window_end": pa.array(starts + np.timedelta64(60, "s")).cast(ts),
        "open": dec(open_, "open"),
        "high": dec(high, "high"),
        "low": dec(low, "low"),
        "close": dec(close, "close"),
        "volume": dec(volume, "volume"),
        "trade_count": pa.array(counts.astype("int64")),
        # the contract's exact notional column (added with the lake's new precision): volume x vwap
        # to 8 places is enough for a file of the right shape (no reader recomputes it)
        "notional": dec(np.round(volume * vwap, 8), "notional"),
        "vwap": dec(vwap, "vwap"),
        "first_trade_id": pa.array(first.astype("int64")),
        "last_trade_id": pa.array((first + counts - 1).astype("int64")),
    }
    return pa.table([columns[f.name] for f in schema], schema=schema)


def shift_days(table: pa.Table, days: int) -> pa.Table:
    if days == 0:
        return table
    delta = pa.scalar(timedelta(days=days), pa.duration("us"))
    for name in ("window_start", "window_end"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.add(table.column(name), delta))
    return table


def build_lake(
    lake: LakeLocation, filesystem, *, bucket_root: Path, days: int, products: int, batches: int,
    log: Callable[[str], None],
) -> int:  # fmt: skip
    """Write the files, then each (day, batch)'s manifest, then complete-through past the last day.
    Objects go straight into the S3 server's folder (versitygw serves a bucket's files as objects:
    108k PUTs at ~40/s on this loaded machine would take 45 minutes); complete-through by a PUT.
    Files are uncompressed, without statistics (4× faster to write than the sink's zstd; the
    reader's request count does not change). Returns the number of objects written."""
    names = product_names(products)
    templates = [day_template(i) for i in range(products)]
    per_batch = 1440 // batches
    written = 0
    started = time.monotonic()

    def put(path: str, data: bytes) -> None:
        target = bucket_root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    for d in range(days):
        date = (DAY0 + timedelta(days=d)).strftime("%Y-%m-%d")
        shifted = [shift_days(t, d) for t in templates]
        manifests: list[tuple[str, bytes]] = []
        for k in range(batches):
            batch_id = d * batches + k
            entries = []
            for p, name in enumerate(names):
                part = shifted[p].slice(k * per_batch, per_batch)
                sink = pa.BufferOutputStream()
                pq.write_table(part, sink, compression="none", use_dictionary=False, write_statistics=False)
                path = lake.candle_file(window="1m", product_id=name, date=date, generation=1, batch_id=batch_id)
                put(path, sink.getvalue().to_pybytes())
                entries.append(
                    {"path": path.removeprefix(lake.candles_root + "/"), "product_id": name, "date": date}
                    | {"rows": part.num_rows}
                )
            body = {"format": 1, "window": "1m", "generation": 1, "batch_id": batch_id, "files": entries}
            body |= {"complete_through_us": None, "date": date}
            manifests.append(
                (
                    lake.manifest_file(window="1m", generation=1, batch_id=batch_id, date=date),
                    json.dumps(body, sort_keys=True, separators=(",", ":")).encode(),
                )
            )
        for path, data in manifests:  # after the day's files, as the sink does per batch
            put(path, data)
        written += batches * products + len(manifests)
        log(f"day {d + 1}/{days}: {written} objects, {written / (time.monotonic() - started):.0f}/s")
    through = DAY0 + timedelta(days=days, minutes=1)
    write_complete_through(
        filesystem, lake, window="1m", generation=1, batch_id=days * batches,
        complete_through_us=int(through.timestamp() * 1e6),
    )  # fmt: skip
    return written + 1


# --- the measurement -------------------------------------------------------------------------------
def cold(connection, fn):
    """A cold reader: a new S3 client, no manifest cached."""
    clear_manifest_cache()
    filesystem = connection.arrow_filesystem()
    started = time.perf_counter()
    table = fn(filesystem)
    return time.perf_counter() - started, table


def requests_of(connection, fn) -> dict[str, int]:
    clear_manifest_cache()
    filesystem, handler = counting(connection.arrow_filesystem())
    fn(filesystem)
    ops: dict[str, int] = {}
    for op, _ in handler.calls:
        ops[op] = ops.get(op, 0) + 1
    return ops


def cli_seconds(work_dir: Path, product: str, start: datetime, end: datetime) -> tuple[float, int]:
    env = dict(os.environ)
    command = [
        sys.executable, "-m", "cryptopipe_dev.cli", "--log-level", "WARNING", "candles", "--work-dir", str(work_dir),
        "--product", product, "--from", start.isoformat(), "--to", end.isoformat(), "--format", "csv",
    ]  # fmt: skip
    started = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return time.perf_counter() - started, len(out.splitlines()) - 1


def python_startup_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pyarrow.dataset, cryptopipe_dev.cli"], check=True)
    return time.perf_counter() - started


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def run_lake_growth(
    work_dir: Path, *, days: int, products: int, batches: int, rounds: int, log: Callable[[str], None]
) -> dict:
    """Build the lake, time the query with each reader before and after compacting its day, and
    return every figure (``times``: seconds of each round per reader; medians in ``median_s``)."""
    server = S3Server(work_dir / "s3", die_with_parent=True).start()
    try:
        server.create_bucket(BUCKET)
        lake = LakeLocation(BUCKET, PREFIX)
        connection = server.connection
        (work_dir / "stack.json").write_text(
            json.dumps(
                {"s3_endpoint": server.endpoint, "s3_root": str(server.root), "bucket": BUCKET, "prefix": PREFIX}
            )
        )
        started = time.monotonic()
        objects = build_lake(
            lake, connection.arrow_filesystem(), bucket_root=server.root, days=days, products=products,
            batches=batches, log=log,
        )  # fmt: skip
        build_s = time.monotonic() - started
        files = days * products * batches
        log(f"lake built: {files} candle files, {objects - files} manifests etc. in {build_s:.0f} s")

        day = days // 2
        product = product_names(products)[products // 3]
        start, end = DAY0 + timedelta(days=day), DAY0 + timedelta(days=day + 1)
        date = start.strftime("%Y-%m-%d")

        def today(fs):
            return todays_read_candles(lake, fs, window="1m", products=[product], start=start, end=end)

        def ours(fs):
            return read_candles(lake, fs, window="1m", products=[product], start=start, end=end)

        times: dict[str, list[float]] = {"today": [], "ours": []}
        answers: dict[str, pa.Table] = {}
        for _ in range(rounds):
            for name, fn in (("today", today), ("ours", ours)):
                seconds, table = cold(connection, fn)
                times[name].append(seconds)
                answers[name] = table
            log(f"uncompacted: today {times['today'][-1]:.3f} s, ours {times['ours'][-1]:.3f} s")
        requests = {"today": requests_of(connection, today), "ours": requests_of(connection, ours)}

        started = time.monotonic()
        results = compaction.compact_day(lake, connection.arrow_filesystem(), window="1m", date=date)
        compact_s = time.monotonic() - started
        merged = sum(r.files_merged for r in results)
        log(f"compacted {date}: {len(results)} partitions, {merged} files merged in {compact_s:.1f} s")

        times["compacted"] = []
        times["cli"] = []
        for _ in range(rounds):
            seconds, answers["compacted"] = cold(connection, ours)
            times["compacted"].append(seconds)
            cli_s, cli_rows = cli_seconds(work_dir, product, start, end)
            times["cli"].append(cli_s)
            log(f"compacted: ours {seconds:.3f} s, cryptopipe candles {cli_s:.3f} s ({cli_rows} rows)")
        requests["compacted"] = requests_of(connection, ours)
        startup = median(python_startup_seconds() for _ in range(rounds))
    finally:
        server.stop()
    rows = answers["today"].num_rows
    if rows != 1440 or cli_rows != rows:
        raise RuntimeError(f"the query gave {rows} candles ({cli_rows} through the command), 1440 expected")
    if not (answers["ours"].equals(answers["today"]) and answers["compacted"].equals(answers["today"])):
        raise RuntimeError("the readers' answers differ")
    return {
        "days": days, "products": products, "batches": batches, "files": files, "objects": objects,
        "build_s": build_s, "times": times, "median_s": {k: median(v) for k, v in times.items()},
        "requests": requests, "compact_s": compact_s, "partitions_compacted": len(results), "files_merged": merged,
        "startup_s": startup, "product": product, "date": date, "rounds": rounds,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cryptopipe_dev.bench.lake_growth", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--products", type=int, default=50)
    p.add_argument("--batches", type=int, default=72, help="batches a day, each one file per product (default 72)")
    p.add_argument("--rounds", type=int, default=3, help="cold runs of each query, alternating (default 3)")
    p.add_argument("--work-dir", type=Path, help="keep the S3 server's data here (default: a temp dir, removed)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if 1440 % args.batches:
        p.error("--batches must divide 1440")

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="lake-growth-"))
    try:
        r = run_lake_growth(
            work_dir, days=args.days, products=args.products, batches=args.batches, rounds=args.rounds, log=log
        )
    finally:
        if args.work_dir is None:
            import shutil

            shutil.rmtree(work_dir, ignore_errors=True)
    m, requests, files, objects = r["median_s"], r["requests"], r["files"], r["objects"]
    figures = [
        ("today's reader, uncompacted", m["today"], requests["today"], None),
        ("this reader, uncompacted", m["ours"], requests["ours"], None),
        ("this reader, after compaction", m["compacted"], requests["compacted"], "<= 1 s"),
        ("`cryptopipe candles`, after compaction", m["cli"], None, "<= 1 s"),
        ("(python + imports alone)", r["startup_s"], None, None),
    ]
    print()
    print(
        f"lake: {args.days} days x {args.products} products x {args.batches} batches/day = {files} candle files "
        f"+ {objects - files} manifests/markers, built in {r['build_s']:.0f} s; query: {r['product']} on {r['date']} "
        f"(1440 candles), cold, median of {args.rounds}"
    )
    print(f"{'figure':42} {'seconds':>8} {'today/x':>8}  requests")
    for name, seconds, reqs, _target in figures:
        ratio = m["today"] / seconds
        print(f"{name:42} {seconds:8.3f} {ratio:7.1f}x  {reqs or ''}")
    ratio = m["today"] / m["compacted"]
    print()
    print(f"target <= 1 s after compaction: {m['compacted']:.3f} s -> {'met' if m['compacted'] <= 1 else 'missed'}")
    print(f"target >= 10x today's reader on the uncompacted lake: {ratio:.1f}x -> {'met' if ratio >= 10 else 'missed'}")
    print(
        f"compaction of the day ({r['partitions_compacted']} partitions, {r['files_merged']} files): "
        f"{r['compact_s']:.1f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
