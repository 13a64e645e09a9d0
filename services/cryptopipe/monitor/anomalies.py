"""The lake monitor's pure core: candles in, anomalies out. No I/O, no clock (``now`` is passed in).

Semantics (also in docs/lake-monitor.md):

- ``missing_window``: a window between a product's first and last candle in the table that has no
  candle. The Spark job writes no candle for a window without trades, so an illiquid product
  produces these legitimately; on BTC-USD a missing minute means lost data. Windows after the last
  candle are not "missing" here: that is what ``stale_product`` reports.
- ``stale_product``: the product's next candle is overdue by more than ``stale_after_s``, i.e.
  ``now - newest.window_end > window_seconds + stale_after_s``. The window length is added because
  the next candle is due only at the end of the next window (plus the job's watermark delay): with
  the literal ``now - window_end > stale_after`` a 1h window would be "stale" for most of every hour.
  An expected product with no candle at all in the table is stale too (``window_start`` None).
- ``price_move``: the close-to-close log return of a candle against the previous candle, divided by
  sqrt(number of windows between them) so a return across a quiet gap compares with one-window
  returns, has a robust z-score beyond ``price_sigma``. The z-score uses the median and the MAD
  (x1.4826, the normal-consistent scale) of all the product's returns in the table. Why robust and
  not mean/std: a spike that reverts produces two huge returns, and with a plain or even a
  leave-one-out std each one inflates the other's baseline, capping the z-score near sqrt(n): with
  20 candles a 100-sigma spike would score ~4.4. The median/MAD ignore a few outliers. When more
  than half the returns are exactly zero (a price that sits on one tick) the MAD is 0; then the
  scale is the MAD of the returns that are not zero, the typical size of the moves that do happen,
  so a one-tick move on a quiet product is not an anomaly but a jump of many ticks is. If no
  return moved at all, no move can be scored.
  A spike that reverts is two moves (out and back); a jump that holds is one.
- ``volume_spike``: volume > ``volume_factor`` x the median volume of the product's *other* candles
  in the table (leave-one-out, so the spike does not raise its own baseline).
- ``invariant_violation``: a candle that cannot come out of a correct job: low > min(open, close),
  high < max(open, close), a non-positive price, vwap outside [low, high], volume <= 0,
  trade_count < 1, first_trade_id > last_trade_id, window_end - window_start != the window, or two
  candles for one (product, window_start). Compared as exact Decimals, one anomaly per candle.

The statistical checks (price_move, volume_spike) need at least ``min_history`` candles of the
product in the table; with less history they are skipped rather than guessed.

``start`` lets a caller pass history before the range it reports on: anomalies of windows that
start before ``start`` are not returned, but those candles still count as history and baseline.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import statistics
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from cryptopipe.contracts import window_label

KINDS: tuple[str, ...] = ("missing_window", "stale_product", "price_move", "volume_spike", "invariant_violation")

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution x this = its standard deviation


@dataclasses.dataclass(frozen=True, slots=True)
class Thresholds:
    price_sigma: float = 4.0
    volume_factor: float = 10.0
    stale_after_s: int = 300
    min_history: int = 20


@dataclasses.dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str  # one of KINDS
    product_id: str
    window: str  # the lake's window label, e.g. "1m"
    window_start: datetime | None  # None: the anomaly is not about one candle (a product with no candle)
    message: str
    value: float | None  # z-score, volume multiple, age in seconds, ... (see the kind); None if none fits

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "product_id": self.product_id,
            "window": self.window,
            "window_start": iso(self.window_start) if self.window_start else None,
            "message": self.message,
            "value": self.value,
        }


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def num(value) -> str:
    """An exact decimal for a message, without the column's trailing zeros: 60016.09, not 60016.09000000."""
    return format(value.normalize(), "f") if hasattr(value, "normalize") else str(value)


