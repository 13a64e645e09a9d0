"""One scan of the lake for one window size: read the candles, find the anomalies, note what is
newest. Shared by `cryptopipe monitor report` and the monitor service so both judge alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime

import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyarrow import fs

from cryptopipe.contracts import parse_duration
from cryptopipe.lake.commits import committed_files, complete_through
from cryptopipe.lake.layout import LakeLocation, utc_date
from cryptopipe.lake.reader import read_candles
from cryptopipe.monitor.anomalies import Anomaly, Thresholds, find_anomalies, iso
from cryptopipe.monitor.continuity import IdGap, Unfillable, find_id_gaps

# How many date partitions back to look for the newest candle of a product with none in the range.
NEWEST_LOOKUP_DAYS = 7


@dataclasses.dataclass(frozen=True)
class WindowScan:
    window: str
    candles: int
    products: tuple[str, ...]  # every product judged: expected or found in the range
    newest_end: dict[str, datetime]  # product -> window_end of its newest candle before the range's end
    anomalies: list[Anomaly]
    # the trade-id continuity audit of the candles in the range (continuity.py)
    id_gaps: list[IdGap] = dataclasses.field(default_factory=list)
    # every window ending at or before this is final (None: the job has published none yet): a
    # missing window before it had no trade, one after it may not be written yet
    complete_through: datetime | None = None

    @property
    def ids_lost(self) -> int:
        """Trade ids missing that nobody counted (silent losses) or counted twice."""
        return sum(g.count for g in self.id_gaps if g.kind != "unfillable")


def check_bucket(lake: LakeLocation, filesystem) -> None:
    """Raise OSError saying why if the bucket cannot be listed (missing, bad credentials, no server).

    Without this, a missing bucket or rejected credentials read as an empty lake: the reader's
    existence checks (HeadBucket/HeadObject) answer "not found" for both. Listing the bucket's top
    level is one cheap request whose error names the cause.
    """
    filesystem.get_file_info(fs.FileSelector(lake.bucket))


def lake_products(lake: LakeLocation, filesystem, window: str) -> list[str]:
    """Products with any candle of this window in the lake (from the partition folders: no file is read)."""
    selector = fs.FileSelector(f"{lake.candles_root}/window={window}", allow_not_found=True)
    return sorted(
        info.base_name.split("=", 1)[1]
        for info in filesystem.get_file_info(selector)
        if info.type == fs.FileType.Directory and info.base_name.startswith("product_id=")
    )


def newest_window_end(lake: LakeLocation, filesystem, window: str, product: str, before: datetime) -> datetime | None:
    """window_end of the product's newest committed candle starting before ``before``, from its newest
    date partitions."""
    files = committed_files(lake, filesystem, window=window, products=[product], last_date=utc_date(before))
    by_date: dict[str, list[str]] = {}
    for file in files:
        by_date.setdefault(file.date, []).append(file.path)
    for date in sorted(by_date, reverse=True)[:NEWEST_LOOKUP_DAYS]:
        table = ds.dataset(by_date[date], filesystem=filesystem, format="parquet").to_table(
            columns=["window_start", "window_end"]
        )
        table = table.filter(pc.less(table["window_start"], before))
        if table.num_rows:
            return pc.max(table["window_end"]).as_py()
    return None


def scan_window(
    lake: LakeLocation,
    filesystem,
    *,
    window: str,
    products: Iterable[str] = (),
    start: datetime,
    end: datetime,
    now: datetime,
    thresholds: Thresholds,
    unfillable: Unfillable | None = None,
) -> WindowScan:
    """Anomalies of candles with start <= window_start < end. ``products`` empty = every product in the lake.

    ``unfillable``: product -> trade-id ranges the ingestion counted as unfillable; missing ids in
    them are reported as "unfillable", every other missing id as "lost"."""
    check_bucket(lake, filesystem)
    wanted = list(products)
    expected = wanted or lake_products(lake, filesystem, window)
    # before the candles: every candle it promises is then in what is read
    final_through = complete_through(lake, filesystem, window=window)
    table = read_candles(lake, filesystem, window=window, products=wanted or None, start=start, end=end)
    window_seconds = parse_duration(window)
    anomalies = find_anomalies(
        table, window_seconds=window_seconds, now=now, thresholds=thresholds, start=start, expected_products=expected
    )
    newest: dict[str, datetime] = {}
    if table.num_rows:
        grouped = table.group_by("product_id").aggregate([("window_end", "max")])
        newest = dict(zip(grouped["product_id"].to_pylist(), grouped["window_end_max"].to_pylist(), strict=False))
    absent = sorted(set(expected) - set(newest))
    for product in absent:
        if (found := newest_window_end(lake, filesystem, window, product, before=end)) is not None:
            newest[product] = found
    judged = [_judge_absent(a, newest, now, window_seconds, thresholds) for a in anomalies]
    judged = [_explain_stale(a, final_through, now, window_seconds, thresholds) for a in judged]
    return WindowScan(
        window,
        table.num_rows,
        tuple(sorted(set(expected) | set(newest))),
        newest,
        [a for a in judged if a is not None],
        find_id_gaps(table, unfillable=unfillable) if table.num_rows else [],
        final_through,
    )


def _explain_stale(
    anomaly: Anomaly | None, final_through: datetime | None, now: datetime, window_seconds: int, thresholds: Thresholds
) -> Anomaly | None:
    """Say whether a stale product had no trades (the job's complete-through is recent: every window
    up to it is written) or its candles are not written yet (complete-through is old or unknown)."""
    if anomaly is None or anomaly.kind != "stale_product":
        return anomaly
    if final_through is None:
        note = "the job has published no complete-through: its candles may not be written yet"
    elif (now - final_through).total_seconds() > window_seconds + thresholds.stale_after_s:
        note = f"the lake is complete only through {iso(final_through)}: newer windows are not written yet"
    else:
        note = f"the lake is complete through {iso(final_through)}: {anomaly.product_id} had no trades until then"
    return dataclasses.replace(anomaly, message=f"{anomaly.message}; {note}")


def _judge_absent(
    anomaly: Anomaly, newest: dict[str, datetime], now: datetime, window_seconds: int, thresholds: Thresholds
) -> Anomaly | None:
    """A product with no candle in the range: stale unless its newest candle (before the range) is recent
    enough, which happens only when the range is shorter than window + stale_after."""
    if anomaly.kind != "stale_product" or anomaly.window_start is not None:
        return anomaly
    end = newest.get(anomaly.product_id)
    if end is None:
        return dataclasses.replace(anomaly, message=f"{anomaly.message}, and none found before it")
    age = (now - end).total_seconds()
    if age <= window_seconds + thresholds.stale_after_s:
        return None
    return dataclasses.replace(
        anomaly, value=age, message=f"{anomaly.message}; newest candle ends {iso(end)}, {age:.0f}s before {iso(now)}"
    )
