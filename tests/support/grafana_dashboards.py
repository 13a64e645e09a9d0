"""The Grafana dashboards the operator chart ships (charts/cryptopipe-operator/dashboards/*.json).

Shared by the static checks (tests/unit/test_dashboards.py) and by tests that run every dashboard
query against a real Prometheus: load the dashboards, walk their panels, and turn each target's
``expr`` into plain PromQL by substituting Grafana's macros and the dashboard variables the way
Grafana would for a single selected value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.support.paths import CHART

DASHBOARD_DIR = CHART / "dashboards"

# What Grafana's global macros become when a query is run outside Grafana. $__rate_interval is at
# least four scrape intervals in Grafana; 1m suits the PodMonitor's 15 s interval.
MACROS: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
}

# ${var}, ${var:format}, [[var]], [[var:format]], $var (longest name wins: $__range_s, not $__range)
_VARIABLE = re.compile(
    r"\$\{(?P<braced>\w+)(?::(?P<braced_fmt>[^}]*))?\}"
    r"|\[\[(?P<bracket>\w+)(?::(?P<bracket_fmt>[^\]]*))?\]\]"
    r"|\$(?P<plain>\w+)"
)
# characters Grafana's regex format escapes; doubled backslash because the value lands in a PromQL
# string literal, where "\." would be an invalid escape
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.*\S)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.S)


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` in ``directory`` by file stem (``pipeline-overview``, ``operator``)."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels nested in (collapsed) rows."""

    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels") or [])

    yield from walk(dashboard.get("panels") or [])


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with Grafana's macros and ``variables`` (name -> the single selected value)
    substituted. An unknown variable raises KeyError: a query must not reference a variable the
    caller did not think of."""
    values = {**MACROS, **variables}

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bracket") or match.group("plain")
        fmt = match.group("braced_fmt") or match.group("bracket_fmt") or ""
        if name not in values:
            raise KeyError(f"{match.group(0)}: no value for variable {name!r} in {text!r}")
        value = values[name]
        if fmt == "regex":
            return _REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value)
        return value

    return _VARIABLE.sub(replace, text)


def panel_queries(dashboard: Mapping[str, Any], variables: Mapping[str, str]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, macros and variables substituted."""
    queries = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if expr:
                queries.append((panel.get("title", ""), substitute(expr, variables)))
    return queries


def variable_queries(dashboard: Mapping[str, Any], variables: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable name, selector) for every ``label_values(selector, label)`` query variable: the
    metric name or series selector whose series the variable's values come from, variables
    substituted (so the ``pipeline`` variable's selector names the selected namespace)."""
    out = []
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, Mapping):  # newer Grafana stores {"query": "...", "refId": ...}
            query = query.get("query")
        match = _LABEL_VALUES.match(query or "")
        if not match or not match.group("selector"):
            raise ValueError(f"variable {variable.get('name')!r}: not label_values(selector, label): {query!r}")
        out.append((variable["name"], substitute(match.group("selector"), variables)))
    return out
