"""The operator Helm chart, the example manifests and the cluster dev loop's files.

Against the real binaries (helm 3.19, kubectl) and the real API server of the ``kube`` fixture:
lint (strict with every ci/*-values.yaml scenario), render, the validateValues helper and
values.schema.json rejecting bad values, ``helm install`` creating the CRD, ServiceAccount and
RBAC, that RBAC being enough to apply every child the operator renders (as the chart's
ServiceAccount, including the Spark driver Role it must be allowed to grant) and holding no
wildcard, and the example CryptoPipelines accepted by the API server. Plus static checks that the
Dockerfiles and skaffold.yaml run what the tests run.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import re
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cryptopipe_dev.crd import CRD_PATH
from cryptopipe_dev.stack.alert_rules import helm_template
from cryptopipe_dev.stack.kube import KubeControlPlane, KubectlError
from cryptopipe_operator.render import render_children, unwanted_children
from cryptopipe_operator.render_ingestion import COMMAND as INGEST_COMMAND
from cryptopipe_operator.render_ingestion import HTTP_PORT as INGEST_HTTP_PORT
from cryptopipe_operator.render_ingestion import RUN_AS_USER as INGEST_UID
from cryptopipe_operator.render_spark import MAIN_APPLICATION_FILE
from cryptopipe_operator.settings import OperatorConfig
from cryptopipe_operator.spec import MonitorSpec, NetworkPolicySpec, parse_pipeline
from tests.support.paths import CHART, REPO

pytestmark = pytest.mark.kube

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
MANIFESTS = REPO / "manifests"
EXAMPLES = sorted((MANIFESTS / "examples").glob("*.yaml"))
DOCKER = REPO / "docker"
CRD_NAME = "cryptopipelines.cryptopipeline.io"
OPERATOR_COMMAND = ["python", "-m", "cryptopipe_operator"]
# kind -> plural, for the children the operator renders
PLURALS = {
    "KafkaTopic": "kafkatopics",
    "Deployment": "deployments",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "SparkApplication": "sparkapplications",
    "NetworkPolicy": "networkpolicies",
}

_release_counter = itertools.count(1)


# --- helpers -------------------------------------------------------------------------------------


def run_helm(
    helm: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def template(helm: Path, *args: str) -> list[dict[str, Any]]:
    return helm_template(helm, *args, chart=CHART)


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


# ClusterRoles the chart ships for others than the operator: the Spark drivers (bound per pipeline
# by the operator) and namespace editors and viewers (aggregated into edit/admin and view)
NOT_THE_OPERATORS = re.compile(r"(-spark-driver|^cryptopipeline-edit|^cryptopipeline-view)$")


def all_rbac_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for d in docs if d["kind"] in ("Role", "ClusterRole") for rule in d.get("rules", [])]


def rbac_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules of the roles the operator's ServiceAccount is bound to."""
    roles = [d for d in docs if d["kind"] in ("Role", "ClusterRole")]
    return [rule for d in roles if not NOT_THE_OPERATORS.search(d["metadata"]["name"]) for rule in d.get("rules", [])]


def spark_driver_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (role,) = [d for d in of_kind(docs, "ClusterRole") if d["metadata"]["name"].endswith("-spark-driver")]
    return role


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples the rules grant."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = of_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


# --- lint, render, values ------------------------------------------------------------------------


def test_helm_lint_is_clean(helm: Path) -> None:
    result = run_helm(helm, "lint", str(CHART))
    assert "0 chart(s) failed" in result.stdout
    assert not re.search(r"\[(WARNING|ERROR)\]", result.stdout), result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict_with_each_ci_scenario(helm: Path, values: Path) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in result.stdout
    assert not re.search(r"\[(WARNING|ERROR)\]", result.stdout), result.stdout


def test_notes_give_commands_that_run_and_never_overwrite_a_secret(kube: KubeControlPlane, helm: Path) -> None:
    """NOTES.txt is what a user copies: no `<...>` placeholder to fill in, a CRD upgrade command that
    names this chart, and the example sink Secret made with `create` (refuses to overwrite), never
    `apply` of the placeholder file (which would replace a real Secret of that name)."""
    args = ("install", "rel", str(CHART), "--namespace", "ops", "--dry-run=client")
    notes = run_helm(helm, *args, env=kube.env()).stdout
    notes = notes[notes.index("NOTES:") :]
    assert not re.search(r"<[a-z][^>]*>", notes), notes
    assert "helm show crds cryptopipe-operator --version" in notes
    assert "BEFORE each `helm upgrade" in notes  # the new operator may need the new CRD's fields
    assert "create secret generic minio-credentials" in notes
    assert "apply -f manifests/minio-credentials" not in notes


def test_ci_scenarios_exist() -> None:
    names = {p.name for p in CI_VALUES}
    assert {"default-values.yaml", "namespaced-values.yaml", "monitoring-values.yaml"} <= names


