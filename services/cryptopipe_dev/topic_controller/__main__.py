"""``python -m cryptopipe_dev.topic_controller --bootstrap HOST:PORT [--namespace NS]...``: the dev
stand-in for Strimzi's topic operator, in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from cryptopipe_dev.topic_controller.controller import STAND_IN, TopicController


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cryptopipe_dev.topic_controller",
        description=f"The {STAND_IN} (dev tooling only, not Strimzi): makes each KafkaTopic a real Kafka "
        "topic through Kafka's admin API and reports its status as Strimzi does.",
    )
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]")
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch KafkaTopics in this namespace (repeatable; default: all namespaces)",
    )
    parser.add_argument(
        "--cluster", help="only KafkaTopics labelled strimzi.io/cluster=CLUSTER (default: any, labelled or not)"
    )
    parser.add_argument("--kubeconfig", type=Path, help="default: $KUBECONFIG, else the pod's ServiceAccount")
    parser.add_argument(
        "--interval", type=float, default=10.0, help="seconds between full reconciliations (default 10)"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    # kafka-python narrates every connection at INFO; the stand-in's own lines are what matter here
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    controller = TopicController(
        args.bootstrap,
        kubeconfig=args.kubeconfig,
        namespaces=args.namespace,
        cluster=args.cluster,
        interval=args.interval,
    )

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        controller.run()
    except KeyboardInterrupt:
        controller.stop(timeout=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
