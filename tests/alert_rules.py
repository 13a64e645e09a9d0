"""The chart's alert rules as a plain Prometheus rules file, rendered by helm with given values.

The PrometheusRule template is the one source of the rules: promtool's unit tests, the live
Prometheus of tests/components/test_observability.py and a cluster all get what this renders.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "cryptopipe-operator"
PROMTOOL_TESTS = REPO / "tests" / "alerts" / "cryptopipe-alerts.test.yaml"


def render_rule_groups(helm: Path, *set_values: str) -> list[dict[str, Any]]:
    """spec.groups of the chart's PrometheusRule; ``set_values`` are helm --set KEY=VALUE strings."""
    args = [str(helm), "template", "rel", str(CHART), "--namespace", "ops", "--set", "prometheusRule.enabled=true",
            "--show-only", "templates/prometheusrule.yaml"]
    for value in set_values:
        args += ["--set", value]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    (rule,) = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert rule["kind"] == "PrometheusRule"
    return rule["spec"]["groups"]


def write_rules_file(groups: list[dict[str, Any]], path: Path) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def alert_names(groups: list[dict[str, Any]]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
