"""Build realistic candles for tests and plant them into a lake the way the Spark job writes them.

``candle_rows`` gives plain dicts (easy to break on purpose: drop one, move a close), ``candle_table``
turns them into the contract's Arrow table plus the ``window`` column the sink partitions by, and
``write_candles`` writes them with the job's own sink (candles_job.sink.write_batch).
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from decimal import Decimal

import pyarrow as pa

from cryptopipe.contracts import candle_arrow_schema, parse_duration
from cryptopipe.lake.layout import LakeLocation

CENT = Decimal("0.01")
SATOSHI = Decimal("0.00000001")


def candle_rows(
    product: str,
    start: datetime,
    count: int,
    *,
    window: str = "1m",
    price: float = 60_000.0,
    sigma: float = 0.0005,
    volume: float = 2.0,
    seed: int = 1,
    first_trade_id: int = 1_000,
) -> list[dict]:
    """``count`` consecutive candles of a geometric random walk (per-window log-return sd ``sigma``) with
    log-normal volumes around ``volume``. Deterministic for a seed."""
    rng = random.Random(seed)
    step = timedelta(seconds=parse_duration(window))
    rows, close, trade_id = [], Decimal(str(price)).quantize(CENT), first_trade_id
    for i in range(count):
        open_ = close
        close = (open_ * Decimal(str(math.exp(rng.gauss(0, sigma))))).quantize(CENT)
        wick = open_ * Decimal(str(sigma / 2))
        high = (max(open_, close) + wick * Decimal(str(rng.random()))).quantize(CENT)
        low = (min(open_, close) - wick * Decimal(str(rng.random()))).quantize(CENT)
        trades = rng.randint(5, 60)
        window_start = start + i * step
        rows.append(
            {
                "product_id": product,
                "window_start": window_start,
                "window_end": window_start + step,
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": Decimal(str(volume * math.exp(rng.gauss(0, 0.4)))).quantize(SATOSHI),
                "trade_count": trades,
                "vwap": ((low + high) / 2).quantize(SATOSHI),
                "first_trade_id": trade_id,
                "last_trade_id": trade_id + trades - 1,
            }
        )
        rows[-1]["notional"] = rows[-1]["vwap"] * rows[-1]["volume"]
        trade_id += trades
    return rows


def shift_prices(rows: list[dict], factor: str) -> None:
    """Move every price of these rows by ``factor`` (a jump that holds, when applied to a tail)."""
    f = Decimal(factor)
    for row in rows:
        for key in ("open", "high", "low", "close"):
            row[key] = (row[key] * f).quantize(CENT)
        row["vwap"] = ((row["low"] + row["high"]) / 2).quantize(SATOSHI)
        row["notional"] = row["vwap"] * row["volume"]


def candle_table(rows: list[dict], *, window: str = "1m") -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=candle_arrow_schema())
    return table.append_column("window", pa.array([window] * table.num_rows, pa.string()))


def write_candles(
    rows: list[dict], *, lake: LakeLocation, filesystem, window: str = "1m", batch_id: int = 0, generation: int = 1
) -> list[str]:
    """Write as the Spark job's sink does (one file per window/product/date partition for this batch)."""
    from candles_job.sink import write_batch

    table = candle_table(rows, window=window).sort_by([("product_id", "ascending"), ("window_start", "ascending")])
    return write_batch(table, lake=lake, filesystem=filesystem, generation=generation, batch_id=batch_id)
