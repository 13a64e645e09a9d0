"""The counted-unfillable trade ids record (cryptopipe.contracts): runs of ids, round trip, and the
dead-letter topic's other records told apart."""

from __future__ import annotations

import pytest

from cryptopipe.contracts import ContractError, UnfillableTradeIds, decode_unfillable, unfillable_ranges
from cryptopipe.ingest.producer import dead_letter_value


def test_ids_become_one_record_per_run_of_consecutive_ids() -> None:
    records = unfillable_ranges("BTC-USD", [7, 3, 4, 5, 9, 8, 4], "not_returned", 1)
    assert [(r.first_trade_id, r.last_trade_id, r.count) for r in records] == [(3, 5, 3), (7, 9, 3)]
    assert unfillable_ranges("BTC-USD", [], "shutdown", 1) == []


def test_round_trip_and_other_dead_letter_records_are_not_it() -> None:
    record = UnfillableTradeIds("ETH-USD", 10, 12, "bad_row", 1_700_000_000_000_000)
    assert decode_unfillable(record.to_json()) == record
    assert decode_unfillable(dead_letter_value("bad json", b"{", "exchange", 1)) is None
    assert decode_unfillable(b"not json at all") is None


def test_a_broken_record_is_refused_naming_what_is_wrong() -> None:
    with pytest.raises(ContractError, match="bad range 5..4"):
        UnfillableTradeIds("BTC-USD", 5, 4, "not_returned", 1)
    with pytest.raises(ContractError, match="product id"):
        UnfillableTradeIds("btc", 1, 1, "not_returned", 1)
    with pytest.raises(ContractError, match="bad record"):
        decode_unfillable(b'{"v": 1, "kind": "unfillable_trade_ids", "product_id": "BTC-USD"}')
