"""Observability against a real Prometheus (Debian's 2.42) scraping the running local stack.

One module-scoped scene, started once:
- pipeline "main": synthetic trades at wall-clock time -> ingestion -> Kafka -> Spark job -> lake,
  plus the lake monitor; healthy, so its dashboards must show data;
- pipeline "gappy": a second ingestion whose feed withholds every 25th trade and whose REST
  backfill is unreachable, so its gaps are given up;
- the operator, reconciling one CryptoPipeline on the test API server;
- Prometheus scraping all of them with the labels a cluster's PodMonitor attaches (namespace,
  pipeline, component), evaluating the chart's alert rules rendered by helm with short windows.

Then: every component's /metrics passes `promtool check metrics`; every rule loads and evaluates;
every dashboard query (Grafana macros and variables substituted) parses and returns data; the gap
alert fires for "gappy" only; stopping main's ingestion fires the no-trades alert.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cryptopipe.pipeline import PipelineConfig
from cryptopipe_dev.replay.server import ReplayServer
from cryptopipe_dev.replay.synthetic import SyntheticConfig, SyntheticSource
from cryptopipe_dev.stack.kube import KubeControlPlane, require_binary
from cryptopipe_dev.stack.local import LocalStack
from cryptopipe_dev.stack.procs import LOOPBACK, ManagedProcess, free_port, wait_for
from cryptopipe_dev.stack.prometheus import PrometheusServer, promtool
from tests.support.alert_rules import alert_names, render_rule_groups, write_rules_file
from tests.support.cryptopipelines import pipeline
from tests.support.grafana_dashboards import load_dashboards, panel_queries
from tests.support.kube_objects import get
from tests.support.operator_process import OperatorProcess, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.kube]

PRODUCTS = ("BTC-USD", "ETH-USD")
LOCAL_NAMESPACE = "local"
# short windows so the alerts can be watched firing within a test; the expressions are the chart's
RULE_VALUES = (
    "prometheusRule.alerts.noTrades.window=20s",
    "prometheusRule.alerts.noTrades.for=5s",
    "prometheusRule.alerts.ingestionDown.for=5s",
    "prometheusRule.alerts.gapNotBackfilled.window=10m",
    "prometheusRule.alerts.lakeAnomaly.for=5s",
)
NO_TRADES_WINDOW_S, NO_TRADES_FOR_S = 20, 5


def wait_until(predicate, timeout: float, interval: float = 1.0):
    """wait_for that returns None at the deadline instead of raising, so the test's own assertion
    can say what it saw; an exception in ``predicate`` (a PromQL error) still fails at once."""
    try:
        return wait_for(predicate, timeout, "condition", interval=interval, retry_on=())
    except TimeoutError:
        return None


@dataclass
class Scene:
    prometheus: PrometheusServer
    stack: LocalStack
    targets: dict[str, str]  # target name -> host:port
    ingestion: ManagedProcess
    gappy_ingestion: ManagedProcess
    kube_namespace: str
    kube_pipeline: str
    rule_groups: list[dict]


def _operator_scene(kube: KubeControlPlane, work: Path) -> tuple[OperatorProcess, str, str]:
    namespace, name = "observability", "btc-eth"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    operator = OperatorProcess(kube, work / "operator.log")
    operator.start()
    kube.apply(pipeline(name, namespace))
    eventually(
        lambda: (get(kube, "CryptoPipeline", namespace, name) or {}).get("status", {}).get("conditions"),
        "the operator to report conditions",
        timeout=60,
        operator=operator,
    )
    return operator, namespace, name


@pytest.fixture(scope="module")
def scene(kube: KubeControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    work = tmp_path_factory.mktemp("observability")
    helm = require_binary("helm")
    groups = render_rule_groups(helm, *RULE_VALUES)
    rules = write_rules_file(groups, work / "cryptopipe-rules.yml")

    config = PipelineConfig(products=PRODUCTS, windows=("1m",), watermark="5s", trigger="2s", hold_slack_s=2.0)
    now = time.time()
    healthy_feed = ReplayServer(
        SyntheticSource(SyntheticConfig(products=PRODUCTS, rate=20, duration=None, start_time=now, seed=7)), speed=1
    )
    gappy_feed = ReplayServer(
        SyntheticSource(SyntheticConfig(products=PRODUCTS, rate=10, duration=None, start_time=now, seed=8)),
        speed=1,
        faults={"skip_every": 25},
    )
    operator = None
    prometheus = PrometheusServer(work / "prometheus", scrape_interval="1s", evaluation_interval="1s")
    with LocalStack(work / "stack", config) as stack:
        try:
            healthy_feed.start()
            gappy_feed.start()
            stack.kafka.create_topic("gappy.trades", 1)
            stack.kafka.create_topic("gappy.trades.dlq", 1)
            ingestion = stack.start_ingestion(ws_url=healthy_feed.url, rest_url=healthy_feed.rest_url)
            ingestion_port = stack.ingestion_port
            gappy = stack.start_ingestion(
                ws_url=gappy_feed.url,
                name="gappy-ingestion",
                # nothing listens there: every backfill fails and its gap is given up
                rest_url=f"http://{LOOPBACK}:{free_port()}",
                extra_env={
                    "CRYPTOPIPE_INGEST_TOPIC": "gappy.trades",
                    "CRYPTOPIPE_INGEST_DLQ_TOPIC": "gappy.trades.dlq",
                    "CRYPTOPIPE_INGEST_BACKFILL_RETRIES": "1",
                    "CRYPTOPIPE_INGEST_BACKFILL_TIMEOUT_S": "1",
                },
            )
            gappy_port = stack.ingestion_port
            job_port = free_port()
            stack.start_job(metrics_port=job_port)
            stack.start_monitor(interval="2s", lookback="30m")
            operator, kube_ns, kube_name = _operator_scene(kube, work)

            main = {"namespace": LOCAL_NAMESPACE, "pipeline": "main"}
            targets = {
                "ingestion": f"{LOOPBACK}:{ingestion_port}",
                "gappy-ingestion": f"{LOOPBACK}:{gappy_port}",
                "spark": f"{LOOPBACK}:{job_port}",
                "lake-monitor": f"{LOOPBACK}:{stack.monitor_port}",
                "operator": f"{LOOPBACK}:{operator.metrics_port}",
            }
            prometheus.add_target("ingestion", targets["ingestion"], {**main, "component": "ingestion"})
            prometheus.add_target(
                "gappy-ingestion",
                targets["gappy-ingestion"],
                {"namespace": LOCAL_NAMESPACE, "pipeline": "gappy", "component": "ingestion"},
            )
            prometheus.add_target("spark", targets["spark"], {**main, "component": "spark"})
            prometheus.add_target("lake-monitor", targets["lake-monitor"], {**main, "component": "lake-monitor"})
            # the operator's own series; its pipeline_condition carries namespace/pipeline (honor_labels)
            prometheus.add_target("operator", targets["operator"], {"component": "operator"})
            prometheus.start(rule_files=[rules])
            yield Scene(prometheus, stack, targets, ingestion, gappy, kube_ns, kube_name, groups)
        finally:
            if operator is not None:
                operator.stop()
            healthy_feed.stop()
            gappy_feed.stop()
            prometheus.stop()


def _metrics_text(address: str) -> str:
    # the Spark job serves /metrics only once its listener is up; the others at start
    def fetch() -> str | None:
        try:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
                return response.read().decode()
        except OSError:
            return None

    text = wait_until(fetch, 180, interval=2)
    assert text, f"no /metrics at {address}"
    return text


def test_every_component_metrics_pass_promtool_check_metrics(scene: Scene) -> None:
    for name, address in scene.targets.items():
        text = _metrics_text(address)
        result = promtool("check", "metrics", input_text=text)
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (name, result)


def test_prometheus_scrapes_every_target(scene: Scene) -> None:
    scene.prometheus.wait_for_targets_up(list(scene.targets), timeout=180)
    up = scene.prometheus.query('up{namespace="local", pipeline="main"}')
    assert {s["metric"]["component"] for s in up} == {"ingestion", "spark", "lake-monitor"}


def test_every_rule_loads_and_evaluates(scene: Scene) -> None:
    def evaluated() -> list[dict] | None:
        rules = [r for g in scene.prometheus.rule_groups() for r in g["rules"]]
        done = all(r.get("lastEvaluation", "").startswith("20") for r in rules)
        return rules if done and rules else None

    rules = wait_until(evaluated, 60)
    assert rules, "rules never evaluated"
    assert {r["name"] for r in rules} == alert_names(scene.rule_groups)
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not broken, broken


def _dashboard_variables(scene: Scene, uid: str) -> dict[str, str]:
    if "operator" in uid:
        return {"namespace": scene.kube_namespace, "pipeline": scene.kube_pipeline, "datasource": "prometheus"}
    return {"namespace": LOCAL_NAMESPACE, "pipeline": "main", "datasource": "prometheus"}


def test_every_dashboard_query_parses_and_returns_data(scene: Scene) -> None:
    queries = []
    for name, dashboard in load_dashboards().items():
        variables = _dashboard_variables(scene, dashboard["uid"])
        queries += [(name, title, expr) for title, expr in panel_queries(dashboard, variables)]
    assert len(queries) >= 20

    # a syntax error fails at once (PrometheusError); emptiness is waited out: the first candles
    # reach the lake a minute and a watermark after the start
    def all_answer() -> bool:
        empty.clear()
        for name, title, expr in queries:
            if not scene.prometheus.query(expr):
                empty.append(f"{name} / {title}: {expr}")
        return not empty

    empty: list[str] = []
    wait_until(all_answer, 300, interval=5)
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_dashboard_variables_find_the_pipelines(scene: Scene) -> None:
    api = scene.prometheus.api
    namespaces = api("label/namespace/values", {"match[]": "cryptopipe_ingest_connection_state"})
    assert LOCAL_NAMESPACE in namespaces
    pipelines = api("label/pipeline/values", {"match[]": 'cryptopipe_ingest_connection_state{namespace="local"}'})
    assert {"main", "gappy"} <= set(pipelines)
    operated = api(
        "label/pipeline/values",
        {"match[]": f'cryptopipe_operator_pipeline_condition{{namespace="{scene.kube_namespace}"}}'},
    )
    assert scene.kube_pipeline in operated


def _firing(scene: Scene, alert: str, **labels: str) -> list[dict]:
    return [
        a for a in scene.prometheus.alerts(alert, "firing") if all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def test_a_gap_not_backfilled_fires_the_gap_alert_for_that_pipeline_only(scene: Scene) -> None:
    fired = wait_until(lambda: _firing(scene, "CryptopipeGapNotBackfilled", pipeline="gappy"), 120)
    assert fired, scene.prometheus.alerts()
    assert {a["labels"]["product_id"] for a in fired} <= set(PRODUCTS)
    assert not _firing(scene, "CryptopipeGapNotBackfilled", pipeline="main")
    # the healthy pipeline is quiet where it should be
    for alert in ("CryptopipeNoTrades", "CryptopipeIngestionDown", "CryptopipeSparkJobDown"):
        assert not _firing(scene, alert, pipeline="main"), alert


def test_stopping_the_ingestion_fires_no_trades_within_its_window(scene: Scene) -> None:
    assert not _firing(scene, "CryptopipeNoTrades", pipeline="main")
    stopped_at = time.monotonic()
    scene.ingestion.stop()
    # window (no trade produced for 20 s) + for (5 s) + a scrape and an evaluation each side
    bound = NO_TRADES_WINDOW_S + NO_TRADES_FOR_S + 30
    fired = wait_until(lambda: _firing(scene, "CryptopipeNoTrades", pipeline="main"), bound)
    took = time.monotonic() - stopped_at
    assert fired, f"CryptopipeNoTrades not firing {bound} s after the stop: {scene.prometheus.alerts()}"
    assert {a["labels"]["product_id"] for a in fired} == set(PRODUCTS)
    print(
        f"no-trades alert firing {took:.0f} s after the ingestion stopped (window {NO_TRADES_WINDOW_S} s "
        f"+ for {NO_TRADES_FOR_S} s)"
    )
    down = wait_until(lambda: _firing(scene, "CryptopipeIngestionDown", pipeline="main"), 60)
    assert down, scene.prometheus.alerts()
    # the other pipeline's ingestion still runs and still produces
    assert not _firing(scene, "CryptopipeIngestionDown", pipeline="gappy")
    assert not _firing(scene, "CryptopipeNoTrades", pipeline="gappy")
