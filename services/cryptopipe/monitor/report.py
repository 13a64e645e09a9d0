"""The anomaly report of one scan, as text (one line per anomaly, then a summary) or JSON lines."""

from __future__ import annotations

import collections
import json
from datetime import datetime

from cryptopipe.monitor.anomalies import KINDS, iso
from cryptopipe.monitor.scan import WindowScan


def summary(scan: WindowScan, start: datetime, end: datetime) -> dict:
    by_kind = collections.Counter(a.kind for a in scan.anomalies)
    return {
        "window": scan.window,
        "from": iso(start),
        "to": iso(end),
        "products": list(scan.products),
        "candles": scan.candles,
        "complete_through": iso(scan.complete_through) if scan.complete_through else None,
        "anomalies": len(scan.anomalies),
        "by_kind": {kind: by_kind[kind] for kind in KINDS if by_kind[kind]},
    }


def render_text(scan: WindowScan, start: datetime, end: datetime) -> str:
    lines = [f"{a.kind:<19} {a.message}" for a in scan.anomalies]
    s = summary(scan, start, end)
    kinds = ", ".join(f"{n} {kind}" for kind, n in s["by_kind"].items())
    verdict = f"{s['anomalies']} anomalies ({kinds})" if s["anomalies"] else "clean: no anomalies"
    products = ", ".join(s["products"]) or "no products"
    lines.append(f"{verdict} in {s['candles']} {scan.window} candles of {products}, {s['from']} to {s['to']}")
    return "\n".join(lines)


def render_json(scan: WindowScan, start: datetime, end: datetime) -> str:
    lines = [json.dumps(a.to_dict()) for a in scan.anomalies]
    lines.append(json.dumps({"summary": summary(scan, start, end)}))
    return "\n".join(lines)
