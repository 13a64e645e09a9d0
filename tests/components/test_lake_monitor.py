"""The lake monitor against a real S3 server: `cryptopipe monitor report` and `cryptopipe monitor serve`
as processes, on an hour of realistic candles planted with the Spark job's own sink."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cryptopipe.lake.layout import LakeLocation
from cryptopipe.monitor.anomalies import KINDS
from cryptopipe_dev.stack.procs import ManagedProcess, free_port, wait_for
from tests.support.http_probe import http_get
from tests.support.local_services import LAKE_BUCKET
from tests.support.synthetic_candles import candle_rows, shift_prices, write_candles

pytestmark = pytest.mark.components

PROMTOOL = "/usr/bin/promtool"
MINUTES = 60


@pytest.fixture(scope="module")
def lakes(s3: Any) -> dict[str, Any]:
    """Two prefixes with the same hour of BTC-USD and ETH-USD candles ending at the current minute:
    "clean" as generated, "planted" with a 2% BTC-USD jump at minute 30 and ETH-USD's minute 42 gone."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=MINUTES)
    run = uuid.uuid4().hex[:8]
    filesystem = s3.connection.arrow_filesystem()
    prefixes = {}
    for name in ("clean", "planted"):
        btc = candle_rows("BTC-USD", start, MINUTES, seed=1)
        eth = candle_rows("ETH-USD", start, MINUTES, price=1800.0, seed=2)
        if name == "planted":
            shift_prices(btc[30:], "1.02")
            eth_gap_ids = (eth[42]["first_trade_id"], eth[42]["last_trade_id"])
            del eth[42]
        prefixes[name] = f"monitor-{run}/{name}"
        written = write_candles(btc + eth, lake=LakeLocation(LAKE_BUCKET, prefixes[name]), filesystem=filesystem)
        assert written, "nothing planted"
    return {
        "start": start,
        "end": end,
        "prefixes": prefixes,
        "jump": start + timedelta(minutes=30),
        "gap": start + timedelta(minutes=42),
        "eth_gap_ids": eth_gap_ids,
    }


def stack_dir(tmp_path: Path, s3: Any, prefix: str) -> Path:
    """A work dir whose stack.json points at the s3 fixture, as `cryptopipe up` would leave it."""
    work = tmp_path / prefix.replace("/", "-")
    work.mkdir()
    (work / "stack.json").write_text(
        json.dumps({"s3_endpoint": s3.endpoint, "s3_root": str(s3.root), "bucket": LAKE_BUCKET, "prefix": prefix})
    )
    return work


