"""``make bench`` (cryptopipe_dev.bench.suite) runs its parts and prints the one table, on tiny
sizes: the ingestion comparison (every side, both producers, on the real broker) and the lake
part (a real S3 server, a 288-file lake, compaction, the `cryptopipe candles` command). The Spark
parts (freshness, catch-up) are exercised by test_bench_catchup.py and the stack tests; no timing
is asserted anywhere: the figures are the benchmark's (docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryptopipe_dev.bench import suite, suite_rows

pytestmark = pytest.mark.components
pytest.importorskip("cryptofeed", reason="the bench extra (pip install -e '.[bench]') is not installed")


def test_make_bench_prints_one_table_with_every_part_and_writes_json_and_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    argv = ["--only", "ingestion,lake", "--trades", "300", "--lake-days", "2", "--lake-products", "2"]
    assert suite.main([*argv, "--json", str(out), "--work-dir", str(tmp_path / "work")]) == 0

    printed = capsys.readouterr().out
    table = printed[printed.index("SIDE BY SIDE") :]
    for header in suite_rows.HEADER:
        assert header in table
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert {r["part"] for r in rows} == {"ingestion", "lake"}
    assert not [r for r in rows if r["figure"] == "did not finish"], rows
    figures = [r["figure"] for r in rows]
    assert "trades/s vs cryptofeed acks=all" in figures
    assert "trades/s vs bare kafka-python" in figures
    if data["environment"]["confluent-kafka"] != "-":  # the ingestion-fast extra: both producers measured
        assert "trades/s vs cryptofeed acks=all, confluent producer" in figures
        assert "trades/s vs bare confluent-kafka" in figures
    for row in rows:  # each row printed, with a status wherever there is a target
        assert row["figure"][:40] in table
        assert (row["status"] in ("met", "MISSED")) == bool(row["target"])
    assert set(data["parts"]) == {"ingestion", "lake"}
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
