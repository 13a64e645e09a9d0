"""What each image ships, read from its Dockerfile: the source folders it copies and the extra it
installs. Each image holds only its component: no dev harness, no test or dev-only library, and
every third-party module its copied code imports is installed by its own extra.

The project's own requirements are read from pyproject.toml (what the Dockerfile installs), the
rest of the dependency closure from the metadata of the venv the tests run in (which installs every
extra), so a library that drags a test-only one in transitively is caught too.

Images without Python code of the project (Kafka, the S3 server, spark-operator) copy no source and
install nothing of it. The dev-only replay server image is the one image that ships a piece of the
harness (services/cryptopipe_dev/replay) and the libraries only the replay server uses.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from cryptopipe_dev.repo import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
PROJECT = "cryptopipe"
FIRST_PARTY = {"cryptopipe", "cryptopipe_dev", "cryptopipe_operator", "candles_job"}
# libraries only the harness, the tests or the linters use: none may reach an image
DEV_ONLY = {
    "pytest",
    "pytest-timeout",
    "jsonschema",
    "s3fs",
    "duckdb",
    "boto3",
    "botocore",
    "zstandard",
    "mplfinance",
    "matplotlib",
    "pandas",
    # (not six: python-dateutil's and kubernetes_asyncio's, the operator's API client, need it)
    "ruff",
    "mypy",
    "import-linter",
    "cryptofeed",  # the bench extra: the peer of make bench-compare
    "aiokafka",
}
# what an image's base provides instead of its extra (the Spark image: pyspark and py4j from $SPARK_HOME)
PROVIDED_BY_BASE = {"spark-job.Dockerfile": {"pyspark", "py4j"}}
# image -> (build-arg naming its extra, the optional extra, {module: the one product module importing it}):
# modules the default image leaves out, imported only when the settings choose them
OPTIONAL_EXTRAS = {
    "ingestion.Dockerfile": (
        "INGEST_EXTRA",
        "ingestion-fast",
        {"confluent_kafka": "services/cryptopipe/ingest/confluent_producer.py"},
    ),
}
ALL_DOCKERFILES = sorted(p.name for p in DOCKER.glob("*.Dockerfile"))
# dev tooling images: the harness modules each may copy, and the dev-only libraries it may install
DEV_IMAGES = {
    "dev-replay.Dockerfile": (
        {"services/cryptopipe_dev/__init__.py", "services/cryptopipe_dev/replay"},
        {"zstandard"},
    ),
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def copied_sources(dockerfile: Path) -> list[str]:
    """The repo files and folders a Dockerfile COPYs into its build (``COPY a.py b/ dest/``)."""
    text = dockerfile.read_text().replace("\\\n", " ")  # join continued lines
    sources = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or words[0] != "COPY" or words[1].startswith("--from"):
            continue
        sources += [
            w.rstrip("/") for w in words[1:-1] if w.split("/")[0] in {"services", "operator", "spark-apps", "tests"}
        ]
    return sources


def installs_project(dockerfile: Path) -> bool:
    return re.search(PIP_INSTALL_PROJECT, dockerfile.read_text()) is not None


PIP_INSTALL_PROJECT = r"pip install[^\n]*?[\"']?\.(?:\[([^\]]*)\])?[\"']?(?:\s|$)"


def copied_python_files(dockerfile: Path) -> list[Path]:
    files: list[Path] = []
    for source in copied_sources(dockerfile):
        path = REPO_ROOT / source
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def installed_extras(dockerfile: Path) -> set[str]:
    """The extras of the project that the Dockerfile's ``pip install`` lines name (``".[ingestion]"``;
    ``".[${ARG}]"`` is read as the ARG's default: the image built without build-args)."""
    extras: set[str] = set()
    text = dockerfile.read_text()
    for name, default in re.findall(r"^ARG (\w+)=(\S+)", text, re.MULTILINE):
        text = text.replace("${" + name + "}", default)
    for match in re.finditer(PIP_INSTALL_PROJECT, text):
        extras |= {e.strip() for e in (match.group(1) or "").split(",") if e.strip()}
    return extras


