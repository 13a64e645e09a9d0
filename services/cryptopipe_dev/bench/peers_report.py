"""The peer comparison as one table (figure, this project, the peer, ratio, target, met/missed),
as JSON (``--json``) and as a PNG bar chart of the ratios (made here, matplotlib's Agg backend)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from cryptopipe_dev.bench.peers import (
    BARE,
    BARE_C,
    CF_ALL,
    CF_DEFAULT,
    HOW,
    PROJECT_HOT,
    PROJECT_HOT_C,
    PROJECT_HOT_EXCHANGE,
    PROJECT_HOT_EXCHANGE_C,
    PROJECT_WS,
    PROJECT_WS_C,
    TARGET_PER_CPU_S,
    TARGET_VS_BARE,
    TARGET_VS_CRYPTOFEED,
    PeerRun,
    PeersResult,
)
from cryptopipe_dev.bench.report import _indent, _table

HEADER = ["figure", "this project", "the peer", "ratio", "target", "status"]


@dataclasses.dataclass(frozen=True)
class Row:
    figure: str
    this: float
    peer: float | None
    ratio: float | None  # this / peer
    unit: str  # "/s", "CPU-s", "ms", "/CPU-s"
    target: float | None = None  # on the ratio, or on ``this`` when there is no peer
    higher_is_better: bool = True

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        value = self.ratio if self.peer is not None else self.this
        if value is None or math.isnan(value):
            return False
        return value >= self.target if self.higher_is_better else value <= self.target

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}x"
        if self.target is None:
            target, status = "", ""
        else:
            target = f">= {self.target:g}x" if self.peer is not None else f">= {self.target:,.0f}{self.unit}"
            value = self.ratio if self.peer is not None else self.this
            miss = f"{value / self.target - 1:+.0%}" if value is not None and not math.isnan(value) else "no figure"
            status = "met" if self.met else f"MISSED ({miss})"
        return [self.figure, _value(self.this, self.unit), _value(self.peer, self.unit), ratio, target, status]

    def as_json(self) -> dict[str, Any]:
        return {
            **dict(zip(HEADER, self.cells(), strict=True)),
            "this_value": self.this,
            "peer_value": self.peer,
            "ratio_value": self.ratio,
            "unit": self.unit,
            "target_value": self.target,
            "met": self.met,
        }


def _value(x: float | None, unit: str) -> str:
    if x is None:
        return ""
    if math.isnan(x):
        return "-"
    if unit == "ms":
        return f"{x:,.1f} ms" if x < 100 else f"{x:,.0f} ms"
    if unit == "CPU-s":
        return f"{x:.1f} CPU-s"
    return f"{x:,.0f}{unit}"


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _versus(this: PeerRun, peer: PeerRun, label: str, target: float | None, suffix: str = "") -> list[Row]:
    return [
        Row(f"trades/s vs {label}{suffix}", this.per_s, peer.per_s, _ratio(this.per_s, peer.per_s), "/s", target),
        Row(
            f"CPU-s per 1M trades vs {label}{suffix}",
            this.cpu_s_per_million,
            peer.cpu_s_per_million,
            _ratio(this.cpu_s_per_million, peer.cpu_s_per_million),
            "CPU-s",
        ),
        Row(
            f"latency p50 vs {label}{suffix}",
            this.latency_ms(0.5),
            peer.latency_ms(0.5),
            _ratio(this.latency_ms(0.5), peer.latency_ms(0.5)),
            "ms",
        ),
        Row(
            f"latency p99 vs {label}{suffix}",
            this.latency_ms(0.99),
            peer.latency_ms(0.99),
            _ratio(this.latency_ms(0.99), peer.latency_ms(0.99)),
            "ms",
        ),
    ]


# (suffix of the figure, service side, hot path side, Exchange hot path side, its bare client)
PRODUCER_SIDES = (
    ("", PROJECT_WS, PROJECT_HOT, PROJECT_HOT_EXCHANGE, BARE, "bare kafka-python"),
    (", confluent producer", PROJECT_WS_C, PROJECT_HOT_C, PROJECT_HOT_EXCHANGE_C, BARE_C, "bare confluent-kafka"),
)


def rows(result: PeersResult) -> list[Row]:
    """Per producer of this project (kafka-python; confluent when it ran): the service against
    cryptofeed (acks=all: the target; default acks), the hot path against its own bare client,
    and trades per CPU-second on both feeds."""
    cf_all, cf_default = result.best(CF_ALL), result.best(CF_DEFAULT)
    out: list[Row] = []
    for suffix, ws_side, hot_side, hot_x_side, bare_side, bare_label in PRODUCER_SIDES:
        ws, hot, hot_x, bare = (result.best(s) for s in (ws_side, hot_side, hot_x_side, bare_side))
        if ws and cf_all:
            out += _versus(ws, cf_all, "cryptofeed acks=all", TARGET_VS_CRYPTOFEED, suffix)
        if ws and cf_default:
            out += _versus(ws, cf_default, "cryptofeed default acks=1", None, suffix)
        if hot and bare:
            out += _versus(hot, bare, bare_label, TARGET_VS_BARE)
        for run, what in (
            (hot, "hot path, Advanced Trade"),
            (hot_x, "hot path, Exchange"),
            (ws, "service, Advanced Trade"),
        ):
            if run:
                out.append(
                    Row(f"trades per CPU-s, {what}{suffix}", run.per_cpu_s, None, None, "/CPU-s", TARGET_PER_CPU_S)
                )
    return out


def runs_text(result: PeersResult) -> str:
    table = [
        [
            str(i + 1),
            r.side,
            f"{r.trades:,}",
            f"{r.wall_s:.2f}",
            f"{r.cpu_s:.2f}",
            f"{r.per_s:,.0f}",
            f"{r.cpu_s_per_million:.1f}",
            f"{r.per_cpu_s:,.0f}",
            _value(r.latency_ms(0.5), "ms"),
            _value(r.latency_ms(0.99), "ms"),
        ]
        for i, r in enumerate(result.runs)
    ]
    header = ["run", "side", "trades", "wall s", "CPU s", "trades/s", "CPU-s/1M", "trades/CPU-s", "p50", "p99"]
    return "\n".join(
        [
            f"INGESTION VS PEERS  {result.trades:,} trades in {result.frames:,} synthetic Advanced Trade frames "
            f"(recorded shape, seed 7); cryptofeed {result.cryptofeed_version}; "
            f"confluent-kafka {result.confluent_version or 'not installed'}",
            *(f"   {side}: {how}" for side, how in HOW.items()),
            "   same broker, a fresh 2-partition topic per run (LogAppendTime), records keyed/partitioned by product;",
            "   wall: first frame -> last record appended; CPU: the side's process only (not the broker, not the "
            "replay server); latency: receive -> broker append, every trade (bare: send -> ack, every 50th record), "
            "under saturation",
            _indent(_table(table, header)),
        ]
    )


def table_text(result: PeersResult) -> str:
    return "PEERS SUMMARY (ratio = this project / the peer)\n" + _indent(
        _table([r.cells() for r in rows(result)], HEADER)
    )


def as_json(result: PeersResult) -> dict[str, Any]:
    return {
        "trades": result.trades,
        "frames": result.frames,
        "cryptofeed_version": result.cryptofeed_version,
        "confluent_version": result.confluent_version,
        "how": HOW,
        "runs": [
            {
                "side": r.side,
                "trades": r.trades,
                "records": r.records,
                "wall_s": r.wall_s,
                "cpu_s": r.cpu_s,
                "trades_per_s": r.per_s,
                "cpu_s_per_million": r.cpu_s_per_million,
                "trades_per_cpu_s": r.per_cpu_s,
                "latency_p50_ms": r.latency_ms(0.5),
                "latency_p99_ms": r.latency_ms(0.99),
                "latency_samples": len(r.latencies_ms),
            }
            for r in result.runs
        ],
        "rows": [r.as_json() for r in rows(result)],
    }


def chart(result: PeersResult, path: Path) -> Path:
    """Horizontal bars, one per ratio row that has a target or is a throughput/CPU figure; log scale,
    a tick at each target; green met, red missed, grey no target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [r for r in rows(result) if r.target is not None or (r.ratio is not None and r.unit != "ms")]
    labels, values, colours = [], [], []
    for r in bars:
        if r.peer is not None:
            labels.append(r.figure.replace(" vs ", "\nvs "))
            values.append(r.ratio if r.ratio and not math.isnan(r.ratio) else 0.0)
        else:  # an absolute target: plot as a fraction of the target
            labels.append(r.figure.replace(", hot path", "\nhot path").replace(", service", "\nservice") + " / target")
            values.append(r.this / r.target if r.target else 0.0)
        colours.append("#9e9e9e" if r.met is None else "#2e7d32" if r.met else "#c62828")
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(bars) + 1.6), dpi=110)
    y = range(len(bars))
    ax.barh(list(y), values, color=colours)
    for i, r in enumerate(bars):
        target = r.target if r.peer is not None else 1.0 if r.target else None
        if target is not None:
            ax.plot([target, target], [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax.text(values[i], i, f" {values[i]:.2f}x", va="center", fontsize=8)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    shown = [v for v in values if v > 0] + [r.target for r in bars if r.target and r.peer is not None] + [1.0]
    ax.set_xlim(min(shown) / 1.5, max(shown) * 2.5)  # room for the value labels
    ax.axvline(1.0, color="#607d8b", linewidth=0.8, linestyle=":")
    ax.set_xlabel("ratio, this project / peer (log scale; black tick = target; CPU-s: lower is better)")
    ax.set_title(
        f"CryptoPipeline ingestion vs peers, {result.trades:,} trades (green met, red missed, grey no target)",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write(
    result: PeersResult, json_path: Path | None, chart_path: Path | None, extra: dict[str, Any] | None = None
) -> list[Path]:
    """The JSON (rows, runs, ``extra``) and the chart; the chart defaults to the JSON's path as .png."""
    written = []
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({**as_json(result), **(extra or {})}, indent=2))
        written.append(json_path)
        chart_path = chart_path or json_path.with_suffix(".png")
    if chart_path is not None:
        written.append(chart(result, chart_path))
    return written


def from_json(data: dict[str, Any]) -> PeersResult:
    """A PeersResult back from ``dataclasses.asdict`` (to re-render a finished run)."""
    runs = [PeerRun(**r) for r in data["runs"]]
    return PeersResult(
        data["trades"],
        data["frames"],
        runs,
        data["cryptofeed_version"],
        data.get("confluent_version"),
        data.get("profile"),
    )
