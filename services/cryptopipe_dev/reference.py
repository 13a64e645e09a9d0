"""An independent reference for the end-to-end tests and the fault suite (cryptopipe_dev.chaos):
candles computed straight from a recording's (or the synthetic generator's) raw frames with plain
Python decimals. Deliberately shares no code with the pipeline (not the parser, not the contracts),
so a bug there cannot hide in the expectation.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Context, Decimal
from fractions import Fraction
from pathlib import Path

# vwap is the one rounded value of a candle: half-even at this many decimals (the lake's DECIMAL(38,28))
VWAP_PLACES = 28


def _time_us(text: str) -> int:
    date, _, frac = text.rstrip("Z").partition(".")
    base = datetime.strptime(date, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(base.timestamp()) * 1_000_000 + int((frac + "000000")[:6])


Trades = dict[tuple[str, int], tuple[int, Decimal, Decimal]]


def recorded_trades(path: Path, products: set[str] | None = None) -> Trades:
    """Unique trades of a derived JSONL recording: (product, trade_id) -> (time_us, price, size)."""
    rows = (json.loads(line) for line in path.read_text().splitlines())
    return frame_trades((row["data"] for row in rows if row["dir"] == "recv"), products)


def frame_trades(raw_frames: Iterable[str], products: set[str] | None = None) -> Trades:
    """Unique trades of raw feed frames (JSON text, either feed): (product, trade_id) -> (time_us, price, size)."""
    trades: Trades = {}
    for raw in raw_frames:
        try:
            frame = json.loads(raw)
        except ValueError:
            continue  # a malformed frame carries no trade
        if not isinstance(frame, dict):
            continue
        found = []
        if frame.get("type") in ("match", "last_match"):
            found.append(frame)
        elif frame.get("channel") == "market_trades":
            for event in frame["events"]:
                found.extend(event["trades"])
        for t in found:
            if products and t["product_id"] not in products:
                continue
            trades[(t["product_id"], int(t["trade_id"]))] = (
                _time_us(t["time"]),
                Decimal(t["price"]),
                Decimal(t["size"]),
            )
    return trades


def reference_candles(trades: Trades, window_s: int = 60, *, with_ids: bool = False) -> list[dict]:
    """One dict per (product, window), sorted, with the CSV's columns as exact values
    (and ``first_trade_id`` / ``last_trade_id`` with ``with_ids``)."""
    groups: dict[tuple[str, int], list[tuple[int, int, Decimal, Decimal]]] = defaultdict(list)
    for (product, trade_id), (time_us, price, size) in trades.items():
        groups[(product, time_us // (window_s * 1_000_000))].append((time_us, trade_id, price, size))
    out = []
    for (product, bucket), rows in sorted(groups.items()):
        rows.sort()
        volume = sum(Fraction(r[3]) for r in rows)
        notional = sum(Fraction(r[2]) * Fraction(r[3]) for r in rows)  # exact: no Decimal context rounds
        start = bucket * window_s
        out.append(
            {
                "product_id": product,
                "window_start": datetime.fromtimestamp(start, UTC),
                "window_end": datetime.fromtimestamp(start + window_s, UTC),
                "open": rows[0][2],
                "high": max(r[2] for r in rows),
                "low": min(r[2] for r in rows),
                "close": rows[-1][2],
                "volume": _decimal(volume),
                "trade_count": len(rows),
                "vwap": Decimal(round(notional / volume * 10**VWAP_PLACES)).scaleb(-VWAP_PLACES, _WIDE),
                "notional": _decimal(notional),
            }
        )
        if with_ids:
            out[-1]["first_trade_id"] = min(r[1] for r in rows)
            out[-1]["last_trade_id"] = max(r[1] for r in rows)
            out[-1]["vwap_exact"] = notional / volume
    return out


_WIDE = Context(prec=100)


def _decimal(value: Fraction) -> Decimal:
    """An exact Fraction whose denominator is a power of ten (a sum of decimals) as a Decimal."""
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
    return Decimal((value * 10**places).numerator).scaleb(-places, _WIDE)


def csv_candles(text: str) -> list[dict]:
    """Parse the replay command's CSV into the same shape as reference_candles()."""
    import csv
    import io

    out = []
    for row in csv.DictReader(io.StringIO(text)):
        out.append(
            {
                "product_id": row["product_id"],
                "window_start": datetime.fromisoformat(row["window_start"].replace("Z", "+00:00")),
                "window_end": datetime.fromisoformat(row["window_end"].replace("Z", "+00:00")),
                **{k: Decimal(row[k]) for k in ("open", "high", "low", "close", "volume", "vwap", "notional")},
                "trade_count": int(row["trade_count"]),
            }
        )
    return sorted(out, key=lambda r: (r["product_id"], r["window_start"]))
