"""`cryptopipe candles` start-up, two source trees side by side in one run (issue 12 §4's ≤ 1 s).

    python -m cryptopipe_dev.bench.cli_startup BEFORE_TREE [AFTER_TREE] [--rounds 7]

Each round runs, for each tree in turn (so both see the same load), a new interpreter with that
tree's ``services/operator/spark-apps`` on PYTHONPATH running ``cryptopipe candles`` against a work
dir that holds no stack: it imports everything the command needs and exits 2 before any request.
That is the command's start-up; the query itself is the lake benchmark's. Prints the median wall
and CPU (the child's user + system) of each tree and the ratio. AFTER_TREE defaults to this checkout.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cryptopipe_dev.repo import REPO_ROOT

_COMMAND = "import sys; from cryptopipe_dev.cli import main; sys.exit(main(sys.argv[1:]))"


def run_once(tree: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one `cryptopipe candles` start-up from ``tree``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(tree / d) for d in ("services", "operator", "spark-apps"))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND, "candles", "--work-dir", "/nonexistent-cryptopipe-stack"],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 2:  # 2: no stack, after every import
        raise RuntimeError(f"{tree}: cryptopipe candles exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path, nargs="?", default=REPO_ROOT)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    trees = {"before": args.before, "after": args.after}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for name, tree in trees.items():
            runs[name].append(run_once(tree))
    load.append(os.getloadavg()[0])
    medians = {}
    for name, tree in trees.items():
        wall = statistics.median(r[0] for r in runs[name])
        cpu = statistics.median(r[1] for r in runs[name])
        medians[name] = (wall, cpu)
        print(
            f"{name} ({tree}): wall {wall:.2f} s, CPU {cpu:.2f} s (medians of {args.rounds}; walls "
            + ", ".join(f"{r[0]:.2f}" for r in runs[name])
            + ")"
        )
    (bw, bc), (aw, ac) = medians["before"], medians["after"]
    print(
        f"before / after: wall {bw / aw:.2f}x, CPU {bc / ac:.2f}x; 1-min load average {load[0]:.1f} -> {load[1]:.1f} "
        f"on {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