def find_anomalies(
    candles: pa.Table,
    *,
    window_seconds: int,
    now: datetime,
    thresholds: Thresholds,
    start: datetime | None = None,
    expected_products: Iterable[str] = (),
) -> list[Anomaly]:
    """Every anomaly in ``candles`` (one window size, any products), sorted by product, window, kind.

    ``expected_products`` are products that should have candles: one without any is stale.
    """
    window = window_label(window_seconds)
    rows_by_product: dict[str, list[dict]] = {}
    for row in candles.select(_COLUMNS).to_pylist():
        rows_by_product.setdefault(row["product_id"], []).append(row)
    found: list[Anomaly] = []
    for product in sorted(set(expected_products) - set(rows_by_product)):
        found.append(
            Anomaly("stale_product", product, window, None, f"{product} {window}: no candle in the scanned range", None)
        )
    for product, rows in sorted(rows_by_product.items()):
        rows.sort(key=lambda r: r["window_start"])
        found += _check_product(product, window, window_seconds, rows, now, thresholds)
    if start is not None:
        found = [a for a in found if a.window_start is None or a.window_start >= start or a.kind == "stale_product"]
    return sorted(found, key=lambda a: (a.product_id, a.window_start or now, KINDS.index(a.kind)))


_COLUMNS = [
    "product_id",
    "window_start",
    "window_end",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trade_count",
    "vwap",
    "first_trade_id",
    "last_trade_id",
]


def _check_product(
    product: str, window: str, window_seconds: int, rows: list[dict], now: datetime, t: Thresholds
) -> list[Anomaly]:
    out = [a for row in rows if (a := _invariants(product, window, window_seconds, row))]
    out += _duplicates(product, window, rows)
    out += _missing(product, window, window_seconds, rows)
    out += _stale(product, window, window_seconds, rows[-1], now, t.stale_after_s)
    if len(rows) >= t.min_history:
        out += _price_moves(product, window, window_seconds, rows, t.price_sigma)
        out += _volume_spikes(product, window, rows, t.volume_factor)
    return out


def _invariants(product: str, window: str, window_seconds: int, row: dict) -> Anomaly | None:
    o, h, lo, c, v = row["open"], row["high"], row["low"], row["close"], row["volume"]
    broken = []
    if lo > min(o, c):
        broken.append(f"low {num(lo)} > min(open {num(o)}, close {num(c)})")
    if h < max(o, c):
        broken.append(f"high {num(h)} < max(open {num(o)}, close {num(c)})")
    if min(o, h, lo, c) <= 0:
        broken.append(f"non-positive price (open {num(o)}, high {num(h)}, low {num(lo)}, close {num(c)})")
    if row["vwap"] is not None and not lo <= row["vwap"] <= h:
        broken.append(f"vwap {num(row['vwap'])} outside [low {num(lo)}, high {num(h)}]")
    if v <= 0:
        broken.append(f"volume {num(v)} <= 0")
    if row["trade_count"] < 1:
        broken.append(f"trade_count {row['trade_count']} < 1")
    if row["first_trade_id"] > row["last_trade_id"]:
        broken.append(f"first_trade_id {row['first_trade_id']} > last_trade_id {row['last_trade_id']}")
    length = (row["window_end"] - row["window_start"]).total_seconds()
    if length != window_seconds:
        broken.append(f"window_end - window_start = {length:g}s, not {window_seconds}s")
    if not broken:
        return None
    return Anomaly(
        "invariant_violation",
        product,
        window,
        row["window_start"],
        f"{product} {window} {iso(row['window_start'])}: " + "; ".join(broken),
        float(len(broken)),
    )


def _duplicates(product: str, window: str, rows: list[dict]) -> list[Anomaly]:
    out = []
    for prev, row in zip(rows, rows[1:], strict=False):
        if row["window_start"] == prev["window_start"]:
            out.append(
                Anomaly(
                    "invariant_violation",
                    product,
                    window,
                    row["window_start"],
                    f"{product} {window} {iso(row['window_start'])}: two candles for one window",
                    2.0,
                )
            )
    return out


