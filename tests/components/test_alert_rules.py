"""The chart's PrometheusRule, PodMonitor and ServiceMonitor, checked with promtool (Debian's
prometheus package) and helm: the rules are valid, every alert fires and stays quiet where its
promtool unit test says, and the scrape objects attach the labels the rules select on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cryptopipe_dev.stack.prometheus import promtool
from cryptopipe_operator.render_common import MANAGED_BY, PART_OF
from tests.support.alert_rules import (
    CHART,
    PROMTOOL_TESTS,
    alert_names,
    helm_template,
    render_rule_groups,
    write_rules_file,
)

pytestmark = pytest.mark.kube  # helm comes with the control-plane build


def run_promtool_tests(rules: Path, work: Path) -> tuple[int, str]:
    test_file = work / "alerts.test.yaml"
    test_file.write_text(PROMTOOL_TESTS.read_text().replace("RULES_FILE", str(rules)))
    result = promtool("test", "rules", str(test_file))
    return result.returncode, result.stdout + result.stderr


def test_rules_pass_promtool_check_rules(helm: Path, tmp_path: Path) -> None:
    rules = write_rules_file(render_rule_groups(helm), tmp_path / "rules.yml")
    result = promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 17 rules found" in result.stdout


def test_promtool_unit_tests_pass(helm: Path, tmp_path: Path) -> None:
    code, output = run_promtool_tests(write_rules_file(render_rule_groups(helm), tmp_path / "rules.yml"), tmp_path)
    assert code == 0, output
    assert "SUCCESS" in output


def test_promtool_unit_tests_catch_a_changed_window(helm: Path, tmp_path: Path) -> None:
    # the no-trades case expects a firing alert 8 minutes after trades stop; with a 30m window it
    # must not fire, so the unit tests must fail: they test the rules, not themselves
    groups = render_rule_groups(helm, "prometheusRule.alerts.noTrades.window=30m")
    code, output = run_promtool_tests(write_rules_file(groups, tmp_path / "rules.yml"), tmp_path)
    assert code != 0 and "CryptopipeNoTrades" in output, output


def test_every_alert_has_promtool_cases(helm: Path) -> None:
    tested = set(re.findall(r"alertname: (\w+)", PROMTOOL_TESTS.read_text()))
    assert alert_names(render_rule_groups(helm)) == tested


def test_every_alert_has_severity_summary_and_description(helm: Path) -> None:
    for group in render_rule_groups(helm, "prometheusRule.alertLabels.team=data"):
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            assert rule["labels"]["team"] == "data", rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_rule_values_reach_the_expressions(helm: Path) -> None:
    groups = render_rule_groups(
        helm, "prometheusRule.alerts.sparkBehind.lagRecords=42", "prometheusRule.alerts.noTrades.for=7m"
    )
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert "> 42\n" in rules["CryptopipeSparkFallingBehind"]["expr"]
    assert rules["CryptopipeNoTrades"]["for"] == "7m"


def test_monitoring_objects_are_opt_in(helm: Path) -> None:
    kinds = {d["kind"] for d in helm_template(helm)}
    assert not kinds & {"PodMonitor", "PrometheusRule", "ServiceMonitor"}


def test_podmonitor_attaches_pipeline_and_component_labels(helm: Path) -> None:
    docs = helm_template(helm, "-f", str(CHART / "ci" / "monitoring-values.yaml"))
    (pod_monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    assert pod_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = pod_monitor["spec"]
    # the labels every pod the operator renders carries (render_common.labels)
    assert spec["selector"]["matchLabels"] == {
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    assert spec["namespaceSelector"] == {"any": True}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert targets == {
        "pipeline": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
        "component": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
    }
    (service_monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert service_monitor["spec"]["endpoints"][0]["honorLabels"] is True
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_podmonitor_follows_watch_namespaces(helm: Path) -> None:
    docs = helm_template(helm, "--set", "podMonitor.enabled=true", "--set", "watchNamespaces={md,prod}")
    (pod_monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    assert pod_monitor["spec"]["namespaceSelector"] == {"matchNames": ["md", "prod"]}
