"""The peer comparison (`make bench-compare`) end to end on a few hundred trades: every side runs
against the real broker (cryptofeed and the ingestion service as processes fed by the replay
server), and it yields the table's rows, the JSON and a PNG chart. No timing is asserted: the
figures are the benchmark's, on a run of ~200k trades (docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.bench import peers_report
from cryptopipe_dev.bench.peers import (
    BARE,
    BARE_C,
    CF_ALL,
    CF_DEFAULT,
    PROJECT_HOT,
    PROJECT_HOT_C,
    PROJECT_HOT_EXCHANGE,
    PROJECT_HOT_EXCHANGE_C,
    PROJECT_WS,
    PROJECT_WS_C,
    WS_RECEIVE,
    run_peers,
)

pytestmark = pytest.mark.components
pytest.importorskip("cryptofeed", reason="the bench extra (pip install -e '.[bench]') is not installed")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_peer_comparison_makes_rows_json_and_chart(kafka: Any, tmp_path: Path) -> None:
    result = run_peers(tmp_path / "work", trades=300, broker=kafka)

    sides = [r.side for r in result.runs]
    if result.confluent_version is None:  # without the ingestion-fast extra: kafka-python sides only
        assert sides == [PROJECT_WS, CF_DEFAULT, CF_ALL, PROJECT_HOT, PROJECT_HOT_EXCHANGE, BARE, WS_RECEIVE]
        ws_sides, bare_sides = (PROJECT_WS, PROJECT_HOT), (BARE,)
    else:
        assert sides == [
            PROJECT_WS, PROJECT_WS_C, CF_DEFAULT, CF_ALL, PROJECT_HOT, PROJECT_HOT_EXCHANGE, PROJECT_HOT_C,
            PROJECT_HOT_EXCHANGE_C, BARE, BARE_C, WS_RECEIVE,
        ]  # fmt: skip
        ws_sides, bare_sides = (PROJECT_WS, PROJECT_WS_C, PROJECT_HOT, PROJECT_HOT_C), (BARE, BARE_C)
    by_side = {r.side: r for r in result.runs}
    # every trade of the same frames reached the topic on each Advanced Trade side, each with a latency
    for side in (*ws_sides, CF_DEFAULT, CF_ALL):
        assert by_side[side].trades == result.trades == 300, side
        assert len(by_side[side].latencies_ms) == 300, side
    for side in bare_sides:
        assert by_side[side].trades == 300 and by_side[side].latencies_ms, side
    assert by_side[WS_RECEIVE].records == result.frames  # every frame of the stream was read
    assert all(r.wall_s > 0 and r.cpu_s >= 0 for r in result.runs)

    rows = peers_report.rows(result)
    figures = [r.figure for r in rows]
    assert "trades/s vs cryptofeed acks=all" in figures
    assert "trades/s vs bare kafka-python" in figures
    assert "trades per CPU-s, hot path, Advanced Trade" in figures
    assert "trades per CPU-s, hot path, Exchange" in figures
    targets = {r.figure: r.target for r in rows}
    assert targets["trades/s vs cryptofeed acks=all"] == 5.0
    assert targets["trades/s vs bare kafka-python"] == 0.8
    assert targets["trades per CPU-s, hot path, Advanced Trade"] == 50_000
    table = peers_report.table_text(result)
    for header in peers_report.HEADER:
        assert header in table
    assert "met" in table or "MISSED" in table

    json_path = tmp_path / "out" / "bench-peers.json"
    written = peers_report.write(result, json_path, None, {"load_average_1m": {"start": 0.0}})
    chart = json_path.with_suffix(".png")
    assert written == [json_path, chart]
    data = json.loads(json_path.read_text())
    assert [r["figure"] for r in data["rows"]] == figures
    assert set(peers_report.HEADER) <= set(data["rows"][0])
    assert len(data["runs"]) == len(sides)
    png = chart.read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > 400 and height > 200
