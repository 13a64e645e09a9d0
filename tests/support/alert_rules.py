"""Where the promtool unit tests of the chart's alert rules live; rendering is shared with the
product (cryptopipe_dev.stack.alert_rules)."""

from __future__ import annotations

from cryptopipe_dev.stack.alert_rules import CHART, alert_names, helm_template, render_rule_groups, write_rules_file
from tests.support.paths import REPO

PROMTOOL_TESTS = REPO / "tests" / "alerts" / "cryptopipe-alerts.test.yaml"

__all__ = ["CHART", "PROMTOOL_TESTS", "alert_names", "helm_template", "render_rule_groups", "write_rules_file"]
