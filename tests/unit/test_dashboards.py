"""The Grafana dashboards of the operator chart (charts/cryptopipe-operator/dashboards/*.json).

Static checks of the dashboard JSON: the datasource and variables Grafana needs, a layout without
overlaps, and every query written against the metric contract below (the names the ingestion
service, the Spark job, the lake monitor and the operator export), selecting one pipeline. Plus
the chart shipping each dashboard as a ConfigMap for the Grafana sidecar (``kube``: needs helm).
Whether the queries return data is for a real Prometheus; tests/support/grafana_dashboards.py turns them
into plain PromQL for that.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cryptopipe_dev.stack.alert_rules import helm_template
from cryptopipe_dev.stack.prometheus import promtool
from tests.support.grafana_dashboards import (
    DASHBOARD_DIR,
    iter_panels,
    load_dashboards,
    panel_queries,
    substitute,
    variable_queries,
)

CHART = DASHBOARD_DIR.parent
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
UIDS = {"pipeline-overview": "cryptopipe-pipeline-overview", "operator": "cryptopipe-operator"}
# the metric the namespace/pipeline variables take their values from, per dashboard
VARIABLE_METRIC = {
    "pipeline-overview": "cryptopipe_ingest_connection_state",
    "operator": "cryptopipe_operator_pipeline_condition",
}
VARIABLES = {"namespace": "crypto", "pipeline": "btc-eth"}

# --- the metric contract: exported name (counters with _total, as scraped) -> (kind, labels) ------
# Pipeline components' metrics also carry `namespace` and `pipeline`, added at scrape time.
COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
METRICS: dict[str, tuple[str, frozenset[str]]] = {
    name: (kind, frozenset(labels))
    for name, kind, labels in [
        # ingestion
        ("cryptopipe_ingest_frames_received_total", COUNTER, ["type"]),
        ("cryptopipe_ingest_trades_produced_total", COUNTER, ["product_id", "source"]),
        ("cryptopipe_ingest_trades_backfilled_total", COUNTER, ["product_id"]),
        ("cryptopipe_ingest_ticks_produced_total", COUNTER, ["product_id"]),
        ("cryptopipe_ingest_duplicate_trades_skipped_total", COUNTER, ["product_id"]),
        ("cryptopipe_ingest_last_trade_timestamp_seconds", GAUGE, ["product_id"]),
        ("cryptopipe_ingest_produce_latency_seconds", HISTOGRAM, []),
        ("cryptopipe_ingest_errors_total", COUNTER, ["kind"]),
        ("cryptopipe_ingest_reconnects_total", COUNTER, ["reason"]),
        ("cryptopipe_ingest_gaps_detected_total", COUNTER, ["product_id"]),
        ("cryptopipe_ingest_gaps_backfilled_total", COUNTER, ["product_id"]),
        ("cryptopipe_ingest_gaps_unfilled_total", COUNTER, ["product_id", "reason"]),
        ("cryptopipe_ingest_trades_unfilled_total", COUNTER, ["product_id"]),
        ("cryptopipe_ingest_backfill_pending", GAUGE, []),
        ("cryptopipe_ingest_dead_lettered_frames_total", COUNTER, []),
        ("cryptopipe_ingest_delivery_errors_total", COUNTER, ["topic"]),
        ("cryptopipe_ingest_trades_redelivered_total", COUNTER, ["product_id"]),
        ("cryptopipe_ingest_connection_state", GAUGE, ["state"]),
        ("cryptopipe_ingest_held_records", GAUGE, []),
        ("cryptopipe_ingest_hold_age_seconds", GAUGE, []),
        ("cryptopipe_ingest_hold_expired_total", COUNTER, ["cause"]),
        # Spark job, one query per window
        ("cryptopipe_job_input_rows_total", COUNTER, ["window"]),
        ("cryptopipe_job_batches_total", COUNTER, ["window"]),
        ("cryptopipe_job_late_rows_dropped_total", COUNTER, ["window"]),
        ("cryptopipe_job_rejected_rows_total", COUNTER, ["window", "reason"]),
        ("cryptopipe_job_candles_written_total", COUNTER, ["window"]),
        ("cryptopipe_job_files_written_total", COUNTER, ["window"]),
        ("cryptopipe_job_state_rows", GAUGE, ["window"]),
        ("cryptopipe_job_watermark_timestamp_seconds", GAUGE, ["window"]),
        ("cryptopipe_job_watermark_delay_seconds", GAUGE, ["window"]),
        ("cryptopipe_job_kafka_lag_records", GAUGE, ["window"]),
        ("cryptopipe_job_last_batch_timestamp_seconds", GAUGE, ["window"]),
        ("cryptopipe_job_input_rows_per_second", GAUGE, ["window"]),
        ("cryptopipe_job_processed_rows_per_second", GAUGE, ["window"]),
        ("cryptopipe_job_batch_duration_seconds", HISTOGRAM, ["window"]),
        # lake monitor
        ("cryptopipe_lake_anomalies", GAUGE, ["product_id", "window", "kind"]),
        ("cryptopipe_lake_newest_candle_end_timestamp_seconds", GAUGE, ["product_id", "window"]),
        ("cryptopipe_lake_trade_ids_missing", GAUGE, ["product_id", "window", "kind"]),
        ("cryptopipe_lake_candles_scanned", GAUGE, ["window"]),
        ("cryptopipe_lake_complete_through_timestamp_seconds", GAUGE, ["window"]),
        ("cryptopipe_lake_scans_total", COUNTER, ["result"]),
        ("cryptopipe_lake_scan_duration_seconds", HISTOGRAM, []),
        ("cryptopipe_lake_last_successful_scan_timestamp_seconds", GAUGE, []),
        # operator (only the condition gauge is per pipeline)
        ("cryptopipe_operator_reconciles_total", COUNTER, ["result"]),
        ("cryptopipe_operator_reconcile_duration_seconds", HISTOGRAM, []),
        ("cryptopipe_operator_pipeline_condition", GAUGE, ["namespace", "pipeline", "type"]),
    ]
}
COMPONENT_PREFIXES = ("cryptopipe_ingest_", "cryptopipe_job_", "cryptopipe_lake_")
SCRAPE_LABELS = frozenset({"namespace", "pipeline"})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# counters with no series (or none yet) on a healthy pipeline: their queries must fall back to 0
MAY_BE_ABSENT = {
    "cryptopipe_ingest_errors_total",
    "cryptopipe_ingest_gaps_unfilled_total",
    "cryptopipe_ingest_reconnects_total",
    "cryptopipe_ingest_delivery_errors_total",
    "cryptopipe_ingest_dead_lettered_frames_total",
    "cryptopipe_ingest_trades_unfilled_total",
    "cryptopipe_lake_anomalies",
    # per-product counts created by the first such trade
    "cryptopipe_ingest_duplicate_trades_skipped_total",
    "cryptopipe_ingest_trades_backfilled_total",
    "cryptopipe_ingest_ticks_produced_total",
}
# what each dashboard must show at least
REQUIRED_METRICS = {
    "pipeline-overview": {
        "cryptopipe_ingest_trades_produced_total",
        "cryptopipe_lake_newest_candle_end_timestamp_seconds",
        "cryptopipe_ingest_last_trade_timestamp_seconds",
        "cryptopipe_job_candles_written_total",
        "cryptopipe_job_late_rows_dropped_total",
        "cryptopipe_ingest_gaps_detected_total",
        "cryptopipe_ingest_gaps_backfilled_total",
        "cryptopipe_ingest_gaps_unfilled_total",
        "cryptopipe_ingest_reconnects_total",
        "cryptopipe_ingest_produce_latency_seconds_bucket",
        "cryptopipe_ingest_connection_state",
        "cryptopipe_ingest_dead_lettered_frames_total",
        "cryptopipe_ingest_errors_total",
        "cryptopipe_job_input_rows_per_second",
        "cryptopipe_job_processed_rows_per_second",
        "cryptopipe_job_batch_duration_seconds_bucket",
        "cryptopipe_job_watermark_delay_seconds",
        "cryptopipe_job_kafka_lag_records",
        "cryptopipe_job_state_rows",
        "cryptopipe_lake_anomalies",
        # the release order's hold (docs/data-plane.md): what waits for an owed trade, and its bounds
        "cryptopipe_ingest_held_records",
        "cryptopipe_ingest_hold_age_seconds",
        "cryptopipe_ingest_hold_expired_total",
    },
    "operator": {
        "cryptopipe_operator_reconciles_total",
        "cryptopipe_operator_reconcile_duration_seconds_bucket",
        "cryptopipe_operator_pipeline_condition",
    },
}

# a metric name and the selector right after it, if any
SELECTOR = re.compile(r"(?P<name>cryptopipe_[a-z_]+)\s*(?:\{(?P<matchers>[^}]*)\})?")
MATCHER = re.compile(r'\s*(?P<label>\w+)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*(?:,|$)')

DASHBOARDS = load_dashboards()


def metric_kind(name: str) -> tuple[str, str] | None:
    """(contract name, kind) of a name as used in PromQL (histograms by their series suffixes)."""
    if name in METRICS and METRICS[name][0] != HISTOGRAM:
        return name, METRICS[name][0]
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and METRICS.get(base, ("",))[0] == HISTOGRAM:
            return base, HISTOGRAM
    return None


def matchers(text: str | None) -> dict[str, tuple[str, str]]:
    """label -> (operator, value) of a selector's matchers; fails on anything it cannot read."""
    out: dict[str, tuple[str, str]] = {}
    rest = text or ""
    while rest.strip():
        m = MATCHER.match(rest)
        assert m, f"unreadable matchers {text!r}"
        out[m["label"]] = (m["op"], m["value"])
        rest = rest[m.end() :]
    return out


def targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, target) for panel in iter_panels(dashboard) for target in panel.get("targets") or []]


def exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(panel.get("title", ""), target["expr"]) for panel, target in targets(dashboard)]


def variables_by_name(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def layers(dashboard: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Panels laid out together: the top level, and the panels inside each collapsed row."""
    top = dashboard["panels"]
    return [top] + [row["panels"] for row in top if row.get("type") == "row" and row.get("panels")]


by_dashboard = pytest.mark.parametrize("name", sorted(UIDS))


# --- files and identity --------------------------------------------------------------------------


def test_the_chart_ships_both_dashboards() -> None:
    assert set(DASHBOARDS) == set(UIDS)


@by_dashboard
def test_dashboard_identity(name: str) -> None:
    raw = (DASHBOARD_DIR / f"{name}.json").read_text()
    assert "{{" not in raw, "keep Helm/Go template syntax out of the JSON (use ${__field.labels.x} for names)"
    dashboard = json.loads(raw)
    assert dashboard["uid"] == UIDS[name]
    assert dashboard.get("id") is None, "a provisioned dashboard must not carry a database id"
    assert dashboard["schemaVersion"] == 39
    assert dashboard["title"]
    kinds = {p["type"] for p in iter_panels(dashboard)}
    assert kinds <= {"row", "timeseries", "stat", "table"}, kinds
    assert any(p["type"] == "row" for p in dashboard["panels"]), "group the panels in rows"


@by_dashboard
def test_panel_ids_are_unique(name: str) -> None:
    ids = [p.get("id") for p in iter_panels(DASHBOARDS[name])]
    assert all(isinstance(i, int) for i in ids), ids
    assert len(ids) == len(set(ids)), sorted(ids)


# --- datasource and variables --------------------------------------------------------------------


@by_dashboard
def test_every_panel_and_target_uses_the_datasource_variable(name: str) -> None:
    dashboard = DASHBOARDS[name]
    for panel in iter_panels(dashboard):
        assert panel.get("datasource") == DATASOURCE, panel.get("title")
    for panel, target in targets(dashboard):
        assert target.get("datasource") == DATASOURCE, (panel["title"], target.get("refId"))
    variable = variables_by_name(dashboard)["datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"


@by_dashboard
def test_namespace_and_pipeline_variables(name: str) -> None:
    dashboard = DASHBOARDS[name]
    variables = variables_by_name(dashboard)
    for var in ("namespace", "pipeline"):
        assert variables[var]["type"] == "query"
        assert variables[var]["datasource"] == DATASOURCE
        # single values: the panels select with =, not =~
        assert not variables[var].get("multi") and not variables[var].get("includeAll")
    metric = VARIABLE_METRIC[name]
    assert variables["namespace"]["query"] == f"label_values({metric}, namespace)"
    assert variables["pipeline"]["query"] == f'label_values({metric}{{namespace="$namespace"}}, pipeline)'
    # the pipeline list depends on the namespace chosen before it
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names.index("datasource") < names.index("namespace") < names.index("pipeline")
    assert variable_queries(dashboard, VARIABLES) == [
        ("namespace", metric),
        ("pipeline", f'{metric}{{namespace="crypto"}}'),
    ]


# --- targets -------------------------------------------------------------------------------------


@by_dashboard
def test_targets_have_an_expr_and_unique_ref_ids(name: str) -> None:
    dashboard = DASHBOARDS[name]
    for panel in iter_panels(dashboard):
        if panel["type"] == "row":
            assert not panel.get("targets")
            continue
        refs = [t.get("refId") for t in panel.get("targets") or []]
        assert refs, f"{panel['title']}: no query"
        assert all(refs) and len(refs) == len(set(refs)), (panel["title"], refs)
        for target in panel["targets"]:
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), (panel["title"], target)


# --- layout --------------------------------------------------------------------------------------


@by_dashboard
def test_grid_positions_fit_the_24_column_grid(name: str) -> None:
    for panel in iter_panels(DASHBOARDS[name]):
        pos = panel.get("gridPos")
        assert isinstance(pos, dict) and set(pos) >= {"x", "y", "w", "h"}, panel.get("title")
        assert all(type(pos[k]) is int for k in "xywh"), (panel["title"], pos)
        assert pos["x"] >= 0 and pos["y"] >= 0 and pos["w"] > 0 and pos["h"] > 0, (panel["title"], pos)
        assert pos["x"] + pos["w"] <= 24, (panel["title"], pos)


@by_dashboard
def test_no_panel_overlaps_another(name: str) -> None:
    for layer in layers(DASHBOARDS[name]):
        boxes = [(p["title"], p["gridPos"]) for p in layer]
        for i, (title_a, a) in enumerate(boxes):
            for title_b, b in boxes[i + 1 :]:
                overlap_x = a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
                overlap_y = a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
                assert not (overlap_x and overlap_y), f"{title_a!r} {a} overlaps {title_b!r} {b}"


def test_overlap_check_sees_an_overlap() -> None:
    """The check above on a layout known to overlap (so it is not vacuous)."""
    broken = {
        "panels": [
            {"title": "a", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8}},
            {"title": "b", "gridPos": {"x": 11, "y": 7, "w": 6, "h": 8}},
        ]
    }
    DASHBOARDS["_broken"] = broken
    try:
        with pytest.raises(AssertionError, match="overlaps"):
            test_no_panel_overlaps_another("_broken")
    finally:
        del DASHBOARDS["_broken"]


# --- queries against the metric contract ---------------------------------------------------------


@by_dashboard
def test_every_metric_is_in_the_contract(name: str) -> None:
    for title, expr in exprs(DASHBOARDS[name]):
        names = re.findall(r"cryptopipe_[a-z_]+", expr)
        assert names, f"{title}: {expr!r} reads no cryptopipe metric"
        for metric in names:
            assert metric_kind(metric), f"{title}: {metric} is not an exported metric ({expr!r})"


@by_dashboard
def test_selectors_use_only_the_metrics_labels(name: str) -> None:
    for title, expr in exprs(DASHBOARDS[name]):
        for m in SELECTOR.finditer(expr):
            base, _ = metric_kind(m["name"]) or (m["name"], None)
            allowed = METRICS[base][1] | (SCRAPE_LABELS if base.startswith(COMPONENT_PREFIXES) else set())
            if m["name"].endswith("_bucket"):
                allowed |= {"le"}
            assert set(matchers(m["matchers"])) <= allowed, f"{title}: {m.group(0)}"


@by_dashboard
def test_pipeline_component_queries_select_one_pipeline(name: str) -> None:
    for title, expr in exprs(DASHBOARDS[name]):
        for m in SELECTOR.finditer(expr):
            if m["name"].startswith(COMPONENT_PREFIXES):
                selected = matchers(m["matchers"])
                assert selected.get("namespace") == ("=", "$namespace"), f"{title}: {m.group(0)}"
                assert selected.get("pipeline") == ("=", "$pipeline"), f"{title}: {m.group(0)}"


@by_dashboard
def test_counters_and_histograms_are_read_through_rate(name: str) -> None:
    for title, expr in exprs(DASHBOARDS[name]):
        for m in SELECTOR.finditer(expr):
            _, kind = metric_kind(m["name"])  # type: ignore[misc]
            before = expr[: m.start()].rstrip()
            through_rate = re.search(r"\b(rate|increase)\($", before) is not None
            if kind == GAUGE:
                assert not through_rate, f"{title}: rate() of the gauge {m['name']}"
            else:
                assert through_rate, f"{title}: {m['name']} read without rate()/increase()"
            if kind == HISTOGRAM:
                assert m["name"].endswith("_bucket") and "histogram_quantile(" in before, f"{title}: {expr!r}"
                assert re.search(r"\bby \([^)]*\ble\b", expr), f"{title}: quantile not aggregated by le"


@by_dashboard
def test_rate_windows_are_grafana_macros(name: str) -> None:
    for title, expr in exprs(DASHBOARDS[name]):
        for func, window in re.findall(r"\b(rate|increase)\([^\[]*\[([^\]]*)\]", expr):
            allowed = {"$__rate_interval"} if func == "rate" else {"$__rate_interval", "$__range"}
            assert window in allowed, f"{title}: {func}(...[{window}])"


@by_dashboard
def test_metrics_that_may_be_absent_fall_back_to_zero(name: str) -> None:
    for title, expr in exprs(DASHBOARDS[name]):
        if any(metric in expr for metric in MAY_BE_ABSENT):
            assert re.search(r"\bor (on\(\) )?vector\(0\)$", expr), f"{title}: {expr!r} is empty while the counter is"
        if "count(" in expr and re.search(r"\s(==|!=|>=|<=|>|<)\s", expr):
            assert expr.endswith(" or vector(0)"), f"{title}: {expr!r}: counting a filter is empty when nothing matches"


@by_dashboard
def test_the_dashboard_shows_what_it_must(name: str) -> None:
    used = {m for _, expr in exprs(DASHBOARDS[name]) for m in re.findall(r"cryptopipe_[a-z_]+", expr)}
    assert REQUIRED_METRICS[name] <= used, sorted(REQUIRED_METRICS[name] - used)


def test_pipeline_overview_freshness_and_latency_queries() -> None:
    queries = [expr for _, expr in exprs(DASHBOARDS["pipeline-overview"])]
    assert any(
        q.startswith("max by (product_id") and "time() - cryptopipe_lake_newest_candle_end_timestamp_seconds" in q
        for q in queries
    )
    assert any("time() - cryptopipe_ingest_last_trade_timestamp_seconds" in q for q in queries)
    quantiles = {
        re.match(r"histogram_quantile\((0\.\d+),", q)[1]  # type: ignore[index]
        for q in queries
        if q.startswith("histogram_quantile(") and "produce_latency" in q
    }
    assert quantiles == {"0.5", "0.99"}
    assert any("source" in q and "trades_produced_total" in q for q in queries), "trades/s split by ws/rest"


def test_operator_dashboard_counts_pipelines_not_ready() -> None:
    queries = [expr for _, expr in exprs(DASHBOARDS["operator"])]
    assert any(
        re.fullmatch(
            r'count\(cryptopipe_operator_pipeline_condition\{[^}]*type="Ready"[^}]*\} == 0\) or vector\(0\)', q
        )
        for q in queries
    )
    tables = [p for p in iter_panels(DASHBOARDS["operator"]) if p["type"] == "table"]
    assert any("cryptopipe_operator_pipeline_condition" in t["expr"] for p in tables for t in p["targets"])


# --- the shared helper ---------------------------------------------------------------------------


@by_dashboard
def test_panel_queries_leave_no_variable_or_macro(name: str) -> None:
    queries = panel_queries(DASHBOARDS[name], VARIABLES)
    assert len(queries) == len(targets(DASHBOARDS[name]))
    for title, expr in queries:
        assert "$" not in expr and "[[" not in expr, (title, expr)
    if name == "pipeline-overview":
        assert all('namespace="crypto", pipeline="btc-eth"' in e for _, e in queries if "cryptopipe_ingest_" in e)


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    """Each panel and variable query, variables substituted, through Prometheus' own parser
    (promtool check rules parses every rule's expr)."""
    queries = [
        (f"{name}: {title}", expr) for name, d in DASHBOARDS.items() for title, expr in panel_queries(d, VARIABLES)
    ]
    queries += [
        (f"{name}: ${var}", sel) for name, d in DASHBOARDS.items() for var, sel in variable_queries(d, VARIABLES)
    ]
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"alert": f"Query{i}", "expr": expr, "annotations": {"panel": where}}
                    for i, (where, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout, result.stdout


def test_substitute_handles_grafana_syntaxes() -> None:
    values = {"namespace": "crypto", "pipeline": "a.b"}
    assert substitute('x{namespace="$namespace", pipeline="${pipeline}"}[$__rate_interval]', values) == (
        'x{namespace="crypto", pipeline="a.b"}[1m]'
    )
    assert (
        substitute("[[namespace]] ${namespace:raw} $__interval $__range $__range_s", values)
        == "crypto crypto 15s 5m 300"
    )
    assert substitute('x{pipeline=~"${pipeline:regex}"}', values) == r'x{pipeline=~"a\\.b"}'
    assert substitute("[$__rate_interval]", {"__rate_interval": "2m"}) == "[2m]"
    with pytest.raises(KeyError, match="product"):
        substitute('x{product_id="$product"}', values)


def test_iter_panels_recurses_into_collapsed_rows() -> None:
    dashboard = {"panels": [{"id": 1, "type": "row", "panels": [{"id": 2, "type": "stat"}]}, {"id": 3, "type": "stat"}]}
    assert [p["id"] for p in iter_panels(dashboard)] == [1, 2, 3]


# --- the chart -----------------------------------------------------------------------------------


def config_maps(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "ConfigMap"]


@pytest.mark.kube
def test_chart_ships_each_dashboard_as_a_sidecar_config_map(helm: Path) -> None:
    maps = {cm["metadata"]["name"]: cm for cm in config_maps(helm_template(helm))}
    assert set(maps) == {f"rel-cryptopipe-operator-dashboard-{name}" for name in DASHBOARDS}
    for name, dashboard in DASHBOARDS.items():
        cm = maps[f"rel-cryptopipe-operator-dashboard-{name}"]
        assert cm["metadata"]["namespace"] == "ops"
        labels = cm["metadata"]["labels"]
        assert labels["grafana_dashboard"] == "1"
        assert labels["app.kubernetes.io/instance"] == "rel" and labels["app.kubernetes.io/part-of"] == "cryptopipe"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "CryptoPipeline"}
        assert list(cm["data"]) == [f"{name}.json"]
        assert json.loads(cm["data"][f"{name}.json"]) == dashboard


@pytest.mark.kube
def test_chart_dashboard_label_folder_and_annotations_are_values(helm: Path) -> None:
    docs = helm_template(
        helm,
        "--set",
        "grafanaDashboards.label=dashboards",
        "--set",
        "grafanaDashboards.labelValue=cryptopipe",
        "--set",
        "grafanaDashboards.folder=",
        "--set",
        "grafanaDashboards.annotations.team=data",
    )
    maps = config_maps(docs)
    assert len(maps) == len(DASHBOARDS)
    for cm in maps:
        assert cm["metadata"]["labels"]["dashboards"] == "cryptopipe"
        assert "grafana_dashboard" not in cm["metadata"]["labels"]
        assert cm["metadata"]["annotations"] == {"team": "data"}, "no folder annotation when folder is empty"


@pytest.mark.kube
def test_chart_renders_no_dashboards_when_disabled(helm: Path) -> None:
    docs = helm_template(helm, "--set", "grafanaDashboards.enabled=false")
    assert docs, "the rest of the chart still renders"
    assert not config_maps(docs)


@pytest.mark.kube
def test_chart_lints_strict(helm: Path) -> None:
    result = subprocess.run([str(helm), "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "0 chart(s) failed" in result.stdout, result.stdout + result.stderr
    assert not re.search(r"\[(WARNING|ERROR)\]", result.stdout), result.stdout
