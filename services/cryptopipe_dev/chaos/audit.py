"""The fault suite's judge (pure: no I/O): the lake of one scenario against the truth.

The truth is every trade the market published (the replay source's trades, which the REST endpoint
serves too); the expectation is the independent decimal-exact reference (cryptopipe_dev.reference)
over them. A trade is **counted** lost when the pipeline said so: its id lies in a range the
ingestion logged as not backfilled, or its frame is in the dead-letter topic. Every other trade
missing from the lake is a **silent** loss. A trade in the lake more than once, or a second row for
one (product, window, start), is **duplicated**. Any other difference (a price, a volume, a vwap
that is not the exact value at the lake's scale) makes a **wrong** candle.

Checks, per scenario: the lake equals the reference (apart from counted losses); at most one row
per (product, window, start); the trade-id continuity audit (cryptopipe.monitor.continuity) is
clean or every gap is counted.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from cryptopipe.monitor.continuity import find_id_gaps, merge_ranges
from cryptopipe_dev.reference import Trades, reference_candles

VALUE_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclasses.dataclass
class Verdict:
    sent: int  # trades the market published (the truth)
    in_lake: int  # trades counted by the lake's candles (sum of trade_count)
    lost_counted: int = 0
    lost_silent: int = 0
    duplicated: int = 0
    wrong_candles: int = 0  # candles with a value that differs from the reference
    duplicate_rows: int = 0  # extra rows for one (product, window_start)
    continuity_lost: int = 0  # ids the continuity audit finds missing and not counted
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not (
            self.lost_silent or self.duplicated or self.wrong_candles or self.duplicate_rows or self.continuity_lost
        )


def _in_ranges(trade_id: int, ranges: list[tuple[int, int]]) -> bool:
    return any(a <= trade_id <= b for a, b in ranges)


def judge(
    truth: Trades,
    lake_rows: Iterable[dict],
    *,
    unfillable: Mapping[str, Iterable[tuple[int, int]]] | None = None,
    dead_lettered: Iterable[tuple[str, int]] = (),
    window_s: int = 60,
) -> Verdict:
    """``truth``: every trade published; ``unfillable``: product -> id ranges the ingestion logged as
    not backfilled; ``dead_lettered``: (product, trade id) of trade frames in the dead-letter topic."""
    counted_ranges = {p: merge_ranges(r) for p, r in (unfillable or {}).items()}
    dead = set(dead_lettered)
    expected_trades = truth
    expected = {
        (c["product_id"], c["window_start"]): c for c in reference_candles(expected_trades, window_s, with_ids=True)
    }
    ids_by_candle: dict[tuple[str, datetime], list[int]] = defaultdict(list)
    for (product, trade_id), (time_us, _, _) in expected_trades.items():
        start = datetime.fromtimestamp(time_us // (window_s * 1_000_000) * window_s, UTC)
        ids_by_candle[(product, start)].append(trade_id)

    def counted(product: str, trade_id: int) -> bool:
        return (product, trade_id) in dead or _in_ranges(trade_id, counted_ranges.get(product, []))

    rows = list(lake_rows)
    verdict = Verdict(sent=len(truth), in_lake=sum(r["trade_count"] for r in rows))
    by_key: dict[tuple[str, datetime], list[dict]] = defaultdict(list)
    for row in rows:
        by_key[(row["product_id"], row["window_start"])].append(row)
    for key, found in sorted(by_key.items()):
        if len(found) > 1:
            verdict.duplicate_rows += len(found) - 1
            verdict.duplicated += sum(r["trade_count"] for r in found[1:])
            verdict.notes.append(f"{len(found)} rows for {key[0]} {key[1].isoformat()}")
        row = found[0]
        want = expected.get(key)
        if want is None:
            verdict.wrong_candles += 1
            verdict.notes.append(f"unexpected candle {key[0]} {key[1].isoformat()} ({row['trade_count']} trades)")
            continue
        missing = want["trade_count"] - row["trade_count"]
        if missing < 0:
            verdict.duplicated += -missing
            verdict.notes.append(f"{key[0]} {key[1].isoformat()}: {-missing} trade(s) more than the reference")
        elif missing > 0:
            known = sum(counted(key[0], i) for i in ids_by_candle[key])
            verdict.lost_counted += min(missing, known)
            verdict.lost_silent += missing - min(missing, known)
        elif not _same_values(row, want):
            verdict.wrong_candles += 1
            verdict.notes.append(f"{key[0]} {key[1].isoformat()}: values differ from the reference")
    for key, want in sorted(expected.items()):
        if key not in by_key:  # a whole candle absent
            known = sum(counted(key[0], i) for i in ids_by_candle[key])
            verdict.lost_counted += min(want["trade_count"], known)
            verdict.lost_silent += want["trade_count"] - min(want["trade_count"], known)
    # the oracle the lake monitor uses: id gaps that nobody counted
    dead_ranges: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for product, trade_id in dead:
        dead_ranges[product].append((trade_id, trade_id))
    all_counted = {p: [*counted_ranges.get(p, []), *dead_ranges.get(p, [])] for p in {*counted_ranges, *dead_ranges}}
    for gap in find_id_gaps(rows, unfillable=all_counted):
        if gap.kind in ("lost", "duplicated"):
            verdict.continuity_lost += gap.count
            verdict.notes.append("continuity: " + gap.message())
    return verdict


def _same_values(row: dict, want: dict) -> bool:
    if any(row[c] != want[c] for c in VALUE_COLUMNS):
        return False
    if (row["first_trade_id"], row["last_trade_id"]) != (want["first_trade_id"], want["last_trade_id"]):
        return False
    # the reference rounds vwap as the lake does (half-even at its 28 places), and both keep the
    # exact notional it is computed from
    return row["vwap"] == want["vwap"] and row.get("notional", want["notional"]) == want["notional"]
