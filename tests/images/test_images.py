"""The images scripts/build-images.sh builds (`make images`), checked without a cluster: each exists
under a version tag, runs as a numeric non-root user, holds no dev or test library, and its entry
point starts.

The module's fixture runs the build script first (idempotent: with its stamps current it only
checks the images are there), against the Docker daemon the script finds or starts; a private
dockerd it had to start is stopped again at the end.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_packaging import DEV_ONLY

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build-images.sh"
# a cold build of every image takes ~25 min on 2 busy cores (docs/cluster.md)
pytestmark = [pytest.mark.images, pytest.mark.timeout(3600)]

# the images with the project's Python venv (/opt/venv), whose `pip list` is checked
PYTHON_IMAGES = ["operator", "ingestion", "spark", "spark-job", "spark-operator", "dev-replay"]
# what a dev tooling image may hold of DEV_ONLY (its extra: tests/unit/test_packaging.py DEV_IMAGES)
ALLOWED_DEV = {"dev-replay": {"zstandard"}}


def _images() -> dict[str, str]:
    out = subprocess.run([BUILD, "--list"], check=True, capture_output=True, text=True).stdout
    return dict(line.split() for line in out.splitlines())


IMAGES = _images()


@pytest.fixture(scope="module")
def docker_env() -> Iterator[dict[str, str]]:
    started = subprocess.run([BUILD, "--start-daemon"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"no Docker daemon: {started.stderr.strip()}", pytrace=False)
    host = re.search(r"^DOCKER_HOST=(.*)$", started.stdout, re.M)
    assert host, started.stdout
    env = {**os.environ, "DOCKER_HOST": host.group(1), "DOCKER_BUILDKIT": "0"}
    try:
        build = subprocess.run([BUILD, "--keep-daemon"], env=env, capture_output=True, text=True)
        if build.returncode != 0:
            pytest.fail(
                f"scripts/build-images.sh failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}", pytrace=False
            )
        yield env
    finally:
        if "starting a private dockerd" in started.stdout:
            subprocess.run([BUILD, "--stop-daemon"], env=env, check=False)


def docker(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=timeout)


# no network (the private daemon has none), and a host name that resolves, as in a pod (Docker's
# "none" network leaves it out of /etc/hosts, and the JVMs look it up)
NO_NET = ["--network", "none", "--hostname", "imagetest", "--add-host", "imagetest:127.0.0.1"]


def run(env: dict[str, str], image: str, *args: str, entrypoint: str | None = None, timeout: float = 300):
    """``docker run --rm`` without a network, as the image's user."""
    opts = ["run", "--rm", *NO_NET]
    if entrypoint is not None:
        opts += ["--entrypoint", entrypoint]
    return docker(env, *opts, image, *args, timeout=timeout)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_exists_under_a_version_tag(docker_env: dict[str, str], name: str) -> None:
    image = IMAGES[name]
    repo, tag = image.rsplit(":", 1)
    assert tag != "latest" and re.fullmatch(r"\d+\.\d+\.\d+([.+-][\w.]+)?", tag), image
    assert repo.startswith("cryptopipe-"), image
    inspected = docker(docker_env, "image", "inspect", image)
    assert inspected.returncode == 0, f"{image} is not built: {inspected.stderr}"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_runs_as_a_numeric_non_root_user(docker_env: dict[str, str], name: str) -> None:
    image = IMAGES[name]
    user = docker(docker_env, "image", "inspect", "-f", "{{.Config.User}}", image).stdout.strip()
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), f"{image}: USER {user!r} is not a numeric non-root user"
    uid = run(docker_env, image, "-u", entrypoint="id")
    assert uid.returncode == 0, uid.stderr
    assert uid.stdout.strip() != "0", f"{image} runs as root"


