"""The anomaly report of one scan, as text (one line per anomaly, then a summary) or JSON lines."""

from __future__ import annotations

import collections
import json
from datetime import datetime

from cryptopipe.monitor.anomalies import KINDS, iso
from cryptopipe.monitor.continuity import MISSING_KINDS
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
        "trade_ids": {
            kind: sum(g.count for g in scan.id_gaps if g.kind == kind) for kind in (*MISSING_KINDS, "duplicated")
        },
    }


def failed(scan: WindowScan) -> bool:
    """What makes the report exit 1: an anomaly, or a trade id lost in silence or counted twice."""
    return bool(scan.anomalies) or scan.ids_lost > 0


def render_text(scan: WindowScan, start: datetime, end: datetime) -> str:
    lines = [f"{a.kind:<19} {a.message}" for a in scan.anomalies]
    lines += [f"{'trade_ids_' + g.kind:<19} {g.message()}" for g in scan.id_gaps]
    s = summary(scan, start, end)
    kinds = ", ".join(f"{n} {kind}" for kind, n in s["by_kind"].items())
    verdict = f"{s['anomalies']} anomalies ({kinds})" if s["anomalies"] else "clean: no anomalies"
    products = ", ".join(s["products"]) or "no products"
    lines.append(f"{verdict} in {s['candles']} {scan.window} candles of {products}, {s['from']} to {s['to']}")
    ids = s["trade_ids"]
    if any(ids.values()):
        lines.append(
            f"trade ids: {ids['lost']} lost, {ids['unfillable']} counted as unfillable, {ids['duplicated']} counted twice"
        )
    else:
        lines.append("trade ids: continuous, none missing")
    return "\n".join(lines)


def render_json(scan: WindowScan, start: datetime, end: datetime) -> str:
    lines = [json.dumps(a.to_dict()) for a in scan.anomalies]
    lines += [json.dumps({"trade_ids": g.to_dict()}) for g in scan.id_gaps]
    lines.append(json.dumps({"summary": summary(scan, start, end)}))
    return "\n".join(lines)
