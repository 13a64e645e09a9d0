"""Behaviour snapshot: rendered children of every example (monitor on/off, generation 1 and 3), every
CLI help text, and each component's metric exposition (minus `_created` timestamps). Run it on two
trees and `diff -r` the outputs to show a refactor changed no behaviour:

    PYTHONPATH=OLD/services:OLD/operator:OLD/spark-apps .venv/bin/python scripts/behaviour_snapshot.py OLD OUT1 cryptopipe.cli
    .venv/bin/python scripts/behaviour_snapshot.py . OUT2 cryptopipe_dev.cli
    diff -r OUT1 OUT2
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

repo = Path(sys.argv[1])
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
from cryptopipe_operator.render import render_children, unwanted_children
from cryptopipe_operator.spec import parse_pipeline

for ex in sorted((repo / "manifests" / "examples").glob("*.yaml")):
    for doc in yaml.safe_load_all(ex.read_text()):
        if not doc or doc.get("kind") != "CryptoPipeline":
            continue
        doc.setdefault("metadata", {}).setdefault("namespace", "ns")
        doc["metadata"].setdefault("uid", "u-1")
        for mon in (False, True):
            d = json.loads(json.dumps(doc))
            d["spec"].setdefault("monitor", {})["enabled"] = mon
            p = parse_pipeline(d)
            for gen in (1, 3):
                (out / f"render-{ex.stem}-{doc['metadata']['name']}-mon{mon}-gen{gen}.json").write_text(
                    json.dumps(render_children(p, gen), indent=1, sort_keys=True, default=str)
                    + json.dumps([repr(c) for c in unwanted_children(p)])
                )
from prometheus_client import generate_latest as _generate_latest


def generate_latest(registry) -> bytes:
    return b"\n".join(line for line in _generate_latest(registry).splitlines() if b"_created" not in line)


from cryptopipe.ingest.metrics import IngestMetrics

m = IngestMetrics()
m.declare_products(["BTC-USD", "ETH-USD"])
(out / "metrics-ingest.txt").write_bytes(generate_latest(m.registry))
from cryptopipe.monitor.service import MonitorMetrics

(out / "metrics-monitor.txt").write_bytes(generate_latest(MonitorMetrics().registry))
from candles_job.progress import JobProgress

(out / "metrics-job.txt").write_bytes(generate_latest(JobProgress().registry))
from cryptopipe_operator.metrics import REGISTRY

(out / "metrics-operator.txt").write_bytes(generate_latest(REGISTRY))
cli = sys.argv[3]
cmds = [
    [],
    ["up"],
    ["replay"],
    ["candles"],
    ["plot"],
    ["monitor"],
    ["monitor", "report"],
    ["monitor", "serve"],
    ["dev"],
    ["dev", "cluster"],
]
for c in cmds:
    r = subprocess.run([sys.executable, "-m", cli, *c, "--help"], capture_output=True, text=True)
    (out / ("cli-" + "-".join(c or ["root"]) + ".txt")).write_text(r.stdout + r.stderr + str(r.returncode))
for mod in ["replay", "bench", "bench_operator"]:
    base = cli.rsplit(".", 1)[0]
    r = subprocess.run([sys.executable, "-m", f"{base}.{mod}", "--help"], capture_output=True, text=True)
    text = (r.stdout + r.stderr).replace(f"{base}.", "PKG.")
    (out / f"cli-module-{mod}.txt").write_text(re.sub(r"\s+", " ", text) + str(r.returncode))
