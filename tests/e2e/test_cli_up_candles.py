"""The user's commands as a user runs them: `cryptopipe up`, `cryptopipe candles` and `cryptopipe plot`."""

from __future__ import annotations

import csv
import io
import json
import signal
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from cryptopipe_dev.stack.procs import free_port, wait_for
from tests.support.paths import DERIVED_RECORDINGS

pytestmark = pytest.mark.e2e

RECORDING = DERIVED_RECORDINGS / "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"


def cryptopipe(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cryptopipe_dev.cli", *args], capture_output=True, text=True, **kwargs)


def test_up_without_network_fails_fast_and_suggests_replay(tmp_path: Path) -> None:
    result = cryptopipe("up", "--ws-url", f"wss://127.0.0.1:{free_port()}", "--work-dir", str(tmp_path), timeout=60)
    assert result.returncode != 0
    assert "--replay" in result.stderr and "cannot reach 127.0.0.1" in result.stderr
    assert not (tmp_path / "kafka").exists()  # it failed before starting any service


def _prometheus_api(url: str, path: str) -> dict:
    with urllib.request.urlopen(f"{url}/api/v1/{path}", timeout=10) as response:
        return json.load(response)["data"]


def _healthy_components(url: str) -> set[str]:
    targets = _prometheus_api(url, "targets?state=active")["activeTargets"]
    return {t["labels"]["component"] for t in targets if t["health"] == "up"}


def test_up_on_a_recording_then_candles_while_running_and_after_stop(tmp_path: Path) -> None:
    work = tmp_path / "stack"
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cryptopipe_dev.cli",
            "up",
            "--replay",
            str(RECORDING),
            "--speed",
            "20",
            "--watermark",
            "5s",
            "--trigger",
            "1s",
            "--work-dir",
            str(work),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # the recording spans 22:58:16-22:59:16; heartbeats after its end move time on at 20x,
        # so both minutes close within seconds of the job's start
        deadline = time.monotonic() + 240
        rows: list[dict] = []
        while time.monotonic() < deadline and len(rows) < 4:
            time.sleep(3)
            assert up.poll() is None, up.stdout.read()[-4000:]
            if (work / "stack.json").exists():
                result = cryptopipe("candles", "--work-dir", str(work), "--format", "csv", timeout=60)
                assert result.returncode == 0, result.stderr[-2000:]
                rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert {(r["product_id"], r["window_start"]) for r in rows} >= {
            ("BTC-USD", "2026-07-07T22:58:00Z"),
            ("ETH-USD", "2026-07-07T22:58:00Z"),
            ("BTC-USD", "2026-07-07T22:59:00Z"),
            ("ETH-USD", "2026-07-07T22:59:00Z"),
        }
        # up's own Prometheus scrapes its three components and evaluates the chart's alert rules
        prometheus = json.loads((work / "stack.json").read_text())["prometheus"]
        wait_for(
            lambda: _healthy_components(prometheus) == {"ingestion", "spark", "lake-monitor"},
            60,
            "up's Prometheus scraping ingestion, Spark job and lake monitor",
        )
        rules = [r for g in _prometheus_api(prometheus, "rules")["groups"] for r in g["rules"]]
        assert len(rules) == 17 and all(r["health"] in ("ok", "unknown") for r in rules), rules
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=120)
    assert up.returncode == 0, output[-4000:]
    assert "lake: s3://lake/cryptopipe/candles/" in output

    # the stack is down: candles serves the lake folder again by itself
    after = cryptopipe("candles", "--work-dir", str(work), "--product", "ETH-USD", "--format", "table", timeout=60)
    assert after.returncode == 0, after.stderr[-2000:]
    lines = after.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["product_id", "window_start", "window_end"]
    assert [line.split()[0] for line in lines[1:]] == ["ETH-USD", "ETH-USD"]

    # and plot draws the replayed BTC-USD candles from it as a PNG (1000 x 600 px by default)
    chart = tmp_path / "charts" / "x.png"
    plot = cryptopipe("plot", "BTC-USD", "--work-dir", str(work), "-o", str(chart), timeout=120)
    assert plot.returncode == 0, plot.stderr[-2000:]
    assert plot.stdout.strip() == str(chart)
    png = chart.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (1000, 600)
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]  # decodes: a whole, valid PNG
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # candles, bars and text drawn, not a blank canvas
    # a range with no candles: a clear message and exit 2, no file
    none = cryptopipe(
        "plot",
        "BTC-USD",
        "--work-dir",
        str(work),
        "--from",
        "2030-01-01",
        "-o",
        str(tmp_path / "none.png"),
        timeout=120,
    )
    assert none.returncode == 2
    assert "no 1m candles for BTC-USD from 2030-01-01T00:00:00Z on" in none.stderr
    assert not (tmp_path / "none.png").exists()
