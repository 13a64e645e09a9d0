"""Backfill of missed trades from the Exchange REST API.

``GET {base}/products/{product}/trades?limit=N&after=CURSOR`` returns up to N trades with
``trade_id < CURSOR``, newest first, as ``[{"time","trade_id","price","size","side"}, ...]``; the
``CB-AFTER`` response header is the cursor of the next (older) page. Trade ids are contiguous per
product, so a gap ``first..last`` is fetched exactly by paging down from ``after=last+1``.
"""

from __future__ import annotations

import dataclasses
import http.client
import time
import urllib.error
import urllib.request
from urllib.parse import quote

import orjson

from cryptopipe.coinbase.parse import (
    check_object,
    decode_list,
    read_decimal,
    read_int,
    read_side,
    read_time_us,
)
from cryptopipe.contracts import ContractError, Trade

_HEADERS = {"Accept": "application/json", "User-Agent": "cryptopipe-ingestion"}


class BackfillError(RuntimeError):
    """Trades ``first_id..last_id`` of ``product_id`` could not be fetched; ``status`` is the HTTP
    status when the server answered with an error."""

    def __init__(self, product_id: str, first_id: int, last_id: int, url: str, reason: str, status: int | None = None):
        http = f"HTTP {status} " if status is not None else ""
        super().__init__(f"backfill of {product_id} trades {first_id}..{last_id} failed: {reason} ({http}GET {url})")
        self.product_id = product_id
        self.first_id = first_id
        self.last_id = last_id
        self.url = url
        self.status = status


@dataclasses.dataclass(frozen=True, slots=True)
class RejectedRow:
    """A REST row that breaks the contract: ``reason`` names the row and field (``[3].price ...``),
    ``raw`` is the row as received (JSON), ``trade_id`` its id when that much could be read."""

    trade_id: int | None
    reason: str
    raw: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class FetchedRange:
    """What REST returned for trade ids ``first_id..last_id``: the good trades (oldest first), the
    rows that broke the contract, and the ids that were neither (not returned at all)."""

    product_id: str
    first_id: int
    last_id: int
    trades: list[Trade]
    rejected: list[RejectedRow]

    @property
    def missing(self) -> list[int]:
        seen = {t.trade_id for t in self.trades} | {r.trade_id for r in self.rejected if r.trade_id is not None}
        return [i for i in range(self.first_id, self.last_id + 1) if i not in seen]


def parse_trades_rows(body: bytes, product_id: str, receive_time_us: int) -> tuple[list[Trade], list[RejectedRow]]:
    """One REST trades page -> (Trades in page order, rows that break the contract). Raises
    ContractError only if the body as a whole is not a JSON array."""
    trades: list[Trade] = []
    rejected: list[RejectedRow] = []
    for i, raw_row in enumerate(decode_list(body)):
        try:
            row = check_object(raw_row, f"[{i}]")
            trades.append(
                Trade(
                    product_id=product_id,
                    trade_id=read_int(row, "trade_id", 1),
                    price=read_decimal(row, "price"),
                    size=read_decimal(row, "size"),
                    side=read_side(row, "side"),
                    event_time_us=read_time_us(row, "time"),
                    receive_time_us=receive_time_us,
                    feed="exchange",
                    source="rest",
                )
            )
        except ContractError as exc:
            reason = str(exc) if str(exc).startswith(f"[{i}]") else f"[{i}].{exc}"
            trade_id = raw_row.get("trade_id") if isinstance(raw_row, dict) else None
            rejected.append(
                RejectedRow(trade_id if type(trade_id) is int and trade_id > 0 else None, reason, orjson.dumps(raw_row))
            )
    return trades, rejected


def parse_trades_page(body: bytes, product_id: str, receive_time_us: int) -> list[Trade]:
    """One REST trades page -> Trades in page order (newest first). Raises ContractError naming
    the row and field (``[3].price ...``) on a bad row."""
    trades, rejected = parse_trades_rows(body, product_id, receive_time_us)
    if rejected:
        raise ContractError(rejected[0].reason)
    return trades


