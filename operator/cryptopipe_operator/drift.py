"""Has a child drifted from what the operator renders for it? (pure)

The operator owns the fields it renders (server-side apply, field manager cryptopipe-operator);
fields others set (the API server's defaults, a controller's annotations, a human's extra labels)
are theirs. A child has drifted when a field the operator renders has another value in the live
object, or is gone: then re-applying it puts the operator's values back. Lists are compared whole
(containers, env, ports): an extra item someone added also counts as a difference, which costs one
re-apply that changes nothing of theirs, never a missed repair.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# set by the API server or by whoever reads the object, never rendered with a meaning to compare
_IGNORED_METADATA = frozenset({"name", "namespace"})


def drifted(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """Whether applying ``desired`` (a rendered child) would change ``live`` (None: it is gone)."""
    if live is None:
        return True
    for key, value in desired.items():
        if key in ("apiVersion", "kind", "status"):
            continue
        if key == "metadata":
            wanted = {k: v for k, v in value.items() if k not in _IGNORED_METADATA}
            if _differs(wanted, live.get("metadata") or {}):
                return True
        elif _differs(value, live.get(key)):
            return True
    return False


def _differs(desired: Any, live: Any) -> bool:
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return True
        return any(_differs(value, live.get(key)) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return True
        return any(_differs(d, v) for d, v in zip(desired, live, strict=True))
    return bool(desired != live)
