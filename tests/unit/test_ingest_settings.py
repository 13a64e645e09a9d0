"""IngestSettings: the env contract of the ingestion Deployment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cryptopipe.coinbase import FEED_URLS, REST_BASE_URL
from cryptopipe.ingest import settings as settings_module
from cryptopipe.ingest.feed import backoff_delay
from cryptopipe.ingest.settings import ENV_PREFIX, IngestSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = IngestSettings()
    assert s.feed == "exchange"
    assert s.products == ["BTC-USD", "ETH-USD"]
    assert s.ws_url == FEED_URLS["exchange"]
    assert s.rest_url == REST_BASE_URL
    assert (s.topic, s.dlq_topic) == ("coinbase.trades", "coinbase.trades.dlq")
    assert (s.http_port, s.subscribe_timeout_s, s.watchdog_s, s.backfill_max_trades) == (8080, 5.0, 30.0, 10_000)


def test_read_from_env_with_comma_separated_products(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOPIPE_INGEST_FEED", "advanced_trade")
    monkeypatch.setenv("CRYPTOPIPE_INGEST_PRODUCTS", " SOL-USD, BTC-EUR ,")
    monkeypatch.setenv("CRYPTOPIPE_INGEST_HTTP_PORT", "0")
    monkeypatch.setenv("CRYPTOPIPE_INGEST_WATCHDOG_S", "2.5")
    monkeypatch.setenv("CRYPTOPIPE_INGEST_LOG_LEVEL", "debug")
    s = IngestSettings()
    assert s.products == ["SOL-USD", "BTC-EUR"]
    assert s.ws_url == FEED_URLS["advanced_trade"], "the default URL follows the feed"
    assert (s.http_port, s.watchdog_s, s.log_level) == (0, 2.5, "DEBUG")


def test_explicit_ws_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOPIPE_INGEST_WS_URL", "ws://127.0.0.1:9999")
    assert IngestSettings().ws_url == "ws://127.0.0.1:9999"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PRODUCTS", "btc-usd"),
        ("PRODUCTS", "BTCUSD"),
        ("PRODUCTS", "BTC-USD,BTC-USD"),
        ("PRODUCTS", ""),
        ("FEED", "binance"),
        ("HTTP_PORT", "70000"),
        ("WATCHDOG_S", "0"),
        ("BACKOFF_JITTER", "1.5"),
        ("BACKFILL_MAX_TRADES", "0"),
        ("GC_GEN0_THRESHOLD", "-1"),
        ("GC_GEN0_THRESHOLD", "lots"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(ENV_PREFIX + name, value)
    with pytest.raises(ValidationError) as err:
        IngestSettings()
    assert name.lower() in str(err.value)


def test_gc_gen0_threshold_from_env_and_zero_meaning_python_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert IngestSettings().gc_gen0_threshold == 20_000, "on by default: the measured best (gc_tuning.py)"
    monkeypatch.setenv("CRYPTOPIPE_INGEST_GC_GEN0_THRESHOLD", "50000")
    assert IngestSettings().gc_gen0_threshold == 50_000
    monkeypatch.setenv("CRYPTOPIPE_INGEST_GC_GEN0_THRESHOLD", "0")
    assert IngestSettings().gc_gen0_threshold == 0


def test_backoff_max_below_initial_is_rejected() -> None:
    with pytest.raises(ValidationError):
        IngestSettings(backoff_initial_s=5, backoff_max_s=1)


def test_every_field_is_documented_and_listed_in_the_module_docstring() -> None:
    # the Deployment's env is written from this list: a field missing from it is a setting nobody can find
    doc = settings_module.__doc__ or ""
    for name, field in IngestSettings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert f"{ENV_PREFIX}{name.upper()}" in doc, f"{ENV_PREFIX}{name.upper()} missing from the docstring"


def test_backoff_grows_exponentially_to_the_cap_with_bounded_jitter() -> None:
    s = IngestSettings(backoff_initial_s=0.5, backoff_max_s=4, backoff_jitter=0.2)
    no_jitter = [backoff_delay(s, n, uniform=lambda a, b: 1.0) for n in range(7)]
    assert no_jitter == [0.5, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    low = backoff_delay(s, 3, uniform=lambda a, b: a)
    high = backoff_delay(s, 3, uniform=lambda a, b: b)
    assert (low, high) == pytest.approx((1.6, 2.4))
    assert all(0.4 <= backoff_delay(s, 1) <= 0.6 for _ in range(200))


def test_kafka_sasl_ssl_from_env_reaches_each_client_by_its_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "ingest",
        "KAFKA_SASL_PASSWORD": "s3cr3t",
        "KAFKA_SSL_CAFILE": "/etc/cryptopipe/kafka-ca/ca.crt",
    }.items():
        monkeypatch.setenv(ENV_PREFIX + name, value)
    s = IngestSettings()
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in str(s.model_dump())
    assert s.kafka_security.kafka_python() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ingest",
        "sasl_plain_password": "s3cr3t",
        "ssl_cafile": "/etc/cryptopipe/kafka-ca/ca.crt",
    }
    assert s.kafka_security.confluent() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "ingest",
        "sasl.password": "s3cr3t",
        "ssl.ca.location": "/etc/cryptopipe/kafka-ca/ca.crt",
    }


def test_plaintext_by_default() -> None:
    assert IngestSettings().kafka_security.kafka_python() == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}, "needs kafka_sasl_username"),
        ({"KAFKA_SASL_USERNAME": "ingest"}, "SASL settings given with security protocol PLAINTEXT"),
        ({"KAFKA_SSL_CAFILE": "/ca.crt"}, "cafile given with security protocol PLAINTEXT"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN"}, "kafka_sasl_mechanism"),
    ],
)
def test_incomplete_kafka_security_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(ENV_PREFIX + name, value)
    with pytest.raises(ValidationError, match=message):
        IngestSettings()
