"""What a benchmark ran on: the machine, and the versions of the packages and binaries it measured."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path


def machine() -> str:
    """'2 cores (<CPU model>), 23.5 GiB RAM, Linux <release>'."""
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return (
        f"{os.cpu_count()} cores ({cpu_model()}), {mem_kb / 1024**2:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}"
    )


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def package_version(dist: str) -> str:
    """The installed version of a distribution, '-' if it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def binary_version(argv: list[str]) -> str:
    """First line a binary prints for its version (stdout, else stderr: java writes there), '?' if it cannot."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"
