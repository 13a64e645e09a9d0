"""The checkpoint generation as the lake knows it, when the operator may read the sink's Secret
(issue 11, point 4). The job resolves its generation against the lake's records at every start
(cryptopipe/lake/generations.py) whatever the operator hands it; this makes status say the same:
a pipeline whose status was lost (deleted with Retain and created again, restored without status)
records the lake's newest generation, or the one after it, instead of starting over at 1.
Without the Secret (the chart's default RBAC) status keeps its own count and the job's log and
metric tell the effective generation."""

from __future__ import annotations

import asyncio
import logging

from cryptopipe.lake.generations import read_generations, resolve_generation
from cryptopipe_operator import lake_cleanup
from cryptopipe_operator.kube_api import KubeApi
from cryptopipe_operator.secret_access import read_sink_secret
from cryptopipe_operator.spec import Pipeline, state_fingerprint

log = logging.getLogger("cryptopipe.operator.lake_generation")


async def lake_checkpoint_generation(api: KubeApi, pipeline: Pipeline, from_status: int) -> int:
    """``from_status`` (next_checkpoint_generation's answer) resolved against the lake's generation
    records as the job resolves it; ``from_status`` itself when the lake cannot be read."""
    ref = pipeline.spec.sink.credentials_secret_ref
    secret = await read_sink_secret(api, pipeline.namespace, ref.name)
    if secret is None:
        return from_status
    try:
        connection = lake_cleanup.sink_connection(pipeline, secret.get("data"))
        filesystem = lake_cleanup.reconcile_filesystem(connection)
        records = await asyncio.to_thread(read_generations, pipeline.lake, filesystem)
    except (lake_cleanup.LakeCleanupError, OSError) as exc:
        log.warning("generation records not read for %s/%s: %s", pipeline.namespace, pipeline.name, exc)
        return from_status
    resolution = resolve_generation(from_status, state_fingerprint(pipeline.spec, pipeline.lake_prefix), records)
    if resolution.generation != from_status:
        log.info(
            "checkpoint generation from the lake for %s/%s: %d (status gave %d): %s",
            pipeline.namespace,
            pipeline.name,
            resolution.generation,
            from_status,
            resolution.reason,
        )
    return resolution.generation
