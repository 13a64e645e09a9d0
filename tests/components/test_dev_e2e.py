"""``cryptopipe dev cluster e2e`` on one ``up --node --platform`` cluster (root): each real recording
goes through the whole platform in pods (the replay server, ingestion, Kafka, spark-operator's
driver and executor in the restricted namespace, the S3 pod), and the CSV must equal, decimal-exact,
the independent reference the replay tests use (cryptopipe_dev/reference.py). Nothing is marked
ready by the test: the command itself waits for the pipeline's Ready=True from real status.

One cluster serves the module (its start, with the Spark images, is most of the cost); ``down``
then restores the host, compared with before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.reference import csv_candles, recorded_trades, reference_candles
from cryptopipe_dev.stack import node_addons
from tests.components.test_dev_node import _cli, _diff, _kubectl, _require_node, host_snapshot
from tests.support.paths import DERIVED_RECORDINGS

pytestmark = pytest.mark.node

RECORDINGS = [
    "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl",
    "advtrade_2026-08-09_BTC-ETH_no-l2.jsonl",
    "exchange_2021-04-17_matches-ticker-subs.jsonl",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    _require_node()
    work_dir = tmp_path_factory.mktemp("e2e") / "dev"
    before = host_snapshot(work_dir)
    began = time.monotonic()
    up = _cli("up", "--node", "--platform", "--work-dir", str(work_dir), timeout=2400)
    try:
        assert up.returncode == 0, up.stdout + up.stderr[-4000:]
        state = json.loads((work_dir / "state.json").read_text())
        print(f"\nup --node --platform {time.monotonic() - began:.1f} s: {state['node']}")
        yield {"work_dir": work_dir, **state}
    finally:
        down = _cli("down", "--work-dir", str(work_dir), timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _diff(before, host_snapshot(work_dir)) == {}, down.stdout


def test_spark_operator_runs_with_its_webhook(cluster: dict[str, Any]) -> None:
    kubeconfig = cluster["kubeconfig"]
    for deploy in ("spark-operator-controller", "spark-operator-webhook"):
        got = json.loads(_kubectl(kubeconfig, "-n", "spark-operator", "get", "deploy", deploy, "-o", "json").stdout)
        assert got["status"].get("availableReplicas") == 1, got["status"]
    hook = json.loads(
        _kubectl(kubeconfig, "get", "mutatingwebhookconfiguration", "spark-operator-webhook", "-o", "json").stdout
    )
    assert all(h["clientConfig"].get("caBundle") for h in hook["webhooks"])  # the webhook's own CA
    ns = json.loads(_kubectl(kubeconfig, "get", "namespace", node_addons.PLATFORM_NAMESPACE, "-o", "json").stdout)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("name", RECORDINGS)
def test_e2e_candles_equal_the_reference(cluster: dict[str, Any], name: str, tmp_path: Path) -> None:
    recording = DERIVED_RECORDINGS / name
    out = tmp_path / "candles.csv"
    began = time.monotonic()
    run = _cli(
        "e2e", "--work-dir", str(cluster["work_dir"]), "--replay", str(recording), "--output-csv", str(out),
        timeout=1500,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    print(f"\n{name}: e2e {time.monotonic() - began:.1f} s: {run.stdout.strip()}")
    assert "Ready: True" in run.stdout
    got = csv_candles(out.read_text())
    trades = recorded_trades(recording)
    assert got == reference_candles(trades)
    assert sum(c["trade_count"] for c in got) == len(trades)


def test_e2e_refuses_a_cluster_without_a_node(tmp_path: Path) -> None:
    run = _cli(
        "e2e", "--work-dir", str(tmp_path / "none"), "--replay", str(DERIVED_RECORDINGS / RECORDINGS[0]),
        "--output-csv", str(tmp_path / "c.csv"),
    )  # fmt: skip
    assert run.returncode == 1 and "no dev cluster recorded" in run.stderr, run.stderr
    assert not (tmp_path / "c.csv").exists()
