"""The rows of ``make bench``'s one table, from each part's result, and the table as text, JSON and
a PNG bar chart (matplotlib's Agg backend).

ratio = how many times better this project is than the peer, so > 1 is ahead whatever the unit:
this ÷ peer for rates, peer ÷ this for CPU, latency and seconds. A target is on the ratio
(">= 5x") or on this project's own figure (">= 100,000/s", "<= 37 s"); the chart shows the first
as the ratio and the second as its distance to the target (>= 1 met).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from cryptopipe.contracts import parse_duration
from cryptopipe_dev.bench.report import _indent, _table

HEADER = ["part", "figure", "this project", "the peer", "ratio", "target", "status"]
FOOTPRINT_TARGET_GIB = 1.5
CATCHUP_TARGET_PER_S = 100_000
CATCHUP_TARGET_DAY_S = 12.0
LAKE_TARGET_S = 1.0
LAKE_TARGET_SPEEDUP = 10.0


@dataclasses.dataclass(frozen=True)
class Figure:
    part: str
    figure: str
    this: str
    peer: str = ""
    ratio: float | None = None  # times better than the peer (> 1: this project ahead)
    target: str = ""
    met: bool | None = None
    ratio_target: float | None = None  # the target, when it is on the ratio
    versus_target: float | None = None  # absolute target: target distance as a factor, >= 1 met

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else ratio_text(self.ratio)
        status = "" if self.met is None else "met" if self.met else "MISSED"
        return [self.part, self.figure, self.this, self.peer, ratio, self.target, status]

    def as_json(self) -> dict[str, Any]:
        return {**dict(zip(HEADER, self.cells(), strict=True)), **dataclasses.asdict(self)}


def ratio_text(ratio: float) -> str:
    """2.00x; a ratio far below 1 as 1/N (0.0003 -> 1/2,991x), which 0.00x would hide."""
    if math.isnan(ratio):
        return "-"
    return f"1/{1 / ratio:,.0f}x" if 0 < ratio < 0.01 else f"{ratio:,.2f}x"


def from_json(data: dict[str, Any]) -> list[Figure]:
    """The figures back from ``write``'s JSON (to draw a finished run's table and chart again)."""
    names = [f.name for f in dataclasses.fields(Figure)]
    return [Figure(**{n: row[n] for n in names}) for row in data["rows"]]


def _times_better(this: float, peer: float, higher_is_better: bool) -> float:
    if not this or not peer or math.isnan(this) or math.isnan(peer):
        return math.nan
    return this / peer if higher_is_better else peer / this


def failed(part: str, exc: BaseException) -> Figure:
    return Figure(part, "did not finish", f"{type(exc).__name__}: {exc}"[:100], met=False, target="runs")


# -- ingestion (peers.py) ---------------------------------------------------------------------------


def ingestion(result: Any) -> list[Figure]:
    from cryptopipe_dev.bench import peers_report

    out = []
    for r in peers_report.rows(result):
        higher = r.unit in ("/s", "/CPU-s")
        this, peer = peers_report._value(r.this, r.unit), peers_report._value(r.peer, r.unit)
        if r.peer is not None:
            ratio = _times_better(r.this, r.peer, higher)
            target = f">= {r.target:g}x" if r.target is not None else ""
            out.append(Figure("ingestion", r.figure, this, peer, ratio, target, r.met, r.target))
        else:
            target = f">= {r.target:,.0f}{r.unit}" if r.target is not None else ""
            versus = r.this / r.target if r.target else None
            out.append(Figure("ingestion", r.figure, this, "", None, target, r.met, versus_target=versus))
    return out


# -- freshness and footprint (latency.py) -----------------------------------------------------------


def freshness(latency: Any) -> list[Figure]:
    wm, trigger = parse_duration(latency.watermark), parse_duration(latency.trigger)
    settings = f"{latency.window} windows, wm {latency.watermark}, trigger {latency.trigger}"
    out = []
    for q, name, bound in ((0.5, "p50", wm + 2.0), (0.99, "p99", wm + trigger + 2.0)):
        value = latency.quantile(q) if latency.latencies_s else math.nan
        met = not math.isnan(value) and value <= bound
        out.append(
            Figure(
                "freshness",
                f"candle window end -> in the lake, {name} ({settings}, {len(latency.latencies_s)} candles)",
                "-" if math.isnan(value) else f"{value:.1f} s",
                target=f"<= {bound:g} s",
                met=met,
                versus_target=bound / value if value and not math.isnan(value) else None,
            )
        )
    out.append(
        Figure(
            "freshness",
            f"candles missing (not in the lake within 2 x the p99 bound), of {latency.expected}",
            f"{latency.missing}",
            target="0",
            met=latency.missing == 0 and latency.expected > 0,
        )
    )
    cores = latency.job_cores
    if cores is not None:
        # what the freshness costs (no target): a shorter trigger buys fresher candles with batches
        out.append(
            Figure(
                "freshness",
                f"Spark job CPU at live rate, cores ({latency.batches or 0} micro-batches "
                f"in {latency.feed_s:.0f} s, mean {latency.batch_mean_s or 0:.2f} s)",
                f"{cores:.2f}",
            )
        )
    return out


def footprint(memory: Any) -> list[Figure]:
    peak = memory.peak
    gib = peak.total_kb / 1024 / 1024
    biggest = sorted(peak.by_component.items(), key=lambda kv: -kv[1])[:3]
    named = ", ".join(f"{k} {v / 1024:,.0f}" for k, v in biggest)
    return [
        Figure(
            "footprint",
            f"whole stack peak RSS at live rate (MiB: {named})",
            f"{gib:.2f} GiB",
            target=f"<= {FOOTPRINT_TARGET_GIB:g} GiB",
            met=gib <= FOOTPRINT_TARGET_GIB,
            versus_target=FOOTPRINT_TARGET_GIB / gib if gib else None,
        )
    ]


# -- catch-up (catchup.py) --------------------------------------------------------------------------


def catchup(r: Any) -> list[Figure]:
    steady = r.steady_trades_per_s
    rate = steady or r.trades_per_s
    which = "steady state (batches 2..)" if steady else "all batches (one batch only)"
    duck = r.duckdb_trades_per_s
    day = r.day_processing_s
    duck_day = r.duckdb_s * 1_250_000 / r.backlog.trades
    per_cpu = getattr(r, "steady_trades_per_cpu_s", None)
    return [
        Figure(
            "catch-up",
            f"trades/s through the job, {which}, vs DuckDB on the same trades ({r.backlog.trades:,} trades)",
            f"{rate:,.0f}/s",
            f"{duck:,.0f}/s",
            _times_better(rate, duck, True),
            f">= {CATCHUP_TARGET_PER_S:,}/s",
            rate >= CATCHUP_TARGET_PER_S,
            versus_target=rate / CATCHUP_TARGET_PER_S,
        ),
        Figure(
            "catch-up",
            "a day (1.25 M trades) of processing, at that rate, vs DuckDB's",
            "-" if day is None else f"{day:,.0f} s",
            f"{duck_day:,.1f} s",
            None if day is None else _times_better(day, duck_day, False),
            f"<= {CATCHUP_TARGET_DAY_S:g} s",
            day is not None and day <= CATCHUP_TARGET_DAY_S,
        ),
        Figure(
            "catch-up",
            "trades per job CPU-second after the first batch (load-independent; 100,000/s on 2 cores = 50,000)",
            "-" if per_cpu is None else f"{per_cpu:,.0f}/CPU-s",
        ),
        Figure("catch-up", "start-up, spark-submit -> first batch (reported apart)", f"{r.startup_s:.0f} s"),
        Figure(
            "catch-up",
            f"candles identical to DuckDB's, decimal-exact ({r.candles:,} candles)",
            "yes" if not r.mismatches else f"NO ({len(r.mismatches)} differences)",
            target="identical",
            met=not r.mismatches and r.candles > 0,
        ),
    ]


# -- the lake (lake_growth.py) ----------------------------------------------------------------------


def lake(r: dict[str, Any]) -> list[Figure]:
    m = r["median_s"]
    size = f"{r['days']} d x {r['products']} products, {r['files']:,} files"
    speedup = _times_better(m["compacted"], m["today"], False)
    return [
        Figure(
            "lake",
            f"one product-day, cold, this reader uncompacted vs today's reader ({size})",
            f"{m['ours']:.3f} s",
            f"{m['today']:.3f} s",
            _times_better(m["ours"], m["today"], False),
        ),
        Figure(
            "lake",
            "same, this reader after compaction vs today's reader on the uncompacted lake",
            f"{m['compacted']:.3f} s",
            f"{m['today']:.3f} s",
            speedup,
            f">= {LAKE_TARGET_SPEEDUP:g}x",
            speedup >= LAKE_TARGET_SPEEDUP,
            LAKE_TARGET_SPEEDUP,
        ),
        Figure(
            "lake",
            "this reader after compaction, cold",
            f"{m['compacted']:.3f} s",
            target=f"<= {LAKE_TARGET_S:g} s",
            met=m["compacted"] <= LAKE_TARGET_S,
            versus_target=LAKE_TARGET_S / m["compacted"] if m["compacted"] else None,
        ),
        Figure(
            "lake",
            f"`cryptopipe candles` after compaction, a new process (python + imports alone {r['startup_s']:.1f} s)",
            f"{m['cli']:.2f} s",
            target=f"<= {LAKE_TARGET_S:g} s",
            met=m["cli"] <= LAKE_TARGET_S,
            versus_target=LAKE_TARGET_S / m["cli"] if m["cli"] else None,
        ),
    ]


# -- output -----------------------------------------------------------------------------------------


def table_text(figures: list[Figure]) -> str:
    met = sum(1 for f in figures if f.met is True)
    missed = sum(1 for f in figures if f.met is False)
    return (
        "SIDE BY SIDE  ratio = times better than the peer (> 1: this project ahead; rates this/peer, "
        "CPU, latency and seconds peer/this)\n"
        + _indent(_table([f.cells() for f in figures], HEADER))
        + f"\n   targets: {met} met, {missed} missed"
    )


def chart(figures: list[Figure], path: Path, title: str = "CryptoPipeline, side by side") -> Path:
    """Horizontal bars, log scale: each ratio to a peer, and each absolute target as the distance to
    it (>= 1 met); a black tick at each target; green met, red missed, grey no target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars: list[tuple[str, float, float | None, bool | None]] = []
    for f in figures:
        if f.ratio is not None and not math.isnan(f.ratio) and f.ratio > 0:
            bars.append((f"{f.part}: {f.figure}", f.ratio, f.ratio_target, f.met))
        elif f.versus_target is not None and f.versus_target > 0:
            bars.append((f"{f.part}: {f.figure} (vs its target)", f.versus_target, 1.0, f.met))
    if not bars:
        bars.append(("no figure", 1.0, None, None))
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(bars) + 1.8), dpi=100)
    y = list(range(len(bars)))
    values = [b[1] for b in bars]
    colours = ["#9e9e9e" if b[3] is None else "#2e7d32" if b[3] else "#c62828" for b in bars]
    ax.barh(y, values, color=colours)
    for i, (_label, value, target, _met) in enumerate(bars):
        if target is not None:
            ax.plot([target, target], [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax.text(value, i, " " + ratio_text(value), va="center", fontsize=7)
    ax.set_yticks(y, [_wrap(b[0]) for b in bars], fontsize=6.5)
    ax.invert_yaxis()
    ax.set_xscale("log")
    shown = values + [b[2] for b in bars if b[2]] + [1.0]
    ax.set_xlim(min(shown) / 1.5, max(shown) * 3)
    ax.axvline(1.0, color="#607d8b", linewidth=0.8, linestyle=":")
    ax.set_xlabel("times better than the peer, or than the target (log scale; > 1 ahead; black tick = target)")
    ax.set_title(f"{title} (green met, red missed, grey no target)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _wrap(text: str, width: int = 70) -> str:
    if len(text) <= width:
        return text
    cut = text.rfind(" ", 0, width)
    return text[:cut] + "\n" + _wrap(text[cut + 1 :], width) if cut > 0 else text


def write(
    figures: list[Figure],
    details: dict[str, Any],
    json_path: Path | None,
    chart_path: Path | None,
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """The JSON (rows, each part's details, ``extra``) and the chart (default: the JSON's path as .png)."""
    written = []
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        data = {"rows": [f.as_json() for f in figures], "parts": details, **(extra or {})}
        json_path.write_text(json.dumps(data, indent=2, default=str))
        written.append(json_path)
        chart_path = chart_path or json_path.with_suffix(".png")
    if chart_path is not None:
        written.append(chart(figures, chart_path))
    return written
