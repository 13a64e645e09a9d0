"""Notice that Kafka refused the ingestion's credentials, so /readyz can say so.

kafka-python retries a bootstrap whose SASL handshake the broker refused like any unreachable
broker, and its constructor then raises only "Unable to bootstrap": the cause reaches nothing but
its own log records (logger ``kafka``). This handler keeps the last such refusal, which the
service reports instead of a bare "not connected". It records exception class names and the
broker's message only, never the client's settings.
"""

from __future__ import annotations

import logging

_MARKERS = ("SaslAuthenticationFailedError", "AuthenticationFailedError", "Authentication failed")


class AuthFailureWatch(logging.Handler):
    """Attached to kafka-python's logger while the producer connects; ``last`` is the broker's
    reason for the latest refused authentication (None once a connection succeeded or never)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(marker in message for marker in _MARKERS):
            # the broker's sentence, without kafka-python's connection prefix and error code
            self.last = message.rsplit("SaslAuthenticationFailedError:", 1)[-1].strip().rstrip(")")

    def __enter__(self) -> AuthFailureWatch:
        logging.getLogger("kafka").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("kafka").removeHandler(self)