def _missing(product: str, window: str, window_seconds: int, rows: list[dict]) -> list[Anomaly]:
    step = timedelta(seconds=window_seconds)
    out = []
    for prev, row in zip(rows, rows[1:], strict=False):
        expected = prev["window_start"] + step
        while expected < row["window_start"]:
            out.append(
                Anomaly(
                    "missing_window",
                    product,
                    window,
                    expected,
                    f"{product} {window} {iso(expected)}: no candle between {iso(prev['window_start'])} "
                    f"and {iso(row['window_start'])}",
                    None,
                )
            )
            expected += step
    return out


def _stale(
    product: str, window: str, window_seconds: int, newest: dict, now: datetime, stale_after_s: int
) -> list[Anomaly]:
    age = (now - newest["window_end"]).total_seconds()
    if age <= window_seconds + stale_after_s:
        return []
    return [
        Anomaly(
            "stale_product",
            product,
            window,
            newest["window_start"],
            f"{product} {window}: newest candle ends {iso(newest['window_end'])}, {age:.0f}s before "
            f"{iso(now)} (allowed {window_seconds}s + {stale_after_s}s)",
            age,
        )
    ]


def _robust_scale(values: list[float], center: float) -> float:
    """MAD-based sigma; when more than half the values sit exactly on the median (a price on one tick),
    the same estimate over the values that moved: the typical size of the moves that do happen."""
    mad = statistics.median(abs(x - center) for x in values) * MAD_TO_SIGMA
    if mad > 0:
        return mad
    moved = [abs(x - center) for x in values if x != center]
    return statistics.median(moved) * MAD_TO_SIGMA if moved else 0.0


def _price_moves(product: str, window: str, window_seconds: int, rows: list[dict], sigma: float) -> list[Anomaly]:
    moves = []  # (normalised log return, previous row, row)
    for prev, row in zip(rows, rows[1:], strict=False):
        gap = (row["window_start"] - prev["window_start"]).total_seconds() / window_seconds
        if gap <= 0 or prev["close"] <= 0 or row["close"] <= 0:
            continue  # duplicates and broken prices are invariant violations, not moves
        moves.append((math.log(row["close"] / prev["close"]) / math.sqrt(gap), prev, row))
    if len(moves) < 2:
        return []
    returns = [m[0] for m in moves]
    center = statistics.median(returns)
    scale = _robust_scale(returns, center)
    if scale <= 0:
        return []
    out = []
    for r, prev, row in moves:
        z = (r - center) / scale
        if abs(z) > sigma:
            change = float(row["close"] / prev["close"] - 1) * 100
            out.append(
                Anomaly(
                    "price_move",
                    product,
                    window,
                    row["window_start"],
                    f"{product} {window} {iso(row['window_start'])}: close {num(prev['close'])} -> {num(row['close'])} "
                    f"({change:+.3f}%), {z:+.1f} sigma (robust sigma {scale * 100:.4f}% per window, limit {sigma:g})",
                    z,
                )
            )
    return out


def _volume_spikes(product: str, window: str, rows: list[dict], factor: float) -> list[Anomaly]:
    volumes = [float(r["volume"]) for r in rows]
    ordered = sorted(volumes)
    out = []
    for row, volume in zip(rows, volumes, strict=False):
        baseline = _median_without(ordered, volume)
        if baseline > 0 and volume > factor * baseline:
            out.append(
                Anomaly(
                    "volume_spike",
                    product,
                    window,
                    row["window_start"],
                    f"{product} {window} {iso(row['window_start'])}: volume {num(row['volume'])} is "
                    f"{volume / baseline:.1f}x the median {baseline:.8g} of the other candles (limit {factor:g}x)",
                    volume / baseline,
                )
            )
    return out


def _median_without(ordered: list[float], value: float) -> float:
    """Median of ``ordered`` (sorted) with one occurrence of ``value`` removed, in O(log n)."""
    p = bisect.bisect_left(ordered, value)
    n = len(ordered) - 1

    def at(j: int) -> float:  # j-th element of the list without position p
        return ordered[j] if j < p else ordered[j + 1]

    return at(n // 2) if n % 2 else (at(n // 2 - 1) + at(n // 2)) / 2


__all__ = ["KINDS", "Anomaly", "Thresholds", "find_anomalies"]
