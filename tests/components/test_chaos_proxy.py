"""The fault suite's TCP fault proxy (cryptopipe_dev/chaos/proxy.py): it forwards, it blackholes
without a reset or a close, it heals; and a Kafka broker whose proxied listener advertises the
proxy's port gives its clients no way around the proxy."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError

from cryptopipe_dev.chaos.proxy import FaultProxy
from cryptopipe_dev.stack.kafka import KafkaBroker

pytestmark = [pytest.mark.components, pytest.mark.chaos]


class _Echo(socketserver.BaseRequestHandler):
    received: list[bytes]

    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.server.received.append(data)  # type: ignore[attr-defined]
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    server.received = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, "the proxy closed the connection"
        out += chunk
    return out


def test_forwards_then_blackholes_without_reset_then_heals(echo: socketserver.ThreadingTCPServer) -> None:
    with FaultProxy(echo.server_address[:2]) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        client.sendall(b"hello")
        assert _recv_exactly(client, 5) == b"hello"

        proxy.blackhole()
        client.sendall(b"during the cut")
        client.settimeout(1.0)
        # neither an answer, nor a close (b""), nor a reset: the peer just hears nothing
        with pytest.raises(TimeoutError):
            client.recv(100)
        assert b"".join(echo.received) == b"hello"  # the upstream got nothing either
        late = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)  # accepted in the cut
        late.sendall(b"new")

        proxy.heal()
        client.settimeout(10)
        late.settimeout(10)
        assert _recv_exactly(client, 14) == b"during the cut"  # held, then delivered
        assert _recv_exactly(late, 3) == b"new"
        client.close()
        late.close()


def test_a_proxied_kafka_listener_leaves_no_way_around_the_proxy(tmp_path: Path) -> None:
    proxy = FaultProxy().start()
    broker = KafkaBroker(tmp_path / "kafka")
    broker.add_listener("CHAOS", proxy.port)
    try:
        broker.start()
        proxy.upstream = ("127.0.0.1", broker.listener_ports["CHAOS"])
        broker.create_topic("t", 3)
        # not idempotent: kafka-python's idempotent producer needs a new producer id after an expired
        # batch, which is the ingestion's problem (issue 10, hole 1), not the proxy's
        producer = KafkaProducer(
            bootstrap_servers=proxy.address,
            acks="all",
            enable_idempotence=False,
            delivery_timeout_ms=4000,
            request_timeout_ms=2000,
            linger_ms=0,
        )
        try:
            producer.send("t", key=b"BTC-USD", value=b"before").get(timeout=30)
            # every broker address this client learned is the proxy's
            assert {(b.host, b.port) for b in producer._metadata.brokers()} == {("127.0.0.1", proxy.port)}

            proxy.blackhole()
            with pytest.raises(KafkaTimeoutError):
                producer.send("t", key=b"BTC-USD", value=b"in the cut").get(timeout=30)
            proxy.heal()
            producer.send("t", key=b"BTC-USD", value=b"after").get(timeout=60)
        finally:
            producer.close(timeout=5)
        consumer = KafkaConsumer(
            "t", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
        )
        try:
            values = [r.value for r in consumer]
        finally:
            consumer.close()
        assert b"before" in values and b"after" in values
    finally:
        broker.stop()
        proxy.stop()
