"""Which pipeline a lake space belongs to when two want overlapping ones (pure).

Every CryptoPipeline the operator watches has a claim: its lake space (bucket and effective prefix)
and its seniority (creation time, then namespace/name). A pipeline whose space equals or nests with
an older pipeline's is refused (reconcile.py, LakeConflict). The claims are kept in a kopf index
(handlers.py, ``lake_spaces``), filled from the watch kopf already has on CryptoPipelines and keyed
by bucket, so the check is a lookup among the pipelines of one bucket instead of a LIST of every
pipeline per reconcile (a burst of 100 pipelines made 100 LISTs of up to 141 objects each).

What the index holds is what kopf has processed of each pipeline's events: a pipeline created or
changed a moment ago may not be in it yet. Its events come in order on the watch, and kopf starts
their workers in order, so an older pipeline is indexed before a younger one's reconcile reads the
index; the lake marker (lake_cleanup.claim_lake) stays the check that does not depend on timing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from cryptopipe.lake.layout import LakeLocation
from cryptopipe_operator.spec import Pipeline, SpecError, lake_spaces_overlap, parse_pipeline
from cryptopipe_operator.spec_compat import known_spec


@dataclasses.dataclass(frozen=True)
class LakeClaim:
    """One pipeline's lake space and what decides which of two overlapping claims wins."""

    uid: str
    namespace: str
    name: str
    created: str  # metadata.creationTimestamp (RFC 3339, whole seconds: sorts as text)
    lake: LakeLocation

    @property
    def seniority(self) -> tuple[str, str, str]:
        """Smaller is older: creation time, then namespace and name for pipelines of the same second."""
        return (self.created, self.namespace, self.name)

    @property
    def bucket_key(self) -> str:
        return bucket_key(self.lake)


def bucket_key(lake: LakeLocation) -> str:
    """The index key: only spaces in the same bucket can overlap (lake_spaces_overlap)."""
    return lake.bucket.strip("/")


def claim_of(pipeline: Pipeline, created: str) -> LakeClaim:
    return LakeClaim(pipeline.uid, pipeline.namespace, pipeline.name, created, pipeline.lake)


def claim_of_body(body: Mapping[str, Any]) -> LakeClaim | None:
    """A CryptoPipeline object's claim, or None for a spec the operator cannot read (it applies
    nothing, so it holds no space). A newer CRD's fields do not hide a pipeline's space."""
    try:
        pipeline = parse_pipeline(known_spec(body)[0])
    except (SpecError, KeyError):
        return None
    return claim_of(pipeline, body["metadata"].get("creationTimestamp") or "")


def older_overlapping(mine: LakeClaim, others: Iterable[LakeClaim]) -> LakeClaim | None:
    """The oldest claim among ``others`` that is older than ``mine`` and whose space equals or nests
    with it (``mine`` itself, by uid, never counts), or None when the space is ``mine``'s to use."""
    older = [
        other
        for other in others
        if other.uid != mine.uid and other.seniority < mine.seniority and lake_spaces_overlap(mine.lake, other.lake)
    ]
    return min(older, key=lambda claim: claim.seniority, default=None)
