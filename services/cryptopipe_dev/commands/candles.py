"""`cryptopipe candles`: read candles from the lake of the last `cryptopipe up` and print them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cryptopipe.lake.reader import candle_rows, read_candles, to_csv
from cryptopipe_dev.commands.lake_access import NoStackError, open_stack_lake, parse_time


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(no candles)"
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def run_candles(args, *, work_dir: Path) -> int:
    try:
        with open_stack_lake(work_dir) as opened:
            table = read_candles(
                opened.lake,
                opened.filesystem(),
                window=args.window,
                products=args.products,
                start=parse_time(args.start),
                end=parse_time(args.end),
            )
    except NoStackError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.format == "csv":
        sys.stdout.write(to_csv(table))
    elif args.format == "json":
        for row in candle_rows(table):
            print(json.dumps(row))
    else:
        print(_table(candle_rows(table)))
    return 0