def fetch_trades(
    base_url: str,
    product_id: str,
    first_id: int,
    last_id: int,
    *,
    timeout: float = 10.0,
    page_limit: int = 100,
) -> FetchedRange:
    """Fetch the trades ``first_id..last_id`` (inclusive) of ``product_id``, keeping whatever REST
    returned: good rows become trades, rows that break the contract are returned as rejected (never
    repaired or rounded), ids REST did not return are ``missing``.

    Raises BackfillError naming the product, the range and the failing request if a request fails,
    a body is not a JSON array, or the paging cursor does not move back.
    """
    if not 0 < first_id <= last_id:
        raise ValueError(f"not a trade id range: {first_id}..{last_id}")
    found: dict[int, Trade] = {}
    rejected: list[RejectedRow] = []
    after = last_id + 1
    while True:
        # Never ask for more than the ids still missing below the cursor: a one-trade gap is one
        # one-trade request.
        limit = min(page_limit, after - first_id)
        url = f"{base_url.rstrip('/')}/products/{quote(product_id, safe='')}/trades?limit={limit}&after={after}"
        body, next_cursor = _get(url, timeout, product_id, first_id, last_id)
        try:
            page, bad = parse_trades_rows(body, product_id, time.time_ns() // 1_000)
        except ContractError as exc:
            raise BackfillError(product_id, first_id, last_id, url, f"bad page: {exc}") from exc
        if not page and not bad:
            break
        for trade in page:
            if first_id <= trade.trade_id <= last_id:
                found[trade.trade_id] = trade
        rejected.extend(r for r in bad if r.trade_id is None or first_id <= r.trade_id <= last_id)
        ids = [t.trade_id for t in page] + [r.trade_id for r in bad if r.trade_id is not None]
        oldest = min(ids, default=None)
        if oldest is not None and oldest <= first_id:
            break
        cursor = next_cursor if next_cursor is not None else oldest
        if cursor is None:
            break  # a page of unreadable rows without a cursor: nothing tells where the next page is
        if cursor >= after:
            reason = f"paging cursor did not move back: CB-AFTER {cursor}"
            raise BackfillError(product_id, first_id, last_id, url, reason)
        after = cursor
    trades = [found[trade_id] for trade_id in sorted(found)]
    return FetchedRange(product_id, first_id, last_id, trades, rejected)


def fetch_trades_range(
    base_url: str,
    product_id: str,
    first_id: int,
    last_id: int,
    *,
    timeout: float = 10.0,
    page_limit: int = 100,
) -> list[Trade]:
    """Fetch exactly the trades ``first_id..last_id`` (inclusive) of ``product_id``, oldest first.

    Raises BackfillError naming the product, the range and the failing request if a request fails,
    a page is malformed, or any id of the range is absent.
    """
    fetched = fetch_trades(base_url, product_id, first_id, last_id, timeout=timeout, page_limit=page_limit)
    url = f"{base_url.rstrip('/')}/products/{quote(product_id, safe='')}/trades"
    if fetched.rejected:
        raise BackfillError(product_id, first_id, last_id, url, f"bad page: {fetched.rejected[0].reason}")
    missing = fetched.missing
    if missing:
        lowest = fetched.trades[0].trade_id if fetched.trades else None
        raise BackfillError(
            product_id, first_id, last_id, url, f"{len(missing)} trade ids not returned (lowest returned: {lowest})"
        )
    return fetched.trades


def _get(url: str, timeout: float, product_id: str, first_id: int, last_id: int) -> tuple[bytes, int | None]:
    """GET ``url`` -> (body, CB-AFTER cursor or None)."""
    request = urllib.request.Request(url, headers=_HEADERS)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            cursor = response.headers.get("CB-AFTER")
    except urllib.error.HTTPError as exc:
        raise BackfillError(product_id, first_id, last_id, url, exc.reason, exc.code) from exc
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, truncated bodies
        raise BackfillError(product_id, first_id, last_id, url, str(exc)) from exc
    return body, int(cursor) if cursor is not None and cursor.isdigit() else None
