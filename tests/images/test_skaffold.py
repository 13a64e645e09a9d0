"""skaffold v2.16.1, built from the Go module proxy by scripts/build-go-tools.sh, with the project's
skaffold.yaml on this machine: profile `local-images` (skaffold's custom builder calling
scripts/build-images.sh through scripts/skaffold-build.sh) against the Docker daemon
build-images.sh finds or starts. A real `skaffold build` of the operator image; the other
artifacts are only resolved (`diagnose`, `build --dry-run`): their builds are build-images.sh's,
checked by test_images.py. `skaffold run -p local-images,node` needs a node cluster: see
docs/cluster.md ("skaffold").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptopipe_dev.stack.paths import cache_dir

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build-images.sh"
GO_TOOLS = REPO / "scripts" / "build-go-tools.sh"
# a cold skaffold build takes ~5-30 min on 2 busy cores (docs/cluster.md); a rebuild of the operator
# image after a source edit ~1-3 min
pytestmark = [pytest.mark.images, pytest.mark.timeout(3600)]
ARTIFACTS = {
    "cryptopipe-operator": "operator",
    "cryptopipe-ingestion": "ingestion",
    "cryptopipe-spark-job": "spark-job",
}


@pytest.fixture(scope="module")
def skaffold() -> Path:
    built = subprocess.run([GO_TOOLS, "skaffold"], capture_output=True, text=True)
    if built.returncode != 0:
        pytest.fail(f"scripts/build-go-tools.sh skaffold failed:\n{built.stdout[-2000:]}\n{built.stderr[-2000:]}")
    return Path(
        subprocess.run([GO_TOOLS, "--path", "skaffold"], capture_output=True, text=True, check=True).stdout.strip()
    )


@pytest.fixture(scope="module")
def docker_env(tmp_path_factory: pytest.TempPathFactory, helm: Path) -> Iterator[dict[str, str]]:
    started = subprocess.run([BUILD, "--start-daemon"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"no Docker daemon: {started.stderr.strip()}", pytrace=False)
    host = re.search(r"^DOCKER_HOST=(.*)$", started.stdout, re.M)
    assert host, started.stdout
    # skaffold's own config and artifact cache in a scratch HOME: nothing of the user's is read or written
    home = tmp_path_factory.mktemp("skaffold-home")
    env = {**os.environ, "DOCKER_HOST": host.group(1), "HOME": str(home), "SKAFFOLD_UPDATE_CHECK": "false"}
    # the project's cache stays where it is (its default is under $HOME)
    env["CRYPTOPIPE_CACHE"] = str(cache_dir())
    # skaffold refuses to start without helm on PATH (skaffold.yaml deploys with it), even to build
    env["PATH"] = os.pathsep.join([str(helm.parent), env.get("PATH", "")])
    env.pop("CRYPTOPIPE_IMAGE_TAG", None)
    try:
        yield env
    finally:
        if "starting a private dockerd" in started.stdout:
            subprocess.run([BUILD, "--stop-daemon"], env=env, check=False)


def _skaffold(
    skaffold: Path, env: dict[str, str], *args: str, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(skaffold), *args, "--interactive=false"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_skaffold_is_the_pinned_version(skaffold: Path) -> None:
    version = subprocess.run([str(skaffold), "version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == "v2.16.1"


def test_diagnose_resolves_the_local_images_profile(skaffold: Path, docker_env: dict[str, str]) -> None:
    out = _skaffold(skaffold, docker_env, "diagnose", "-p", "local-images", "--yaml-only")
    assert out.returncode == 0, out.stderr
    artifacts = re.findall(r"buildCommand: scripts/skaffold-build.sh (\S+)", out.stdout)
    assert sorted(artifacts) == sorted(ARTIFACTS.values()), out.stdout
    node = _skaffold(skaffold, docker_env, "diagnose", "-p", "local-images,node", "--yaml-only")
    assert node.returncode == 0, node.stderr
    assert node.stdout.count("--load-into-node") == 3, node.stdout
    assert re.search(r"image\.pullPolicy: Never", node.stdout), node.stdout


def test_build_dry_run_tags_the_three_artifacts(skaffold: Path, docker_env: dict[str, str], tmp_path: Path) -> None:
    out = _skaffold(
        skaffold, docker_env, "build", "-p", "local-images", "--dry-run", "--file-output", str(tmp_path / "b.json")
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    builds = json.loads((tmp_path / "b.json").read_text())["builds"]
    assert {b["imageName"]: b["tag"] for b in builds} == {name: f"{name}:dev" for name in ARTIFACTS}


def test_skaffold_builds_the_operator_image_with_the_local_docker(
    skaffold: Path, docker_env: dict[str, str], tmp_path: Path
) -> None:
    out = _skaffold(
        skaffold, docker_env, "build", "-p", "local-images", "-b", "cryptopipe-operator",
        "--cache-artifacts=false", "--file-output", str(tmp_path / "b.json"),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "tagged cryptopipe-operator:dev" in out.stdout + out.stderr, out.stdout[-3000:]
    (build,) = json.loads((tmp_path / "b.json").read_text())["builds"]
    listed = dict(
        line.split() for line in subprocess.run([BUILD, "--list"], capture_output=True, text=True).stdout.splitlines()
    )

    def image_id(ref: str) -> str:
        got = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Id}}", ref], env=docker_env, capture_output=True, text=True
        )
        assert got.returncode == 0, f"{ref}: {got.stderr}"
        return got.stdout.strip()

    # the image skaffold reports is the versioned one build-images.sh built (same id), non-root;
    # skaffold names a local image it did not push by its id (what the node profile loads too)
    built = image_id(listed["operator"])
    assert image_id("cryptopipe-operator:dev") == built
    assert build == {"imageName": "cryptopipe-operator", "tag": f"cryptopipe-operator:{built.removeprefix('sha256:')}"}
    user = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Config.User}}", "cryptopipe-operator:dev"],
        env=docker_env, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert user == "10001:10001"
