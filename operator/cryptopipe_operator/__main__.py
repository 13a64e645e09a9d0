"""``python -m cryptopipe_operator``: the operator, standalone (one replica, no kopf peering),
with kopf's liveness endpoint and JSON logs; configured by CRYPTOPIPE_OPERATOR_* variables."""

from __future__ import annotations

import logging

import kopf

from cryptopipe.logs import setup_logging

# kopf's per-object log records carry its settings object and internal flags as extras, which the
# JSON formatter would print in full on every line; the object reference (k8s_ref) stays.
_KOPF_EXTRAS = ("settings", "k8s_skip")


class _DropKopfExtras(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key in _KOPF_EXTRAS:
            record.__dict__.pop(key, None)
        return True


def main() -> None:
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
    kopf.run(
        standalone=True,  # one replica (Deployment strategy Recreate): no peering CRD needed
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=CONFIG.liveness_endpoint,
    )


if __name__ == "__main__":
    main()
