"""The catch-up benchmark's candle check (cryptopipe_dev.bench.catchup): DuckDB's candles from
Parquet trades, and the exact comparison with the lake's, on a handful of trades (no services)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cryptopipe_dev.bench.catchup import WINDOW_US, compare, duckdb_candles, exact_vwap

pytest.importorskip("duckdb")

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def _trades(path: Path) -> Path:
    dec = pa.decimal128(18, 8)
    rows = [  # (product, trade_id, price, size, event_time_us): two trades at the same time, ids decide
        ("BTC-USD", 2, "100.00", "0.5", T0 + 1),
        ("BTC-USD", 1, "101.00", "0.25", T0 + 1),
        ("BTC-USD", 3, "99.50", "1.00000001", T0 + 59_999_999),
        ("BTC-USD", 4, "98.00", "2", T0 + WINDOW_US),
        ("ETH-USD", 7, "10.01", "3.33333333", T0 + 5),
    ]
    table = pa.table(
        {
            "product_id": [r[0] for r in rows],
            "trade_id": pa.array([r[1] for r in rows], pa.int64()),
            "price": pa.array([r[2] for r in rows]).cast(dec),
            "size": pa.array([r[3] for r in rows]).cast(dec),
            "event_time_us": pa.array([r[4] for r in rows], pa.int64()),
        }
    )
    pq.write_table(table, path)
    return path


def _as_lake(duck: pa.Table) -> pa.Table:
    out = []
    for row in duck.to_pylist():
        start = row["start_us"]
        out.append(
            {
                "product_id": row["product_id"],
                "window_start": datetime.fromtimestamp(start / 1e6, UTC),
                "window_end": datetime.fromtimestamp((start + WINDOW_US) / 1e6, UTC),
                **{k: row[k] for k in ("open", "high", "low", "close", "volume", "trade_count")},
                "vwap": exact_vwap(row["notional"], row["volume"]),
                "notional": row["notional"],
                "first_trade_id": row["first_trade_id"],
                "last_trade_id": row["last_trade_id"],
            }
        )
    return pa.Table.from_pylist(out)


def test_duckdb_candles_order_by_time_then_trade_id(tmp_path: Path) -> None:
    duck, _ = duckdb_candles(_trades(tmp_path / "t.parquet"))
    first = duck.to_pylist()[0]
    assert (first["product_id"], first["start_us"]) == ("BTC-USD", T0)
    assert first["open"] == Decimal("101.00") and first["first_trade_id"] == 1  # same time: lower id first
    assert first["close"] == Decimal("99.50") and first["last_trade_id"] == 3
    assert first["volume"] == Decimal("1.75000001") and first["trade_count"] == 3
    assert first["notional"] == Decimal("100.00") * Decimal("0.5") + Decimal("101.00") * Decimal("0.25") + Decimal(
        "99.50"
    ) * Decimal("1.00000001")
    assert duck.num_rows == 3


def test_compare_is_exact(tmp_path: Path) -> None:
    duck, _ = duckdb_candles(_trades(tmp_path / "t.parquet"))
    lake = _as_lake(duck)
    assert compare(lake, duck) == []
    rows = lake.to_pylist()
    rows[0]["volume"] += Decimal("0.00000001")
    assert any("volume" in p for p in compare(pa.Table.from_pylist(rows), duck))
    assert any("missing" in p for p in compare(lake.slice(1), duck))


def test_exact_vwap_rounds_once_half_even_at_the_lakes_28_places() -> None:
    assert exact_vwap(Decimal("1"), Decimal("3")) == Decimal("0." + "3" * 28)
    assert exact_vwap(Decimal("2"), Decimal("3")) == Decimal("0." + "6" * 27 + "7")
    # a tie goes to the even digit: 0.5e-28 -> 0, 1.5e-28 -> 2e-28
    assert exact_vwap(Decimal("0.5e-28"), Decimal("1")) == Decimal("0E-28")
    assert exact_vwap(Decimal("1.5e-28"), Decimal("1")) == Decimal("2E-28")
