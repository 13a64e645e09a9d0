"""`cryptopipe plot PRODUCT`: a candlestick chart (PNG, volume bars below) of the lake of the last `up`."""

from __future__ import annotations

import sys
from pathlib import Path

from cryptopipe.lake.reader import read_candles
from cryptopipe_dev.commands.lake_access import NoStackError, open_stack_lake, parse_time


def default_output(product: str, window: str) -> Path:
    return Path(f"{product}-{window}.png")


def run_plot(args, *, work_dir: Path) -> int:
    # imported here: matplotlib and mplfinance take a second to load, and only this command needs them
    from cryptopipe_dev.plot import NoCandlesError, plot_candles

    start, end = parse_time(args.start), parse_time(args.end)
    try:
        with open_stack_lake(work_dir) as opened:
            table = read_candles(
                opened.lake, opened.filesystem(), window=args.window, products=[args.product], start=start, end=end
            )
        png = plot_candles(table, product_id=args.product, window=args.window, title=args.title, start=start, end=end)
    except (NoStackError, NoCandlesError) as exc:
        print(exc, file=sys.stderr)
        return 2
    output = args.output or default_output(args.product, args.window)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(png)
    print(output)
    return 0
