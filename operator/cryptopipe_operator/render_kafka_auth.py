"""What a pipeline's Kafka clients need to authenticate (spec.kafka.tls, spec.kafka.authentication):
their environment, the password as a reference to its Secret, and the CA certificate mounted read-only.

The ingestion, the lake monitor and the Spark job read the same variables under their own prefixes
(cryptopipe.kafka_security). A spec never carries the password: the rendered env references it.
"""

from __future__ import annotations

from cryptopipe.kafka_security import KafkaSecurity
from cryptopipe_operator.spec import Pipeline

CA_VOLUME = "kafka-ca"
CA_MOUNT_PATH = "/etc/cryptopipe/kafka-ca"
CA_FILE = f"{CA_MOUNT_PATH}/ca.crt"
# stand-in for the password: every variable with this value becomes a secretKeyRef
_PASSWORD = "\0kafka-password"


def _mechanism(spec_type: str) -> str:
    return spec_type.upper()  # scram-sha-512 -> SCRAM-SHA-512, Kafka's spelling


def kafka_security(pipeline: Pipeline, cafile: str = CA_FILE) -> KafkaSecurity:
    """The pipeline's Kafka settings, the password a stand-in (``cafile``: where the CA is mounted)."""
    kafka = pipeline.spec.kafka
    auth = kafka.authentication
    return KafkaSecurity(
        protocol=kafka.security_protocol,
        sasl_mechanism=_mechanism(auth.type) if auth else "",
        username=auth.username if auth else "",
        password=_PASSWORD if auth else "",
        cafile=cafile if kafka.tls else "",
    )


def kafka_auth_env(pipeline: Pipeline, prefix: str, cafile: str = CA_FILE) -> list[dict[str, object]]:
    """The container env for ``prefix`` (CRYPTOPIPE_INGEST_, ...); empty for a plaintext listener."""
    auth = pipeline.spec.kafka.authentication
    env: list[dict[str, object]] = []
    for name, value in kafka_security(pipeline, cafile).env(prefix).items():
        if value == _PASSWORD:
            assert auth is not None  # a password stand-in only comes with authentication
            ref = auth.password_secret_ref
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
        else:
            env.append({"name": name, "value": value})
    return env


def ca_volumes(pipeline: Pipeline) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(volumes, volumeMounts) for a Deployment's pod: the CA Secret's key as CA_FILE, read-only."""
    tls = pipeline.spec.kafka.tls
    if tls is None:
        return [], []
    ref = tls.ca_secret_ref
    volume: dict[str, object] = {
        "name": CA_VOLUME,
        "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": "ca.crt"}], "defaultMode": 0o444},
    }
    return [volume], [{"name": CA_VOLUME, "mountPath": CA_MOUNT_PATH, "readOnly": True}]


def spark_ca_secrets(pipeline: Pipeline) -> list[dict[str, str]]:
    """spark-operator's ``secrets`` of a driver or executor (Spark mounts each whole Secret at its
    path, natively: spark.kubernetes.*.secrets), so the file is named by the Secret's key."""
    tls = pipeline.spec.kafka.tls
    if tls is None:
        return []
    return [{"name": tls.ca_secret_ref.name, "path": CA_MOUNT_PATH, "secretType": "Generic"}]


def spark_cafile(pipeline: Pipeline) -> str:
    tls = pipeline.spec.kafka.tls
    return f"{CA_MOUNT_PATH}/{tls.ca_secret_ref.key}" if tls else ""
