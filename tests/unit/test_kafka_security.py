"""KafkaSecurity: one description of how a process authenticates to Kafka, in each client's words."""

from __future__ import annotations

import pytest

from cryptopipe.kafka_security import KafkaSecurity

SCRAM_TLS = KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "ingest", 'pa"ss\\word', "/ca.pem")


def test_password_never_in_repr() -> None:
    assert 'pa"ss' not in repr(SCRAM_TLS)


def test_spark_kafka_source_builds_the_jaas_line_with_quoting() -> None:
    assert SCRAM_TLS.spark_kafka_source() == {
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-256",
        "kafka.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="ingest" password="pa\\"ss\\\\word";',
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": "/ca.pem",
    }


def test_env_round_trip_and_plaintext_adds_nothing() -> None:
    env = SCRAM_TLS.env("CRYPTOPIPE_JOB_")
    assert env["CRYPTOPIPE_JOB_KAFKA_SASL_PASSWORD"] == 'pa"ss\\word'
    assert KafkaSecurity.from_env(env, "CRYPTOPIPE_JOB_") == SCRAM_TLS
    assert KafkaSecurity().env("CRYPTOPIPE_JOB_") == {}
    assert KafkaSecurity.from_env({}, "CRYPTOPIPE_JOB_") == KafkaSecurity()
    assert KafkaSecurity().spark_kafka_source() == {"kafka.security.protocol": "PLAINTEXT"}


def test_tls_only_verifies_with_the_ca_and_sends_no_sasl() -> None:
    tls = KafkaSecurity("SSL", cafile="/ca.pem")
    assert tls.kafka_python() == {"security_protocol": "SSL", "ssl_cafile": "/ca.pem"}
    assert tls.confluent() == {"security.protocol": "SSL", "ssl.ca.location": "/ca.pem"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "username": "u"}, "needs kafka_sasl_password"),
        ({"protocol": "TLS"}, "not one of"),
        ({"protocol": "SSL", "username": "u"}, "SASL settings given with security protocol SSL"),
    ],
)
def test_incomplete_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KafkaSecurity(**kwargs)
