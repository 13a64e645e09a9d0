"""How a process authenticates to Kafka (TLS, SASL SCRAM): one description, in each client's words.

The ingestion, the lake monitor and the Spark job read the same five settings from their
environment (``<PREFIX>KAFKA_SECURITY_PROTOCOL``, ``..._SASL_MECHANISM``, ``..._SASL_USERNAME``,
``..._SASL_PASSWORD``, ``..._SSL_CAFILE``), declared once here (KafkaSecuritySettings, which their
settings classes extend), and hand them to kafka-python, librdkafka or Spark's Kafka source under
those clients' option names. The password is never in a repr or a log line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
ENV_SUFFIXES = {
    "protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "username": "KAFKA_SASL_USERNAME",
    "password": "KAFKA_SASL_PASSWORD",
    "cafile": "KAFKA_SSL_CAFILE",
}
_SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


@dataclasses.dataclass(frozen=True)
class KafkaSecurity:
    """``protocol`` is Kafka's security.protocol; SASL needs a mechanism, username and password;
    ``cafile`` (a PEM file) verifies the brokers under SSL (empty: the system's CAs)."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    cafile: str = ""

    def __post_init__(self) -> None:
        if self.protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"kafka security protocol {self.protocol!r} is not one of {SECURITY_PROTOCOLS}")
        if self.sasl:
            missing = [
                ENV_SUFFIXES[name].lower()
                for name in ("sasl_mechanism", "username", "password")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"kafka security protocol {self.protocol} needs {', '.join(missing)}")
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ValueError(f"kafka SASL mechanism {self.sasl_mechanism!r} is not one of {SASL_MECHANISMS}")
        elif self.sasl_mechanism or self.username or self.password:
            raise ValueError(f"kafka SASL settings given with security protocol {self.protocol} (use SASL_SSL)")
        if self.cafile and not self.tls:
            raise ValueError(f"kafka ssl cafile given with security protocol {self.protocol} (use SSL or SASL_SSL)")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str) -> KafkaSecurity:
        return cls(
            **{name: env.get(prefix + suffix, "") or "" for name, suffix in ENV_SUFFIXES.items()}
            | {"protocol": env.get(prefix + ENV_SUFFIXES["protocol"]) or "PLAINTEXT"}
        )

    def env(self, prefix: str) -> dict[str, str]:
        """The variables that describe these settings to a process reading ``prefix``; none for PLAINTEXT."""
        if self.protocol == "PLAINTEXT":
            return {}
        values = dataclasses.asdict(self)
        return {prefix + suffix: values[name] for name, suffix in ENV_SUFFIXES.items() if values[name]}

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments of kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        if self.tls and self.cafile:
            options["ssl_cafile"] = self.cafile
        return options

    def confluent(self) -> dict[str, Any]:
        """librdkafka's configuration properties (confluent-kafka)."""
        options: dict[str, Any] = {"security.protocol": self.protocol}
        if self.sasl:
            options |= {
                "sasl.mechanisms": self.sasl_mechanism,
                "sasl.username": self.username,
                "sasl.password": self.password,
            }
        if self.tls and self.cafile:
            options["ssl.ca.location"] = self.cafile
        return options

    def spark_kafka_source(self) -> dict[str, str]:
        """Options of Spark's Kafka source (the Java client's properties, prefixed ``kafka.``). The
        JAAS line carries the password: built here, in the job, from its environment, never in a
        manifest; Spark's Kafka source redacts sasl.jaas.config in what it logs."""
        options = {"kafka.security.protocol": self.protocol}
        if self.sasl:
            options |= {
                "kafka.sasl.mechanism": self.sasl_mechanism,
                "kafka.sasl.jaas.config": (
                    f'{_SCRAM_LOGIN_MODULE} required username="{_jaas_quote(self.username)}" '
                    f'password="{_jaas_quote(self.password)}";'
                ),
            }
        if self.tls and self.cafile:
            options |= {"kafka.ssl.truststore.type": "PEM", "kafka.ssl.truststore.location": self.cafile}
        return options


PLAINTEXT = KafkaSecurity()


def _jaas_quote(value: str) -> str:
    # a JAAS value is a double-quoted string with backslash escapes
    return value.replace("\\", "\\\\").replace('"', '\\"')


class KafkaSecuritySettings(BaseModel):
    """The five Kafka security settings of a service's settings class (pydantic-settings: each read
    from ``<the class's env prefix>KAFKA_...``), checked together when the settings are built."""

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security.protocol: TLS (SSL), SASL authentication, or both (SASL_SSL)."
    )
    kafka_sasl_mechanism: Literal["", "SCRAM-SHA-512", "SCRAM-SHA-256"] = Field(
        "", description="SASL mechanism under SASL_PLAINTEXT or SASL_SSL (Strimzi's KafkaUser: SCRAM-SHA-512)."
    )
    kafka_sasl_username: str = Field("", description="Kafka user name under SASL.")
    kafka_sasl_password: SecretStr = Field(
        SecretStr(""), description="The Kafka user's password under SASL (in Kubernetes: from a Secret; never logged)."
    )
    kafka_ssl_cafile: str = Field(
        "",
        description="PEM file of the CA certificate(s) the brokers' certificates are verified with; empty: the system's.",
    )

    @model_validator(mode="after")
    def _valid_kafka_security(self) -> Self:
        self.kafka_security  # noqa: B018 - refuses incomplete TLS/SASL settings at start, by name
        return self

    @property
    def kafka_security(self) -> KafkaSecurity:
        """The Kafka security settings, for whichever client the service builds."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password.get_secret_value(),
            cafile=self.kafka_ssl_cafile,
        )