@pytest.mark.parametrize("name", PYTHON_IMAGES)
def test_image_holds_no_dev_or_test_library(docker_env: dict[str, str], name: str) -> None:
    image = IMAGES[name]
    listed = run(docker_env, image, "-m", "pip", "list", "--format", "json", entrypoint="python")
    assert listed.returncode == 0, listed.stderr
    installed = {re.sub(r"[-_.]+", "-", d["name"]).lower() for d in json.loads(listed.stdout)}
    assert not installed & (DEV_ONLY - ALLOWED_DEV.get(name, set())), f"{image} holds {sorted(installed & DEV_ONLY)}"
    if name in ("spark", "spark-job", "spark-operator"):
        assert "pyspark" in installed, f"{image}: Spark is not the pyspark wheel"
    if name != "dev-replay":
        # websockets: the replay server's, and the ingestion's WebSocket reader (ws_reader.py)
        replay_only = {"zstandard"} if name == "ingestion" else {"websockets", "zstandard"}
        assert not installed & replay_only, f"{image} holds the replay server's libraries"


def test_ingestion_with_a_bad_setting_exits_2_naming_it(docker_env: dict[str, str]) -> None:
    image = IMAGES["ingestion"]
    bad = docker(docker_env, "run", "--rm", *NO_NET, "-e", "CRYPTOPIPE_INGEST_FEED=carrier-pigeon", image)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "feed" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    # the lake monitor ships in the same image
    monitor = run(docker_env, image, "-c", "import cryptopipe.monitor.service", entrypoint="python")
    assert monitor.returncode == 0, monitor.stderr


def test_operator_starts_and_stops_without_a_cluster(docker_env: dict[str, str]) -> None:
    image = IMAGES["operator"]
    handlers = run(docker_env, image, "-c", "import cryptopipe_operator.handlers", entrypoint="python")
    assert handlers.returncode == 0, handlers.stderr
    # the entry point itself: it logs its start, kopf finds no cluster credentials (and would retry
    # every minute), and SIGTERM stops it
    name = f"cryptopipe-operator-test-{uuid.uuid4().hex[:8]}"
    started = docker(docker_env, "run", "-d", "--name", name, *NO_NET, image)
    assert started.returncode == 0, started.stderr
    try:
        logs = _wait_for_log(docker_env, name, "neither $KUBECONFIG nor a ServiceAccount token", 120)
        assert '"msg":"operator starting"' in logs, logs[-3000:]
        assert docker(docker_env, "stop", "-t", "30", name).returncode == 0
        logs = _wait_for_log(docker_env, name, "Operator is stopping", 30)
    finally:
        docker(docker_env, "rm", "-f", "-v", name)


def test_spark_submit_runs_in_the_spark_job_image(docker_env: dict[str, str]) -> None:
    image = IMAGES["spark-job"]
    version = run(docker_env, image, "spark-submit", "--version")
    assert version.returncode == 0, version.stderr
    assert "version 4.1.3" in version.stdout + version.stderr
    # the job itself through spark-submit (a local JVM and the job's Python, with its libraries)
    job = run(docker_env, image, timeout=300)
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
    assert "usage" in job.stdout.lower(), job.stdout[-2000:]
    jars = run(docker_env, image, "sh", "-c", "ls $SPARK_HOME/jars")
    assert "spark-sql-kafka-0-10" in jars.stdout and "hadoop-aws" in jars.stdout, jars.stdout


