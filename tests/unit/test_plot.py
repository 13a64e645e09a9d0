"""The candlestick chart: a real PNG of the asked size with candles drawn, UTC time axis, clear error when empty."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import matplotlib
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import pytest

from cryptopipe.contracts import candle_arrow_schema
from cryptopipe_dev.plot import NoCandlesError, plot_candles, render_figure, tick_times

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
T0 = datetime(2026, 8, 9, 21, 4, tzinfo=UTC)
MINUTE = timedelta(minutes=1)

# (minute offset, open, high, low, close, volume): up, down, up, down, a missing minute (4), up
BTC = [
    (0, "65090.99", "65095.00", "65088.10", "65094.50", "0.08911356"),
    (1, "65094.50", "65096.00", "65083.56", "65084.00", "1.11745494"),
    (2, "65084.00", "65099.00", "65083.00", "65097.25", "0.52000000"),
    (3, "65097.25", "65098.00", "65086.00", "65087.00", "0.31000000"),
    (5, "65087.00", "65093.00", "65085.00", "65092.00", "0.04246847"),
]


def candle_table(rows, product_id: str = "BTC-USD") -> pa.Table:
    records = []
    for i, (minute, o, h, low, c, v) in enumerate(rows):
        start = T0 + minute * MINUTE
        records.append(
            {
                "product_id": product_id,
                "window_start": start,
                "window_end": start + MINUTE,
                "open": Decimal(o),
                "high": Decimal(h),
                "low": Decimal(low),
                "close": Decimal(c),
                "volume": Decimal(v),
                "trade_count": 10 + i,
                "vwap": Decimal(c),
                "notional": Decimal(c) * Decimal(v),
                "first_trade_id": 1000 + 100 * i,
                "last_trade_id": 1009 + 100 * i,
            }
        )
    return pa.Table.from_pylist(records, schema=candle_arrow_schema())


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which the PNG format requires to come first."""
    length, kind = struct.unpack(">I4s", png[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", png[16:24])


def test_png_of_the_asked_size_with_up_and_down_candles_and_volume_drawn() -> None:
    png = plot_candles(candle_table(BTC), product_id="BTC-USD", window="1m", size_inches=(8, 5), dpi=50)

    assert png.startswith(PNG_SIGNATURE)
    assert png_size(png) == (400, 250)
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]
    assert pixels.shape == (250, 400, 3)
    colours = {tuple(p) for p in (pixels * 255).round().astype(np.uint8).reshape(-1, 3)}
    assert len(colours) > 20  # text, grid, bodies and bars, antialiased: far from a blank canvas
    red, green, blue = (pixels[..., i] for i in range(3))
    up = (green > red + 0.3) & (green > blue + 0.3)  # "charles" draws rising candles green
    down = (red > green + 0.3) & (red > blue + 0.3)  # and falling ones red
    assert up.sum() > 50 and down.sum() > 50


def test_axis_is_utc_whatever_matplotlibs_time_zone_and_title_names_product_window_and_range() -> None:
    eth = [(m, "1919.62", "1919.70", "1919.36", "1919.58", "21.05") for m in range(6)]
    table = pa.concat_tables([candle_table(BTC), candle_table(eth, "ETH-USD")])
    with matplotlib.rc_context({"timezone": "Asia/Tokyo"}):
        fig = render_figure(table, product_id="BTC-USD", window="1m")
        try:
            fig.canvas.draw()
            price_axis = fig.axes[0]
            volume_axis = next(a for a in fig.axes if a.get_xlabel())
            labels = [t.get_text() for t in volume_axis.get_xticklabels() if t.get_text()]
            title = fig._suptitle.get_text()
            low, high = price_axis.get_ylim()
            price_box, volume_box = price_axis.get_position(), volume_axis.get_position()
        finally:
            plt.close(fig)

    assert labels == ["21:04", "21:05", "21:06", "21:07", "21:08", "21:09"]  # Tokyo would read 06:04...
    assert volume_axis.get_xlabel() == "window start (UTC, 2026-08-09)"
    assert volume_axis.get_ylabel() == "volume (BTC)" and price_axis.get_ylabel() == "price (USD)"
    assert volume_box.y1 <= price_box.y0  # the volume panel sits below the candles
    assert title == "BTC-USD 1m candles, 2026-08-09 21:04 – 21:10 UTC"
    assert 65000 < low < high < 65200  # ETH-USD's rows, at ~1919, are not drawn


def test_explicit_title_replaces_the_default() -> None:
    fig = render_figure(candle_table(BTC), product_id="BTC-USD", window="1m", title="replayed BTC")
    try:
        assert fig._suptitle.get_text() == "replayed BTC"
    finally:
        plt.close(fig)


def test_ticks_fall_on_window_starts_at_most_ten() -> None:
    assert tick_times(T0, T0 + 2 * MINUTE, MINUTE) == [T0, T0 + MINUTE, T0 + 2 * MINUTE]
    day = tick_times(datetime(2026, 8, 9, tzinfo=UTC), datetime(2026, 8, 9, 23, 59, tzinfo=UTC), MINUTE)
    assert day == [datetime(2026, 8, 9, h, tzinfo=UTC) for h in range(0, 24, 4)]  # every 240 min
    odd = tick_times(datetime(2026, 8, 9, 21, 3, tzinfo=UTC), datetime(2026, 8, 9, 21, 40, tzinfo=UTC), MINUTE)
    assert odd == [datetime(2026, 8, 9, 21, m, tzinfo=UTC) for m in (5, 10, 15, 20, 25, 30, 35, 40)]


def test_no_candles_raises_with_product_window_and_range() -> None:
    empty = candle_arrow_schema().empty_table()
    start, end = datetime(2026, 8, 9, 21, tzinfo=UTC), datetime(2026, 8, 9, 22, tzinfo=UTC)
    with pytest.raises(NoCandlesError) as raised:
        plot_candles(empty, product_id="BTC-USD", window="1m", start=start, end=end)
    assert str(raised.value) == "no 1m candles for BTC-USD between 2026-08-09T21:00:00Z and 2026-08-09T22:00:00Z"

    only_eth = candle_table([(0, "1919.62", "1919.70", "1919.36", "1919.58", "21.05")], "ETH-USD")
    with pytest.raises(NoCandlesError, match="^no 5m candles for BTC-USD in the lake$"):
        plot_candles(only_eth, product_id="BTC-USD", window="5m")


def test_cli_without_a_stack_exits_2_with_the_reason(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptopipe_dev.cli",
            "plot",
            "BTC-USD",
            "--work-dir",
            str(tmp_path),
            "-o",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"no local stack found in {tmp_path}" in result.stderr
    assert not (tmp_path / "x.png").exists()
