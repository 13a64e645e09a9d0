"""The operator process under leader election: wait for the Lease (answering liveness probes
meanwhile, so a waiting replica is live and ready and a rolling update can proceed), run kopf while
holding it, release it on a clean stop, exit at once when it is lost."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import kopf
from aiohttp import web

from cryptopipe_operator import metrics
from cryptopipe_operator.kube_api import KubeApi
from cryptopipe_operator.leader import LeaderElector, LeaseConfig
from cryptopipe_operator.settings import OperatorConfig

log = logging.getLogger(__name__)
# exit status of an operator that lost its Lease (EX_TEMPFAIL): the pod restarts as a waiting replica
LOST_LEASE_EXIT = 75


def lease_config(config: OperatorConfig) -> LeaseConfig:
    return LeaseConfig(
        namespace=config.lease_namespace,
        name=config.lease_name,
        # the hostname is the pod's name; the pid tells two processes on one host apart (tests)
        identity=f"{socket.gethostname()}_{os.getpid()}",
        duration_s=config.lease_duration_s,
        renew_deadline_s=config.lease_renew_deadline_s,
        retry_s=config.lease_retry_s,
        owner_role=config.lease_owner_role,
    )


async def _waiting_health(host: str, port: int) -> web.AppRunner:
    """/healthz while waiting for the Lease, on kopf's liveness port (kopf binds it once it runs)."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"leader": False, "state": "waiting for the Lease"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner


async def run_as_leader(config: OperatorConfig, kopf_args: dict[str, Any]) -> None:
    api = await KubeApi.connect(
        total_timeout=config.request_timeout_s, connect_timeout=config.request_connect_timeout_s
    )
    elector = LeaderElector(api, lease_config(config))
    metrics.LEADER.set(0)
    health = await _waiting_health(config.health_host, config.health_port)
    try:
        await elector.acquire()
    finally:
        await health.cleanup()
    metrics.LEADER.set(1)
    keeper = asyncio.create_task(elector.keep(), name="lease renewal")
    operator = asyncio.create_task(kopf.operator(**kopf_args), name="kopf")
    done, _ = await asyncio.wait({keeper, operator}, return_when=asyncio.FIRST_COMPLETED)
    if keeper in done:
        # Lost (another holds it, or no renewal within the deadline): stop reconciling now, before
        # another replica may take over; kopf's graceful stop could outlast that margin.
        log.critical("leader election: %s; exiting so that only one operator reconciles", keeper.exception())
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(LOST_LEASE_EXIT)
    keeper.cancel()  # kopf stopped (SIGTERM, SIGINT): give the Lease to the next replica now
    await elector.release()
    await api.close()
    operator.result()  # kopf's own failure, if any, as without leader election
