"""CryptoPipeline bodies for tests: the base spec of tests/unit/invalid_specs.yaml (whose cases are
JSON merge patches of it) with a test's changes merged in."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from tests.support.paths import REPO

INVALID_SPECS = yaml.safe_load((REPO / "tests" / "unit" / "invalid_specs.yaml").read_text())
BASE_SPEC: dict[str, Any] = INVALID_SPECS["base"]
GROUP_VERSION = "cryptopipeline.io/v1alpha1"


def merge_patch(base: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what invalid_specs.yaml's cases are written as)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base) if isinstance(base, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def pipeline(name: str, namespace: str, **spec_patch: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "CryptoPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": merge_patch(BASE_SPEC, spec_patch),
    }