def test_spark_entrypoint_passes_what_spark_on_kubernetes_sets(docker_env: dict[str, str]) -> None:
    """`executor`: every SPARK_JAVA_OPT_<n> in order of n, each whole; the classpath variables; the
    backend's arguments. `driver`: spark-submit in client mode. `java` and `spark-submit` are
    replaced by scripts that print their arguments."""
    image = IMAGES["spark-job"]
    env = {
        "SPARK_JAVA_OPT_0": "-Dspark.a=1",
        "SPARK_JAVA_OPT_2": "--add-opens=java.base/java.nio=ALL-UNNAMED",
        "SPARK_JAVA_OPT_10": "-Dspark.with.space=a b",
        "SPARK_JAVA_OPT_1": "-Dspark.b=2",
        "SPARK_EXTRA_CLASSPATH": "/extra/*",
        "SPARK_CLASSPATH": "/user/*",
        "SPARK_EXECUTOR_MEMORY": "512m",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@driver:7078",
        "SPARK_EXECUTOR_ID": "3",
        "SPARK_EXECUTOR_CORES": "1",
        "SPARK_APPLICATION_ID": "spark-app-1",
        "SPARK_EXECUTOR_POD_IP": "10.0.0.7",
        "SPARK_RESOURCE_PROFILE_ID": "0",
        "SPARK_EXECUTOR_POD_NAME": "exec-3",
    }
    fake_java = (
        "mkdir -p /tmp/fakejava/bin && printf '#!/bin/sh\\nfor a; do echo \"ARG:$a\"; done\\n' > /tmp/fakejava/bin/java"
        " && chmod +x /tmp/fakejava/bin/java && JAVA_HOME=/tmp/fakejava exec /opt/entrypoint.sh executor"
    )
    env_args = [x for k, v in env.items() for x in ("-e", f"{k}={v}")]
    out = docker(docker_env, "run", "--rm", *NO_NET, *env_args, "--entrypoint", "bash", image, "-c", fake_java)
    assert out.returncode == 0, out.stderr
    args = [line[4:] for line in out.stdout.splitlines() if line.startswith("ARG:")]
    assert args[:4] == [
        "-Dspark.a=1",
        "-Dspark.b=2",
        "--add-opens=java.base/java.nio=ALL-UNNAMED",
        "-Dspark.with.space=a b",
    ]
    assert args[4:6] == ["-Xms512m", "-Xmx512m"]
    classpath = args[args.index("-cp") + 1]
    assert classpath.split(":")[-3:] == ["/user/*", "/opt/spark/jars/*", "/extra/*"], classpath
    assert "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend" in args
    for flag, value in [("--driver-url", env["SPARK_DRIVER_URL"]), ("--executor-id", "3"), ("--hostname", "10.0.0.7")]:
        assert args[args.index(flag) + 1] == value
    # `driver ARGS`: spark-submit in client mode, bound to the pod's address, ARGS as given
    fake_submit = (
        "mkdir -p /tmp/fakespark/bin && printf '#!/bin/sh\\nfor a; do echo \"ARG:$a\"; done\\n'"
        " > /tmp/fakespark/bin/spark-submit && chmod +x /tmp/fakespark/bin/spark-submit"
        ' && SPARK_HOME=/tmp/fakespark exec /opt/entrypoint.sh driver "$@"'
    )
    driver_args = ["--properties-file", "/opt/spark/conf/spark.properties", "local:///job/main.py", "--flag", "a b"]
    out = docker(
        docker_env, "run", "--rm", *NO_NET, "-e", "SPARK_DRIVER_BIND_ADDRESS=10.0.0.5", "--entrypoint", "bash",
        image, "-c", fake_submit, "bash", *driver_args,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    args = [line[4:] for line in out.stdout.splitlines() if line.startswith("ARG:")]
    assert args == [
        "--conf", "spark.driver.bindAddress=10.0.0.5",
        "--conf", "spark.executorEnv.SPARK_DRIVER_POD_IP=10.0.0.5",
        "--deploy-mode", "client",
        *driver_args,
    ], args  # fmt: skip
    # anything else is exec'd as is
    echo = run(docker_env, image, "echo", "as", "is")
    assert echo.stdout.strip() == "as is"


def test_spark_operator_holds_its_binary_and_spark_submit(docker_env: dict[str, str]) -> None:
    image = IMAGES["spark-operator"]
    helped = run(docker_env, image, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "controller" in helped.stdout and "webhook" in helped.stdout, helped.stdout
    submit = run(docker_env, image, "--version", entrypoint="spark-submit")
    assert submit.returncode == 0, submit.stderr
    assert "version 4.1.3" in submit.stdout + submit.stderr


def test_kafka_formats_its_storage_once_and_starts(docker_env: dict[str, str]) -> None:
    image = IMAGES["kafka"]
    version = run(docker_env, image, "version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip().splitlines()[-1] == image.rsplit(":", 1)[1], version.stdout
    uuid_out = run(docker_env, image, "storage", "random-uuid")
    assert uuid_out.returncode == 0, uuid_out.stderr
    assert re.fullmatch(r"[\w-]{22}", uuid_out.stdout.strip().splitlines()[-1]), uuid_out.stdout
    # a real KRaft start: format on the first start, the broker comes up; a restart does not re-format
    name = f"cryptopipe-kafka-test-{uuid.uuid4().hex[:8]}"
    started = docker(docker_env, "run", "-d", "--name", name, *NO_NET, "-e", "KAFKA_ADVERTISED_HOST=localhost", image)
    assert started.returncode == 0, started.stderr
    try:
        logs = _wait_for_log(docker_env, name, "Kafka Server started", 120)
        assert "formatting /var/lib/kafka/data" in logs
        assert docker(docker_env, "restart", "-t", "20", name).returncode == 0
        logs = _wait_for_log(docker_env, name, "Kafka Server started", 120, count=2)
        assert logs.count("formatting /var/lib/kafka/data") == 1, logs[-3000:]
    finally:
        docker(docker_env, "rm", "-f", "-v", name)


def _wait_for_log(env: dict[str, str], name: str, text: str, timeout: float, count: int = 1) -> str:
    import time

    deadline = time.monotonic() + timeout
    logs = ""
    while time.monotonic() < deadline:
        got = docker(env, "logs", name)
        logs = got.stdout + got.stderr
        if logs.count(text) >= count:
            return logs
        state = docker(env, "inspect", "-f", "{{.State.Running}}", name).stdout.strip()
        if state == "false" and count == 1:
            break
        time.sleep(1)
    pytest.fail(f"no {text!r} in {name}'s log within {timeout} s:\n{logs[-3000:]}")


def test_s3_server_runs(docker_env: dict[str, str]) -> None:
    image = IMAGES["s3"]
    version = run(docker_env, image, "--version")
    assert version.returncode == 0, version.stderr
    assert "Version" in version.stdout, version.stdout


def test_replay_server_is_the_dev_image_and_starts(docker_env: dict[str, str]) -> None:
    image = IMAGES["dev-replay"]
    assert image.startswith("cryptopipe-dev-"), image
    helped = run(docker_env, image, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "serve" in helped.stdout
    # the harness beyond the replay server is not in it
    cli = run(docker_env, image, "-c", "import cryptopipe_dev.cli", entrypoint="python")
    assert cli.returncode != 0 and "ModuleNotFoundError" in cli.stderr


def test_dev_prometheus_loads_the_chart_rules_and_a_kubernetes_discovery_config(
    docker_env: dict[str, str], helm: Path, tmp_path: Path
) -> None:
    """Prometheus built from the Go proxy (the tag is its version): its promtool loads the chart's
    alert rules and a config that discovers pods through the Kubernetes API, as every job
    prometheus-operator generates from a PodMonitor does (Debian's build fails this: it has no
    Kubernetes service discovery)."""
    from cryptopipe_dev.stack.alert_rules import render_rule_groups, write_rules_file

    image = IMAGES["dev-prometheus"]
    version = run(docker_env, image, "--version")
    assert version.returncode == 0, version.stderr
    assert re.search(rf"version {re.escape(image.rsplit(':', 1)[1])}[+ ]", version.stdout + version.stderr), version
    tmp_path.chmod(0o755)
    rules = write_rules_file(render_rule_groups(helm), tmp_path / "rules.yaml")
    config = tmp_path / "prometheus.yaml"
    config.write_text(
        "rule_files: [/work/rules.yaml]\n"
        "scrape_configs:\n"
        "  - job_name: podMonitor/ns/pipelines/0\n"
        "    kubernetes_sd_configs: [{role: pod, namespaces: {names: [cryptopipe]}}]\n"
    )
    for f in (rules, config):
        f.chmod(0o644)
    for what, path in (("rules", "/work/rules.yaml"), ("config", "/work/prometheus.yaml")):
        checked = docker(
            docker_env, "run", "--rm", *NO_NET, "-v", f"{tmp_path}:/work:ro", "--entrypoint", "promtool", image,
            "check", what, path,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "SUCCESS" in checked.stdout + checked.stderr, checked.stdout + checked.stderr


@pytest.mark.parametrize("name", ["dev-prometheus-operator", "dev-prometheus-config-reloader"])
def test_prometheus_operator_images_run_their_binary(docker_env: dict[str, str], name: str) -> None:
    image = IMAGES[name]
    version = run(docker_env, image, "--version")
    assert version.returncode == 0, version.stderr
    assert f"version {image.rsplit(':', 1)[1]} " in version.stdout + version.stderr, version.stdout
