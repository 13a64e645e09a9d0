"""The CryptoPipeline CRD: documented everywhere, consistent with the operator's model, and
refusing the invalid specs of tests/unit/invalid_specs.yaml with a message naming the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from cryptopipe_dev import crd
from cryptopipe_operator.spec import API_GROUP, API_VERSION, KIND, PLURAL, PipelineSpec, SpecError, parse_spec

INVALID_SPECS = yaml.safe_load((Path(__file__).parent / "invalid_specs.yaml").read_text())
BASE_SPEC = INVALID_SPECS["base"]
CASES = INVALID_SPECS["cases"]
SCHEMA = crd.version_schema(crd.load_crd(), API_VERSION)
SPEC_SCHEMA = SCHEMA["properties"]["spec"]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: null removes, objects merge, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def cryptopipeline(spec: dict, name: str = "btc") -> dict:
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "metadata": {"name": name}, "spec": spec}


def cel_rules() -> list[tuple[str, dict]]:
    """(field the rule's message is reported on, rule) for every CEL rule in the CRD."""
    found = []
    for path, sub in crd.walk(SCHEMA):
        for rule in sub.get("x-kubernetes-validations", []):
            found.append((path + rule.get("fieldPath", ""), rule))
    return found


def test_identity() -> None:
    definition = crd.load_crd()
    assert definition["metadata"]["name"] == f"{PLURAL}.{API_GROUP}"
    assert (definition["spec"]["group"], definition["spec"]["names"]["kind"]) == (API_GROUP, KIND)
    assert definition["spec"]["scope"] == "Namespaced"
    assert "cpl" in definition["spec"]["names"]["shortNames"]
    (version,) = definition["spec"]["versions"]
    assert version["name"] == API_VERSION and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Products"] == ".spec.products"
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Phase"] == ".status.phase"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_every_field_has_a_description() -> None:
    # metadata is ObjectMeta: the API server documents it, a CRD may not
    undocumented = [path for path, sub in crd.walk(SCHEMA) if path != "metadata" and not sub.get("description")]
    assert undocumented == []


def test_schema_is_structural_enough_for_cel_cost_limits() -> None:
    """The API server refuses CEL rules whose worst-case cost it cannot bound: every string a rule
    reads needs a maxLength, every list a maxItems."""
    for path, sub in crd.walk(SPEC_SCHEMA, "spec"):
        if sub.get("type") == "string" and path in {
            "spec.watermark",
            "spec.trigger",
            "spec.windows[]",
            "spec.kafka.topic",
        }:
            assert "maxLength" in sub, path
        if sub.get("type") == "array":
            assert "maxItems" in sub, path


def test_model_defaults_are_the_crds() -> None:
    defaulted = crd.apply_defaults(SPEC_SCHEMA, BASE_SPEC)
    model = parse_spec(BASE_SPEC).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert model == defaulted


def test_base_spec_is_valid() -> None:
    assert crd.schema_problems(SCHEMA, cryptopipeline(BASE_SPEC)) == []
    parse_spec(crd.apply_defaults(SPEC_SCHEMA, BASE_SPEC))


def test_invalid_specs_cover_enough() -> None:
    assert len(CASES) >= 20
    assert len({case["name"] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [c for c in CASES if c["rejectedBy"] == "schema"], ids=lambda c: c["name"])
def test_schema_rejects_naming_the_field(case: dict) -> None:
    problems = crd.schema_problems(SCHEMA, cryptopipeline(merge_patch(BASE_SPEC, case["patch"])))
    assert [p.field for p in problems] == [case["field"]], problems


@pytest.mark.parametrize("case", [c for c in CASES if c["rejectedBy"] == "cel"], ids=lambda c: c["name"])
def test_cel_rejects_naming_the_field(case: dict) -> None:
    spec = crd.apply_defaults(SPEC_SCHEMA, merge_patch(BASE_SPEC, case["patch"]))
    # the schema lets it through: only the CEL rule stands between it and the cluster
    assert crd.schema_problems(SCHEMA, cryptopipeline(spec)) == []
    assert case["field"] in {field for field, _ in cel_rules()}
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert [p.field for p in caught.value.problems] == [case["field"]]


@pytest.mark.parametrize("case", [c for c in CASES if c["rejectedBy"] == "transition"], ids=lambda c: c["name"])
def test_transition_rules_guard_the_field(case: dict) -> None:
    old = merge_patch(BASE_SPEC, case["old"])
    new = merge_patch(old, case["patch"])
    for spec in (old, new):  # each is a valid spec on its own: only the change is refused
        assert crd.schema_problems(SCHEMA, cryptopipeline(spec)) == []
        parse_spec(crd.apply_defaults(SPEC_SCHEMA, spec))
    transition_rules = [rule for field, rule in cel_rules() if field == case["field"] and "oldSelf" in rule["rule"]]
    assert len(transition_rules) == 1


def test_metadata_name_rule_is_declared() -> None:
    (root_rule,) = [rule for field, rule in cel_rules() if field == ""]
    assert "self.metadata.name.size() <= 40" in root_rule["rule"]
    assert root_rule["message"].startswith("metadata.name")


def test_unknown_fields_are_named() -> None:
    spec = merge_patch(BASE_SPEC, {"sink": {"bucekt": "lake"}})
    assert [p.field for p in crd.schema_problems(SCHEMA, cryptopipeline(spec))] == ["spec.sink.bucekt"]
    with pytest.raises(SpecError, match=r"spec\.sink\.bucekt"):
        parse_spec(spec)


def test_model_and_crd_declare_the_same_spec_fields() -> None:
    crd_fields = set(SPEC_SCHEMA["properties"])
    model_fields = {field.alias for field in PipelineSpec.model_fields.values()}
    assert model_fields == crd_fields
