"""REST trades pages: parsing the real sample page, and paging against a local HTTP server that
serves that page the way Coinbase's ``/products/{id}/trades`` does."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from cryptopipe.coinbase import BackfillError, fetch_trades, fetch_trades_range, parse_trades_page
from cryptopipe.contracts import ContractError, Trade
from tests.support.paths import COINBASE_DATA

PAGE = COINBASE_DATA / "coinbase-pro-node" / "rest_products_BTC-EUR_trades_GET-200.json"
# The sample page: BTC-EUR trades 24169618..24169717, newest first.
OLDEST, NEWEST = 24169618, 24169717


def us(*args: int) -> int:
    return (datetime(*args, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // datetime.resolution


def test_parse_sample_page():
    trades = parse_trades_page(PAGE.read_bytes(), "BTC-EUR", 5)
    assert [t.trade_id for t in trades] == list(range(NEWEST, OLDEST - 1, -1))
    # {"time":"2020-02-17T07:23:16.353Z","trade_id":24169717,"price":"9042.88000000","size":"0.00846511","side":"sell"}
    assert trades[0] == Trade(
        "BTC-EUR",
        NEWEST,
        Decimal("9042.88"),
        Decimal("0.00846511"),
        "sell",
        us(2020, 2, 17, 7, 23, 16, 353000),
        5,
        "exchange",
        "rest",
        None,
    )


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b"{not json", "body is not JSON"),
        (b'{"message":"NotFound"}', "body is not a JSON array"),
        (b"[7]", "[0] must be an object"),
        (b'[{"time":"2020-02-17T07:23:16.353Z","trade_id":"1","price":"1","size":"1","side":"sell"}]', "[0].trade_id"),
        (b'[{"time":"2020-02-17T07:23:16.353Z","trade_id":1,"price":"1e-13","size":"1","side":"sell"}]', "[0].price"),
        (b'[{"time":"2020-02-17T07:23:16.353Z","trade_id":1,"price":"1","side":"sell"}]', "[0].size is missing"),
        (b'[{"time":"2020-02-17","trade_id":1,"price":"1","size":"1","side":"sell"}]', "[0].time"),
        (b'[{"time":"2020-02-17T07:23:16.353Z","trade_id":1,"price":"1","size":"1","side":"both"}]', "[0].side"),
    ],
)
def test_bad_pages_raise_naming_the_field(body, names):
    with pytest.raises(ContractError) as caught:
        parse_trades_page(body, "BTC-EUR", 0)
    assert names in str(caught.value)


class FakeCoinbase(BaseHTTPRequestHandler):
    """``/products/BTC-EUR/trades?limit&after`` from the sample page. Under ``/nocursor`` the
    CB-AFTER header is left out, under ``/stuck`` it repeats ``after``. ``BAD-EUR`` serves a corrupt
    page, ``DOWN-EUR`` answers 503, other products 404."""

    rows = orjson.loads(PAGE.read_bytes())
    requests: list[dict[str, int]] = []

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        prefix, _, rest = url.path.partition("/products/")
        path = "/products/" + rest
        query = {key: int(values[0]) for key, values in parse_qs(url.query).items()}
        type(self).requests.append(query)
        if path == "/products/DOWN-EUR/trades":
            return self._reply(503, b'{"message":"service unavailable"}')
        if path == "/products/BAD-EUR/trades":
            return self._reply(200, b'[{"trade_id":1,"price":"1","size":"1","side":"sell","time":"never"}]')
        if path != "/products/BTC-EUR/trades":
            return self._reply(404, b'{"message":"NotFound"}')
        page = [row for row in self.rows if row["trade_id"] < query["after"]][: query["limit"]]
        cursors = {"": str(page[-1]["trade_id"]) if page else None, "/nocursor": None, "/stuck": str(query["after"])}
        self._reply(200, orjson.dumps(page), cursors[prefix])

    def _reply(self, status: int, body: bytes, cursor: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if cursor is not None:
            self.send_header("CB-AFTER", cursor)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCoinbase)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def requests() -> list[dict[str, int]]:
    FakeCoinbase.requests.clear()
    return FakeCoinbase.requests


def without_receive_time(trades: list[Trade]) -> list[tuple]:
    return [(t.trade_id, t.price, t.size, t.side, t.event_time_us, t.source) for t in trades]


def test_fetches_exactly_the_range_oldest_first_across_pages(base_url, requests):
    trades = fetch_trades_range(base_url, "BTC-EUR", 24169650, 24169700, page_limit=20)
    assert [t.trade_id for t in trades] == list(range(24169650, 24169701))
    page = {t.trade_id: t for t in parse_trades_page(PAGE.read_bytes(), "BTC-EUR", 0)}
    assert without_receive_time(trades) == without_receive_time([page[t.trade_id] for t in trades])
    # pages downward from after=last+1, following CB-AFTER, never asking for more than is missing
    assert requests == [
        {"limit": 20, "after": 24169701},
        {"limit": 20, "after": 24169681},
        {"limit": 11, "after": 24169661},
    ]


def test_a_one_trade_gap_is_one_one_trade_request(base_url, requests):
    trades = fetch_trades_range(base_url, "BTC-EUR", NEWEST, NEWEST)
    assert [t.trade_id for t in trades] == [NEWEST]
    assert requests == [{"limit": 1, "after": NEWEST + 1}]


def test_pages_without_cb_after_continue_below_the_oldest_trade(base_url, requests):
    trades = fetch_trades_range(f"{base_url}/nocursor/", "BTC-EUR", OLDEST, OLDEST + 29, page_limit=10)
    assert [t.trade_id for t in trades] == list(range(OLDEST, OLDEST + 30))
    assert [r["after"] for r in requests] == [OLDEST + 30, OLDEST + 20, OLDEST + 10]


def test_a_cursor_that_does_not_page_back_is_an_error_not_a_loop(base_url, requests):
    with pytest.raises(BackfillError, match="cursor did not move back: CB-AFTER 24169701"):
        fetch_trades_range(f"{base_url}/stuck", "BTC-EUR", 24169650, 24169700, page_limit=20)
    assert len(requests) == 1


def test_ids_the_server_does_not_have_are_an_error(base_url):
    with pytest.raises(BackfillError, match=r"BTC-EUR trades 24169600\.\.24169620 .*18 trade ids not returned"):
        fetch_trades_range(base_url, "BTC-EUR", OLDEST - 18, OLDEST + 2)


@pytest.mark.parametrize(("product_id", "status"), [("DOWN-EUR", 503), ("XYZ-EUR", 404)])
def test_http_errors_name_product_range_status_and_url(base_url, product_id, status):
    with pytest.raises(BackfillError) as caught:
        fetch_trades_range(base_url, product_id, 5, 9)
    error = caught.value
    assert (error.status, error.product_id, error.first_id, error.last_id) == (status, product_id, 5, 9)
    assert f"{product_id} trades 5..9" in str(error) and f"HTTP {status}" in str(error)
    assert f"{base_url}/products/{product_id}/trades?limit=5&after=10" in str(error)


def test_a_corrupt_page_is_a_backfill_error_naming_the_field(base_url):
    with pytest.raises(BackfillError, match=r"bad page: \[0\]\.time"):
        fetch_trades_range(base_url, "BAD-EUR", 1, 1)


def test_unreachable_server_is_a_backfill_error():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BackfillError) as caught:
        fetch_trades_range(f"http://127.0.0.1:{port}", "BTC-EUR", 1, 2, timeout=2)
    assert caught.value.status is None and "BTC-EUR trades 1..2" in str(caught.value)


def test_an_empty_range_is_refused():
    with pytest.raises(ValueError, match="range"):
        fetch_trades_range("http://127.0.0.1:9", "BTC-EUR", 10, 9)


def test_fetch_trades_keeps_what_rest_returned_and_lists_the_ids_it_did_not(base_url):
    fetched = fetch_trades(base_url, "BTC-EUR", OLDEST - 18, OLDEST + 2)
    assert [t.trade_id for t in fetched.trades] == [OLDEST, OLDEST + 1, OLDEST + 2]
    assert fetched.missing == list(range(OLDEST - 18, OLDEST)) and fetched.rejected == []


def test_fetch_trades_returns_a_row_that_breaks_the_contract_with_its_reason_never_repaired(base_url):
    fetched = fetch_trades(base_url, "BAD-EUR", 1, 1)
    assert fetched.trades == [] and fetched.missing == []
    (row,) = fetched.rejected
    assert row.trade_id == 1 and row.reason.startswith("[0].time") and orjson.loads(row.raw)["time"] == "never"
