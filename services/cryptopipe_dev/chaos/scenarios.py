"""The fault suite's scenarios: one per kind of fault (issue 10), with the full-run repetitions.

``action`` says how the runner injects the fault (runner.py); a scenario with ``not_yet`` is listed
in the table with that reason and not run: no fault hook or harness for it exists yet, so there
is no honest number to give.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    runs: int  # fault injections in a full run (`--quick`: 1)
    action: str  # ingestion-kill, driver-kill, driver-zombie, broker-restart, proxy, faults, source
    what: str  # one line for the docs and the table's legend
    faults: dict = dataclasses.field(default_factory=dict)  # replay-server faults armed per injection
    env: dict = dataclasses.field(default_factory=dict)  # extra ingestion env for this scenario
    not_yet: str | None = None


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "ingestion-sigkill",
        20,
        "ingestion-kill",
        "SIGKILL of the ingestion process at seeded random moments, every other one while a REST gap is "
        "pending (every 13th trade withheld from the WebSocket, each REST answer 0.2 s late), restarted at once",
        {"skip_every": 13, "rest_delay_s": 0.2},
    ),
    Scenario("driver-sigkill", 10, "driver-kill", "SIGKILL of the Spark driver at random moments, restarted at once"),
    Scenario(
        "driver-zombie",
        1,
        "driver-zombie",
        "a second Spark driver started on the same checkpoint and lake while the first keeps running "
        "(a zombie: partitioned or resubmitted); both run until the successor has committed a batch and "
        "20 s more, then the old one is SIGKILLed",
    ),
    Scenario(
        "broker-restart", 5, "broker-restart", "SIGKILL of the Kafka broker during ingestion, restarted 2 s later"
    ),
    Scenario(
        "partition-unreachable",
        1,
        "proxy",
        "the broker unreachable from the ingestion for 20 s (80 market seconds at 4x: past the 30 s watermark "
        "and the 10 s delivery timeout set here): a loopback proxy, the only way in for the ingestion, "
        "blackholes its connections (no reset, no close), then heals",
        env={"CRYPTOPIPE_INGEST_DELIVERY_TIMEOUT_MS": "10000", "CRYPTOPIPE_INGEST_REQUEST_TIMEOUT_MS": "4000"},
    ),
    Scenario(
        "websocket-drop",
        10,
        "faults",
        "the connection aborted without a close frame; 25 frames sent meanwhile are lost to the socket (still on REST)",
        {"drop_after": 40, "drop_lose": 25},
    ),
    Scenario(
        "websocket-stall",
        10,
        "faults",
        "the feed goes silent for 8 s on an open socket (the ingestion's watchdog is 5 s in the suite)",
        {"stall_after": 40, "stall_seconds": 8.0},
    ),
    Scenario(
        "websocket-malformed",
        10,
        "faults",
        "a malformed frame (truncated, garbage, bad price in turn) among the data",
        {"malformed_after": 40},
    ),
    Scenario(
        "websocket-error-frame",
        10,
        "faults",
        "an error frame from the feed among the data (nothing replaced)",
        {"error_after": 40},
    ),
    Scenario(
        "websocket-duplicate-snapshot",
        10,
        "faults",
        "the connection closed (code 1011) without losing frames: the reconnect's last_match snapshot "
        "repeats a trade already seen; 5% of frames also sent twice",
        {"drop_after": 40, "drop_close_code": 1011, "duplicate_rate": 0.05},
    ),
    Scenario(
        "websocket-out-of-order",
        10,
        "faults",
        "10% of data frames held back and sent after the next one",
        {"reorder_rate": 0.1},
    ),
    Scenario(
        "websocket-trade-id-gap",
        10,
        "faults",
        "every 7th trade withheld from the WebSocket (served over REST): each one a gap to backfill",
        {"skip_every": 7},
    ),
    Scenario(
        "rest-missing-id",
        10,
        "faults",
        "a trade withheld from the WebSocket and missing from REST too: an unfillable id to be counted",
        {"rest_missing": True},
    ),
    Scenario(
        "rest-slow",
        1,
        "faults",
        "every REST answer delayed 8 s (32 market seconds at 4x, past the 30 s watermark) while trades are "
        "withheld: the backfill arrives after later live trades moved the watermark",
        {"skip_every": 50, "rest_delay_s": 8.0},
    ),
    Scenario(
        "future-timestamp",
        1,
        "source",
        "a trade frame whose time is a day ahead (the trade's true time is lost; it must be dead-lettered, "
        "not move the watermark)",
    ),
)

BY_NAME = {s.name: s for s in SCENARIOS}
