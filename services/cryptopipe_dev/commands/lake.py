"""`cryptopipe lake compact`: merge a finished day's small candle files in the lake of the last
`cryptopipe up` (the work is lake/compaction.py's, which a Kubernetes Job could run as well)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from cryptopipe.lake.compaction import DayNotFinal, compact_day
from cryptopipe_dev.commands.lake_access import NoStackError, open_stack_lake


def run_lake(args, *, work_dir: Path) -> int:
    if args.lake_command != "compact":
        raise AssertionError(args.lake_command)
    try:
        datetime.strptime(args.date, "%Y-%m-%d")
    except ValueError:
        print(f"--date {args.date!r}: expected YYYY-MM-DD", file=sys.stderr)
        return 2
    try:
        with open_stack_lake(work_dir) as opened:
            results = compact_day(
                opened.lake,
                opened.filesystem(),
                window=args.window,
                date=args.date,
                products=args.products,
                delete=not args.keep_superseded,
            )
    except NoStackError as exc:
        print(exc, file=sys.stderr)
        return 2
    except DayNotFinal as exc:
        print(exc, file=sys.stderr)
        return 1
    for result in results:
        print(
            json.dumps(
                {
                    "product_id": result.product_id,
                    "date": result.date,
                    "action": result.action,
                    "files_merged": result.files_merged,
                    "rows": result.rows,
                    "deleted": result.deleted,
                }
            )
        )
    return 0
