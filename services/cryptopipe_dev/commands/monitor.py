"""`cryptopipe monitor report` (one scan of the last stack's lake, exit 1 if anything is wrong) and
`cryptopipe monitor serve` (the long-running service, configured from CRYPTOPIPE_MONITOR_* env).

Counted-unfillable trade ids (which the continuity audit reports as "unfillable", not "lost") come
from the stack's dead-letter topic when its Kafka runs, plus --unfillable FILE.

Report range: [--from, --to). "now" (for staleness) is --to when given, else the wall clock; --from
defaults to two hours before that, the service's default lookback. Exit codes: 0 clean, 1 anomalies
found, 2 error (no stack, unreadable lake, bad argument) with the reason on stderr.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptopipe.contracts import ContractError, parse_duration, window_label

DEFAULT_REPORT_RANGE = timedelta(hours=2)


def run_monitor(args, *, work_dir: Path) -> int:
    if args.monitor_command == "serve":
        return _serve()
    return _report(args, work_dir)


def _serve() -> int:
    from cryptopipe.monitor.__main__ import main

    return main()


def _report(args, work_dir: Path) -> int:
    from cryptopipe.monitor.anomalies import Thresholds
    from cryptopipe.monitor.report import failed, render_json, render_text
    from cryptopipe.monitor.scan import scan_window
    from cryptopipe_dev.commands.lake_access import NoStackError, open_stack_lake, parse_time

    try:
        end = parse_time(args.end) or datetime.now(UTC)
        start = parse_time(args.start) or end - DEFAULT_REPORT_RANGE
        if start >= end:
            raise ValueError(f"--from {start.isoformat()} is not before --to {end.isoformat()}")
        window = window_label(parse_duration(args.window))
        defaults = Thresholds()
        thresholds = Thresholds(
            price_sigma=args.price_sigma if args.price_sigma is not None else defaults.price_sigma,
            volume_factor=args.volume_factor if args.volume_factor is not None else defaults.volume_factor,
            stale_after_s=parse_duration(args.stale_after) if args.stale_after else defaults.stale_after_s,
        )
        if thresholds.price_sigma <= 0 or thresholds.volume_factor <= 1:
            raise ValueError("--price-sigma must be > 0 and --volume-factor > 1")
        unfillable = _unfillable(args.unfillable) if getattr(args, "unfillable", None) else None
    except (ValueError, ContractError, OSError) as exc:
        print(f"cryptopipe monitor report: {exc}", file=sys.stderr)
        return 2
    try:
        with open_stack_lake(work_dir) as opened:
            unfillable = _merge(unfillable, _stack_unfillable(opened))
            scan = scan_window(
                opened.lake,
                opened.filesystem(),
                window=window,
                products=args.products or (),
                start=start,
                end=end,
                now=end,
                thresholds=thresholds,
                unfillable=unfillable,
            )
    except NoStackError as exc:
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - an unreadable lake is exit 2 with its reason, not a traceback
        print(f"cannot read the lake of the stack in {work_dir}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if not scan.products:
        # nothing to judge is not "clean": a wrong --window or an empty lake must not pass silently
        print(f"no {window} candles in the lake {opened.lake.root} of the stack in {work_dir}", file=sys.stderr)
        return 2
    print(render_json(scan, start, end) if args.format == "json" else render_text(scan, start, end))
    return 1 if failed(scan) else 0


def _stack_unfillable(opened) -> dict[str, list[tuple[int, int]]] | None:
    """The counted-unfillable trade ids the stack's ingestion published to its dead-letter topic; None
    (said on stderr: its gaps then read as lost) when the stack's Kafka is not running."""
    from cryptopipe.monitor.unfillable import read_unfillable
    from cryptopipe_dev.stack.procs import port_open

    if not (opened.kafka and opened.dlq_topic):
        return None
    host, port = opened.kafka.rsplit(":", 1)
    if not port_open(host, int(port)):
        print(
            f"note: the stack's Kafka ({opened.kafka}) is not running: the ingestion's counted-unfillable trade "
            "ids are not read, so every missing id is reported as lost",
            file=sys.stderr,
        )
        return None
    return read_unfillable(opened.kafka, opened.dlq_topic)


def _merge(*sources: dict[str, list[tuple[int, int]]] | None) -> dict[str, list[tuple[int, int]]] | None:
    found = [s for s in sources if s is not None]
    if not found:
        return None
    out: dict[str, list[tuple[int, int]]] = {}
    for source in found:
        for product, ranges in source.items():
            out.setdefault(product, []).extend(ranges)
    return out


def _unfillable(path: str) -> dict[str, list[tuple[int, int]]]:
    """--unfillable FILE: {"BTC-USD": [[first, last], ...], ...}, inclusive trade-id ranges."""
    import json

    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"--unfillable {path}: expected a JSON object of product -> [[first, last], ...]")
    try:
        return {str(p): [(int(a), int(b)) for a, b in ranges] for p, ranges in data.items()}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--unfillable {path}: ranges must be [first, last] integer pairs ({exc})") from None
