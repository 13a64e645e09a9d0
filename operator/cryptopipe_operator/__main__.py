"""``python -m cryptopipe_operator``: the operator, with kopf's liveness endpoint and JSON logs;
configured by CRYPTOPIPE_OPERATOR_* variables. With a Lease configured (the chart's default) it
reconciles only while it holds the Lease (leader.py), else at once (one replica only). kopf's own
peering is off (standalone) either way."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from cryptopipe.logs import setup_logging
from cryptopipe_operator.settings import OperatorConfig

# kopf's per-object log records carry its settings object and internal flags as extras, which the
# JSON formatter would print in full on every line; the object reference (k8s_ref) stays.
_KOPF_EXTRAS = ("settings", "k8s_skip")


class _DropKopfExtras(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key in _KOPF_EXTRAS:
            record.__dict__.pop(key, None)
        return True


def main() -> None:
    from cryptopipe_operator import metrics
    from cryptopipe_operator.handlers import CONFIG  # registers the handlers with kopf

    setup_logging(CONFIG.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropKopfExtras())
    # one access line per liveness probe (every few seconds, forever) says nothing
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    namespaces = CONFIG.namespaces
    logging.getLogger("cryptopipe_operator").info(
        "operator starting", extra={"namespaces": namespaces or "all", "liveness": CONFIG.liveness_endpoint}
    )
    if CONFIG.metrics_port is not None:
        from prometheus_client import start_http_server

        from cryptopipe_operator.metrics import REGISTRY

        start_http_server(CONFIG.metrics_port, addr=CONFIG.health_host, registry=REGISTRY)
    if not CONFIG.lease_name:
        metrics.LEADER.set(1)
        kopf.run(**_kopf_args(CONFIG))
        return
    from cryptopipe_operator.leader_run import run_as_leader

    asyncio.run(run_as_leader(CONFIG, _kopf_args(CONFIG)))


def _kopf_args(config: OperatorConfig) -> dict[str, Any]:
    return {
        "standalone": True,  # no kopf peering: one replica, or the Lease decides which one runs
        "clusterwide": not config.namespaces,
        "namespaces": config.namespaces,
        "liveness_endpoint": config.liveness_endpoint,
    }


if __name__ == "__main__":
    main()