def cryptopipe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptopipe_dev.cli", *args], capture_output=True, text=True, timeout=120
    )


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_report_names_the_planted_jump_and_gap_and_is_clean_without_them(s3: Any, lakes: dict, tmp_path: Path) -> None:
    window = ["--from", iso(lakes["start"]), "--to", iso(lakes["end"])]
    planted = stack_dir(tmp_path, s3, lakes["prefixes"]["planted"])

    as_json = cryptopipe("monitor", "report", "--work-dir", str(planted), "--format", "json", *window)
    assert as_json.returncode == 1, as_json.stderr
    *found, summary = [json.loads(line) for line in as_json.stdout.splitlines()]
    anomalies = [a for a in found if "trade_ids" not in a]
    assert [(a["kind"], a["product_id"], a["window_start"]) for a in anomalies] == [
        ("price_move", "BTC-USD", iso(lakes["jump"])),
        ("missing_window", "ETH-USD", iso(lakes["gap"])),
    ]
    # the deleted ETH-USD minute is also a range of trade ids in no candle, lost (nobody counted it)
    (gap,) = [a["trade_ids"] for a in found if "trade_ids" in a]
    assert (gap["kind"], gap["where"], gap["product_id"]) == ("lost", "between", "ETH-USD")
    assert gap["count"] == lakes["eth_gap_ids"][1] - lakes["eth_gap_ids"][0] + 1
    assert (gap["first_trade_id"], gap["last_trade_id"]) == lakes["eth_gap_ids"]
    assert summary["summary"]["candles"] == 2 * MINUTES - 1
    assert summary["summary"]["by_kind"] == {"missing_window": 1, "price_move": 1}
    assert summary["summary"]["trade_ids"] == {"lost": gap["count"], "unfillable": 0, "duplicated": 0}

    as_text = cryptopipe("monitor", "report", "--work-dir", str(planted), *window)
    assert as_text.returncode == 1, as_text.stderr
    lines = as_text.stdout.strip().splitlines()
    assert len(lines) == 5
    assert "price_move" in lines[0] and "BTC-USD" in lines[0] and iso(lakes["jump"]) in lines[0]
    assert "missing_window" in lines[1] and "ETH-USD" in lines[1] and iso(lakes["gap"]) in lines[1]
    assert lines[2].startswith("trade_ids_lost") and "ETH-USD" in lines[2]
    assert lines[3].startswith("2 anomalies")
    assert lines[4] == f"trade ids: {gap['count']} lost, 0 counted as unfillable, 0 counted twice"

    clean = cryptopipe(
        "monitor", "report", "--work-dir", str(stack_dir(tmp_path, s3, lakes["prefixes"]["clean"])), *window
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.startswith("clean: no anomalies in 120 1m candles of BTC-USD, ETH-USD")
    assert clean.stdout.splitlines()[1] == "trade ids: continuous, none missing"


def test_report_tells_lost_trade_ids_from_counted_unfillable_ones(s3: Any, tmp_path: Path) -> None:
    """A real lake with a hole in BTC-USD's trade ids inside the minutes (no missing window): ids 3 of
    them counted as unfillable by the ingestion, the rest lost in silence; then all counted: exit 0."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=10)
    rows = candle_rows("BTC-USD", start, 10, seed=3)
    for row in rows[5:]:  # the trades after minute 5 start 7 ids later: 7 ids went missing
        row["first_trade_id"] += 7
        row["last_trade_id"] += 7
    hole = (rows[4]["last_trade_id"] + 1, rows[5]["first_trade_id"] - 1)
    prefix = f"monitor-{uuid.uuid4().hex[:8]}/ids"
    write_candles(rows, lake=LakeLocation(LAKE_BUCKET, prefix), filesystem=s3.connection.arrow_filesystem())
    work = stack_dir(tmp_path, s3, prefix)
    window = ["--from", iso(start), "--to", iso(end), "--format", "json"]

    counted = tmp_path / "unfillable.json"
    counted.write_text(json.dumps({"BTC-USD": [[hole[0], hole[0] + 2]]}))
    report = cryptopipe("monitor", "report", "--work-dir", str(work), "--unfillable", str(counted), *window)
    assert report.returncode == 1, report.stderr
    *found, summary = [json.loads(line) for line in report.stdout.splitlines()]
    assert [
        (g["trade_ids"]["kind"], g["trade_ids"]["first_trade_id"], g["trade_ids"]["last_trade_id"]) for g in found
    ] == [
        ("unfillable", hole[0], hole[0] + 2),
        ("lost", hole[0] + 3, hole[1]),
    ]
    assert summary["summary"]["trade_ids"] == {"lost": 4, "unfillable": 3, "duplicated": 0}
    assert summary["summary"]["anomalies"] == 0

    counted.write_text(json.dumps({"BTC-USD": [list(hole)]}))
    report = cryptopipe("monitor", "report", "--work-dir", str(work), "--unfillable", str(counted), *window)
    assert report.returncode == 0, report.stdout + report.stderr
    assert json.loads(report.stdout.splitlines()[-1])["summary"]["trade_ids"]["unfillable"] == 7


def test_report_without_a_stack_or_with_bad_arguments_exits_2(s3: Any, lakes: dict, tmp_path: Path) -> None:
    none = cryptopipe("monitor", "report", "--work-dir", str(tmp_path))
    assert none.returncode == 2 and "run `cryptopipe up` first" in none.stderr
    work = stack_dir(tmp_path, s3, lakes["prefixes"]["clean"])
    bad = cryptopipe("monitor", "report", "--work-dir", str(work), "--stale-after", "soon")
    assert bad.returncode == 2 and "soon" in bad.stderr
    # nothing to judge is not "clean"
    empty = cryptopipe("monitor", "report", "--work-dir", str(work), "--window", "5m")
    assert empty.returncode == 2 and "no 5m candles" in empty.stderr


def test_report_flags_a_stale_product_relative_to_to(s3: Any, lakes: dict, tmp_path: Path) -> None:
    work = stack_dir(tmp_path, s3, lakes["prefixes"]["clean"])
    later = lakes["end"] + timedelta(minutes=30)
    result = cryptopipe(
        "monitor",
        "report",
        "--work-dir",
        str(work),
        "--format",
        "json",
        "--product",
        "BTC-USD",
        "--from",
        iso(lakes["start"]),
        "--to",
        iso(later),
    )
    assert result.returncode == 1
    [stale, _summary] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (stale["kind"], stale["product_id"], stale["value"]) == ("stale_product", "BTC-USD", 30 * 60)


def monitor_process(tmp_path: Path, env: dict[str, str], name: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    env = {
        "CRYPTOPIPE_MONITOR_HTTP_HOST": "127.0.0.1",
        "CRYPTOPIPE_MONITOR_HTTP_PORT": str(port),
        "CRYPTOPIPE_MONITOR_INTERVAL": "1s",
        **env,
    }
    proc = ManagedProcess(
        [sys.executable, "-m", "cryptopipe.monitor"],
        env=env,
        log_path=tmp_path / f"{name}.log",
        name=name,
        die_with_parent=True,
    ).start()
    return proc, f"http://127.0.0.1:{port}"


def samples(base: str) -> tuple[str, dict[tuple[str, tuple], float]]:
    status, body = http_get(base + "/metrics")
    assert status == 200
    text = body.decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, values


def promtool_problems(text: str) -> str:
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    return "" if check.returncode == 0 and not (check.stdout + check.stderr).strip() else check.stdout + check.stderr


def s3_env(s3: Any, **overrides: str) -> dict[str, str]:
    return {
        "CRYPTOPIPE_MONITOR_S3_ENDPOINT": s3.endpoint,
        "CRYPTOPIPE_MONITOR_S3_ACCESS_KEY": s3.access_key,
        "CRYPTOPIPE_MONITOR_S3_SECRET_KEY": s3.secret_key,
        "CRYPTOPIPE_MONITOR_BUCKET": LAKE_BUCKET,
        **overrides,
    }


def test_serve_exports_the_planted_anomalies_and_stops_on_sigterm(s3: Any, lakes: dict, tmp_path: Path) -> None:
    env = s3_env(s3, CRYPTOPIPE_MONITOR_PREFIX=lakes["prefixes"]["planted"])
    proc, base = monitor_process(tmp_path, env, "monitor-planted")
    try:
        wait_for(lambda: http_get(base + "/readyz")[0] == 200, 60, "monitor /readyz", process=proc, retry_on=(OSError,))
        text, values = samples(base)
        assert promtool_problems(text) == ""
        anomalies = {
            dict(k)["product_id"] + " " + dict(k)["kind"]: v
            for (name, k), v in values.items()
            if name == "cryptopipe_lake_anomalies"
        }
        expected = {f"{p} {kind}": 0.0 for p in ("BTC-USD", "ETH-USD") for kind in KINDS}
        expected |= {"BTC-USD price_move": 1.0, "ETH-USD missing_window": 1.0}
        assert anomalies == expected
        missing = {
            dict(k)["product_id"] + " " + dict(k)["kind"]: v
            for (name, k), v in values.items()
            if name == "cryptopipe_lake_trade_ids_missing"
        }
        eth_lost = lakes["eth_gap_ids"][1] - lakes["eth_gap_ids"][0] + 1
        assert missing == {
            "BTC-USD lost": 0.0,
            "BTC-USD unfillable": 0.0,
            "ETH-USD lost": float(eth_lost),
            "ETH-USD unfillable": 0.0,
        }
        assert values[("cryptopipe_lake_candles_scanned", (("window", "1m"),))] == 2 * MINUTES - 1
        newest = values[
            ("cryptopipe_lake_newest_candle_end_timestamp_seconds", (("product_id", "BTC-USD"), ("window", "1m")))
        ]
        assert newest == lakes["end"].timestamp()
        assert values[("cryptopipe_lake_scans_total", (("result", "ok"),))] >= 1
        assert values[("cryptopipe_lake_scans_total", (("result", "error"),))] == 0
        assert values[("cryptopipe_lake_last_successful_scan_timestamp_seconds", ())] > 0
        assert values[("cryptopipe_lake_scan_duration_seconds_count", ())] >= 1
        assert http_get(base + "/healthz")[0] == 200
    finally:
        proc.kill(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, proc.log_tail()


@pytest.mark.parametrize("fault", ["dead endpoint", "missing bucket", "bad credentials"])
def test_serve_survives_a_lake_it_cannot_read(s3: Any, tmp_path: Path, fault: str) -> None:
    env = s3_env(s3)
    if fault == "dead endpoint":
        env["CRYPTOPIPE_MONITOR_S3_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
        cause = "connect"
    elif fault == "missing bucket":
        env["CRYPTOPIPE_MONITOR_BUCKET"] = "no-such-bucket"
        cause = "bucket does not exist"
    else:
        env["CRYPTOPIPE_MONITOR_S3_SECRET_KEY"] = "wrong"
        cause = "signature"
    proc, base = monitor_process(tmp_path, env, "monitor-" + fault.replace(" ", "-"))
    try:

        def errors() -> float:
            return samples(base)[1].get(("cryptopipe_lake_scans_total", (("result", "error"),)), 0)

        # two failed scans: it failed, stayed up, and tried again
        wait_for(lambda: errors() >= 2, 90, "two failed scans", process=proc, retry_on=(OSError,))
        text, values = samples(base)
        assert promtool_problems(text) == ""
        assert values[("cryptopipe_lake_scans_total", (("result", "ok"),))] == 0
        assert not any(name == "cryptopipe_lake_anomalies" for name, _ in values)
        assert http_get(base + "/healthz")[0] == 200
        status, body = http_get(base + "/readyz")
        assert status == 503 and b"no successful lake scan" in body
    finally:
        proc.kill(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, proc.log_tail()
    logged = [orjson.loads(line) for line in proc.log_path.read_text().splitlines() if line.startswith("{")]
    failures = [entry for entry in logged if entry["msg"] == "lake scan failed"]
    assert len(failures) >= 2 and all(entry["level"] == "error" for entry in failures)
    assert failures[0]["endpoint"] == env["CRYPTOPIPE_MONITOR_S3_ENDPOINT"]
    assert failures[0]["bucket"] == env["CRYPTOPIPE_MONITOR_BUCKET"]
    assert cause in failures[0]["error"].lower(), failures[0]["error"]


def test_local_stack_starts_the_monitor_on_its_lake(s3: Any, lakes: dict, tmp_path: Path) -> None:
    from cryptopipe.pipeline import PipelineConfig
    from cryptopipe_dev.stack.local import LocalStack

    stack = LocalStack(tmp_path / "stack", PipelineConfig(bucket=LAKE_BUCKET, prefix=lakes["prefixes"]["planted"]))
    stack.s3 = s3  # the session's S3 server stands in for the stack's own (no Kafka needed to watch a lake)
    proc = stack.start_monitor(interval="1s")
    try:
        base = f"http://127.0.0.1:{stack.monitor_port}"
        wait_for(lambda: http_get(base + "/readyz")[0] == 200, 60, "monitor /readyz", process=proc, retry_on=(OSError,))
        values = samples(base)[1]
        assert (
            values[("cryptopipe_lake_anomalies", (("kind", "price_move"), ("product_id", "BTC-USD"), ("window", "1m")))]
            == 1
        )
        assert proc in stack.processes and proc.log_path.parent == tmp_path / "stack"
    finally:
        proc.stop()
    assert proc.returncode == 0, proc.log_tail()


def test_serve_with_bad_settings_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOPIPE_MONITOR_")}
    env["CRYPTOPIPE_MONITOR_INTERVAL"] = "often"
    result = subprocess.run(
        [sys.executable, "-m", "cryptopipe.monitor"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    [error] = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert error["msg"] == "invalid settings"
    for name in ("CRYPTOPIPE_MONITOR_INTERVAL", "CRYPTOPIPE_MONITOR_BUCKET", "CRYPTOPIPE_MONITOR_S3_ACCESS_KEY"):
        assert name in error["error"]
