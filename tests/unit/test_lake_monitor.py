"""The lake monitor's pure core (find_anomalies) and its settings, on small synthetic candle tables."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cryptopipe.monitor.anomalies import KINDS, Thresholds, find_anomalies
from cryptopipe.monitor.settings import SettingsError, load_settings
from tests.support.synthetic_candles import candle_rows, candle_table, shift_prices

T0 = datetime(2026, 7, 7, 22, 0, tzinfo=UTC)
REQUIRED_ENV = {
    "CRYPTOPIPE_MONITOR_BUCKET": "lake",
    "CRYPTOPIPE_MONITOR_S3_ACCESS_KEY": "k",
    "CRYPTOPIPE_MONITOR_S3_SECRET_KEY": "s",
}


def scan(rows, *, minutes_after_last: int = 1, thresholds: Thresholds = Thresholds(), **kwargs):
    now = max(r["window_end"] for r in rows) + timedelta(minutes=minutes_after_last) if rows else T0
    return find_anomalies(candle_table(rows), window_seconds=60, now=now, thresholds=thresholds, **kwargs)


def kinds(anomalies) -> list[tuple[str, str, datetime | None]]:
    return [(a.kind, a.product_id, a.window_start) for a in anomalies]


def two_products(count: int = 60) -> list[dict]:
    return candle_rows("BTC-USD", T0, count, seed=1) + candle_rows("ETH-USD", T0, count, price=1800.0, seed=2)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_clean_candles_have_no_anomalies(seed: int) -> None:
    rows = candle_rows("BTC-USD", T0, 120, seed=seed) + candle_rows("ETH-USD", T0, 120, price=1800.0, seed=seed + 50)
    assert scan(rows) == []


def test_missing_minute_is_reported_with_its_start() -> None:
    rows = two_products()
    dropped = rows.pop(42)  # BTC-USD 22:42
    [anomaly] = scan(rows)
    assert (anomaly.kind, anomaly.product_id, anomaly.window_start) == (
        "missing_window",
        "BTC-USD",
        dropped["window_start"],
    )
    assert "BTC-USD" in anomaly.message and "2026-07-07T22:42:00Z" in anomaly.message


def test_three_missing_minutes_are_three_anomalies_and_an_edge_is_not_missing() -> None:
    rows = candle_rows("BTC-USD", T0, 30, seed=1)
    del rows[10:13]
    del rows[0]  # before the first candle in range: nothing says a candle was due there
    assert [a.window_start for a in scan(rows)] == [T0 + timedelta(minutes=m) for m in (10, 11, 12)]


def test_stale_product_once_its_next_candle_is_overdue_by_stale_after() -> None:
    rows = two_products()
    btc_only_after = [r for r in rows if r["product_id"] == "BTC-USD" or r["window_start"] < T0 + timedelta(minutes=50)]
    # ETH-USD's newest candle ends at 22:50; now = 23:01 -> 11 min > 1 min window + 5 min
    [anomaly] = scan(btc_only_after)
    assert (anomaly.kind, anomaly.product_id) == ("stale_product", "ETH-USD")
    assert anomaly.value == pytest.approx(11 * 60)
    assert "ETH-USD" in anomaly.message and "2026-07-07T22:50:00Z" in anomaly.message
    # BTC-USD's newest ends at 23:00; 6 minutes later is exactly the limit, a second more is stale
    assert scan(rows, minutes_after_last=6) == []
    late = find_anomalies(
        candle_table(rows), window_seconds=60, now=T0 + timedelta(minutes=66, seconds=1), thresholds=Thresholds()
    )
    assert sorted(kinds(late)) == [
        ("stale_product", "BTC-USD", T0 + timedelta(minutes=59)),
        ("stale_product", "ETH-USD", T0 + timedelta(minutes=59)),
    ]


def test_expected_product_without_any_candle_is_stale() -> None:
    [anomaly] = scan(two_products(), expected_products=["BTC-USD", "SOL-USD"])
    assert (anomaly.kind, anomaly.product_id, anomaly.window_start) == ("stale_product", "SOL-USD", None)


def test_price_jump_is_one_move_and_a_reverting_spike_is_two() -> None:
    jump = two_products()
    shift_prices(jump[30:60], "1.02")  # BTC-USD from 22:30 on, 2% higher (about 40 sigma)
    [anomaly] = scan(jump)
    assert (anomaly.kind, anomaly.product_id, anomaly.window_start) == (
        "price_move",
        "BTC-USD",
        T0 + timedelta(minutes=30),
    )
    assert anomaly.value > 20 and "BTC-USD" in anomaly.message and "2026-07-07T22:30:00Z" in anomaly.message

    spike = two_products()
    shift_prices(spike[30:31], "0.97")  # one candle 3% lower, then back
    assert kinds(scan(spike)) == [("price_move", "BTC-USD", T0 + timedelta(minutes=m)) for m in (30, 31)]


def test_reverting_spike_is_found_with_only_min_history_candles() -> None:
    # with 20 candles a leave-one-out std would be inflated by the spike's own move back (z capped ~4.4)
    rows = candle_rows("BTC-USD", T0, 20, seed=1)
    shift_prices(rows[10:11], "1.05")
    assert kinds(scan(rows)) == [("price_move", "BTC-USD", T0 + timedelta(minutes=m)) for m in (10, 11)]


def test_move_across_a_quiet_gap_is_scaled_by_the_gap_length() -> None:
    rows = candle_rows("BTC-USD", T0, 60, seed=1, sigma=0.001)
    del rows[20:45]  # 26 windows from the 22:19 candle to the 22:45 one
    natural = math.log(rows[20]["close"] / rows[19]["close"])
    # 1% over the gap: about 10 one-window sigmas, but only 10 / sqrt(26) = 2 sigmas of a 26-window move
    shift_prices(rows[20:], str(round(math.exp(0.01 - natural), 6)))
    assert [a.kind for a in scan(rows)] == ["missing_window"] * 25
    # the same 1% within one window is a move
    rows = candle_rows("BTC-USD", T0, 60, seed=1, sigma=0.001)
    shift_prices(rows[45:], "1.01")
    assert kinds(scan(rows)) == [("price_move", "BTC-USD", T0 + timedelta(minutes=45))]


def test_price_sigma_threshold_is_configurable() -> None:
    rows = candle_rows("BTC-USD", T0, 60, seed=1)
    shift_prices(rows[30:], "1.003")  # a few sigma
    assert [a.kind for a in scan(rows)] == ["price_move"]
    assert scan(rows, thresholds=Thresholds(price_sigma=100.0)) == []


def test_volume_spike_against_the_median_of_the_other_candles() -> None:
    rows = two_products()
    rows[70]["volume"] = rows[70]["volume"] * 40  # ETH-USD 22:10
    [anomaly] = scan(rows)
    assert (anomaly.kind, anomaly.product_id, anomaly.window_start) == (
        "volume_spike",
        "ETH-USD",
        T0 + timedelta(minutes=10),
    )
    assert anomaly.value > 10 and "ETH-USD" in anomaly.message
    assert scan(rows, thresholds=Thresholds(volume_factor=1000.0)) == []


def test_too_little_history_means_no_statistical_anomalies() -> None:
    rows = candle_rows("BTC-USD", T0, 19, seed=1)
    shift_prices(rows[10:], "1.05")
    rows[5]["volume"] *= 100
    assert scan(rows) == []  # 19 candles < min_history 20
    assert sorted(a.kind for a in scan(rows, thresholds=Thresholds(min_history=10))) == ["price_move", "volume_spike"]


def test_price_on_one_tick_scores_moves_against_the_moves_that_happen() -> None:
    # most minutes the price does not move at all (the MAD is 0): one-tick moves are its normal life
    rows = candle_rows("USDT-USD", T0, 40, price=1.0, sigma=0.0)
    for i, factor in ((5, "1.01"), (15, "0.99"), (22, "1.01"), (30, "0.99")):
        shift_prices(rows[i:], factor)
    assert scan(rows) == []
    shift_prices(rows[35:], "1.5")
    assert kinds(scan(rows)) == [("price_move", "USDT-USD", T0 + timedelta(minutes=35))]


def test_all_flat_prices_score_nothing() -> None:
    assert scan(candle_rows("USDT-USD", T0, 40, price=1.0, sigma=0.0)) == []


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("low", "70000", "low 70000"),  # above open and close
        ("high", "1", "high 1"),
        ("volume", "0", "volume 0"),
        ("trade_count", 0, "trade_count 0 < 1"),
        ("vwap", "1", "vwap 1"),
        ("first_trade_id", 10**9, "first_trade_id"),
    ],
)
def test_broken_invariant_is_reported_with_the_numbers(field: str, value, says: str) -> None:
    rows = two_products()
    rows[7][field] = Decimal(value) if isinstance(value, str) else value
    [anomaly] = [a for a in scan(rows) if a.kind == "invariant_violation"]
    assert (anomaly.product_id, anomaly.window_start) == ("BTC-USD", T0 + timedelta(minutes=7))
    assert says in anomaly.message and "2026-07-07T22:07:00Z" in anomaly.message


def test_invariants_are_exact_decimals() -> None:
    rows = candle_rows("BTC-USD", T0, 5, seed=1)
    row = rows[2]
    row["low"] = min(row["open"], row["close"]) + Decimal("0.00000001")  # one satoshi above: float would miss it
    [anomaly] = scan(rows)
    assert anomaly.kind == "invariant_violation" and "low" in anomaly.message
    row["low"] = min(row["open"], row["close"])  # equal is fine
    row["vwap"] = row["low"]
    assert scan(rows) == []


def test_duplicate_candle_for_one_window_is_an_invariant_violation() -> None:
    rows = candle_rows("BTC-USD", T0, 5, seed=1)
    rows.insert(3, dict(rows[2]))
    assert kinds(scan(rows)) == [("invariant_violation", "BTC-USD", T0 + timedelta(minutes=2))]


def test_start_hides_anomalies_before_it_but_keeps_their_candles_as_history() -> None:
    rows = candle_rows("BTC-USD", T0, 60, seed=1)
    del rows[5]
    shift_prices(rows[40:], "1.02")
    found = scan(rows, start=T0 + timedelta(minutes=30))
    assert kinds(found) == [("price_move", "BTC-USD", T0 + timedelta(minutes=41))]


def test_empty_table_has_no_anomalies_and_kinds_are_the_contract() -> None:
    assert scan([]) == []
    assert KINDS == ("missing_window", "stale_product", "price_move", "volume_spike", "invariant_violation")


# -- settings ------------------------------------------------------------------------------------
def test_settings_defaults_and_lists() -> None:
    s = load_settings(
        {**REQUIRED_ENV, "CRYPTOPIPE_MONITOR_PRODUCTS": "BTC-USD, ETH-USD", "CRYPTOPIPE_MONITOR_WINDOWS": "60s,5m"}
    )
    assert s.products == ["BTC-USD", "ETH-USD"] and s.windows == ["1m", "5m"]
    assert (s.lookback_s, s.interval_s, s.http_port, s.prefix) == (7200, 60, 8080, "cryptopipe")
    assert s.thresholds == Thresholds(price_sigma=4.0, volume_factor=10.0, stale_after_s=300, min_history=20)
    assert load_settings({**REQUIRED_ENV, "CRYPTOPIPE_MONITOR_PRODUCTS": ""}).products == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CRYPTOPIPE_MONITOR_LOOKBACK", "2 hours"),
        ("CRYPTOPIPE_MONITOR_INTERVAL", "0s"),
        ("CRYPTOPIPE_MONITOR_STALE_AFTER", "-5m"),
        ("CRYPTOPIPE_MONITOR_WINDOWS", "1x"),
        ("CRYPTOPIPE_MONITOR_PRODUCTS", "btc"),
        ("CRYPTOPIPE_MONITOR_PRICE_SIGMA", "-1"),
        ("CRYPTOPIPE_MONITOR_VOLUME_FACTOR", "lots"),
        ("CRYPTOPIPE_MONITOR_MIN_HISTORY", "1"),
        ("CRYPTOPIPE_MONITOR_HTTP_PORT", "70000"),
        ("CRYPTOPIPE_MONITOR_LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_setting_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({**REQUIRED_ENV, name: value})


def test_missing_required_settings_are_named() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"CRYPTOPIPE_MONITOR_S3_ACCESS_KEY": "k"})
    assert "CRYPTOPIPE_MONITOR_BUCKET" in str(error.value) and "CRYPTOPIPE_MONITOR_S3_SECRET_KEY" in str(error.value)


# -- metrics ---------------------------------------------------------------------------------------
def test_metrics_export_zero_for_every_kind_and_drop_products_no_longer_seen() -> None:
    from cryptopipe.monitor.scan import WindowScan
    from cryptopipe.monitor.service import MonitorMetrics

    metrics = MonitorMetrics()
    rows = two_products()
    del rows[42]
    first = WindowScan(
        "1m",
        len(rows),
        ("BTC-USD", "ETH-USD", "SOL-USD"),
        {"BTC-USD": T0 + timedelta(hours=1), "ETH-USD": T0 + timedelta(hours=1)},
        scan(rows, expected_products=["SOL-USD"]),
    )
    metrics.publish([first], finished=1234.0)
    get = metrics.registry.get_sample_value
    assert get("cryptopipe_lake_anomalies", {"product_id": "BTC-USD", "window": "1m", "kind": "missing_window"}) == 1
    assert get("cryptopipe_lake_anomalies", {"product_id": "SOL-USD", "window": "1m", "kind": "stale_product"}) == 1
    for kind in KINDS[2:]:
        assert get("cryptopipe_lake_anomalies", {"product_id": "ETH-USD", "window": "1m", "kind": kind}) == 0
    assert (
        get("cryptopipe_lake_newest_candle_end_timestamp_seconds", {"product_id": "BTC-USD", "window": "1m"})
        == (T0 + timedelta(hours=1)).timestamp()
    )
    assert get("cryptopipe_lake_candles_scanned", {"window": "1m"}) == 119
    assert get("cryptopipe_lake_last_successful_scan_timestamp_seconds") == 1234.0

    second = WindowScan("1m", 60, ("BTC-USD",), {"BTC-USD": T0 + timedelta(hours=1)}, [])
    metrics.publish([second], finished=1300.0)
    assert get("cryptopipe_lake_anomalies", {"product_id": "BTC-USD", "window": "1m", "kind": "missing_window"}) == 0
    for product in ("ETH-USD", "SOL-USD"):
        assert (
            get("cryptopipe_lake_anomalies", {"product_id": product, "window": "1m", "kind": "stale_product"}) is None
        )
    assert get("cryptopipe_lake_newest_candle_end_timestamp_seconds", {"product_id": "ETH-USD", "window": "1m"}) is None
