"""``python -m cryptopipe_dev.replay`` as a process: serve, generate, info."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

import orjson

from cryptopipe_dev.replay import load_recording, recording_trades
from cryptopipe_dev.replay.client import ReplayClient
from tests.support.paths import COINBASE_DATA

DATA = COINBASE_DATA
EXCHANGE = DATA / "derived" / "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"


def replay_cli(*args: str, **kwargs) -> subprocess.Popen:
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "env": {**os.environ, "PYTHONUNBUFFERED": "1"}}
    return subprocess.Popen([sys.executable, "-m", "cryptopipe_dev.replay", *args], **{**options, **kwargs})


def first_line(process: subprocess.Popen, timeout: float = 15.0) -> dict:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"no line on stdout within {timeout} s; stderr: {process.stderr.read1().decode()}"
    return orjson.loads(process.stdout.readline())


def test_serve_prints_its_urls_streams_and_stops_on_sigterm():
    process = replay_cli("serve", str(EXCHANGE), "--speed", "max", "--faults", '{"skip_every": 5}')
    try:
        listening = first_line(process)
        assert listening["feed"] == "exchange" and listening["products"] == ["BTC-USD", "ETH-USD"]
        assert listening["url"].startswith("ws://127.0.0.1:") and listening["rest_url"].startswith("http://127.0.0.1:")
        with ReplayClient(listening["url"]) as client:
            client.subscribe_exchange(["BTC-USD", "ETH-USD"], ["matches"])
            matches = 0
            while matches < 435 - 435 // 5:
                matches += orjson.loads(client.recv()).get("type") == "match"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        logs = [orjson.loads(line) for line in process.stderr.read().splitlines()]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    assert {"listening", "stopped"} <= {entry["msg"] for entry in logs}
    assert all(entry["logger"].startswith("cryptopipe") for entry in logs), "websockets' own INFO lines are muted"


def test_serve_refuses_both_or_neither_source():
    process = replay_cli("serve")
    assert process.wait(15) == 2
    process.stdout.close()
    process.stderr.close()


def test_generate_writes_rows_the_loader_reads_back(tmp_path):
    out = tmp_path / "synthetic.jsonl"
    with out.open("wb") as sink:
        process = replay_cli("generate", "--rate", "20", "--duration", "30", "--seed", "4", stdout=sink)
        assert process.wait(30) == 0
    process.stderr.close()
    recording = load_recording(out)
    assert recording.feed == "exchange"
    trades = recording_trades(recording)
    assert set(trades) == {"BTC-USD", "ETH-USD"}
    assert 400 < sum(len(t) for t in trades.values()) < 800  # 20/s for 30 s, plus the two last_match


def test_info_summarises_a_recording():
    process = replay_cli("info", str(EXCHANGE))
    stdout, _ = process.communicate(timeout=30)
    summary = orjson.loads(stdout)
    assert summary["feed"] == "exchange" and summary["frames"] == 556
    assert summary["trades"]["BTC-USD"] == {"count": 345, "first_id": 1052119288, "last_id": 1052119632}