def closure(extras: set[str]) -> set[str]:
    """Every distribution ``pip install .[extras]`` installs: the project's requirements from
    pyproject.toml, theirs from the installed metadata."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(PROJECT, frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        for req in project_requirements(wanted) if _norm(name) == PROJECT else _requirements(name):
            active = any(req.marker is None or req.marker.evaluate({"extra": e}) for e in (wanted or {""}))
            if req.marker is not None and not active:
                continue
            key = _norm(req.name)
            if key == PROJECT:  # a self-reference (`cryptopipe[dev]`): follow its extras
                todo.append((PROJECT, frozenset(req.extras)))
                continue
            if key not in seen:
                seen.add(key)
                todo.append((req.name, frozenset(req.extras)))
    return seen


def project_requirements(extras: frozenset[str]) -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def _requirements(name: str) -> list[Requirement]:
    return [Requirement(text) for text in metadata.distribution(name).requires or []]


def imported_modules(files: list[Path]) -> set[str]:
    """Every absolute module the files import: ``a.b`` for ``import a.b`` and ``from a.b import c``,
    and ``a.b.c`` too when ``c`` is a first-party submodule rather than a name in ``a.b``."""
    modules: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module)
                modules |= {
                    f"{node.module}.{a.name}" for a in node.names if _is_source_module(f"{node.module}.{a.name}")
                }
    return modules


def _is_source_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return any(
        (REPO_ROOT / root / rel).with_suffix(".py").is_file() or (REPO_ROOT / root / rel / "__init__.py").is_file()
        for root in ("services", "operator", "spark-apps")
    )


def third_party(modules: set[str]) -> set[str]:
    tops = {m.split(".")[0] for m in modules}
    return {m for m in tops if m not in sys.stdlib_module_names and m not in FIRST_PARTY and m != "__future__"}


def module_name(path: Path) -> str:
    """``services/cryptopipe/lake/s3.py`` -> ``cryptopipe.lake.s3`` (a package's __init__ -> the package)."""
    for root in ("services", "operator", "spark-apps"):
        if path.is_relative_to(REPO_ROOT / root):
            parts = path.relative_to(REPO_ROOT / root).with_suffix("").parts
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def distributions_of(modules: set[str]) -> dict[str, set[str]]:
    by_module = metadata.packages_distributions()
    return {m: {_norm(d) for d in by_module.get(m, [m])} for m in modules}


IMAGES = [name for name in ALL_DOCKERFILES if installs_project(DOCKER / name)]
OTHER_IMAGES = [name for name in ALL_DOCKERFILES if name not in IMAGES]


def test_the_parser_sees_every_project_image() -> None:
    assert {"operator.Dockerfile", "ingestion.Dockerfile", "spark-job.Dockerfile"} <= set(IMAGES)
    assert set(DEV_IMAGES) <= set(IMAGES)


@pytest.mark.parametrize("image", OTHER_IMAGES)
def test_image_without_project_code_copies_none(image: str) -> None:
    assert not copied_sources(DOCKER / image), f"{image} copies project source but installs no project"


@pytest.mark.parametrize("image", IMAGES)
def test_image_copies_no_harness_and_no_tests(image: str) -> None:
    sources = copied_sources(DOCKER / image)
    assert sources, f"{image} copies no source: the parser no longer matches its COPY lines"
    allowed_harness = DEV_IMAGES.get(image, (set(), set()))[0]
    for source in sources:
        assert not source.startswith("tests"), f"{image} ships {source}"
        if source not in allowed_harness:
            assert not source.startswith("services/cryptopipe_dev"), f"{image} ships {source}"
        assert source != "services", f"{image} copies all of services/, the dev harness included"


@pytest.mark.parametrize("image", IMAGES)
def test_image_copies_every_first_party_module_its_code_imports(image: str) -> None:
    files = copied_python_files(DOCKER / image)
    shipped = {module_name(f) for f in files}
    wanted = {m for m in imported_modules(files) if m.split(".")[0] in FIRST_PARTY}
    assert not wanted - shipped, f"{image} imports {sorted(wanted - shipped)} but does not copy them"


@pytest.mark.parametrize("image", IMAGES)
def test_image_installs_no_dev_or_test_library(image: str) -> None:
    installed = closure(installed_extras(DOCKER / image))
    allowed = DEV_IMAGES.get(image, (set(), set()))[1]
    assert not installed & DEV_ONLY - allowed, f"{image} would install {sorted(installed & DEV_ONLY - allowed)}"


@pytest.mark.parametrize("image", IMAGES)
def test_image_installs_every_library_its_code_imports(image: str) -> None:
    installed = closure(installed_extras(DOCKER / image)) | PROVIDED_BY_BASE.get(image, set())
    optional = set(OPTIONAL_EXTRAS.get(image, ("", "", {}))[2])
    needed = distributions_of(third_party(imported_modules(copied_python_files(DOCKER / image))) - optional)
    missing = {module: dists for module, dists in needed.items() if not dists & installed}
    assert not missing, f"{image}: its code imports {missing}, which its install line does not bring"


def test_each_product_extra_leaves_out_the_dev_libraries() -> None:
    for extra in ("ingestion", "operator", "spark-job"):
        assert not closure({extra}) & DEV_ONLY, extra
    # and the check can see a dev library when one is there
    assert closure({"dev"}) & DEV_ONLY


@pytest.mark.parametrize("image", sorted(OPTIONAL_EXTRAS))
def test_an_optional_extra_is_installed_only_when_its_build_arg_asks(image: str) -> None:
    arg, extra, modules = OPTIONAL_EXTRAS[image]
    text = (DOCKER / image).read_text()
    default = re.search(rf"^ARG {arg}=(\S+)", text, re.MULTILINE)
    assert default is not None and default.group(1) != extra, f"{image}: the default image must not take {extra}"
    assert "${" + arg + "}" in text, f"{image}: its pip install line does not use {arg}"
    # built with the extra: everything its code imports is there, and still no dev library
    with_extra = closure(installed_extras(DOCKER / image) | {extra})
    assert not with_extra & DEV_ONLY, f"{extra} would install {sorted(with_extra & DEV_ONLY)}"
    needed = distributions_of(third_party(imported_modules(copied_python_files(DOCKER / image))))
    missing = {module: dists for module, dists in needed.items() if not dists & with_extra}
    assert not missing, f"{image} with {extra}: its code imports {missing}"
    # built without it: only the one module that wraps the optional library imports it, and only
    # lazily (inside a function) does anything import that module
    for module, wrapper in modules.items():
        importers = [f for f in copied_python_files(DOCKER / image) if module in third_party(imported_modules([f]))]
        assert [str(f.relative_to(REPO_ROOT)) for f in importers] == [wrapper], module
        wrapper_module = module_name(REPO_ROOT / wrapper)
        for path in copied_python_files(DOCKER / image):
            top_level = ast.parse(path.read_text()).body
            names = {n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.module}
            names |= {a.name for n in top_level if isinstance(n, ast.Import) for a in n.names}
            assert wrapper_module not in names, f"{path.name} imports {wrapper_module} at module level"
