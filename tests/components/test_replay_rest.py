"""The REST trades endpoint and the control endpoints of the replay server, over real HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request

import orjson
import pytest

from cryptopipe.coinbase import fetch_trades_range
from cryptopipe_dev.replay import ReplayServer, load_recording, recording_trades
from tests.support.paths import COINBASE_DATA

DATA = COINBASE_DATA
EXCHANGE = DATA / "derived" / "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"
ADVTRADE = DATA / "derived" / "advtrade_2026-08-09_BTC-ETH_no-l2.jsonl"


def get(url: str) -> tuple[int, dict[str, str], object]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), orjson.loads(exc.read())


def post(url: str, body: bytes) -> tuple[int, object]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


@pytest.fixture(scope="module")
def server():
    with ReplayServer([EXCHANGE]) as running:
        yield running


def walk(base: str, product: str, limit: int) -> tuple[list[dict], int]:
    """Page from the newest trade down with after= cursors; returns (rows oldest first, pages)."""
    rows, pages, url = [], 0, f"{base}/products/{product}/trades?limit={limit}"
    while True:
        status, headers, page = get(url)
        assert status == 200
        pages += 1
        if not page:
            assert "CB-AFTER" not in headers
            return rows[::-1], pages
        ids = [r["trade_id"] for r in page]
        assert ids == sorted(ids, reverse=True), "newest first"
        assert (headers["CB-BEFORE"], headers["CB-AFTER"]) == (str(ids[0]), str(ids[-1]))
        rows.extend(page)
        url = f"{base}/products/{product}/trades?limit={limit}&after={headers['CB-AFTER']}"


@pytest.mark.parametrize("recording", [EXCHANGE, ADVTRADE], ids=["exchange", "advanced_trade"])
def test_walking_the_whole_history_with_after_cursors_gives_the_recordings_trades(recording):
    expected = recording_trades(load_recording(recording))
    with ReplayServer([recording]) as server:
        for product, trades in expected.items():
            rows, pages = walk(server.rest_url, product, limit=40)
            assert pages == -(-len(trades) // 40) + 1  # full pages, then one empty page
            assert rows == [
                {"time": t.time, "trade_id": t.trade_id, "price": t.price, "size": t.size, "side": t.side}
                for t in trades
            ]


def test_strings_are_exactly_as_recorded(server):
    status, _, page = get(f"{server.rest_url}/products/BTC-USD/trades?limit=1")
    # the recording's last BTC trade: 0.00000082 must not come back as 8.2E-7
    assert status == 200 and page == [
        {
            "time": "2026-07-07T22:59:16.746731Z",
            "trade_id": 1052119632,
            "price": "63510.14",
            "size": "0.00000082",
            "side": "buy",
        }
    ]


def test_before_cursor_limit_default_and_clamp(server):
    _, headers, page = get(f"{server.rest_url}/products/BTC-USD/trades?before=1052119300&limit=3")
    assert [r["trade_id"] for r in page] == [1052119303, 1052119302, 1052119301]
    assert (headers["CB-BEFORE"], headers["CB-AFTER"]) == ("1052119303", "1052119301")
    assert len(get(f"{server.rest_url}/products/BTC-USD/trades")[2]) == 100
    assert len(get(f"{server.rest_url}/products/BTC-USD/trades?limit=5000")[2]) == 345  # clamped to 1000
    assert get(f"{server.rest_url}/products/BTC-USD/trades?limit=0")[0] == 400
    assert get(f"{server.rest_url}/products/BTC-USD/trades?after=abc")[0] == 400


def test_unknown_product_is_404_not_found(server):
    status, headers, body = get(f"{server.rest_url}/products/DOGE-USD/trades")
    assert (status, body) == (404, {"message": "NotFound"})
    assert headers["Content-Type"] == "application/json"
    assert get(f"{server.rest_url}/nothing/here")[0] == 404


def test_ingestions_backfill_client_fetches_an_exact_range(server):
    trades = fetch_trades_range(server.rest_url, "ETH-USD", 825468250, 825468260, page_limit=4)
    assert [t.trade_id for t in trades] == list(range(825468250, 825468261))


def test_control_endpoint_sets_faults_and_status_reports_them(server):
    assert server.control_url is not None
    status, body = post(f"{server.control_url}/_replay/faults", b'{"drop_after": 7, "seed": 3}')
    assert status == 200 and body["drop_after"] == 7
    assert server.status()["faults"]["drop_after"] == 7
    _, _, current = get(f"{server.control_url}/_replay/faults")
    assert current["seed"] == 3
    status, body = post(f"{server.control_url}/_replay/faults", b'{"drop_aftr": 7}')
    assert status == 400 and "drop_aftr" in body["message"]
    assert post(f"{server.control_url}/_replay/faults", b"{}")[0] == 200
    # status is also served on the WebSocket port, and reset answers with the new status
    _, _, status_body = get(server.status_url)
    assert status_body["feed"] == "exchange" and status_body["frames_total"] == 555
    status, reset = post(f"{server.control_url}/_replay/reset", b"")
    assert status == 200 and reset["position"] == 0 and reset["done"] is False
