"""`python -m cryptopipe_dev.chaos [--quick] [--runs N] [--only NAME ...]` (what `make chaos` runs).

Starts Kafka and the S3 server once, runs each scenario (runner.py), prints the table and writes
the same rows to chaos-report.json in the current directory. Exit 0 when every scenario that ran
holds (0 silent losses, 0 duplicates, the lake equal to the reference), 1 otherwise, 2 on bad
arguments. Scenarios that cannot run yet are listed with the reason and do not fail the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from cryptopipe.logs import setup_logging
from cryptopipe_dev.chaos.runner import Options, Row, Suite
from cryptopipe_dev.chaos.scenarios import BY_NAME, SCENARIOS

REPORT = "chaos-report.json"
COLUMNS = (
    ("scenario", "scenario", 28),
    ("runs", "runs", 5),
    ("sent", "sent", 7),
    ("in_lake", "in lake", 8),
    ("lost_counted", "lost (counted)", 15),
    ("lost_silent", "lost (silent)", 14),
    ("duplicated", "duplicated", 11),
    ("recover_s", "recover s", 10),
)
KEYS = ("scenario", "runs", "sent", "in_lake", "lost_counted", "lost_silent", "duplicated", "recover_s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cryptopipe_dev.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 fault injection per scenario")
    parser.add_argument("--runs", type=int, default=None, help="fault injections per scenario (default: the issue's)")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", choices=sorted(BY_NAME), help="these scenarios only")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--speed", type=float, default=4.0, help="market seconds per real second")
    parser.add_argument("--rate", type=float, default=6.0, help="trades per market second, all products")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds allowed for each wait (a Spark start, ...)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where the stack and logs live (default: a temp dir)"
    )
    parser.add_argument("--report", type=Path, default=Path(REPORT), help=f"JSON report path (default ./{REPORT})")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be >= 1")
    return args


def render(rows: list[Row]) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "n/a"
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    lines = ["  ".join(f"{title:<{w}}" for _, title, w in COLUMNS) + "  holds"]
    for row in rows:
        d = row.to_dict()
        verdict = "n/a" if row.holds is None else ("yes" if row.holds else "NO")
        lines.append("  ".join(f"{cell(d[k]):<{w}}" for k, _, w in COLUMNS) + f"  {verdict}")
    notes = [f"- {r.scenario}: {r.reason}" for r in rows if r.reason]
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("INFO")  # JSON lines on stderr, with each event's fields
    logging.getLogger("kafka").setLevel(logging.WARNING)
    chosen = [BY_NAME[n] for n in args.only] if args.only else list(SCENARIOS)
    options = Options(seed=args.seed, speed=args.speed, rate=args.rate, timeout=args.timeout)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="cryptopipe-chaos-"))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)  # unwinds through Suite.__exit__: all stopped

    signal.signal(signal.SIGTERM, on_signal)
    rows: list[Row] = []
    started = time.monotonic()
    with Suite(work, options) as suite:
        for scenario in chosen:
            runs = 1 if args.quick else (args.runs or scenario.runs)
            rows.append(suite.run(scenario, runs))
            _write(args.report, rows)  # after each scenario: a long run leaves what it has
    print(render(rows))
    print(f"\n{len(rows)} scenarios in {time.monotonic() - started:.0f}s; logs in {work}; report {args.report}")
    return 0 if all(r.holds is not False for r in rows) else 1


def _write(path: Path, rows: list[Row]) -> None:
    path.write_text(
        json.dumps([{k: r.to_dict()[k] for k in KEYS} | {"holds": r.holds, "reason": r.reason} for r in rows], indent=2)
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
