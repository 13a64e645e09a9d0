"""The operator chart rendered by helm, and its alert rules as a plain Prometheus rules file.

The chart's PrometheusRule template is the one source of the rules: a cluster, promtool's unit
tests, the test harness's Prometheus and `cryptopipe up`'s Prometheus all evaluate what this renders.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from cryptopipe_dev.repo import CHART


def helm_template(helm: Path, *args: str, chart: Path = CHART) -> list[dict[str, Any]]:
    """The documents `helm template rel CHART --namespace ops ARGS...` renders."""
    result = subprocess.run(
        [str(helm), "template", "rel", str(chart), "--namespace", "ops", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm template {chart} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_rule_groups(helm: Path, *set_values: str, chart: Path = CHART) -> list[dict[str, Any]]:
    """spec.groups of the chart's PrometheusRule; ``set_values`` are helm --set KEY=VALUE strings."""
    args = ["--set", "prometheusRule.enabled=true", "--show-only", "templates/prometheusrule.yaml"]
    for value in set_values:
        args += ["--set", value]
    (rule,) = helm_template(helm, *args, chart=chart)
    if rule.get("kind") != "PrometheusRule":
        raise RuntimeError(f"expected a PrometheusRule from {chart}, got {rule.get('kind')}")
    return rule["spec"]["groups"]


def write_rules_file(groups: list[dict[str, Any]], path: Path) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def alert_names(groups: list[dict[str, Any]]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
