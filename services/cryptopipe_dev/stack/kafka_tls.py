"""A SASL_SSL listener for the local broker: a throwaway CA and server certificate made with
openssl, and SCRAM users written into the KRaft metadata at format time (``--add-scram``).

    listener = SaslSslListener.create(tmp_path / "tls", users={"ingest": "s3cret"})
    broker = KafkaBroker(tmp_path / "kafka", sasl_ssl=listener)
    broker.start()  # broker.listener_ports["SASL_SSL"]; verify with listener.ca_file
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Mapping
from pathlib import Path

from cryptopipe_dev.stack.procs import LOOPBACK

NAME = "SASL_SSL"
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


@dataclasses.dataclass(frozen=True)
class SaslSslListener:
    ca_file: Path  # the CA certificate (PEM) clients verify the broker with
    keystore_file: Path  # the server's private key (PKCS#8) and certificate chain, PEM
    users: Mapping[str, str] = dataclasses.field(repr=False)  # SCRAM user -> password

    @classmethod
    def create(cls, directory: Path, users: Mapping[str, str]) -> SaslSslListener:
        """A CA and a server certificate for 127.0.0.1 and localhost in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
        key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
        ext = directory / "server.ext"
        ext.write_text(f"subjectAltName=IP:{LOOPBACK},DNS:localhost\n")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cryptopipe-test-ca",
                 "-keyout", ca_key, "-out", ca_crt)  # fmt: skip
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
                 "-extfile", ext, "-out", crt)  # fmt: skip
        keystore = directory / "server-keystore.pem"
        # PEM keystore: the unencrypted PKCS#8 key, then the certificate chain
        keystore.write_text(key.read_text() + crt.read_text() + ca_crt.read_text())
        return cls(ca_crt, keystore, dict(users))

    def broker_config(self) -> dict[str, str]:
        """server.properties entries for the listener named NAME (its address is the broker's)."""
        config = {
            "sasl.enabled.mechanisms": ",".join(MECHANISMS),
            f"listener.name.{NAME.lower()}.ssl.keystore.type": "PEM",
            f"listener.name.{NAME.lower()}.ssl.keystore.location": str(self.keystore_file),
        }
        for mechanism in MECHANISMS:
            config[f"listener.name.{NAME.lower()}.{mechanism.lower()}.sasl.jaas.config"] = f"{_SCRAM_MODULE} required;"
        return config

    def format_arguments(self, *, redacted: bool = False) -> list[str]:
        """kafka-storage format's ``--add-scram`` for every user, both mechanisms (``redacted``:
        the passwords masked, for the broker's log)."""
        args = []
        for user, password in self.users.items():
            shown = "***" if redacted else password
            for mechanism in MECHANISMS:
                args += ["--add-scram", f"{mechanism}=[name={user},password={shown}]"]
        return args


def _openssl(*args: object) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed ({result.returncode}): {result.stderr}")
