"""Issue 10, holes 1, 4 and 12 at the ingestion service: every trade the feed published reaches
Kafka once, or its loss is counted -- never silent, never stuck.

Real replay server (its recording written here, so each fault sits on a known trade id), real
Kafka broker; the service runs in-process.
"""

from __future__ import annotations

import collections
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from cryptopipe.contracts import Trade
from cryptopipe_dev.replay import ReplayServer
from tests.components.test_ingest_pipeline import (
    metric_value,
    read_topic,
    running,
    settings_for,
    trades_by_product,
    unique_topics,
    wait_for,
)

pytestmark = pytest.mark.components

PRODUCT = "BTC-USD"
T0 = 1_783_465_097.0  # 2026-07-07T22:58:17Z
FIRST_ID = 1000


def write_recording(path: Path, trade_ids: list[int], overrides: dict[int, dict[str, str]] | None = None) -> Path:
    """An Exchange recording of ``PRODUCT``: the subscriptions ack, one match per id (fields in
    ``overrides[id]`` replace the normal ones, exactly as strings) and a heartbeat every 10 trades."""
    overrides = overrides or {}

    def row(ts: float, frame: dict[str, Any]) -> str:
        return json.dumps(
            {"ts": ts, "dir": "recv", "url": "wss://ws-feed.exchange.coinbase.com", "data": json.dumps(frame)}
        )

    ack = {
        "type": "subscriptions",
        "channels": [{"name": n, "product_ids": [PRODUCT], "account_ids": None} for n in ("matches", "heartbeat")],
    }
    lines = [row(T0, ack)]
    for n, trade_id in enumerate(trade_ids):
        ts = T0 + 0.5 + n * 0.1
        second, micros = divmod(int(round((ts - T0) * 1e6)) + 17_000_000, 1_000_000)
        when = f"2026-07-07T22:58:{second:02d}.{micros:06d}Z"
        match = {
            "type": "match",
            "trade_id": trade_id,
            "maker_order_id": "m",
            "taker_order_id": "t",
            "side": "sell" if n % 2 else "buy",
            "size": f"0.{n + 1:08d}",
            "price": f"{63500 + n}.5",
            "product_id": PRODUCT,
            "sequence": 10_000 + n,
            "time": when,
        } | overrides.get(trade_id, {})
        lines.append(row(ts, match))
        if n % 10 == 9:
            beat = {
                "type": "heartbeat",
                "last_trade_id": trade_id,
                "product_id": PRODUCT,
                "sequence": 10_000 + n,
                "time": when,
            }
            lines.append(row(ts + 0.01, beat))
    path.write_text("\n".join(lines) + "\n")
    return path


def trades_in(kafka: Any, topic: str) -> dict[int, list[Trade]]:
    by_id: dict[int, list[Trade]] = collections.defaultdict(list)
    for trade in trades_by_product(read_topic(kafka.bootstrap, topic)).get(PRODUCT, []):
        by_id[trade.trade_id].append(trade)
    return by_id


def run_to_the_end(service: Any, server: ReplayServer, gaps: int) -> None:
    """Until the replay is sent, its ``gaps`` gaps were found and the backfill has nothing pending."""
    wait_for(lambda: server.wait_done(0), 30, "the replay")
    wait_for(
        lambda: metric_value(service, "cryptopipe_ingest_gaps_detected_total", product_id=PRODUCT) >= gaps,
        30,
        f"{gaps} gaps detected",
    )
    assert service.backfiller.wait_idle(30), "backfill still pending"
    assert metric_value(service, "cryptopipe_ingest_backfill_pending") == 0


# --- hole 12: an exponent-form size ----------------------------------------------------------------


def test_a_size_in_exponent_form_is_taken_exactly_from_the_socket_and_from_rest(kafka: Any, tmp_path: Path) -> None:
    ids = list(range(FIRST_ID, FIRST_ID + 40))
    over_rest, over_ws = FIRST_ID + 12, FIRST_ID + 25
    recording = write_recording(tmp_path / "exp.jsonl", ids, {over_rest: {"size": "1E-8"}, over_ws: {"size": "2.5E-7"}})
    topic, dlq = unique_topics(kafka, "exponent")
    # the REST one is withheld from the socket: only the REST page (size "1E-8") can deliver it
    with (
        ReplayServer([recording], speed="max", faults={"skip_trade_ids": [over_rest]}) as server,
        running(settings_for(kafka, server, topic, dlq, products=[PRODUCT], watchdog_s=10.0)) as service,
    ):
        run_to_the_end(service, server, gaps=1)
        assert metric_value(service, "cryptopipe_ingest_trades_unfilled_total", product_id=PRODUCT) == 0
    produced = trades_in(kafka, topic)
    assert sorted(produced) == ids, f"missing {sorted(set(ids) - set(produced))}"
    assert all(len(copies) == 1 for copies in produced.values())
    assert produced[over_rest][0].source == "rest" and produced[over_rest][0].size == Decimal("0.00000001")
    assert produced[over_ws][0].source == "ws" and produced[over_ws][0].size == Decimal("0.00000025")
    assert read_topic(kafka.bootstrap, dlq) == []


# --- hole 4: a partial REST answer -----------------------------------------------------------------


def test_a_partial_rest_answer_keeps_what_it_found_and_counts_exactly_what_it_could_not(
    kafka: Any, tmp_path: Path
) -> None:
    gap = list(range(FIRST_ID + 20, FIRST_ID + 26))  # withheld from the socket, one gap of six ids
    absent, bad = gap[2], gap[4]  # REST never had `absent`; it serves `bad` with a price that is no number
    ids = [i for i in range(FIRST_ID, FIRST_ID + 40) if i != absent]
    recording = write_recording(tmp_path / "partial.jsonl", ids, {bad: {"price": "abc"}})
    topic, dlq = unique_topics(kafka, "partial")
    with (
        ReplayServer([recording], speed="max", faults={"skip_trade_ids": gap}) as server,
        running(settings_for(kafka, server, topic, dlq, products=[PRODUCT], watchdog_s=10.0)) as service,
    ):
        run_to_the_end(service, server, gaps=1)
        assert metric_value(service, "cryptopipe_ingest_trades_unfilled_total", product_id=PRODUCT) == 2
        for reason in ("not_returned", "bad_row"):
            assert (
                metric_value(service, "cryptopipe_ingest_gaps_unfilled_total", product_id=PRODUCT, reason=reason) == 1
            )
    produced = trades_in(kafka, topic)
    assert sorted(produced) == sorted(set(ids) - {bad}), f"missing {sorted(set(ids) - {bad} - set(produced))}"
    assert all(len(copies) == 1 for copies in produced.values())
    assert {i for i, (t,) in produced.items() if t.source == "rest"} == set(gap) - {absent, bad}
    (letter,) = [orjson.loads(value) for _key, value, _p in read_topic(kafka.bootstrap, dlq)]
    assert "price" in letter["reason"] and PRODUCT in letter["reason"], letter
    assert orjson.loads(letter["raw"])["trade_id"] == bad
