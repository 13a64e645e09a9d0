"""The trade-id continuity audit: a pure core (candles in, missing id ranges out). No I/O.

On the Exchange feed a product's trade ids are consecutive, and every candle carries the first and
the last trade id it counted. So, per product and window size, with the candles ordered by id:

- ``between``: ids strictly between one candle's ``last_trade_id`` and the next candle's
  ``first_trade_id`` are in no candle of the scanned range;
- ``inside``: a candle with ``trade_count < last_trade_id - first_trade_id + 1`` skipped that many
  ids somewhere inside its range (which ones is not known from the candle; the range is reported).
  Candles whose id ranges overlap (a trade stamped out of order lands in a neighbour minute) are
  judged together: their id span against the sum of their trade counts.

Each missing id is either **unfillable** (the ingestion counted it as lost: its trade-id gap could
not be backfilled, and the caller passes those id ranges in) or **lost** (nobody counted it: a
silent loss, the worst failure of a market-data lake). Ids before the first and after the last
candle of the range are not judged: the audit cannot know where a product's tape starts.

For ``inside`` gaps the candle does not say which ids are missing, so at most as many of them as
there are counted-unfillable ids within the candle's range are taken as unfillable; the rest is lost.

A candle whose ``trade_count`` exceeds its id span counted some trade twice (or ids are not
consecutive on this feed): that is reported as ``extra`` ids (kind ``duplicated``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime

import pyarrow as pa

MISSING_KINDS: tuple[str, ...] = ("lost", "unfillable")

# product -> inclusive (first, last) id ranges the ingestion counted as unfillable
Unfillable = Mapping[str, Iterable[tuple[int, int]]]


@dataclasses.dataclass(frozen=True, slots=True)
class IdGap:
    product_id: str
    kind: str  # "lost", "unfillable" or "duplicated"
    where: str  # "between" (two candles) or "inside" (one candle)
    first: int  # inclusive id range the gap lies in
    last: int
    count: int  # ids missing (or counted twice) in [first, last]
    window_start: datetime  # the candle after the gap (between) or the candle itself (inside)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "where": self.where,
            "product_id": self.product_id,
            "first_trade_id": self.first,
            "last_trade_id": self.last,
            "count": self.count,
            "window_start": self.window_start.isoformat().replace("+00:00", "Z"),
        }

    def message(self) -> str:
        ids = f"id {self.first}" if self.first == self.last else f"ids {self.first}..{self.last}"
        at = self.window_start.strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.kind == "duplicated":
            return f"{self.product_id} {at}: {self.count} trade(s) counted twice within {ids}"
        place = "before the candle at" if self.where == "between" else "inside the candle at"
        return f"{self.product_id}: {self.count} trade id(s) {self.kind} ({ids}) {place} {at}"


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping, non-adjacent inclusive ranges."""
    out: list[tuple[int, int]] = []
    for first, last in sorted((int(a), int(b)) for a, b in ranges if int(a) <= int(b)):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def _split(first: int, last: int, covered: list[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """[first, last] cut into pieces (a, b, is_covered) by the merged ``covered`` ranges."""
    pieces: list[tuple[int, int, bool]] = []
    at = first
    for a, b in covered:
        if b < at or a > last:
            continue
        if a > at:
            pieces.append((at, a - 1, False))
        lo, hi = max(a, at), min(b, last)
        pieces.append((lo, hi, True))
        at = hi + 1
    if at <= last:
        pieces.append((at, last, False))
    return pieces


def _overlap(first: int, last: int, covered: list[tuple[int, int]]) -> int:
    return sum(b - a + 1 for a, b, c in _split(first, last, covered) if c)


def _clusters(rows: list[dict]) -> list[list[dict]]:
    """Rows (sorted by first id) grouped where their id ranges overlap: a trade stamped a little out
    of order puts its id inside the neighbour minute's range, so only the group's total is known."""
    out: list[list[dict]] = []
    reach = None
    for row in rows:
        if out and reach is not None and row["first_trade_id"] <= reach:
            out[-1].append(row)
            reach = max(reach, row["last_trade_id"])
        else:
            out.append([row])
            reach = row["last_trade_id"]
    return out


def find_id_gaps(candles: pa.Table | list[dict], *, unfillable: Unfillable | None = None) -> list[IdGap]:
    """Every id gap of ``candles`` (one window size, any products), sorted by product and first id."""
    rows = candles if isinstance(candles, list) else candles.to_pylist()
    counted = {p: merge_ranges(r) for p, r in (unfillable or {}).items()}
    by_product: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("first_trade_id") is None or row.get("last_trade_id") is None:
            continue  # a candle without ids (a feed that has none) cannot be audited
        by_product.setdefault(row["product_id"], []).append(row)
    gaps: list[IdGap] = []
    for product, items in sorted(by_product.items()):
        covered = counted.get(product, [])
        items.sort(key=lambda r: (r["first_trade_id"], r["last_trade_id"]))
        reach: int | None = None  # highest id of the candles before this cluster
        for cluster in _clusters(items):
            first = cluster[0]["first_trade_id"]
            last = max(r["last_trade_id"] for r in cluster)
            at = cluster[0]["window_start"]
            if reach is not None and first > reach + 1:
                for a, b, is_counted in _split(reach + 1, first - 1, covered):
                    kind = "unfillable" if is_counted else "lost"
                    gaps.append(IdGap(product, kind, "between", a, b, b - a + 1, at))
            span, n = last - first + 1, sum(r["trade_count"] for r in cluster)
            if n < span:
                missing = span - n
                known = min(missing, _overlap(first, last, covered))
                if known:
                    gaps.append(IdGap(product, "unfillable", "inside", first, last, known, at))
                if missing - known:
                    gaps.append(IdGap(product, "lost", "inside", first, last, missing - known, at))
            elif n > span:
                gaps.append(IdGap(product, "duplicated", "inside", first, last, n - span, at))
            reach = last
    return gaps


def totals(gaps: Iterable[IdGap]) -> dict[str, dict[str, int]]:
    """product -> {"lost": ids, "unfillable": ids, "duplicated": ids} (zeros included)."""
    out: dict[str, dict[str, int]] = {}
    for gap in gaps:
        row = out.setdefault(gap.product_id, dict.fromkeys((*MISSING_KINDS, "duplicated"), 0))
        row[gap.kind] += gap.count
    return out


__all__ = ["MISSING_KINDS", "IdGap", "Unfillable", "find_id_gaps", "merge_ranges", "totals"]
