"""`cryptopipe replay` end to end, as a user runs it: a subprocess starts Kafka, the S3 server,
the replay server, ingestion and the Spark job, and writes every candle to CSV. Each CSV must equal,
decimal-exact, the reference computed straight from the recording's unique trades.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from cryptopipe_dev.reference import csv_candles, recorded_trades, reference_candles
from tests.support.paths import DERIVED_RECORDINGS

pytestmark = pytest.mark.e2e

DERIVED = DERIVED_RECORDINGS
RECORDINGS = [
    "advtrade_2026-08-09_BTC-ETH_no-l2.jsonl",
    "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl",
    "exchange_2021-04-17_matches-ticker-subs.jsonl",
]


def replay(recording: Path, work: Path, *extra: str) -> str:
    out = work / "candles.csv"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptopipe_dev.cli",
            "replay",
            str(recording),
            "--output-csv",
            str(out),
            "--work-dir",
            str(work / "stack"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"replay failed ({result.returncode}):\n{result.stderr[-4000:]}"
    return out.read_text()


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("name", RECORDINGS)
def test_replay_equals_reference_from_unique_trades(name: str, tmp_path: Path) -> None:
    recording = DERIVED / name
    trades = recorded_trades(recording)
    expected = reference_candles(trades)
    got = csv_candles(replay(recording, tmp_path))
    assert got == expected
    # every unique trade counted once
    assert sum(c["trade_count"] for c in got) == len(trades)
    # real recorded data is a clean run for the lake monitor (`replay` leaves stack.json behind)
    start = min(c["window_start"] for c in got)
    end = max(c["window_end"] for c in got)
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptopipe_dev.cli",
            "monitor",
            "report",
            "--work-dir",
            str(tmp_path / "stack"),
            "--from",
            _iso(start),
            "--to",
            _iso(end),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stdout + report.stderr[-2000:]
    summary = json.loads(report.stdout.splitlines()[-1])["summary"]
    assert summary["anomalies"] == 0 and summary["candles"] == len(got)


def test_a_removed_match_is_detected_and_backfilled_over_rest(tmp_path: Path) -> None:
    """The 2026-07-07 recording's heartbeats carry real last_trade_ids. One match is withheld from
    the WebSocket stream (as if the frame were lost); the exchange's REST history, which the replay
    server serves from the whole recording, still has it. The gap must be found and filled, and
    the candles must be complete again."""
    source = DERIVED / "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"
    frames = [json.loads(json.loads(row)["data"]) for row in source.read_text().splitlines()]
    matches = [f for f in frames if f.get("type") == "match" and f["product_id"] == "BTC-USD"]
    removed = matches[len(matches) // 2]["trade_id"]  # mid-recording: a heartbeat follows it

    got = csv_candles(replay(source, tmp_path, "--faults", json.dumps({"skip_trade_ids": [removed]})))

    assert got == reference_candles(recorded_trades(source))
    log = [
        json.loads(line)
        for line in (tmp_path / "stack" / "ingestion-exchange.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert any(e["msg"] == "trade gap detected" and e["first_missing"] == removed for e in log)
    assert not any(e["msg"] == "trade gap not backfilled" for e in log)


def test_a_low_priced_pair_keeps_its_vwap_digits(tmp_path: Path) -> None:
    """Issue 10, hole 11: BAND-BTC trades near 3.3e-4 BTC. Rounded to 8 decimals its 16:44 vwap was
    0.00033417 (5 significant digits); it must be the exact 0.000334171096866096866... rounded only
    at 28 decimals, with the exact notional beside it."""
    source = DERIVED / "exchange_2021-04-17_matches-ticker-subs.jsonl"
    got = csv_candles(replay(source, tmp_path, "--products", "BAND-BTC"))

    assert got == reference_candles(recorded_trades(source, {"BAND-BTC"}))
    minute = next(c for c in got if _iso(c["window_start"]) == "2021-04-17T16:44:00Z")
    assert minute["vwap"] == Decimal("0.0003341710968660968660968661")
    assert len(minute["vwap"].normalize().as_tuple().digits) >= 12
    assert minute["notional"] == Decimal("0.070376433")
    exact = Fraction(minute["notional"]) / Fraction(minute["volume"])
    assert abs(Fraction(minute["vwap"]) - exact) <= Fraction(1, 2 * 10**28)
