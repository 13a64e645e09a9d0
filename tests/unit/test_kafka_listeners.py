"""The local broker's extra listener (KafkaBroker.add_listener): it binds a port of its own and
advertises another (the fault proxy's), so the clients that bootstrap there cannot bypass the proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptopipe_dev.stack.kafka import KafkaBroker


def test_an_added_listener_advertises_the_proxys_port(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, libs=tmp_path)
    broker.add_listener("CHAOS", 40001)
    broker.port, broker.controller_port, broker.listener_ports = 40002, 40003, {"CHAOS": 40004}
    config = broker.config()
    assert config["listeners"].split(",") == [
        "PLAINTEXT://127.0.0.1:40002",
        "CONTROLLER://127.0.0.1:40003",
        "CHAOS://127.0.0.1:40004",
    ]
    assert config["advertised.listeners"].split(",") == ["PLAINTEXT://127.0.0.1:40002", "CHAOS://127.0.0.1:40001"]
    assert "CHAOS:PLAINTEXT" in config["listener.security.protocol.map"].split(",")


def test_listeners_are_added_before_the_first_start_with_a_name_of_their_own(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, libs=tmp_path)
    with pytest.raises(ValueError, match="PLAINTEXT"):
        broker.add_listener("PLAINTEXT", 1)
    broker.port = 40002  # started once
    with pytest.raises(RuntimeError, match="before the broker's first start"):
        broker.add_listener("CHAOS", 1)
