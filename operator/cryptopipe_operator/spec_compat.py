"""A CRD newer than the operator: spec fields the operator does not know.

Helm never upgrades a chart's ``crds/``, so the CRD is applied separately (docs/operator.md, "CRD
upgrades") and may run ahead of the operator: a newer CRD's optional field with a default is
stored in every object by the API server, and this operator has never heard of it. The API server
prunes fields its own schema does not know, so a field that reaches the operator is one the
installed CRD declares: not a typo, a newer schema. Refusing the spec (``Invalid``) would stop
every pipeline of the cluster at the CRD upgrade; the operator instead reconciles what it knows and
says what it ignored, in a condition (``SpecNewerThanOperator``, True, the fields named) that stays
until the operator is upgraded or the fields are gone.

Pure: split a spec into what the model knows and the paths of what it does not.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from cryptopipe_operator.spec import PipelineSpec

CONDITION = "SpecNewerThanOperator"
REASON = "UnknownFields"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (directly or as ``Model | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for m in map(_model_of, typing.get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def split_known(raw: Mapping[str, Any], model: type[BaseModel], path: str) -> tuple[dict[str, Any], list[str]]:
    """(the mapping with only the fields ``model`` declares, the dotted paths of the others)."""
    annotations: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotations[info.alias or name] = info.annotation
        annotations[name] = info.annotation  # populate_by_name: the Python name is accepted too
    known: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in raw.items():
        if key not in annotations:
            unknown.append(f"{path}.{key}")
            continue
        nested = _model_of(annotations[key])
        if nested is not None and isinstance(value, Mapping):
            value, below = split_known(value, nested, f"{path}.{key}")
            unknown.extend(below)
        known[key] = value
    return known, unknown


def known_spec(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The CryptoPipeline with its spec reduced to the fields this operator knows, and the paths
    (``spec.ingestion.compression``) of those it dropped, sorted."""
    spec, unknown = split_known(body.get("spec") or {}, PipelineSpec, "spec")
    return {**body, "spec": spec}, sorted(unknown)


def with_newer_spec_condition(
    conditions: Sequence[Mapping[str, Any]],
    unknown: Sequence[str],
    *,
    generation: int,
    previous: Sequence[Mapping[str, Any]],
    now: datetime,
) -> list[Mapping[str, Any]]:
    """``conditions`` plus SpecNewerThanOperator (True, naming ``unknown``) when any field was
    ignored; without it when none was (a status patch replaces the list, so it then goes)."""
    out = [c for c in conditions if c.get("type") != CONDITION]
    if not unknown:
        return out
    before = next((c for c in previous if c.get("type") == CONDITION), None)
    kept = before.get("lastTransitionTime") if before is not None and before.get("status") == "True" else None
    out.append(
        {
            "type": CONDITION,
            "status": "True",
            "reason": REASON,
            "message": (
                f"the CRD is newer than this operator: {', '.join(unknown)} "
                f"{'is' if len(unknown) == 1 else 'are'} not known to it and ignored; upgrade the operator"
            ),
            "lastTransitionTime": kept or now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "observedGeneration": generation,
        }
    )
    return out
