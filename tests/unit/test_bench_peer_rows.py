"""The peer comparison's per-side figures on edge values (no benchmark runs here)."""

from __future__ import annotations

import math

from cryptopipe_dev.bench.peers import PeerRun
from cryptopipe_dev.bench.peers_report import TARGET_PER_CPU_S, Row


def test_a_side_below_the_cpu_clock_has_no_per_cpu_figure_instead_of_failing() -> None:
    # 300 trades through the confluent service took 24 ms of wall time and read 0.0 CPU seconds
    # (the kernel counts in 10 ms ticks): the table must say so, not raise ZeroDivisionError
    run = PeerRun("cryptopipe ingestion service, confluent", 300, 300, 0.024, 0.0, [1.5, 11.3])
    assert math.isnan(run.per_cpu_s)
    row = Row("trades per CPU-s, service", run.per_cpu_s, None, None, "/CPU-s", TARGET_PER_CPU_S)
    assert row.met is False and row.cells()[-1] == "MISSED (no figure)"
    assert PeerRun("bare", 300, 300, 0.5, 0.25, [1.0]).per_cpu_s == 1200
