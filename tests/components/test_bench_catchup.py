"""The catch-up phase (`python -m cryptopipe_dev.bench --catchup`) end to end on a few thousand
trades: a backlog produced into the real local Kafka, the job run once over it (availableNow) on
the real S3 server, and its candles checked against DuckDB's from the same trades in Parquet, every
column decimal-exactly. No timing is asserted: the figures are the benchmark's (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptopipe_dev.bench.catchup import duckdb_candles, result_text, run_catchup

pytestmark = pytest.mark.components


def test_catchup_candles_equal_duckdb(tmp_path: Path) -> None:
    result = run_catchup(tmp_path / "work", trades=3000, max_offsets=1500, duckdb_rounds=1)

    assert result.mismatches == []
    assert result.backlog.trades == 3000
    # every record was read, in more than one batch, each with its durationMs breakdown
    assert sum(b["numInputRows"] for b in result.batches) == result.records
    assert len(result.data_batches) >= 2
    assert all("triggerExecution" in b["durationMs"] for b in result.batches)
    duck, _ = duckdb_candles(result.backlog.parquet)
    assert result.candles == duck.num_rows > 0
    assert sum(duck.column("trade_count").to_pylist()) == 3000
    assert "identical to DuckDB's" in result_text(result)
