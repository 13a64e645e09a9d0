"""The dev stand-in for Strimzi's topic operator stays what it says it is: dev tooling, named as a
stand-in, never in the chart. Its behaviour is tested against the real API server and Kafka in
tests/components/test_topic_controller.py."""

from __future__ import annotations

import cryptopipe_dev.topic_controller as stand_in
from cryptopipe_dev.repo import REPO_ROOT
from cryptopipe_dev.topic_controller.__main__ import parse_args
from cryptopipe_dev.topic_controller.controller import config_value, topic_name


def test_it_is_named_as_a_stand_in_for_strimzi() -> None:
    assert "stand-in for Strimzi's topic operator" in (stand_in.__doc__ or "")
    assert stand_in.STAND_IN == "dev stand-in for Strimzi's topic operator"
    assert stand_in.FINALIZER == "strimzi.io/topic-operator"  # Strimzi's, so the real one can take over


def test_the_chart_and_the_images_never_carry_it() -> None:
    shipped = [*(REPO_ROOT / "charts").rglob("*"), *(REPO_ROOT / "docker").rglob("*")]
    for path in (p for p in shipped if p.is_file()):
        text = path.read_text(errors="replace")
        assert "topic_controller" not in text and "topic-controller" not in text, path


def test_config_values_are_written_as_kafka_and_strimzi_write_them() -> None:
    assert config_value(3_600_000) == "3600000"
    assert config_value(True) == "true"
    assert config_value(0.5) == "0.5"
    assert config_value(["compact", "delete"]) == "compact,delete"
    assert config_value("delete") == "delete"


def test_the_kafka_topic_name_is_spec_topic_name_else_the_resource_name() -> None:
    assert topic_name({"metadata": {"name": "p-trades"}, "spec": {"topicName": "cryptopipe.p.trades"}}) == (
        "cryptopipe.p.trades"
    )
    assert topic_name({"metadata": {"name": "plain"}, "spec": {"partitions": 1}}) == "plain"


def test_the_command_line() -> None:
    args = parse_args(["--bootstrap", "k:9092", "--namespace", "a", "--namespace", "b", "--cluster", "c"])
    assert (args.bootstrap, args.namespace, args.cluster, args.interval) == ("k:9092", ["a", "b"], "c", 10.0)