def test_default_render(helm: Path) -> None:
    docs = template(helm)
    kinds = sorted(d["kind"] for d in docs)
    # the two ConfigMaps are the Grafana dashboards (pipeline overview, operator); the ClusterRoles:
    # the operator's, kopf's CRD observer, the Spark driver's, cryptopipeline-edit and -view; the
    # Role and RoleBinding: the leader-election Lease; the admission policies: the Secret opt-ins
    # (sink credentials, Kafka password and CA)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "ConfigMap",
            "ConfigMap",
        ]
    )
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "cryptopipe-operator"
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"].startswith("cryptopipe-operator-")
    (service,) = of_kind(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert not of_kind(docs, "ServiceMonitor"), "the ServiceMonitor is opt-in"


def test_operator_deployment_runs_hardened_with_probes(helm: Path) -> None:
    docs = template(helm)
    (deployment,) = of_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container(docs)
    assert container["command"] == OPERATOR_COMMAND
    assert "args" not in container, "python -m cryptopipe_operator reads CRYPTOPIPE_OPERATOR_* env, no arguments"
    # one replica reconciles at a time (the Lease), so a rolling update may start the new pod first
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    # the probes hit kopf's liveness endpoint, on the port the operator is told to serve it on
    env = {e["name"]: e.get("value") for e in container["env"]}
    health_port = next(p for p in container["ports"] if p["name"] == "health")["containerPort"]
    assert env["CRYPTOPIPE_OPERATOR_HEALTH_PORT"] == str(health_port)
    assert env["CRYPTOPIPE_OPERATOR_NAMESPACES"] == "[]"  # every namespace
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["resources"]["limits"]["memory"]
    assert env["CRYPTOPIPE_OPERATOR_METRICS_PORT"] == "9090"
    # every variable the chart sets is one of the operator's settings
    known = {f"CRYPTOPIPE_OPERATOR_{name.upper()}" for name in OperatorConfig.model_fields}
    assert set(env) <= known, set(env) - known


def test_namespaced_render_uses_roles_and_namespace_flags(helm: Path) -> None:
    docs = template(helm, "-f", str(CHART / "ci" / "namespaced-values.yaml"))
    # the operator's Role in each watched namespace (the leader-election one is in the release's)
    roles = [r for r in of_kind(docs, "Role") if not r["metadata"]["name"].endswith("-leader-election")]
    bindings = [b for b in of_kind(docs, "RoleBinding") if not b["metadata"]["name"].endswith("-leader-election")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    # the only ClusterRole left is the read-only observer: CRDs, and namespace names, which kopf
    # lists to resolve the namespaces it is confined to (refused, it retries nine times, then guesses),
    # and get on a namespace (is it being deleted? then a missing sink Secret cannot come back)
    (cluster_role,) = [r for r in of_kind(docs, "ClusterRole") if not NOT_THE_OPERATORS.search(r["metadata"]["name"])]
    assert granted(cluster_role["rules"]) == {
        *{("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")},
        *{("", "namespaces", v) for v in ("get", "list", "watch")},
    }
    cluster_wide_observer = next(
        r for r in of_kind(template(helm), "ClusterRole") if r["metadata"]["name"].endswith("-crd-observer")
    )
    # cluster-wide, kopf needs no namespace list: only the get by name remains
    assert {rule for rule in granted(cluster_wide_observer["rules"]) if rule[1] == "namespaces"} == {
        ("", "namespaces", "get")
    }
    env = {e["name"]: e.get("value") for e in operator_container(docs)["env"]}
    assert json.loads(env["CRYPTOPIPE_OPERATOR_NAMESPACES"]) == ["team-a", "team-b"]
    assert OperatorConfig(namespaces=json.loads(env["CRYPTOPIPE_OPERATOR_NAMESPACES"])).namespaces == [
        "team-a",
        "team-b",
    ]
    assert ("", "secrets", "get") in granted(rbac_rules(docs)), "readSinkSecrets: true"
    assert not {("", "secrets", v) for v in ("list", "watch")} & granted(rbac_rules(docs)), "Secrets by name only"
    default_rules = granted(all_rbac_rules(template(helm)))
    assert not any(resource == "secrets" for _, resource, _ in default_rules), "no Secrets by default"
    # the admission policies (sink Secrets, Kafka Secrets) apply in the watched namespaces only
    bindings = of_kind(docs, "ValidatingAdmissionPolicyBinding")
    assert len(bindings) == 2
    for binding in bindings:
        (selector,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
        assert selector["values"] == ["team-a", "team-b"], binding["metadata"]["name"]


def test_service_monitor_is_opt_in(helm: Path) -> None:
    docs = template(helm, "-f", str(CHART / "ci" / "monitoring-values.yaml"))
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_rendered_rbac_has_no_wildcards(helm: Path, values: Path) -> None:
    rules = all_rbac_rules(template(helm, "-f", str(values)))
    assert rules
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in item for item in rule.get(field, [])), f"wildcard in {field}: {rule}"


def _example_pipeline() -> Any:
    body = yaml.safe_load((MANIFESTS / "examples" / "cryptopipeline-full.yaml").read_text())
    body["metadata"] |= {"namespace": "team-a", "uid": "00000000-0000-0000-0000-000000000001"}
    return parse_pipeline(body)


def test_rbac_grants_what_the_operator_needs_and_may_grant(helm: Path) -> None:
    """Statically: every child kind may be server-side applied (get, create, patch) and the
    unwanted ones deleted, the resource and its status patched, and the Spark driver ClusterRole
    bound (bind on that one name), with none of the driver's rights held by the operator. The
    install tests prove it against the API server."""
    for values in CI_VALUES:
        docs = template(helm, "-f", str(values))
        have = granted(rbac_rules(docs))
        driver_role = spark_driver_role(docs)["metadata"]["name"]
        env = {e["name"]: e.get("value") for e in operator_container(docs)["env"]}
        assert env["CRYPTOPIPE_OPERATOR_SPARK_DRIVER_CLUSTER_ROLE"] == driver_role
        binds = {json.dumps(r, sort_keys=True) for r in rbac_rules(docs) if {"bind", "escalate"} & set(r["verbs"])}
        only = {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"]}
        assert binds == {json.dumps(only | {"resourceNames": [driver_role]}, sort_keys=True)}, f"{values.name}: {binds}"
        # none of the driver's rights but reading Services (the ingestion metrics Service is a child)
        overlap = granted(spark_driver_role(docs)["rules"]) & have
        assert overlap == {("", "services", "get")}, f"{values.name}: the operator holds {sorted(overlap)}"
        assert not any(resource in ("pods", "configmaps", "persistentvolumeclaims") for _, resource, _ in have)
        for child in render_children(_example_pipeline(), 1, spark_driver_role=driver_role):
            group = child["apiVersion"].rpartition("/")[0]
            plural = PLURALS[child["kind"]]
            for verb in ("get", "create", "patch"):
                assert (group, plural, verb) in have, f"{values.name}: {verb} {plural}.{group}"
        # the optional children a spec may turn off (the lake monitor, the NetworkPolicies) and the
        # Spark driver's old Role and RoleBinding are deleted by the operator
        without_optional = _example_pipeline()
        update = {"monitor": MonitorSpec(), "network_policy": NetworkPolicySpec(enabled=False)}
        without_optional = dataclasses.replace(without_optional, spec=without_optional.spec.model_copy(update=update))
        unwanted = unwanted_children(without_optional)
        assert {ref.kind for ref in unwanted} == {"Deployment", "NetworkPolicy", "Role", "RoleBinding"}
        for ref in unwanted:
            group = ref.api_version.rpartition("/")[0]
            assert (group, PLURALS[ref.kind], "delete") in have, f"{values.name}: delete {PLURALS[ref.kind]}.{group}"
        for triple in [("cryptopipeline.io", "cryptopipelines", v) for v in ("get", "list", "watch", "patch")] + [
            ("cryptopipeline.io", "cryptopipelines/status", "patch"),
            ("", "events", "create"),
        ]:
            assert triple in have, f"{values.name}: {triple}"
    # PersistentVolumeClaims for the drivers only when asked for
    docs = template(helm, "--set", "rbac.sparkDriver.persistentVolumeClaims=true")
    assert ("", "persistentvolumeclaims", "create") in granted(spark_driver_role(docs)["rules"])
    assert not any(r == "persistentvolumeclaims" for _, r, _ in granted(spark_driver_role(template(helm))["rules"]))


def test_validate_values_lists_every_problem_at_once(helm: Path) -> None:
    result = run_helm(
        helm,
        "template",
        "rel",
        str(CHART),
        "--set",
        "serviceAccount.create=false",
        "--set",
        "metrics.enabled=false",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "serviceMonitor.scrapeTimeout=60s",
        "--set-json",
        'operator.extraEnv=[{"name":"S3_SECRET_KEY","value":"x"}]',
        check=False,
    )
    assert result.returncode != 0
    assert "(4 problems)" in result.stderr, result.stderr
    for field in ("serviceAccount.name", "serviceMonitor.enabled", "serviceMonitor.scrapeTimeout", "operator.extraEnv"):
        assert f"- {field}:" in result.stderr, result.stderr


def test_two_replicas_roll_with_a_lease_only_they_may_use(helm: Path) -> None:
    """Issue 11, point 14: replicaCount 2 is allowed with leader election (RollingUpdate; both pods
    are told the Lease; a Role on that one Lease in the release's namespace), refused without."""
    docs = template(helm, "--set", "replicaCount=2", "--namespace", "ops")
    (deployment,) = of_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = {e["name"]: e.get("value") for e in operator_container(docs)["env"]}
    assert env["CRYPTOPIPE_OPERATOR_LEASE_NAME"] == "cryptopipe-operator"
    assert env["CRYPTOPIPE_OPERATOR_LEASE_NAMESPACE"] == "ops"
    (role,) = [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")]
    assert role["metadata"]["namespace"] == "ops"
    assert granted(role["rules"]) == {
        *(("coordination.k8s.io", "leases", verb) for verb in ("create", "get", "update")),
        ("rbac.authorization.k8s.io", "roles", "get"),  # itself, the Lease's owner
    }
    named = [rule for rule in role["rules"] if "get" in rule["verbs"]]
    assert [rule["resourceNames"] for rule in named] == [["cryptopipe-operator"], [role["metadata"]["name"]]]
    # the Lease the operator makes is owned by this Role: helm uninstall deletes both
    assert env["CRYPTOPIPE_OPERATOR_LEASE_OWNER_ROLE"] == role["metadata"]["name"]
    (binding,) = [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"].endswith("-leader-election")]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]

    refused = run_helm(
        helm,
        "template",
        "rel",
        str(CHART),
        "--set",
        "replicaCount=2",
        "--set",
        "leaderElection.enabled=false",
        check=False,
    )
    assert refused.returncode != 0 and "replicaCount: 2 needs leaderElection.enabled" in refused.stderr
    (single,) = of_kind(template(helm, "--set", "leaderElection.enabled=false"), "Deployment")
    assert single["spec"]["strategy"]["type"] == "Recreate"


def test_validate_values_port_clash(helm: Path) -> None:
    result = run_helm(helm, "template", "rel", str(CHART), "--set", "metrics.port=8080", check=False)
    assert result.returncode != 0 and "metrics.port: 8080 is also operator.healthPort" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "replicaCount=two"], "/replicaCount"),
        (["--set-string", "metrics.port=9090"], "/metrics/port"),
        (["--set", "rbac.create=maybe"], "/rbac/create"),
        (["--set", "replicaCount=-1"], "/replicaCount"),
        (["--set-json", 'watchNamespaces=["Not_A_Namespace"]'], "/watchNamespaces/0"),
        (["--set", "imagePullPolicy=Always"], "imagePullPolicy"),  # unknown top-level key
    ],
    ids=["int-as-string", "port-as-string", "bool-as-string", "negative-replicas", "bad-namespace", "unknown-key"],
)
def test_values_schema_rejects(helm: Path, args: list[str], message: str) -> None:
    result = run_helm(helm, "template", "rel", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert "don't meet the specifications of the schema" in result.stderr and message in result.stderr, result.stderr


def _declared_with_comments(path: Path) -> dict[str, bool]:
    """Every key path in a values file -> whether a comment block sits directly above it."""
    found: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []
    previous = ""
    for line in path.read_text().splitlines():
        match = re.match(r"^(\s*)([A-Za-z][\w]*):", line)
        if match:
            indent, key = len(match.group(1)), match.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            dotted = ".".join([k for _, k in stack] + [key])
            found[dotted] = previous.lstrip().startswith("#")
            stack.append((indent, key))
        if line.strip():
            previous = line
    return found


def test_every_value_is_documented_and_in_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    comments = _declared_with_comments(CHART / "values.yaml")
    problems: list[str] = []

    def walk(node: Any, sub: dict[str, Any], path: str) -> None:
        props = sub.get("properties", {})
        for key, value in node.items():
            dotted = f"{path}.{key}" if path else key
            if key not in props:
                problems.append(f"{dotted}: not in values.schema.json")
                continue
            if "description" not in props[key] and "$ref" not in props[key]:
                problems.append(f"{dotted}: no description in the schema")
            nested = isinstance(value, dict) and props[key].get("additionalProperties") is False
            if nested:
                walk(value, props[key], dotted)
            elif not comments.get(dotted):
                problems.append(f"{dotted}: no comment where values.yaml declares it")

    walk(values, schema, "")
    assert not problems, "\n".join(problems)


# --- install into the real API server ------------------------------------------------------------


@pytest.fixture
def release(kube: KubeControlPlane, helm: Path) -> Iterator[tuple[str, list[str]]]:
    """A release name; every install made under it is uninstalled afterwards (ClusterRoles are
    cluster-scoped and the API server is shared by the session). The CRD stays, as helm leaves it."""
    name = f"cpo-{next(_release_counter)}"
    namespaces: list[str] = []
    yield name, namespaces
    for namespace in namespaces:
        run_helm(helm, "uninstall", name, "-n", namespace, "--wait", env=kube.env(), check=False)


def _install(kube: KubeControlPlane, helm: Path, release: tuple[str, list[str]], namespace: str, *args: str) -> str:
    name, namespaces = release
    namespaces.append(namespace)
    result = run_helm(helm, "install", name, str(CHART), "-n", namespace, *args, env=kube.env())
    assert "STATUS: deployed" in result.stdout
    assert "Check that the install works" in result.stdout  # NOTES.txt
    return result.stdout


def _apply_as(kube: KubeControlPlane, kubeconfig: Path, *objects: dict[str, Any]) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    kube.kubectl(
        "apply",
        "--server-side",
        "--field-manager=cryptopipe-operator",
        "-f",
        "-",
        input=json.dumps(doc),
        kubeconfig=kubeconfig,
    )


def test_helm_install_creates_crd_serviceaccount_rbac_and_the_rbac_suffices(
    kube: KubeControlPlane, helm: Path, kube_namespace: str, release: tuple[str, list[str]]
) -> None:
    name, _ = release
    _install(kube, helm, release, kube_namespace)
    fullname = f"{name}-cryptopipe-operator"

    crd = kube.get_json("crd", CRD_NAME)
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
    kube.get_json("serviceaccount", fullname, "-n", kube_namespace)
    kube.get_json("deployment", fullname, "-n", kube_namespace)
    kube.get_json("service", f"{fullname}-metrics", "-n", kube_namespace)
    for kind in ("clusterrole", "clusterrolebinding"):
        kube.get_json(kind, fullname)
        kube.get_json(kind, f"{fullname}-crd-observer")
    stored_rules = kube.get_json("clusterrole", fullname)["rules"]
    assert not any("*" in item for rule in stored_rules for v in rule.values() for item in v)

    # as the chart's ServiceAccount, nothing more: what the operator does to a CryptoPipeline
    sa = kube.service_account_kubeconfig(fullname, kube_namespace)
    pipeline_ns = f"{kube_namespace}-p"[:63]
    kube.ensure_namespace(pipeline_ns)
    try:
        body = yaml.safe_load((MANIFESTS / "examples" / "cryptopipeline-full.yaml").read_text())
        body["metadata"]["namespace"] = pipeline_ns
        kube.apply(body)  # as a user would (admin)
        stored = kube.get_json("cryptopipeline", "majors", "-n", pipeline_ns, kubeconfig=sa)
        assert kube.get_json("cryptopipelines", "--all-namespaces", kubeconfig=sa)["items"]
        # every child, the Spark driver Role included (the API server refuses to let the operator
        # grant what it does not hold)
        driver_role = f"{fullname}-spark-driver"
        _apply_as(kube, sa, *render_children(parse_pipeline(stored), 1, spark_driver_role=driver_role))
        kube.get_json("rolebinding", "majors-spark-driver", "-n", pipeline_ns, kubeconfig=sa)
        kube.get_json("sparkapplication", "majors-candles", "-n", pipeline_ns, kubeconfig=sa)
        # a status write without reading it first, as the operator does (kubectl patch would GET
        # the subresource, a verb the operator does not hold)
        status = {"phase": "Pending", "observedGeneration": 1}
        kube.kubectl(
            "apply",
            "--server-side",
            "--field-manager=cryptopipe-operator",
            "--subresource=status",
            "-f",
            "-",
            input=json.dumps(
                {
                    **{k: stored[k] for k in ("apiVersion", "kind")},
                    "metadata": {"name": "majors", "namespace": pipeline_ns},
                    "status": status,
                }
            ),
            kubeconfig=sa,
        )
        kube.kubectl(
            "patch",
            "cryptopipeline",
            "majors",
            "-n",
            pipeline_ns,
            "--type=merge",
            "-p",
            json.dumps({"metadata": {"finalizers": ["kopf.zalando.org/KopfFinalizerMarker"]}}),
            kubeconfig=sa,
        )
        kube.kubectl(
            "create",
            "-n",
            pipeline_ns,
            "-f",
            "-",
            kubeconfig=sa,
            input=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"generateName": "majors-"},
                    "involvedObject": {
                        "apiVersion": "cryptopipeline.io/v1alpha1",
                        "kind": "CryptoPipeline",
                        "name": "majors",
                        "namespace": pipeline_ns,
                        "uid": stored["metadata"]["uid"],
                    },
                    "reason": "Applied",
                    "message": "children applied",
                    "type": "Normal",
                }
            ),
        )
        # no Secrets by default (rbac.readSinkSecrets: false)
        answer = kube.kubectl("auth", "can-i", "get", "secrets", "-n", pipeline_ns, kubeconfig=sa, check=False)
        assert answer.stdout.strip() == "no", f"get secrets: {answer.stdout}"
        # deployments it may delete: the lake monitor, when spec.monitor turns it off
        answer = kube.kubectl(
            "auth", "can-i", "delete", "deployments.apps", "-n", pipeline_ns, kubeconfig=sa, check=False
        )
        assert answer.stdout.strip() == "yes", f"delete deployments: {answer.stdout}"
        # and the candle job: deletionPolicy Delete stops it before it touches the lake
        answer = kube.kubectl(
            "auth",
            "can-i",
            "delete",
            "sparkapplications.sparkoperator.k8s.io",
            "-n",
            pipeline_ns,
            kubeconfig=sa,
            check=False,
        )
        assert answer.stdout.strip() == "yes", f"delete sparkapplications: {answer.stdout}"
        # and no more than that (the other children go by garbage collection, not by the operator)
        for verb, resource in (
            ("create", "clusterroles"),
            ("get", "nodes"),
            ("list", "secrets"),
            ("watch", "secrets"),
            ("create", "namespaces"),
            ("delete", "kafkatopics.kafka.strimzi.io"),
        ):
            answer = kube.kubectl("auth", "can-i", verb, resource, "-n", pipeline_ns, kubeconfig=sa, check=False)
            assert answer.stdout.strip() == "no", f"{verb} {resource}: {answer.stdout}"
    finally:
        kube.kubectl(
            "patch",
            "cryptopipeline",
            "majors",
            "-n",
            pipeline_ns,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
        kube.kubectl("delete", "namespace", pipeline_ns, "--wait=false", check=False)


def test_namespaced_install_is_confined_to_its_namespaces(
    kube: KubeControlPlane, helm: Path, kube_namespace: str, release: tuple[str, list[str]]
) -> None:
    name, _ = release
    watched, other = f"{kube_namespace}-w"[:63], f"{kube_namespace}-o"[:63]
    for ns in (watched, other):
        kube.ensure_namespace(ns)
    try:
        _install(kube, helm, release, kube_namespace, "--set-json", f'watchNamespaces=["{watched}"]')
        fullname = f"{name}-cryptopipe-operator"
        kube.get_json("role", fullname, "-n", watched)
        kube.get_json("rolebinding", fullname, "-n", watched)
        sa = kube.service_account_kubeconfig(fullname, kube_namespace)
        for ns, expected in ((watched, "yes"), (other, "no")):
            for verb, resource in (
                ("create", "sparkapplications.sparkoperator.k8s.io"),
                ("watch", "cryptopipelines.cryptopipeline.io"),
            ):
                answer = kube.kubectl("auth", "can-i", verb, resource, "-n", ns, kubeconfig=sa, check=False)
                assert answer.stdout.strip() == expected, f"{verb} {resource} in {ns}"
    finally:
        for ns in (watched, other):
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_invalid_values_fail_the_install_before_anything_is_created(
    kube: KubeControlPlane, helm: Path, kube_namespace: str, release: tuple[str, list[str]]
) -> None:
    name, _ = release
    result = run_helm(
        helm,
        "install",
        name,
        str(CHART),
        "-n",
        kube_namespace,
        "--set",
        "serviceAccount.create=false",
        "--set",
        "metrics.port=8080",
        env=kube.env(),
        check=False,
    )
    assert result.returncode != 0 and "(2 problems)" in result.stderr, result.stderr
    assert run_helm(helm, "status", name, "-n", kube_namespace, env=kube.env(), check=False).returncode != 0


# --- example manifests ---------------------------------------------------------------------------


def test_example_manifests_are_accepted_by_the_api_server(kube: KubeControlPlane, kube_namespace: str) -> None:
    kube.install_crds([CRD_PATH])  # idempotent; the install test may not have run
    files = [*EXAMPLES, MANIFESTS / "minio-credentials-secret.example.yaml"]
    assert len(EXAMPLES) >= 2
    for path in files:
        kube.kubectl("apply", "--dry-run=server", "--server-side", "-n", kube_namespace, "-f", str(path))
    # and a broken copy is not (the schema is really applied)
    broken = yaml.safe_load((MANIFESTS / "examples" / "cryptopipeline-minimal.yaml").read_text())
    broken["spec"]["windows"] = ["2m"]
    with pytest.raises(KubectlError, match="spec.windows"):
        kube.kubectl(
            "apply", "--dry-run=server", "--server-side", "-n", kube_namespace, "-f", "-", input=json.dumps(broken)
        )


def test_example_secret_never_replaces_the_real_one(kube: KubeControlPlane, kube_namespace: str) -> None:
    """Issue 11, point 15: applying the example Secret (or the manifests/ folder) next to the real sink
    Secret the example CryptoPipelines name leaves the real one as it is."""
    ns = kube_namespace
    real = {"accessKey": "real-user", "secretKey": "real-secret"}
    literals = [f"--from-literal={key}={value}" for key, value in real.items()]
    kube.kubectl("create", "secret", "generic", "minio-credentials", "-n", ns, *literals)
    for how in (["apply"], ["apply", "--server-side", "--force-conflicts"]):
        kube.kubectl(*how, "-n", ns, "-f", str(MANIFESTS / "minio-credentials-secret.example.yaml"))
    stored = kube.get_json("secret", "minio-credentials", "-n", ns)["data"]
    assert {key: base64.b64decode(value).decode() for key, value in stored.items()} == real
    referenced = {yaml.safe_load(p.read_text())["spec"]["sink"]["credentialsSecretRef"]["name"] for p in EXAMPLES}
    example = yaml.safe_load((MANIFESTS / "minio-credentials-secret.example.yaml").read_text())
    assert example["metadata"]["name"] not in referenced


def test_kafka_manifests_are_kraft_node_pools_for_the_examples_cluster() -> None:
    cluster_names = {yaml.safe_load(p.read_text())["spec"]["kafka"]["clusterName"] for p in EXAMPLES}
    for path in sorted((MANIFESTS / "kafka").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        (kafka,) = of_kind(docs, "Kafka")
        pools = of_kind(docs, "KafkaNodePool")
        assert kafka["apiVersion"] == "kafka.strimzi.io/v1" and "zookeeper" not in kafka["spec"]
        assert {kafka["metadata"]["name"]} == cluster_names, path.name
        roles = {role for pool in pools for role in pool["spec"]["roles"]}
        assert roles == {"controller", "broker"}, path.name
        for pool in pools:
            assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        listeners = {(lst["port"], lst["tls"]) for lst in kafka["spec"]["kafka"]["listeners"]}
        assert (9092, False) in listeners, "CryptoPipelines default to CLUSTER-kafka-bootstrap:9092"
        assert "topicOperator" in kafka["spec"]["entityOperator"]


def test_dependency_values_files_are_documented() -> None:
    doc = (REPO / "docs" / "dependencies.md").read_text()
    for path in sorted((REPO / "charts" / "dependencies").glob("*.yaml")):
        yaml.safe_load(path.read_text())
        assert f"charts/dependencies/{path.name}" in doc
    for pinned in ("--version 0.51.0", "--version 2.5.2", "--version 5.4.0", "kube-prometheus-stack --version"):
        assert pinned in doc


# --- the cluster dev loop: Dockerfiles, skaffold, kind -------------------------------------------


def _final_stage(dockerfile: Path) -> list[str]:
    lines = re.sub(r"\\\n", " ", dockerfile.read_text()).splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    return [line for line in lines[starts[-1] :] if line.strip() and not line.startswith("#")]


def _instruction(stage: list[str], name: str) -> Any:
    (line,) = [line for line in stage if line.startswith(f"{name} ")][-1:]
    value = line[len(name) + 1 :].strip()
    return json.loads(value) if value.startswith("[") else value


def _user(stage: list[str]) -> int:
    uid = _instruction(stage, "USER").split(":")[0]
    assert uid.isdigit(), "numeric USER: runAsNonRoot can only verify a numeric id"
    return int(uid)


def test_operator_image_runs_the_operator_entry_point(helm: Path) -> None:
    stage = _final_stage(DOCKER / "operator.Dockerfile")
    assert _instruction(stage, "ENTRYPOINT") == OPERATOR_COMMAND == operator_container(template(helm))["command"]
    assert (
        _user(stage)
        == template(helm, "--show-only", "templates/deployment.yaml")[0]["spec"]["template"]["spec"]["securityContext"][
            "runAsUser"
        ]
    )


def test_ingestion_image_runs_what_the_deployment_runs() -> None:
    stage = _final_stage(DOCKER / "ingestion.Dockerfile")
    assert _instruction(stage, "ENTRYPOINT") == INGEST_COMMAND == ["python", "-m", "cryptopipe.ingest"]
    assert _user(stage) == INGEST_UID
    assert f"CRYPTOPIPE_INGEST_HTTP_PORT={INGEST_HTTP_PORT}" in " ".join(stage)
    assert str(INGEST_HTTP_PORT) in _instruction(stage, "EXPOSE").split()


def _stage(dockerfile: Path, name: str) -> list[str]:
    """The lines of the build stage ``FROM ... AS name``."""
    lines = [line for line in re.sub(r"\\\n", " ", dockerfile.read_text()).splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    (start,) = [i for i in starts if [w.upper() for w in lines[i].split()[-2:]] == ["AS", name.upper()]]
    end = next((i for i in starts if i > start), len(lines))
    return [line for line in lines[start:end] if not line.startswith("#")]


def test_spark_image_holds_spark_the_job_and_the_connector_jars() -> None:
    dockerfile = DOCKER / "spark-job.Dockerfile"
    text = dockerfile.read_text()
    # Spark is the pyspark wheel at the version the project pins, with the connector jars in its jars/
    pinned = next(
        d for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["spark-job"]
    )
    assert pinned == "pyspark==4.1.3"
    assert re.search(r"^ARG SPARK_VERSION=4\.1\.3$", text, re.M)
    assert '"pyspark==${SPARK_VERSION}"' in text
    assert "COPY spark-jars/ /jars/" in text and "cp /jars/*.jar" in text
    assert (
        "<spark.version>4.1.3</spark.version>" in (REPO / "scripts" / "maven" / "spark-connectors.pom.xml").read_text()
    )
    # the project's own entrypoint (driver/executor as spark-operator starts them), as a non-root user
    spark = _stage(dockerfile, "spark")
    assert _instruction(spark, "ENTRYPOINT") == ["/opt/entrypoint.sh"]
    assert "COPY docker/spark/entrypoint.sh /opt/entrypoint.sh" in spark
    assert (REPO / "docker" / "spark" / "entrypoint.sh").is_file()
    # the SparkApplication's mainApplicationFile is in the image, at the path it names
    stage = _final_stage(dockerfile)
    assert MAIN_APPLICATION_FILE == "local:///opt/cryptopipe/spark-apps/candles_job/main.py"
    assert "COPY spark-apps/ /opt/cryptopipe/spark-apps/" in stage
    assert (REPO / "spark-apps" / "candles_job" / "main.py").is_file()
    assert "/opt/cryptopipe/spark-apps/candles_job/main.py" in _instruction(stage, "CMD")
    assert _user(stage) != 0


def test_skaffold_builds_the_three_images_and_deploys_the_chart() -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    assert config["apiVersion"].startswith("skaffold/v4") and config["kind"] == "Config"
    dockerfiles = {a["docker"]["dockerfile"] for a in config["build"]["artifacts"]}
    assert dockerfiles == {"docker/operator.Dockerfile", "docker/ingestion.Dockerfile", "docker/spark-job.Dockerfile"}
    for path in dockerfiles:
        assert (REPO / path).is_file()
    (helm_release,) = config["deploy"]["helm"]["releases"]
    assert (REPO / helm_release["chartPath"]) == CHART
    assert helm_release["setValueTemplates"]["image.repository"] == "{{.IMAGE_REPO_cryptopipe_operator}}"
    kind_images = {
        yaml.safe_load((MANIFESTS / "examples" / "cryptopipeline-kind.yaml").read_text())["spec"][part]["image"]
        for part in ("ingestion", "spark")
    }
    assert kind_images == {"cryptopipe-ingestion:dev", "cryptopipe-spark-job:dev"}
    assert {a["image"] for a in config["build"]["artifacts"]} >= {i.split(":")[0] for i in kind_images}


def test_kind_loop_files() -> None:
    kind = yaml.safe_load((REPO / "deploy" / "kind-config.yaml").read_text())
    assert kind["kind"] == "Cluster" and kind["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    subprocess.run(["bash", "-n", str(REPO / "scripts" / "kind-up.sh")], check=True)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^kind-up:", makefile, re.M) and "scripts/kind-up.sh" in makefile


# --- least privilege and tenant safety (issue 11, points 11 and 12) ------------------------------


def _can_i(
    kube: KubeControlPlane, verb: str, resource: str, namespace: str, *, kubeconfig: Path | None = None, user: str = ""
) -> bool:
    """``kubectl auth can-i`` against the real API server (its authorizer, not a reading of rules)."""
    args = ["auth", "can-i", verb, resource, "-n", namespace, *([f"--as={user}"] if user else [])]
    answer = kube.kubectl(*args, kubeconfig=kubeconfig, check=False)
    assert answer.stdout.strip() in ("yes", "no"), answer
    return answer.stdout.strip() == "yes"


def test_default_install_operator_only_binds_the_spark_driver_role(
    kube: KubeControlPlane, helm: Path, kube_namespace: str, release: tuple[str, list[str]]
) -> None:
    """The operator's ServiceAccount under the default values: no pods, no Secrets, no ConfigMaps or
    PVCs, no binding of any ClusterRole but the chart's Spark driver one; the driver's rights come
    from that ClusterRole, bound in the pipeline's namespace only, and hold no PVCs or Secrets."""
    name, _ = release
    _install(kube, helm, release, kube_namespace)
    fullname = f"{name}-cryptopipe-operator"
    driver_role = f"{fullname}-spark-driver"
    kube.get_json("clusterrole", driver_role)
    sa = kube.service_account_kubeconfig(fullname, kube_namespace)
    pipeline_ns = f"{kube_namespace}-d"[:63]
    kube.ensure_namespace(pipeline_ns)
    try:
        for ns in (pipeline_ns, "kube-system"):
            for verb, resource in (
                ("create", "pods"),
                ("patch", "pods"),
                ("update", "pods"),
                ("delete", "pods"),
                ("create", "pods/exec"),
                ("get", "secrets"),
                ("list", "secrets"),
                ("create", "configmaps"),
                ("create", "persistentvolumeclaims"),
                ("delete", "persistentvolumeclaims"),
                ("create", "roles.rbac.authorization.k8s.io"),
                ("patch", "roles.rbac.authorization.k8s.io"),
                ("escalate", "roles.rbac.authorization.k8s.io"),
                ("bind", "roles.rbac.authorization.k8s.io"),
                ("bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin"),
                ("bind", "clusterroles.rbac.authorization.k8s.io/admin"),
                ("bind", "clusterroles.rbac.authorization.k8s.io/edit"),
                ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
                ("list", "deployments.apps"),
                ("watch", "services"),
                ("delete", "services"),
            ):
                assert not _can_i(kube, verb, resource, ns, kubeconfig=sa), f"{verb} {resource} in {ns}"
        assert _can_i(kube, "bind", f"clusterroles.rbac.authorization.k8s.io/{driver_role}", pipeline_ns, kubeconfig=sa)

        # the children as the operator applies them, as its ServiceAccount: the driver's RoleBinding
        # to the ClusterRole is accepted although the operator holds none of its rights
        body = yaml.safe_load((MANIFESTS / "examples" / "cryptopipeline-full.yaml").read_text())
        body["metadata"]["namespace"] = pipeline_ns
        kube.apply(body)
        stored = kube.get_json("cryptopipeline", "majors", "-n", pipeline_ns)
        _apply_as(kube, sa, *render_children(parse_pipeline(stored), 1, spark_driver_role=driver_role))
        binding = kube.get_json("rolebinding", "majors-spark-driver", "-n", pipeline_ns)
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": driver_role,
        }
        # and a binding to any other ClusterRole is refused
        other = render_children(parse_pipeline(stored), 1, spark_driver_role="edit")
        with pytest.raises(KubectlError, match="forbidden"):
            _apply_as(kube, sa, *[c for c in other if c["kind"] == "RoleBinding"])

        driver = f"system:serviceaccount:{pipeline_ns}:majors-spark"
        for verb, resource in (
            ("create", "pods"),
            ("watch", "pods"),
            ("delete", "pods"),
            ("deletecollection", "pods"),
            ("create", "configmaps"),
            ("deletecollection", "services"),
        ):
            assert _can_i(kube, verb, resource, pipeline_ns, user=driver), f"driver: {verb} {resource}"
        for verb, resource, ns in (
            ("create", "persistentvolumeclaims", pipeline_ns),
            ("delete", "persistentvolumeclaims", pipeline_ns),
            ("get", "secrets", pipeline_ns),
            ("patch", "pods", pipeline_ns),
            ("create", "services", pipeline_ns),
            ("create", "pods", kube_namespace),  # the namespace only, not the cluster
        ):
            assert not _can_i(kube, verb, resource, ns, user=driver), f"driver: {verb} {resource} in {ns}"
    finally:
        kube.kubectl("delete", "namespace", pipeline_ns, "--wait=false", check=False)


def _eventually(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout:g}s: {what}") from None
            time.sleep(0.5)


def _sink_pipeline(name: str, namespace: str, secret: str) -> dict[str, Any]:
    body = yaml.safe_load((MANIFESTS / "examples" / "cryptopipeline-minimal.yaml").read_text())
    body["metadata"] = {"name": name, "namespace": namespace}
    body["spec"]["sink"]["credentialsSecretRef"] = {"name": secret}
    return body


def _create(kube: KubeControlPlane, body: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return kube.kubectl("create", *extra, "-f", "-", input=json.dumps(body), check=False)


def test_tenants_get_pipeline_rights_and_only_opted_in_secrets_as_sink_credentials(
    kube: KubeControlPlane, helm: Path, kube_namespace: str, release: tuple[str, list[str]]
) -> None:
    """Namespace editors may manage CryptoPipelines and viewers read them (the aggregated
    cryptopipeline-edit/-view ClusterRoles); a CryptoPipeline may name as sink credentials only a
    Secret labelled cryptopipeline.io/sink-credentials=true (the chart's admission policy)."""
    name, _ = release
    _install(kube, helm, release, kube_namespace)
    ns = f"{kube_namespace}-t"[:63]
    kube.ensure_namespace(ns)
    try:
        for user, role in (("alice", "edit"), ("bob", "view")):
            kube.kubectl("create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}", "-n", ns)

        def aggregated() -> None:
            for verb in ("create", "update", "patch", "delete", "get", "list", "watch"):
                assert _can_i(kube, verb, "cryptopipelines.cryptopipeline.io", ns, user="alice"), f"editor: {verb}"
            for verb in ("get", "list", "watch"):
                assert _can_i(kube, verb, "cryptopipelines.cryptopipeline.io", ns, user="bob"), f"viewer: {verb}"
            for verb in ("create", "patch", "delete"):
                assert not _can_i(kube, verb, "cryptopipelines.cryptopipeline.io", ns, user="bob"), f"viewer: {verb}"

        _eventually(aggregated, "edit and view aggregate the CryptoPipeline rights")

        kube.kubectl("create", "secret", "generic", "kafka-cluster-ca", "--from-literal=ca.key=k", "-n", ns)
        kube.kubectl("create", "secret", "generic", "lake-keys", "--from-literal=accessKey=a", "-n", ns)
        kube.kubectl("label", "secret", "lake-keys", "cryptopipeline.io/sink-credentials=true", "-n", ns)

        def refused() -> None:
            result = _create(kube, _sink_pipeline("steal", ns, "kafka-cluster-ca"), "--dry-run=server")
            assert result.returncode != 0 and "has not opted in" in result.stderr, result.stderr

        # the API server picks a new policy up within a second or so
        _eventually(refused, "a pipeline naming a Secret without the opt-in is refused")
        result = _create(kube, _sink_pipeline("steal", ns, "kafka-cluster-ca"))
        assert result.returncode != 0 and "cryptopipeline.io/sink-credentials=true" in result.stderr, result.stderr
        # an editor is refused the same way
        result = _create(kube, _sink_pipeline("steal", ns, "kafka-cluster-ca"), "--as=alice")
        assert result.returncode != 0 and "has not opted in" in result.stderr, result.stderr
        # the labelled Secret (and one that does not exist yet) may be used
        for pipeline_name, secret in (("lake", "lake-keys"), ("later", "not-yet-created")):
            result = _create(kube, _sink_pipeline(pipeline_name, ns, secret), "--as=alice")
            assert result.returncode == 0, result.stderr
        # switching an existing pipeline to the unlabelled Secret is refused too
        patch = json.dumps({"spec": {"sink": {"credentialsSecretRef": {"name": "kafka-cluster-ca"}}}})
        result = kube.kubectl("patch", "cryptopipeline", "lake", "-n", ns, "--type=merge", "-p", patch, check=False)
        assert result.returncode != 0 and "has not opted in" in result.stderr, result.stderr
        # a Secret that loses its label later does not block the pipeline's other updates (the
        # operator's finalizer and annotation patches, its deletion)
        kube.kubectl("label", "secret", "lake-keys", "cryptopipeline.io/sink-credentials-", "-n", ns)
        kube.kubectl("annotate", "cryptopipeline", "lake", "-n", ns, "example.com/touched=yes")
        kube.kubectl("delete", "cryptopipeline", "lake", "later", "-n", ns, "--timeout=30s")
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _kafka_auth_pipeline(name: str, namespace: str, password_secret: str, ca_secret: str) -> dict[str, Any]:
    body = _sink_pipeline(name, namespace, "lake-keys")
    body["spec"]["kafka"]["tls"] = {"caSecretRef": {"name": ca_secret}}
    body["spec"]["kafka"]["authentication"] = {"username": name, "passwordSecretRef": {"name": password_secret}}
    return body


def test_only_opted_in_secrets_as_kafka_password_or_ca(
    kube: KubeControlPlane, helm: Path, kube_namespace: str, release: tuple[str, list[str]]
) -> None:
    """A CryptoPipeline may name as its Kafka password or cluster CA only a Secret labelled
    cryptopipeline.io/kafka-credentials=true (the chart's second admission policy); the sink's
    label does not count for Kafka."""
    _install(kube, helm, release, kube_namespace)
    ns = f"{kube_namespace}-k"[:63]
    kube.ensure_namespace(ns)
    label = "cryptopipeline.io/kafka-credentials=true"
    try:
        kube.kubectl("create", "secret", "generic", "lake-keys", "--from-literal=accessKey=a", "-n", ns)
        kube.kubectl("label", "secret", "lake-keys", "cryptopipeline.io/sink-credentials=true", "-n", ns)
        for secret in ("cluster-ca-key", "cluster-ca-cert", "ingest-user"):
            kube.kubectl("create", "secret", "generic", secret, "--from-literal=ca.crt=c", "-n", ns)
        for secret in ("cluster-ca-cert", "ingest-user"):
            kube.kubectl("label", "secret", secret, label, "-n", ns)

        def refused() -> None:
            body = _kafka_auth_pipeline("steal", ns, "ingest-user", "cluster-ca-key")
            result = _create(kube, body, "--dry-run=server")
            assert result.returncode != 0 and "cluster-ca-key has not opted in" in result.stderr, result.stderr

        _eventually(refused, "a pipeline naming an unlabelled Secret as its Kafka CA is refused")
        # as the password, and the sink's label is not the Kafka one
        result = _create(kube, _kafka_auth_pipeline("steal", ns, "lake-keys", "cluster-ca-cert"))
        assert result.returncode != 0 and label in result.stderr, result.stderr
        result = _create(kube, _kafka_auth_pipeline("ok", ns, "ingest-user", "cluster-ca-cert"))
        assert result.returncode == 0, result.stderr
        # switching the existing pipeline's CA to the unlabelled Secret is refused too
        patch = json.dumps({"spec": {"kafka": {"tls": {"caSecretRef": {"name": "cluster-ca-key"}}}}})
        result = kube.kubectl("patch", "cryptopipeline", "ok", "-n", ns, "--type=merge", "-p", patch, check=False)
        assert result.returncode != 0 and "has not opted in" in result.stderr, result.stderr
        # a label removed later does not block the operator's own patches
        kube.kubectl("label", "secret", "ingest-user", "cryptopipeline.io/kafka-credentials-", "-n", ns)
        kube.kubectl("annotate", "cryptopipeline", "ok", "-n", ns, "example.com/touched=yes")
        kube.kubectl("delete", "cryptopipeline", "ok", "-n", ns, "--timeout=30s")
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
