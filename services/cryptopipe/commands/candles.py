"""`cryptopipe candles`: read candles from the lake of the last `cryptopipe up` and print them."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from cryptopipe.lake.layout import LakeLocation
from cryptopipe.lake.reader import candle_rows, read_candles, to_csv
from cryptopipe.lake.s3 import S3Connection
from cryptopipe.stack.procs import port_open
from cryptopipe.stack.s3server import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, S3Server


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(no candles)"
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def run_candles(args, *, work_dir: Path) -> int:
    state_path = work_dir / "stack.json"
    if not state_path.exists():
        print(f"no local stack found in {work_dir}: run `cryptopipe up` first (or pass --work-dir)", file=sys.stderr)
        return 2
    state = json.loads(state_path.read_text())
    endpoint = state["s3_endpoint"]
    temporary = None
    host, port = endpoint.rsplit(":", 1)
    if not port_open(host.split("//")[-1], int(port)):
        # the stack is down: serve its lake folder again for as long as this command runs
        temporary = S3Server(Path(state["s3_root"]).parent).start()
        endpoint = temporary.endpoint
    try:
        table = read_candles(
            LakeLocation(state["bucket"], state["prefix"]),
            S3Connection(endpoint, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY).arrow_filesystem(),
            window=args.window, products=args.products, start=_time(args.start), end=_time(args.end),
        )
    finally:
        if temporary is not None:
            temporary.stop()
    if args.format == "csv":
        sys.stdout.write(to_csv(table))
    elif args.format == "json":
        for row in candle_rows(table):
            print(json.dumps(row))
    else:
        print(_table(candle_rows(table)))
    return 0
