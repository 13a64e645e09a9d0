"""The CryptoPipeline CRD as data, and a checker for objects against any CRD's OpenAPI schema.

The YAML lives in the operator chart (charts/cryptopipe-operator/crds/), its one copy; this module
finds it from a source checkout (tests, ``cryptopipe dev cluster``), not from an installed wheel.

``schema_problems`` does what the API server does before CEL: types, enums, patterns, bounds and
required fields (via jsonschema, a test dependency imported when first used), duplicates in
``x-kubernetes-list-type: set`` lists, and fields the schema does not know — which the API server
would silently prune, so a misspelt field in a rendered child would otherwise go unnoticed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from cryptopipe_dev.repo import CRD_PATH, UPSTREAM_CRDS
from cryptopipe_operator.spec import SpecProblem  # one 'field: message' type for schema and spec checks

Schema = Mapping[str, Any]
# the upstream CRDs of the children the operator writes, in shared/crds/: installed beside the
# CryptoPipeline CRD in every test and benchmark control plane
UPSTREAM_CRD_FILES = (
    "strimzi-0.51.0-043-Crd-kafkatopic.yaml",
    "spark-operator-v2.5.2-sparkoperator.k8s.io_sparkapplications.yaml",
)


def upstream_crd_paths() -> list[Path]:
    """Strimzi's KafkaTopic and spark-operator's SparkApplication CRD files."""
    return [UPSTREAM_CRDS / name for name in UPSTREAM_CRD_FILES]


@cache
def load_crd(path: Path = CRD_PATH) -> dict[str, Any]:
    with open(path) as f:
        return yaml.safe_load(f)


def version_schema(crd: Mapping[str, Any], version: str) -> dict[str, Any]:
    """openAPIV3Schema of one served version."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return entry["schema"]["openAPIV3Schema"]
    raise KeyError(f"{crd['metadata']['name']} has no version {version}")


def upstream_schema(filename: str, version: str) -> dict[str, Any]:
    """Schema of an upstream CRD in shared/crds/ (Strimzi's KafkaTopic, spark-operator's SparkApplication)."""
    return version_schema(load_crd(UPSTREAM_CRDS / filename), version)


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every sub-schema with its field path (``spec.kafka.topic``, ``spec.products[]``)."""
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}" if path else name)
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from walk(schema["additionalProperties"], f"{path}.*")


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else str(part)


def _extra_problems(schema: Schema, value: Any, path: str) -> Iterator[SpecProblem]:
    """Unknown fields and duplicates in sets, which JSON Schema does not express the API server's way."""
    if isinstance(value, Mapping) and schema.get("type") == "object":
        known = schema.get("properties") or {}
        open_ended = schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema
        for key, item in value.items():
            if path == "" and key == "metadata":
                continue  # ObjectMeta: validated by the API server itself, never by the CRD's schema
            if key in known:
                yield from _extra_problems(known[key], item, _join(path, key))
            elif isinstance(schema.get("additionalProperties"), Mapping):
                yield from _extra_problems(schema["additionalProperties"], item, _join(path, key))
            elif not open_ended:
                yield SpecProblem(_join(path, key), "field not declared in the schema (the API server would drop it)")
    elif isinstance(value, list) and "items" in schema:
        first_seen: dict[str, int] = {}
        for index, item in enumerate(value):
            if schema.get("x-kubernetes-list-type") == "set":
                key = repr(item)
                if key in first_seen:
                    yield SpecProblem(_join(path, index), f"Duplicate value: {item!r}")
                first_seen.setdefault(key, index)
            yield from _extra_problems(schema["items"], item, _join(path, index))


def apply_defaults(schema: Schema, obj: Any) -> Any:
    """A copy of ``obj`` with the schema's defaults filled in, as the API server does on write."""
    if isinstance(obj, Mapping) and "properties" in schema:
        filled = dict(obj)
        for name, sub in schema["properties"].items():
            if name not in filled and "default" in sub:
                filled[name] = copy.deepcopy(sub["default"])
            if name in filled:
                filled[name] = apply_defaults(sub, filled[name])
        return filled
    if isinstance(obj, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in obj]
    return obj


def schema_problems(schema: Schema, obj: Any) -> list[SpecProblem]:
    """What the API server's OpenAPI validation (not CEL) would reject in ``obj``, naming each field."""
    import jsonschema  # test-time dependency: the operator itself never validates against a schema

    # OpenAPI v3.0 schemas are JSON Schema draft 4 plus extensions that draft 4 ignores
    validator = jsonschema.Draft4Validator(schema)
    problems = []
    for error in validator.iter_errors(obj):
        path = ""
        for part in error.absolute_path:
            path = _join(path, part)
        if error.validator == "required":
            # name the missing field itself, as the API server does ("spec.kafka.clusterName: Required value")
            missing = [name for name in error.validator_value if name not in error.instance]
            path = _join(path, missing[0])
        problems.append(SpecProblem(path or "<root>", error.message))
    problems.extend(_extra_problems(schema, obj, ""))
    return problems
