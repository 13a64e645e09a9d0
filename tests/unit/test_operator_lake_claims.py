"""The lake-overlap decision the kopf index feeds (lake_claims.py): which pipeline's claim wins."""

from __future__ import annotations

import copy
from typing import Any

from cryptopipe_operator.lake_claims import LakeClaim, bucket_key, claim_of_body, older_overlapping
from tests.support.cryptopipelines import BASE_SPEC


def body(name: str, created: str, prefix: str | None = None, namespace: str = "ns", **extra: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE_SPEC)
    if prefix is not None:
        spec["sink"]["prefix"] = prefix
    spec.update(extra)
    meta = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "creationTimestamp": created}
    return {"metadata": meta, "spec": spec}


def claim(name: str, created: str, prefix: str | None = None, namespace: str = "ns") -> LakeClaim:
    found = claim_of_body(body(name, created, prefix, namespace))
    assert found is not None
    return found


def test_a_claim_is_the_effective_space_keyed_by_bucket() -> None:
    default = claim("a", "2026-12-06T10:00:00Z")
    assert (default.lake.bucket, default.lake.prefix) == ("lake", "cryptopipelines/ns/a")
    assert default.bucket_key == bucket_key(default.lake) == "lake"
    assert claim("b", "2026-12-06T10:00:00Z", prefix="/shared/sub/").lake.prefix == "shared/sub"


def test_an_unreadable_spec_holds_no_space_and_a_newer_crds_field_does_not_hide_one() -> None:
    assert claim_of_body(body("bad", "2026-12-06T10:00:00Z", watermark="nope")) is None
    assert claim_of_body({"metadata": {"name": "x"}, "spec": BASE_SPEC}) is None  # no namespace/uid
    newer = claim_of_body(body("newer", "2026-12-06T10:00:00Z", prefix="p", aFieldOfANewerCrd=True))
    assert newer is not None and newer.lake.prefix == "p"


def test_only_an_older_overlapping_claim_refuses_and_the_oldest_is_named() -> None:
    mine = claim("mine", "2026-12-06T10:00:05Z", prefix="shared/sub")
    older_enclosing = claim("first", "2026-12-06T10:00:01Z", prefix="shared")
    older_nested = claim("second", "2026-12-06T10:00:02Z", prefix="shared/sub/deeper")
    older_apart = claim("apart", "2026-12-06T10:00:00Z", prefix="shared-2")
    younger_equal = claim("late", "2026-12-06T10:00:09Z", prefix="shared/sub")
    assert older_overlapping(mine, [younger_equal, older_apart]) is None
    assert older_overlapping(mine, [mine]) is None  # its own entry in the index
    assert older_overlapping(mine, [older_nested, younger_equal, older_enclosing]) == older_enclosing
    assert older_overlapping(younger_equal, [mine]) == mine


def test_a_tie_on_creation_time_goes_by_namespace_then_name() -> None:
    a = claim("a", "2026-12-06T10:00:00Z", prefix="same", namespace="team-b")
    b = claim("b", "2026-12-06T10:00:00Z", prefix="same", namespace="team-a")
    assert older_overlapping(a, [b]) == b and older_overlapping(b, [a]) is None
