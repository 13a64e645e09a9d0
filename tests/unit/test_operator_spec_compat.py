"""Spec fields of a CRD newer than the operator (cryptopipe_operator.spec_compat): found at any
depth, dropped before the spec is parsed, named in one condition that goes when they go."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptopipe_operator.spec import parse_pipeline
from cryptopipe_operator.spec_compat import CONDITION, known_spec, with_newer_spec_condition
from tests.support.cryptopipelines import pipeline

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _body(**spec_patch: object) -> dict[str, object]:
    body = pipeline("p", "ns", **spec_patch)
    body["metadata"] |= {"uid": "u-1", "generation": 1}
    return body


def test_unknown_fields_at_any_depth_are_named_and_dropped() -> None:
    body = _body(ingestion={"compression": "zstd"}, priorityClassName="x", networkPolicy={"future": True})
    known, unknown = known_spec(body)
    assert unknown == ["spec.ingestion.compression", "spec.networkPolicy.future", "spec.priorityClassName"]
    parsed = parse_pipeline(known)  # strict parse: would raise on any field left behind
    assert parsed.spec.ingestion.image == body["spec"]["ingestion"]["image"]  # type: ignore[index]


def test_free_form_maps_are_not_searched() -> None:
    selector = {"matchLabels": {"team": "data"}}
    _known, unknown = known_spec(_body(networkPolicy={"metricsNamespaceSelector": selector}))
    assert unknown == []


def test_condition_names_the_fields_keeps_its_time_and_goes_when_they_go() -> None:
    ready = {"type": "Ready", "status": "True"}
    first = with_newer_spec_condition([ready], ["spec.a"], generation=2, previous=[], now=NOW)
    (newer,) = [c for c in first if c["type"] == CONDITION]
    assert newer["status"] == "True" and "spec.a" in newer["message"] and newer["observedGeneration"] == 2
    later = with_newer_spec_condition([ready], ["spec.a"], generation=3, previous=first, now=NOW.replace(hour=13))
    assert [c for c in later if c["type"] == CONDITION][0]["lastTransitionTime"] == newer["lastTransitionTime"]
    assert with_newer_spec_condition([ready], [], generation=3, previous=later, now=NOW) == [ready]
