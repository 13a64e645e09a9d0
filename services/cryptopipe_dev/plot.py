"""Candlestick chart (PNG, with a volume panel below) of one product's candles read from the lake.

Drawn by mplfinance on matplotlib's Agg backend, so it needs no display. Prices and volumes are
exact Decimals in the lake; they become floats here only to be drawn. Times are UTC throughout:
the x axis is labelled and formatted in UTC whatever the machine's or matplotlib's time zone.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import matplotlib

matplotlib.use("Agg")  # headless: a chart is a file, never a window

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import mplfinance as mpf
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# 1000 x 600 px: readable in a README, and a few tens of KB as PNG
DEFAULT_SIZE_INCHES = (10.0, 6.0)
DEFAULT_DPI = 100


class NoCandlesError(ValueError):
    """The lake holds no candles of this product and window in the asked range."""


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def range_text(start: datetime | None, end: datetime | None) -> str:
    """How a time range reads in messages: 'between A and B', 'from A on', 'before B', 'in the lake'."""
    if start and end:
        return f"between {_iso(start)} and {_iso(end)}"
    if start:
        return f"from {_iso(start)} on"
    if end:
        return f"before {_iso(end)}"
    return "in the lake"


def _frame(rows: pa.Table) -> pd.DataFrame:
    """Candles as the float OHLCV frame mplfinance draws, indexed by UTC window start."""
    columns = {
        name.capitalize(): pc.cast(rows[name], pa.float64()).to_numpy()
        for name in ("open", "high", "low", "close", "volume")
    }
    index = pd.DatetimeIndex(rows["window_start"].to_pandas()).tz_convert("UTC")
    return pd.DataFrame(columns, index=index)


# mplfinance's "charles" colours, with the font weights DejaVu Sans has (it has no medium/semibold,
# and matplotlib logs a warning for each)
_STYLE = mpf.make_mpf_style(
    base_mpf_style="charles",
    rc={
        "font.weight": "normal",
        "axes.labelweight": "bold",
        "figure.titleweight": "bold",
    },
)
# tick spacing, in windows: at most _MAX_TICKS ticks, each on a window start
_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 240, 360, 720, 1440)
_MAX_TICKS = 10


def tick_times(first: datetime, last: datetime, window: timedelta) -> list[datetime]:
    """Window starts from ``first`` to ``last`` to label: every window, or every 2nd, 5th, ... at most _MAX_TICKS."""
    count = int((last - first) / window) + 1
    step = next((s for s in _TICK_STEPS if -(-count // s) <= _MAX_TICKS), -(-count // _MAX_TICKS))
    span = window * step
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    tick = epoch + span * -(-(first - epoch) // span)  # the first multiple of the step on or after `first`
    ticks = []
    while tick <= last:
        ticks.append(tick)
        tick += span
    return ticks or [first]


def default_title(product_id: str, window: str, first: datetime, last_end: datetime) -> str:
    end_format = "%H:%M" if first.date() == last_end.date() else "%Y-%m-%d %H:%M"
    return f"{product_id} {window} candles, {first:%Y-%m-%d %H:%M} – {last_end.strftime(end_format)} UTC"


def render_figure(
    table: pa.Table,
    *,
    product_id: str,
    window: str,
    title: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    size_inches: tuple[float, float] = DEFAULT_SIZE_INCHES,
):
    """The chart as a matplotlib Figure (close it with ``plt.close(fig)``).

    ``table`` holds candles in the lake's schema (``contracts.candle_arrow_schema()``); rows of other
    products are ignored. ``start``/``end`` only word the error when there is nothing to draw.
    """
    rows = table.filter(pc.equal(table["product_id"], product_id)).sort_by("window_start")
    if rows.num_rows == 0:
        raise NoCandlesError(f"no {window} candles for {product_id} {range_text(start, end)}")
    frame = _frame(rows)
    first = frame.index[0].to_pydatetime()
    last = frame.index[-1].to_pydatetime()
    last_end = pc.max(rows["window_end"]).as_py().astimezone(UTC)
    length = rows["window_end"][0].as_py() - rows["window_start"][0].as_py()
    base, _, quote = product_id.partition("-")
    # ticks on window starts (matplotlib's default locator puts them at odd seconds), labelled in UTC
    single_day = first.date() == last.date()
    fmt = "%Y-%m-%d" if length >= timedelta(days=1) else "%H:%M" if single_day else "%m-%d %H:%M"
    ticks = mdates.date2num(tick_times(first, last, length))
    day = f", {first:%Y-%m-%d}" if fmt == "%H:%M" else ""
    fig, axes = mpf.plot(
        frame,
        type="candle",
        volume=True,  # the volume panel, below the candles
        show_nontrading=True,  # a minute without trades is a gap on the time axis, not hidden
        style=_STYLE,
        title=title or default_title(product_id, window, first, last_end),
        ylabel=f"price ({quote or '?'})",
        ylabel_lower=f"volume ({base})",
        xlabel=f"window start (UTC{day})",
        scale_padding={"left": 0.4, "right": 1.1, "top": 0.8, "bottom": 0.8},  # less blank margin
        figsize=size_inches,
        returnfig=True,
        warn_too_much_data=len(frame) + 1,
    )
    for axis in axes:
        axis.xaxis.set_major_locator(mticker.FixedLocator(ticks))
        axis.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=UTC))
    return fig


def plot_candles(
    table: pa.Table,
    *,
    product_id: str,
    window: str,
    title: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    size_inches: tuple[float, float] = DEFAULT_SIZE_INCHES,
    dpi: int = DEFAULT_DPI,
) -> bytes:
    """The chart as PNG bytes, ``size_inches * dpi`` pixels. Raises NoCandlesError when there is nothing to draw."""
    fig = render_figure(
        table, product_id=product_id, window=window, title=title, start=start, end=end, size_inches=size_inches
    )
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()
    finally:
        plt.close(fig)
